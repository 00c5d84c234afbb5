"""Versioned, checksummed experiment records: write, load, analyse, compare, report.

This package takes plain data from the runner and never imports it (nor Ray Tune or torch).
`Recorder`, the Ray Tune callback that records a plain `tune.Tuner` sweep, lives in
`toolkit.recording` and is imported only when asked for, so importing this package stays
free of Ray.
"""

from typing import Any

from toolkit.results.compare import Comparison, compare
from toolkit.results.export import export
from toolkit.results.manifest import Manifest
from toolkit.results.provenance import collect_environment, describe_code, diff_environments
from toolkit.results.record import Record, RecordInfo, list_records, load, resolve
from toolkit.results.refs import Ref, RefError, parse_ref
from toolkit.results.store import IncompleteRecordError, IntegrityError, RecordError, RecordNotFound
from toolkit.results.warmstart import warm_start_points
from toolkit.results.writer import RecordWriter

__all__ = [
    "Comparison", "IncompleteRecordError", "IntegrityError", "Manifest", "Record", "RecordError", "RecordInfo",
    "RecordNotFound", "RecordWriter", "Recorder", "Ref", "RefError", "collect_environment", "compare",
    "describe_code", "diff_environments", "export", "list_records", "load", "parse_ref", "resolve",
    "warm_start_points",
]


def __getattr__(name: str) -> Any:
    if name == "Recorder":  # a Ray Tune callback: importing it imports ray.tune
        from toolkit.recording import Recorder

        return Recorder
    raise AttributeError(f"module 'toolkit.results' has no attribute {name!r}")
