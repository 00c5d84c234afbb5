"""`tunekit nightly run | history | emit` (registered by toolkit/cli.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from toolkit.nightly import gate


def _spec(path: str):
    from toolkit.spec import load_spec

    return load_spec(path)


def _run(args: argparse.Namespace) -> int:
    from toolkit.nightly import ledger
    from toolkit.nightly.night import NightOptions, run_night

    date = ledger.check_date(args.date) if args.date else ledger.today_utc()
    opts = NightOptions(date=date, address=args.address, warm_start=args.warm_start, top_k=args.top_k,
                        decay=args.decay, tolerance=args.tolerance, z=args.z, keep=args.keep,
                        webhook=args.webhook, webhook_on=args.webhook_on, overrides=list(args.set or []))
    result = run_night(args.spec, opts, sweep=_sweep_with_progress(args))
    print(("tunekit: " if result.exit_code == gate.EXIT_LOCKED else "") + result.message,
          file=sys.stderr if result.exit_code == gate.EXIT_LOCKED else sys.stdout)
    return result.exit_code


def _sweep_with_progress(args: argparse.Namespace):  # noqa: ANN202
    """The night's sweep with `tunekit run`'s progress display and Ray-output log."""
    from toolkit.cli import _run_with_progress
    from toolkit.cluster.recovery import sigterm_as_interrupt
    from toolkit.runner import run_experiment

    sigterm_as_interrupt()
    shown = argparse.Namespace(address=args.address, verbose=args.verbose, quiet=args.quiet, resume="auto")

    def sweep(spec, on_record, **night):  # noqa: ANN001, ANN202
        def run(spec, on_record: object = None, **kw):  # noqa: ANN001, ANN202
            def both(folder: Path) -> None:
                on_record(folder)
                night_on_record(folder)
            return run_experiment(spec, on_record=both, **kw, **night)

        night_on_record = on_record
        return _run_with_progress(spec, shown, run)

    return sweep


def _history(args: argparse.Namespace) -> int:
    from toolkit.nightly import history, ledger

    spec = _spec(args.spec)
    storage = Path(spec.storage).expanduser()
    nights = ledger.nights(storage, spec.name)
    if not nights:
        print(f"no nightly runs of {spec.name} under {storage}")
        return 0
    print("\n".join(history.lines(nights, spec.metric)))
    if args.html:
        out = Path(args.html)
        if out.exists() and not args.force:
            print(f"tunekit: {out} exists; pass --force to overwrite it", file=sys.stderr)
            return 2
        out.write_text(history.html_page(spec.name, nights, spec.metric), encoding="utf-8")
        print(f"wrote {out}")
    return 0


def _emit(args: argparse.Namespace) -> int:
    from toolkit.nightly.schedule import ScheduleSettings, emit

    spec = _spec(args.spec)
    kind = next(k for k in ("cron", "systemd", "k8s", "github") if getattr(args, k))
    hour, _, minute = args.at.partition(":")
    settings = ScheduleSettings(spec=args.spec, name=spec.name, workdir=os.path.abspath(args.workdir),
                                hour=int(hour), minute=int(minute or 0), address=args.address, keep=args.keep,
                                tunekit=args.tunekit)
    files = emit(kind, settings, Path(args.out) if args.out else None)
    if args.out:
        for fname in files:
            print(f"wrote {Path(args.out) / fname}")
    else:
        for fname, text in files.items():
            if len(files) > 1:
                print(f"# ---- {fname}")
            print(text, end="" if text.endswith("\n") else "\n")
    return 0


def _at(text: str) -> str:
    hour, _, minute = text.partition(":")
    if not (hour.isdigit() and 0 <= int(hour) < 24 and (not minute or (minute.isdigit() and int(minute) < 60))):
        raise argparse.ArgumentTypeError(f"expected HH:MM (UTC), got {text!r}")
    return text


def register(sub: argparse._SubParsersAction) -> None:
    nightly = sub.add_parser("nightly", help="scheduled nightly sweeps: run one night, history, emit a schedule")
    nsub = nightly.add_subparsers(dest="nightly_command", required=True)

    run = nsub.add_parser("run", help="run tonight's sweep (idempotent: resumes or does nothing if done)",
                          description="Exit codes: 0 good, 1 failed, 2 bad input, 3 regressed, 4 incomplete "
                                      "(interrupted), 75 another run of this night is in progress.")
    run.add_argument("spec", help="YAML experiment spec")
    run.add_argument("--date", help="the night, YYYY-MM-DD (default: today, UTC)")
    run.add_argument("--address", help="run on this Ray cluster instead of an embedded local Ray")
    run.add_argument("--warm-start", choices=("off", "topk", "full"), default="topk",
                     help="learn from earlier nights: off; topk (re-evaluate the last good night's top-k first, "
                          "learn from its trials; default); full (every good night, older ones down-weighted)")
    run.add_argument("--top-k", type=int, default=3, help="champions of the last good night re-evaluated first")
    run.add_argument("--decay", type=float, default=0.5, help="full warm start: share kept per night of age")
    run.add_argument("--tolerance", type=float, default=0.0,
                     help="smallest noise band, in metric units (a worse best within it is not a regression)")
    run.add_argument("--z", type=float, default=3.0, help="noise band = max(tolerance, z * stdev of champion changes)")
    run.add_argument("--keep", type=int, help="retention: keep the last N nights (plus last good, best ever, "
                                              "flagged and pinned); prune the others' checkpoints")
    run.add_argument("--webhook", help="POST the night's JSON summary to this URL")
    run.add_argument("--webhook-on", choices=("problem", "always"), default="problem",
                     help="when to POST: a regressed or failed night (default), or every finished night")
    run.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a spec field (repeatable)")
    run.add_argument("--quiet", action="store_true", help="no progress lines: warnings and the summary only")
    run.add_argument("--verbose", action="store_true", help="also show Ray's own output as it comes")
    run.set_defaults(handler=_run)

    hist = nsub.add_parser("history", help="one line a night; --html for a plot of the best metric over nights")
    hist.add_argument("spec", help="YAML experiment spec")
    hist.add_argument("--html", help="also write an HTML page with the plot")
    hist.add_argument("--force", action="store_true", help="overwrite --html if it exists")
    hist.set_defaults(handler=_history)

    em = nsub.add_parser("emit", help="write the files that schedule `tunekit nightly run` (no daemon of ours)")
    em.add_argument("spec", help="YAML experiment spec (as the scheduled command will see it)")
    kind = em.add_mutually_exclusive_group(required=True)
    for k, what in (("cron", "a crontab line"), ("systemd", "a systemd service and timer"),
                    ("k8s", "a Kubernetes CronJob (concurrencyPolicy Forbid) creating a KubeRay RayJob"),
                    ("github", "a GitHub Actions schedule")):
        kind.add_argument(f"--{k}", action="store_true", help=what)
    em.add_argument("--at", type=_at, default="02:00", help="time of night, HH:MM UTC (default 02:00)")
    em.add_argument("--workdir", default=".", help="the project checkout the command runs in")
    em.add_argument("--address", help="Ray cluster address for the scheduled run")
    em.add_argument("--keep", type=int, help="retention for the scheduled run")
    em.add_argument("--tunekit", default="tunekit", help="the tunekit executable on the scheduled machine")
    em.add_argument("--out", help="write the files into this folder instead of printing them")
    em.set_defaults(handler=_emit)
