"""`tunekit` command line: thin commands over the runner and the results module."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Sequence

from toolkit.imports import TrainableImportError
from toolkit.spec import DEFAULT_STORAGE, SpecError


def _run(args: argparse.Namespace) -> int:
    if args.address:
        from toolkit.cluster.connect import use_cluster_token

        use_cluster_token()  # before anything imports ray
    from toolkit.spec import load_spec

    overrides = list(args.set or [])
    if args.storage:
        overrides.append(f"storage={args.storage}")
    spec = load_spec(args.spec, overrides)
    args.log_root = spec.storage  # where an unexpected error's traceback goes
    if args.dry_run:
        from toolkit.runner import build_components, plan

        parts = build_components(spec, args.address)  # every error a real run would meet before starting
        cluster = None
        if args.address:  # how many trials fit on the cluster as it is now
            from toolkit.cluster.connect import connect

            conn = connect(args.address)
            cluster = conn.resources
            conn.close()
        print(plan(spec, cluster, searcher=parts.searcher).render())
        return 0
    from toolkit.cluster.recovery import sigterm_as_interrupt
    from toolkit.runner import run_experiment

    sigterm_as_interrupt()  # `tunekit jobs stop` (Ray sends SIGTERM) ends the sweep like Ctrl-C
    outcome = _run_with_progress(spec, args, run_experiment)
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


def _run_with_progress(spec, args: argparse.Namespace, run_experiment):  # noqa: ANN001, ANN202
    """The sweep with tunekit's progress display on stdout and Ray's own output in the record's
    `ray.log` (live too with --verbose)."""
    from toolkit.imports import TrainableImportError
    from toolkit.logs import ray_output_to
    from toolkit.progress import SweepProgress

    with ray_output_to(live=args.verbose) as out:
        progress = SweepProgress(spec.metric, spec.mode, spec.num_samples, spec.stop.max_iterations,
                                 stream=out.terminal, log_path=lambda: out.path, quiet=args.quiet)
        opened = []

        def on_record(folder: Path) -> None:
            opened.append(out.move_into(folder))
            progress.say(f"[tunekit] Ray's output: {out.path}")

        try:
            outcome = run_experiment(spec, address=args.address, verbose=2 if args.verbose else 1,
                                     resume=args.resume, log=progress.say, callbacks=[progress],
                                     on_record=on_record)
        except (SpecError, TrainableImportError):
            if not opened:
                out.path.unlink(missing_ok=True)  # bad input: nothing was started, nothing is kept
            raise
        except Exception:
            if not opened:
                progress.say(f"[tunekit] Ray's output: {out.path}")
            raise
        finally:
            progress.close()
    return outcome


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
    run.add_argument("--quiet", action="store_true", help="no progress lines: warnings and the summary only")
    run.add_argument("--verbose", action="store_true",
                     help="also show Ray's own output as it comes (it always goes to the record's ray.log)")
    run.add_argument("--resume", nargs="?", const="yes", choices=["yes", "auto"],
                     help="finish the incomplete record version a killed run of this spec left "
                          "('auto': resume if there is one, else start fresh)")
    run.set_defaults(handler=_run)

    from toolkit.reproduce import register as register_reproduce
    from toolkit.results.cli import register

    register(sub)
    register_reproduce(sub)  # reproduce runs the user's code: it lives outside toolkit.results
    from toolkit.tools_cli import register as register_tools  # lr-find, sanity

    register_tools(sub)
    from toolkit.cluster.cli import register as register_cluster  # submit, jobs

    register_cluster(sub)
    from toolkit.nightly.cli import register as register_nightly  # nightly run, history, emit

    register_nightly(sub)
    return parser


def write_error_log(err: BaseException, root: str | os.PathLike | None) -> Path:
    """The traceback of an unexpected error, in `<storage>/.logs/` (or the temp folder)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = "".join(traceback.format_exception(err))
    for folder in (Path(root or os.environ.get("TUNEKIT_STORAGE") or DEFAULT_STORAGE) / ".logs",
                   Path(tempfile.gettempdir()) / "tunekit-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder.resolve() / f"tunekit-{stamp}-{os.getpid()}.log"
            path.write_text(text)
            return path
        except OSError:
            continue
    raise err


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SpecError as e:
        for line in e.lines():
            print(f"tunekit: {line}", file=sys.stderr)
        return 2
    except TrainableImportError as e:
        print(f"tunekit: trainable: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - anything else: one line here, the traceback in a log
        log = write_error_log(e, getattr(args, "log_root", None) or getattr(args, "storage", None))
        message = " ".join(str(e).split()) or "(no message)"
        print(f"tunekit: {type(e).__name__}: {message} (details: {log})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tunekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
