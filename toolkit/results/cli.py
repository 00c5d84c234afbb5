"""`tunekit results list|show|compare|export` and `tunekit report` (`reproduce`, which runs
the user's code, is registered by `toolkit.cli` from `toolkit.reproduce`).

`register(subparsers)` adds the commands to the main `tunekit` parser; each sets
``handler`` (called as ``handler(args) -> exit code``) and takes ``--storage DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Sequence

import pandas as pd

from toolkit.results.refs import DEFAULT_STORAGE, RefError, default_root, parse_ref
from toolkit.results.store import RecordError


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="DIR", default=None,
                   help=f"records root (default: $TUNEKIT_STORAGE or {DEFAULT_STORAGE})")


def _guard(fn):
    """Record problems are user-facing errors: print them, exit 1, no traceback."""
    def handler(args: argparse.Namespace) -> int:
        try:
            return int(fn(args) or 0)
        except (RecordError, RefError, KeyError, ValueError) as e:
            print(f"tunekit: {e.args[0] if e.args else e}", file=sys.stderr)
            return 1
    handler.__name__ = fn.__name__
    return handler


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _load(args: argparse.Namespace, ref: str, explicit_incomplete: bool = False):
    from toolkit.results.record import load
    from toolkit.results.targets import record_target

    target = record_target(ref, args.storage)  # a spec file names its record and storage
    allow = bool(getattr(args, "incomplete", False)) or (explicit_incomplete and
                                                         parse_ref(target.ref).version is not None)
    return load(target.ref, target.root, allow_incomplete=allow)


# --------------------------------------------------------------------------- handlers
@_guard
def cmd_list(args: argparse.Namespace) -> int:
    from toolkit.results.record import list_records

    rows = list_records(args.storage)
    if not rows:
        print(f"no records under {default_root(args.storage)}")
        return 0
    df = pd.DataFrame([r._asdict() for r in rows])
    df["ref"] = df["name"] + "@v" + df["version"].astype(str)
    df = df[["ref", "status", "n_trials", "best", "created"]]
    print(df.to_string(index=False, formatters={"best": _fmt, "n_trials": _fmt}))
    return 0


@_guard
def cmd_show(args: argparse.Namespace) -> int:
    rec = _load(args, args.ref, explicit_incomplete=True)
    m = rec.manifest
    env = m.get("environment") or {}
    versions = env.get("versions") or {}
    for note in rec.notes:
        print(f"!! {note}")
    print(f"{rec.ref}  [{rec.status}]  {rec.path}")
    lines = [
        ("trainable", m.get("trainable")), ("metric", f"{rec.metric} ({rec.mode})"), ("seed", m.get("seed")),
        ("searcher", json.dumps(m.get("searcher"), sort_keys=True)),
        ("scheduler", json.dumps(m.get("scheduler"), sort_keys=True)),
        ("started", m.get("started_at")), ("ended", m.get("ended_at")),
        ("data", (m.get("data") or {}).get("fingerprint") if m.get("data") else None),
        ("code", rec.meta.environment.code_summary(rec.meta.code)),
        ("tunekit", rec.meta.environment.tunekit_summary()),
        ("python", (env.get("python") or {}).get("version")),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
    ]
    for k, v in lines:
        print(f"  {k:<10} {_fmt(v)}")
    counts = rec.trials["status"].value_counts().to_dict() if "status" in rec.trials else {}
    print(f"  trials     {len(rec.trials)} (" + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items())) + ")")
    top = rec.best(args.top)
    if top.empty:
        print("  no trial reported a finite metric")
        return 0
    best_id = top["trial_id"].iloc[0]
    print(f"\nbest trial {best_id}: {rec.metric} = {_fmt(top['value'].iloc[0])}")
    print("  config: " + json.dumps(rec.config(best_id), sort_keys=True))
    params = rec.param_columns()
    cols = ["trial_id", "status", "iterations", "value"] + params
    table = top[[c for c in cols if c in top]].rename(columns=lambda c: c.replace("config.", ""))
    print(f"\ntop {len(top)} trials by final {rec.metric}:")
    print(table.to_string(index=False, na_rep="-", formatters={c: _fmt for c in table.columns}))
    return 0


@_guard
def cmd_compare(args: argparse.Namespace) -> int:
    from toolkit.results.compare import compare

    c = compare(_load(args, args.a), _load(args, args.b))
    print(json.dumps(c.to_dict(), indent=1, default=str) if args.json else c.to_text())
    return 0


@_guard
def cmd_export(args: argparse.Namespace) -> int:
    from toolkit.results.export import export

    for p in export(_load(args, args.ref), args.format, args.out):
        print(p)
    return 0


@_guard
def cmd_report(args: argparse.Namespace) -> int:
    from toolkit.results.report import write_report

    print(write_report(_load(args, args.ref, explicit_incomplete=True), args.out))
    return 0


# --------------------------------------------------------------------------- parser
def register(subparsers: Any) -> None:
    """Add ``results`` and ``report`` to a ``tunekit`` subparsers object."""
    results = subparsers.add_parser("results", help="list, show, compare and export experiment records")
    rsub = results.add_subparsers(dest="results_command", required=True)

    p = rsub.add_parser("list", help="every record version under the storage root")
    _storage_arg(p)
    p.set_defaults(handler=cmd_list)

    p = rsub.add_parser("show", help="provenance and best trials of a record (NAME or NAME@vN)")
    p.add_argument("ref")
    p.add_argument("--top", type=int, default=10, help="how many best trials to list")
    p.add_argument("--incomplete", action="store_true", help="allow the latest version even if incomplete")
    _storage_arg(p)
    p.set_defaults(handler=cmd_show)

    p = rsub.add_parser("compare", help="differences in spec, data, code, environment and metrics")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _storage_arg(p)
    p.set_defaults(handler=cmd_compare)

    p = rsub.add_parser("export", help="write a record's tables as CSV, Parquet or JSON")
    p.add_argument("ref")
    p.add_argument("--format", choices=("csv", "parquet", "json"), required=True)
    p.add_argument("--out", metavar="PATH", help="folder (csv, parquet) or file (json)")
    _storage_arg(p)
    p.set_defaults(handler=cmd_export)

    p = subparsers.add_parser("report", help="write a self-contained HTML report of a record")
    p.add_argument("ref")
    p.add_argument("--out", metavar="FILE", help="default: ./<name>-v<N>.html")
    _storage_arg(p)
    p.set_defaults(handler=cmd_report)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m toolkit.results.cli``) with the same commands."""
    parser = argparse.ArgumentParser(prog="tunekit")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
