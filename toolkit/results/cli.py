"""`tunekit results list|show|compare|export` and `tunekit report` (`reproduce`, which runs
the user's code, is registered by `toolkit.cli` from `toolkit.reproduce`).

`register(subparsers)` adds the commands to the main `tunekit` parser; each sets
``handler`` (called as ``handler(args) -> exit code``) and takes ``--storage DIR``.
A record is named as ``NAME``, ``NAME@vN``, by its folder (``runs/NAME/vN``) or by its
spec file in every command. Exit codes: 1 for a record that is missing, incomplete or
damaged, 2 for a reference or an output path that cannot be used as given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from toolkit.results.refs import DEFAULT_STORAGE, RefError, default_root, locate
from toolkit.results.store import IncompleteRecordError, RecordError


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="DIR", default=None,
                   help=f"records root (default: $TUNEKIT_STORAGE or {DEFAULT_STORAGE})")


def _say(e: BaseException) -> None:
    print(f"tunekit: {e.args[0] if e.args else e}", file=sys.stderr)


def _quiet_stdout() -> None:
    # The reader went away (`| head`): send what is still buffered nowhere, so that the
    # interpreter's final flush does not raise again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _guard(fn):
    """Record problems are user-facing errors: one line on stderr, no traceback."""
    def handler(args: argparse.Namespace) -> int:
        from toolkit.results.export import OutputError

        try:
            return int(fn(args) or 0)
        except BrokenPipeError:
            _quiet_stdout()
            return 141  # as a shell reports a process ended by SIGPIPE
        except (RefError, OutputError) as e:
            _say(e)
            return 2
        except (RecordError, KeyError, ValueError) as e:
            _say(e)
            return 1
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            print(f"tunekit: {where}{e.strerror or e}", file=sys.stderr)
            return 1
    handler.__name__ = fn.__name__
    return handler


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _nonnegative(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {n}")
    return n


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _load(args: argparse.Namespace, ref: str, explicit_incomplete: bool = False):
    """Load ``ref`` (a name, ``name@vN``, a folder or a spec file). An incomplete version is read
    when ``--incomplete`` is given or, for ``explicit_incomplete`` commands, when named by version."""
    from toolkit.results.record import load
    from toolkit.results.targets import record_target

    target = record_target(ref, args.storage)  # a spec file names its record and storage
    root, r = locate(target.ref, target.root)
    allow = bool(getattr(args, "incomplete", False)) or (explicit_incomplete and r.version is not None)
    try:
        return load(r, root, allow_incomplete=allow)
    except IncompleteRecordError as e:
        from toolkit.results import store

        if r.version is not None:
            why = f"{r} is incomplete (never published: still running, or its writer died)"
        else:
            why = (f"{r.name} has no complete version under {root} (incomplete: v"
                   + ", v".join(map(str, store.versions(root, r.name))) + ")")
        raise IncompleteRecordError(f"{why}; add --incomplete to read the trials it flushed", e.path) from None


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
    statuses = set(df["status"])
    if "corrupt" in statuses:
        print("corrupt: a file or the manifest fails its checksum or is malformed; "
              "`tunekit results show REF` names the problem")
    if "mismatch" in statuses:
        print("mismatch: the manifest names another record or version than its folder; "
              "`tunekit results show REF` says which")
    return 0


@_guard
def cmd_pin(args: argparse.Namespace) -> int:
    from toolkit.results.pins import pin

    rec = _load(args, args.ref, explicit_incomplete=False)
    path = pin(rec.path.parent.parent, rec.name, rec.version)
    print(f"pinned {rec.ref} ({path})")
    return 0


@_guard
def cmd_show(args: argparse.Namespace) -> int:
    rec = _load(args, args.ref, explicit_incomplete=True)
    m = rec.manifest
    env = _dict(m.get("environment"))
    versions = _dict(env.get("versions"))
    for note in rec.notes:
        print(f"!! {note}")
    print(f"{rec.ref}  [{rec.status}]  {rec.path}")
    lines = [
        ("trainable", m.get("trainable")), ("metric", f"{rec.metric} ({rec.mode})"), ("seed", m.get("seed")),
        ("searcher", json.dumps(m.get("searcher"), sort_keys=True)),
        ("scheduler", json.dumps(m.get("scheduler"), sort_keys=True)),
        ("started", m.get("started_at")), ("ended", m.get("ended_at")),
        ("data", _dict(m.get("data")).get("fingerprint")),
        ("code", rec.meta.environment.code_summary(rec.meta.code)),
        ("tunekit", rec.meta.environment.tunekit_summary()),
        ("python", _dict(env.get("python")).get("version")),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
    ]
    for k, v in lines:
        print(f"  {k:<10} {_fmt(v)}")
    counts = rec.trials["status"].value_counts().to_dict() if "status" in rec.trials else {}
    print(f"  trials     {len(rec.trials)} (" + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items())) + ")")
    top = rec.best(max(args.top, 1))
    if top.empty:
        print("  no trial reported a finite metric")
        return 0
    best_id = top["trial_id"].iloc[0]
    print(f"\nbest trial {best_id}: {rec.metric} = {_fmt(top['value'].iloc[0])}")
    print("  config: " + json.dumps(rec.config(best_id), sort_keys=True))
    if args.top == 0:
        return 0
    params = rec.param_columns()
    cols = ["trial_id", "status", "iterations", "value"] + params
    table = top[[c for c in cols if c in top]].rename(columns=lambda c: c.replace("config.", ""))
    print(f"\ntop {len(top)} trials by final {rec.metric}:")
    print(table.to_string(index=False, na_rep="-", formatters={c: _fmt for c in table.columns}))
    return 0


@_guard
def cmd_compare(args: argparse.Namespace) -> int:
    from toolkit.results.compare import compare

    a, b = _load(args, args.a), _load(args, args.b)
    c = compare(a, b)
    fields = {"name": (a.name, b.name)}
    for key in ("trainable", "metric", "mode"):
        fields[key] = (a.manifest.get(key), b.manifest.get(key))
    differ = {k: v for k, v in fields.items() if v[0] != v[1]}
    if differ:
        print(f"tunekit: warning: {a.ref} and {b.ref} are different experiments ("
              + "; ".join(f"{k} {x} vs {y}" for k, (x, y) in differ.items()) + ")", file=sys.stderr)
    if "metric" in differ or "mode" in differ:
        # Numbers of different metrics (or directions) do not compare: no deltas, no verdict.
        print("tunekit: warning: different metrics: no deltas and no 'better' verdict", file=sys.stderr)
        c.metrics["delta"] = {k: v for k, v in c.metrics.get("delta", {}).items()
                              if k in ("n_trials", "n_with_metric")}
        c.best_so_far_at = []
    print(json.dumps(c.to_dict(), indent=1, default=str) if args.json else c.to_text())
    return 0


@_guard
def cmd_export(args: argparse.Namespace) -> int:
    from toolkit.results.export import export

    for p in export(_load(args, args.ref), args.format, args.out, force=args.force):
        print(p)
    return 0


@_guard
def cmd_report(args: argparse.Namespace) -> int:
    import tempfile

    from toolkit.results.export import OutputError, check_output, output_stem
    from toolkit.results.report import render_html

    rec = _load(args, args.ref, explicit_incomplete=True)
    out = Path(args.out) if args.out else Path(f"{output_stem(rec)}.html")
    check_output(out, "file", args.force)
    # Claim a temporary file beside the output before rendering (seconds of plotting), so an
    # unwritable place fails at once; the report appears whole, by rename, or not at all.
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=".html")
    except OSError as e:
        raise OutputError(f"--out: cannot write {out}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render_html(rec))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is not what a report file should get
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(out)
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
    p.add_argument("--top", type=_nonnegative, default=10, help="how many best trials to list (0: none)")
    p.add_argument("--incomplete", action="store_true", help="allow the latest version even if incomplete")
    _storage_arg(p)
    p.set_defaults(handler=cmd_show)

    p = rsub.add_parser("pin", help="keep a record version through every retention pass (nightly --keep)")
    p.add_argument("ref", help="NAME@vN (or NAME for the latest complete version)")
    _storage_arg(p)
    p.set_defaults(handler=cmd_pin)

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
    p.add_argument("--force", action="store_true", help="overwrite an existing file / write into a non-empty folder")
    p.add_argument("--incomplete", action="store_true", help="allow an incomplete version (its flushed trials)")
    _storage_arg(p)
    p.set_defaults(handler=cmd_export)

    p = subparsers.add_parser("report", help="write a self-contained HTML report of a record")
    p.add_argument("ref")
    p.add_argument("--out", metavar="FILE", help="default: ./<name>-v<N>.html")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--incomplete", action="store_true", help="allow an incomplete version (its flushed trials)")
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
