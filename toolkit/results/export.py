"""Export a record's tables to CSV, Parquet or a single JSON document.

Nothing is overwritten or mixed into a non-empty folder unless asked (``force``), and the
default output name comes from the folder the record was loaded from, never from what its
manifest says (a shared record is untrusted input)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pandas as pd

from toolkit.results.record import Record
from toolkit.results.refs import check_name
from toolkit.results.store import atomic_write, jsonable

FORMATS = ("csv", "parquet", "json")
# Suffixes that say "a file": a folder export named like this is almost surely a mistake.
_FILE_SUFFIXES = {".csv", ".parquet", ".json", ".html", ".htm", ".txt"}


class OutputError(ValueError):
    """An output path that cannot be used as asked; the message starts with the option."""


def output_stem(rec: Record) -> str:
    """``<name>-v<N>`` from the record's folder (``<storage>/<name>/v<N>``), checked like a name."""
    version = rec.path.name
    if not re.fullmatch(r"v\d+", version):
        raise OutputError(f"{rec.path}: not a record version folder; give --out")
    return f"{check_name(rec.path.parent.name)}-{version}"


def check_output(path: Path, kind: str, force: bool, option: str = "--out", fmt: str = "") -> None:
    """Refuse an output ``path`` of the wrong kind (``"file"`` or ``"folder"``), an existing
    file or non-empty folder without ``force``, and anything that is not a plain file or folder."""
    path = Path(path)
    what = f"--format {fmt} writes" if fmt else "this writes"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if kind == "folder" and path.suffix.lower() in _FILE_SUFFIXES:
            raise OutputError(f"{option}: {path} looks like a file name, but {what} a folder "
                              "(manifest.json and one file per table); give a folder") from None
        return
    except OSError as e:
        raise OutputError(f"{option}: cannot use {path}: {e.strerror or e}") from None
    if kind == "file":
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{option}: {path} is a folder, but {what} one file; give a file name")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{option}: {path} exists and is not a regular file")
        if not force:
            raise OutputError(f"{option}: {path} already exists; pass --force to overwrite it")
    else:
        if not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{option}: {path} is a file, but {what} a folder; give a folder")
        if not force and any(path.iterdir()):
            raise OutputError(f"{option}: {path} is not empty; pass --force to write into it")


def _nested(df: pd.DataFrame) -> list[dict]:
    # JSON-decoded columns hold lists/dicts; everything else becomes plain JSON values.
    return [jsonable(r) for r in df.to_dict(orient="records")]


def export(rec: Record, fmt: str, out: str | os.PathLike | None = None, *, force: bool = False) -> list[Path]:
    """Write ``rec`` in ``fmt``; returns the files written.

    csv / parquet: a folder (default ``<name>-v<N>-<fmt>``) with ``manifest.json`` and one
    file per table. json: one file (default ``<name>-v<N>.json``) holding the manifest and
    every table as a list of rows, with each trial's nested ``config``. An existing file or
    non-empty folder is refused (`OutputError`) unless ``force``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    tables = {"trials": rec.trials, "metrics": rec.metrics}
    if rec.suggestions is not None:
        tables["suggestions"] = rec.suggestions
    if fmt == "json":
        path = Path(out) if out is not None else Path(f"{output_stem(rec)}.json")
        check_output(path, "file", force, fmt=fmt)
        trials = _nested(rec.trials)
        for row in trials:
            row["config"] = json.loads(row["config_json"]) if row.get("config_json") else None
        doc = {"manifest": rec.manifest, "complete": rec.complete, "trials": trials,
               "metrics": _nested(rec.metrics)}
        if rec.suggestions is not None:
            doc["suggestions"] = _nested(rec.suggestions)
        data = json.dumps(doc, allow_nan=False).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
        return [path]
    folder = Path(out) if out is not None else Path(f"{output_stem(rec)}-{fmt}")
    check_output(folder, "folder", force, fmt=fmt)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "manifest.json"]
    atomic_write(written[0], json.dumps(rec.manifest, indent=1, allow_nan=False).encode())
    for kind, df in tables.items():
        df = df.copy()
        for c in df.columns:  # list/dict cells (JSON columns) go out as JSON text
            if df[c].dtype == object and df[c].map(lambda v: isinstance(v, (list, dict))).any():
                df[c] = df[c].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
        p = folder / f"{kind}.{fmt}"
        if fmt == "csv":
            df.to_csv(p, index=False)
        else:
            df.to_parquet(p, index=False)
        written.append(p)
    return written
