"""`tunekit submit`: a sweep as a Ray job, through Ray's Job Submission API.

The job's entrypoint is `tunekit run SPEC --resume auto --address auto` on the head node; its
runtime environment carries the working directory (the project's code and the spec). The
submission id is derived from the spec's name and a hash of its content, so submitting the
same sweep twice is refused while the first runs; submitting it again after its driver died
starts a new attempt that resumes the same record version.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from toolkit.cluster.auth import (
    EXIT_DUPLICATE,
    EXIT_JOB_FAILED,
    EXIT_JOB_STOPPED,
    ClusterError,
    find_token,
    job_client,
    normalise_address,
    probe,
)
from toolkit.cluster.preflight import (
    DEFAULT_EXCLUDES,
    address_overrides,
    check_package,
    check_storage_for_submission,
    check_versions,
    resolve_address,
    scan_package,
)

ACTIVE = ("PENDING", "RUNNING")
STOP_GRACE_S = 60
TERMINAL_EXIT = {"SUCCEEDED": 0, "FAILED": EXIT_JOB_FAILED, "STOPPED": EXIT_JOB_STOPPED}


@dataclass
class Submission:
    spec_path: Path
    address: str | None = None
    overrides: list[str] = field(default_factory=list)
    storage: str | None = None
    working_dir: Path = field(default_factory=Path.cwd)
    excludes: list[str] = field(default_factory=list)
    entrypoint_num_cpus: float | None = None


def spec_digest(raw: dict) -> str:
    """sha256 of the spec as it will run (overrides applied), independent of key order."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()


def submission_id(name: str, digest: str, attempt: int = 1) -> str:
    base = f"tunekit-{name}-{digest[:12]}"
    return base if attempt == 1 else f"{base}-a{attempt}"


def versions() -> dict[str, str]:
    import ray

    from toolkit import __version__ as tunekit_version

    return {"tunekit_version": str(tunekit_version), "ray_version": ray.__version__}


def _attempts(client: Any, base: str) -> list[Any]:
    """This sweep's earlier jobs (all attempts), oldest first."""
    jobs = [j for j in client.list_jobs() if (j.submission_id or "") == base
            or (j.submission_id or "").startswith(base + "-a")]
    return sorted(jobs, key=lambda j: j.start_time or 0)


def entrypoint(spec_rel: str, overrides: list[str], storage: str | None) -> str:
    args = ["--resume", "auto", "--address", "auto", "--quiet"]
    for item in overrides:
        args += ["--set", item]
    if storage:
        args += ["--storage", storage]
    # The driver runs outside the job's folder and reads the spec by absolute path: Ray 2.60 can
    # delete and unpack that folder again when the job's first worker starts on the head node,
    # which leaves a process inside it in a deleted directory (os.getcwd() fails).
    return (f'SPEC="$PWD"/{shlex.quote(spec_rel)}; cd /tmp && exec tunekit run "$SPEC" '
            + " ".join(shlex.quote(a) for a in args))


def prepare(sub: Submission, warn: Callable[[str], None]) -> tuple[dict, str, str]:
    """Everything checked locally before contacting the cluster: (raw spec, digest, entrypoint)."""
    from toolkit.spec import apply_overrides, load_raw, validate_spec

    spec_path = sub.spec_path.resolve()
    workdir = sub.working_dir.resolve()
    try:
        spec_rel = str(spec_path.relative_to(workdir))
    except ValueError:
        raise ClusterError(f"spec {sub.spec_path} is outside the working directory {workdir}, so the job would "
                           "not have it; run from the project folder (or pass --working-dir)") from None
    overrides = list(sub.overrides) + ([f"storage={sub.storage}"] if sub.storage else [])
    raw = apply_overrides(load_raw(spec_path), overrides)
    spec = validate_spec(raw, source=str(sub.spec_path))
    check_storage_for_submission(spec.storage)
    for message in address_overrides(sub.address):
        warn(message)
    check_package(scan_package(workdir, DEFAULT_EXCLUDES + list(sub.excludes)))
    return raw, spec_digest(raw), entrypoint(spec_rel, list(sub.overrides), sub.storage)


def submit(sub: Submission, log: Callable[[str], None] = print,
           warn: Callable[[str], None] = lambda m: print(f"tunekit: warning: {m}", file=sys.stderr)) -> tuple[Any, str]:
    """Preflight, then submit; returns (client, submission id). Raises `ClusterError`."""
    import ray

    raw, digest, command = prepare(sub, warn)
    address = normalise_address(resolve_address(sub.address))
    token = find_token()
    check_versions(ray.__version__, probe(address, token))
    client = job_client(address, token)
    base = submission_id(raw["name"], digest)
    earlier = _attempts(client, base)
    for job in earlier:
        status = str(job.status)
        if status in ACTIVE:
            raise ClusterError(f"this sweep is already {status.lower()} as job {job.submission_id} on {address} "
                               f"(follow it: tunekit jobs logs {job.submission_id} --follow)", EXIT_DUPLICATE)
    if earlier and str(earlier[-1].status) == "SUCCEEDED":
        raise ClusterError(f"this sweep already completed as job {earlier[-1].submission_id}; its record is in "
                           f"{raw.get('storage')} (change the spec, or `tunekit jobs` to see it)", EXIT_DUPLICATE)
    job_id = submission_id(raw["name"], digest, attempt=len(earlier) + 1)
    metadata = {"tunekit_spec": raw["name"], "spec_sha256": digest, **versions()}
    excludes = DEFAULT_EXCLUDES + list(sub.excludes)
    # Ray stops a job with SIGTERM and SIGKILLs it 3 s later by default: give the driver time
    # to stop its trials and publish the record as interrupted.
    runtime_env = {"working_dir": str(sub.working_dir.resolve()), "excludes": excludes,
                   "env_vars": {"RAY_JOB_STOP_WAIT_TIME_S": str(STOP_GRACE_S)}}
    try:
        client.submit_job(entrypoint=command, submission_id=job_id, runtime_env=runtime_env,
                          metadata=metadata, entrypoint_num_cpus=sub.entrypoint_num_cpus)
    except RuntimeError as e:
        if "already exists" in str(e):  # a concurrent submit won the race for this id
            raise ClusterError(f"this sweep was just submitted as job {job_id} by someone else",
                               EXIT_DUPLICATE) from None
        raise
    if earlier:
        log(f"[tunekit] earlier attempt {earlier[-1].submission_id} ended {earlier[-1].status}: "
            f"job {job_id} resumes the same record version")
    log(f"[tunekit] submitted {raw['name']} as job {job_id} to {address}")
    return client, job_id


def follow(client: Any, job_id: str, stream_logs: bool, out: Callable[[str], None],
           poll_s: float = 1.0, timeout_s: float | None = None) -> str:
    """Wait for the job to end (streaming its logs if asked); returns its final status."""
    if stream_logs:
        import asyncio

        async def tail() -> None:
            async for chunk in client.tail_job_logs(job_id):
                out(chunk)

        try:
            asyncio.run(asyncio.wait_for(tail(), timeout_s) if timeout_s else tail())
        except (RuntimeError, asyncio.TimeoutError):
            pass  # the log stream ended or broke; the status below says how the job ended
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None
    while True:
        status = str(client.get_job_status(job_id))
        if status != last and not stream_logs:
            out(f"[tunekit] job {job_id}: {status}\n")
            last = status
        if status in TERMINAL_EXIT:
            return status
        if deadline is not None and time.monotonic() > deadline:
            return status
        time.sleep(poll_s)
