"""`tunekit submit` and `tunekit jobs ...`: registered on the main parser by `register`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toolkit.cluster.auth import ClusterError


def _print(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _client(args: argparse.Namespace):
    from toolkit.cluster.auth import find_token, job_client, normalise_address, probe
    from toolkit.cluster.preflight import address_overrides, resolve_address

    for message in address_overrides(args.address):
        print(f"tunekit: warning: {message}", file=sys.stderr)
    address = normalise_address(resolve_address(args.address))
    token = find_token()
    probe(address, token)
    return job_client(address, token)


def _guarded(handler):
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ClusterError as e:
            print(f"tunekit: {e}", file=sys.stderr)
            return e.exit_code

    return run


def _submit(args: argparse.Namespace) -> int:
    from toolkit.cluster.submit import TERMINAL_EXIT, Submission, follow, submit

    sub = Submission(Path(args.spec), args.address, list(args.set or []), args.storage,
                     Path(args.working_dir) if args.working_dir else Path.cwd(), list(args.exclude or []))
    client, job_id = submit(sub, log=_print)
    if args.no_wait:
        _print(f"follow it: tunekit jobs logs {job_id} --follow --address {args.address or ''}".rstrip())
        return 0
    final = follow(client, job_id, stream_logs=args.follow, out=lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    _print(f"[tunekit] job {job_id} ended: {final}")
    return TERMINAL_EXIT.get(final, 1)


def _jobs(args: argparse.Namespace) -> int:
    from toolkit.cluster import jobs
    from toolkit.cluster.submit import TERMINAL_EXIT

    client = _client(args)
    if args.jobs_command == "list":
        _print(jobs.render_list(jobs.list_rows(client, only_tunekit=not args.all)))
        return 0
    try:
        client.get_job_info(args.job_id)
    except RuntimeError:
        raise ClusterError(f"no job {args.job_id!r} on this cluster (tunekit jobs list)") from None
    if args.jobs_command == "status":
        state, text = jobs.status(client, args.job_id)
        _print(text)
        return 0
    if args.jobs_command == "logs":
        state = jobs.logs(client, args.job_id, args.follow, out=lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        return TERMINAL_EXIT.get(state, 0) if args.follow else 0
    state = jobs.stop(client, args.job_id)
    _print(f"job {args.job_id}: {state}")
    return 0 if state in TERMINAL_EXIT else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add `submit` and `jobs` to the `tunekit` command line."""
    p = sub.add_parser("submit", help="run a sweep as a Ray job on a cluster (Ray's Job Submission API)")
    p.add_argument("spec", help="YAML experiment spec (inside the working directory)")
    p.add_argument("--address", help="the cluster's job server, http://HOST:8265 (default: RAY_API_SERVER_ADDRESS)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--follow", action="store_true", help="stream the job's logs until it ends")
    mode.add_argument("--no-wait", action="store_true", help="return once the job is submitted")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a spec field (repeatable)")
    p.add_argument("--storage", help="record root on the cluster: an absolute path every node reaches")
    p.add_argument("--working-dir", help="folder uploaded with the job (default: the current folder)")
    p.add_argument("--exclude", action="append", metavar="PATTERN",
                   help="leave matching files out of the upload (gitignore syntax, repeatable)")
    p.set_defaults(handler=_guarded(_submit))

    j = sub.add_parser("jobs", help="list, inspect, follow or stop sweeps submitted to a cluster")
    j.add_argument("--address", help="the cluster's job server, http://HOST:8265 (default: RAY_API_SERVER_ADDRESS)")
    jsub = j.add_subparsers(dest="jobs_command", required=True)
    lst = jsub.add_parser("list", help="tunekit jobs on the cluster")
    lst.add_argument("--all", action="store_true", help="every Ray job, not only tunekit's")
    for name, text in (("status", "a job's status and metadata"), ("logs", "a job's logs"),
                       ("stop", "stop a job (its record is kept, marked interrupted)")):
        q = jsub.add_parser(name, help=text)
        q.add_argument("job_id")
        if name == "logs":
            q.add_argument("--follow", action="store_true", help="stream until the job ends")
    for q in [lst] + [jsub.choices[n] for n in ("status", "logs", "stop")]:
        q.add_argument("--address", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    j.set_defaults(handler=_guarded(_jobs))
