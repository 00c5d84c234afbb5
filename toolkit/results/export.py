"""Export a record's tables to CSV, Parquet or a single JSON document."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from toolkit.results.record import Record
from toolkit.results.store import jsonable

FORMATS = ("csv", "parquet", "json")


def _nested(df: pd.DataFrame) -> list[dict]:
    # JSON-decoded columns hold lists/dicts; everything else becomes plain JSON values.
    return [jsonable(r) for r in df.to_dict(orient="records")]


def export(rec: Record, fmt: str, out: str | os.PathLike | None = None) -> list[Path]:
    """Write ``rec`` in ``fmt``; returns the files written.

    csv / parquet: a folder (default ``<name>-v<N>-<fmt>``) with ``manifest.json`` and one
    file per table. json: one file (default ``<name>-v<N>.json``) holding the manifest and
    every table as a list of rows, with each trial's nested ``config``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    tables = {"trials": rec.trials, "metrics": rec.metrics}
    if rec.suggestions is not None:
        tables["suggestions"] = rec.suggestions
    if fmt == "json":
        path = Path(out or f"{rec.name}-v{rec.version}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        trials = _nested(rec.trials)
        for row in trials:
            row["config"] = json.loads(row["config_json"]) if row.get("config_json") else None
        doc = {"manifest": rec.manifest, "complete": rec.complete, "trials": trials,
               "metrics": _nested(rec.metrics)}
        if rec.suggestions is not None:
            doc["suggestions"] = _nested(rec.suggestions)
        path.write_text(json.dumps(doc, allow_nan=False))
        return [path]
    folder = Path(out or f"{rec.name}-v{rec.version}-{fmt}")
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "manifest.json"]
    written[0].write_text(json.dumps(rec.manifest, indent=1, allow_nan=False))
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
