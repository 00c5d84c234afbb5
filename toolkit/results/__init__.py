"""Versioned, checksummed experiment records: write, load, analyse, compare, report.

This package takes plain data from the runner and never imports it (nor Ray Tune or torch).
"""

from toolkit.results.compare import Comparison, compare
from toolkit.results.export import export
from toolkit.results.provenance import collect_environment, diff_environments
from toolkit.results.record import Record, RecordInfo, list_records, load, resolve
from toolkit.results.refs import Ref, RefError, parse_ref
from toolkit.results.store import IncompleteRecordError, IntegrityError, RecordError, RecordNotFound
from toolkit.results.writer import RecordWriter

__all__ = [
    "Comparison", "IncompleteRecordError", "IntegrityError", "Record", "RecordError", "RecordInfo",
    "RecordNotFound", "RecordWriter", "Ref", "RefError", "collect_environment", "compare",
    "diff_environments", "export", "list_records", "load", "parse_ref", "resolve",
]
