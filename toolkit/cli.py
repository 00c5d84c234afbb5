"""`tunekit` command line: thin commands over the runner and the results module."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from toolkit.spec import SpecError


def _run(args: argparse.Namespace) -> int:
    if args.address:
        from toolkit.runner import use_cluster_token

        use_cluster_token()  # before anything imports ray
    from toolkit.spec import load_spec

    overrides = list(args.set or [])
    if args.storage:
        overrides.append(f"storage={args.storage}")
    spec = load_spec(args.spec, overrides)
    if args.dry_run:
        from toolkit.runner import plan

        print(plan(spec).render())
        return 0
    from toolkit.runner import run_experiment

    outcome = run_experiment(spec, address=args.address, verbose=0 if args.quiet else 1)
    print()
    print(f"status: {outcome.status}; {outcome.n_trials} trials "
          f"({outcome.n_early_stopped} stopped early by the scheduler, {outcome.n_errors} failed)")
    if outcome.best:
        print(f"best trial {outcome.best['trial_id']}: {spec.metric} = {outcome.best['value']:.6g} "
              f"after {outcome.best['iterations']} iterations")
        print("best config: " + json.dumps(outcome.best["config"], sort_keys=True))
    else:
        print("no trial produced a result")
    print(f"record: {outcome.record_path}  (tunekit results show {spec.name}@v{outcome.version}"
          f"{' --storage ' + spec.storage if spec.storage != './tunekit-results' else ''})")
    return 0 if outcome.status in ("completed", "interrupted") and outcome.best else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunekit", description="Tune PyTorch models on Ray with tunekit.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the sweep an experiment spec describes")
    run.add_argument("spec", help="YAML experiment spec")
    run.add_argument("--address", help="connect to this Ray cluster instead of starting a local one "
                                       "(e.g. auto, or ray://host:10001)")
    run.add_argument("--dry-run", action="store_true", help="validate and print the resolved plan only")
    run.add_argument("--storage", help="root folder for experiment records (overrides the spec)")
    run.add_argument("--set", action="append", metavar="FIELD=VALUE",
                     help="override a spec field by dotted path, e.g. --set stop.max_iterations=2 (repeatable)")
    run.add_argument("--quiet", action="store_true", help="no per-trial progress table")
    run.set_defaults(handler=_run)

    from toolkit.reproduce import register as register_reproduce
    from toolkit.results.cli import register

    register(sub)
    register_reproduce(sub)  # reproduce runs the user's code: it lives outside toolkit.results
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SpecError as e:
        for line in e.lines():
            print(f"tunekit: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tunekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
