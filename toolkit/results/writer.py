"""`RecordWriter`: stream a sweep's trials into a new, immutable record version."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

from toolkit.results import store
from toolkit.results.builder import TableBuilder
from toolkit.results.objective import best_of
from toolkit.results.provenance import describe_code
from toolkit.results.refs import check_name, default_root
from toolkit.results.tables import table_bytes

STATUSES = ("completed", "interrupted", "failed")
# A flush always write()s, so a killed process loses nothing flushed; fsync (protection
# against a machine crash) is rate-limited so that flushing after every trial stays cheap.
_FSYNC_INTERVAL_S = 1.0


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _parse_iso(s: Any) -> float | None:
    try:
        dt = datetime.fromisoformat(str(s))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive times are local times
    return dt.timestamp()


def _json_default(o: Any) -> Any:
    item = getattr(o, "item", None)  # numpy / torch scalars keep their numeric value
    if callable(item) and getattr(o, "shape", None) in ((), None):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return str(o)


class RecordWriter:
    """Writes one version ``<root>/<name>/v<N>/`` of an experiment record.

    The version number is reserved at construction (safe across processes), trials are
    added as they finish, `flush` makes them durable in the version's journal, and `finish`
    publishes the version atomically. Until then the version is marked incomplete and
    `load` refuses it unless asked explicitly.
    """

    def __init__(self, root: str | Path | None, name: str, manifest: Mapping[str, Any]):
        self.root = default_root(root)
        self.name = check_name(name)
        self._base = store.jsonable(dict(manifest))
        if "code" not in self._base:
            # The user's code as it is now, found without importing it: its source file's
            # sha256 lets `reproduce` refuse code that changed since the run.
            self._base["code"] = describe_code(self._base.get("trainable"))
        if not self._base.get("started_at"):
            self._base["started_at"] = _now_iso()
        self._t0 = _parse_iso(self._base["started_at"]) or time.time()
        self.version, self.path = store.reserve_version(self.root, self.name)
        self._staging = self.path / store.STAGING
        self._tables = TableBuilder()
        self._pending: list[str] = []  # journal lines not yet written
        self._journal = None
        self._last_fsync = 0.0
        self._finished = False
        staging_manifest = dict(self._base, name=self.name, version=self.version,
                                status="incomplete", writer=store.writer_identity())
        store.atomic_write(self._staging / store.MANIFEST,
                           json.dumps(staging_manifest, indent=1, allow_nan=False).encode())

    # ------------------------------------------------------------------ adding data
    def add_trial(self, trial: Mapping[str, Any], history: list[Mapping[str, Any]] | None = None) -> None:
        """One finished trial: its summary row (with nested ``config``) and its results."""
        self._check_open()
        trial = dict(trial)
        # Seconds from the sweep start to when the trial was handed over: the x axis of
        # best-so-far-by-time, unless the runner timed it itself.
        trial.setdefault("completed_s", round(time.time() - self._t0, 3))
        try:
            columns = self._tables.add_trial(trial, list(history or []))
        except ValueError as e:
            raise ValueError(f"{self.name}@v{self.version}: {e}") from None
        # Column-wise: half the encoding cost of one JSON object per iteration.
        self._pending.append(json.dumps({"kind": "trial", "trial": trial, "columns": columns},
                                        default=_json_default, allow_nan=True))

    def add_suggestions(self, rows: list[Mapping[str, Any]]) -> None:
        """Searcher suggestions (one row each: trial_id, time_s, state size, ...)."""
        self._check_open()
        rows = [dict(r) for r in rows]
        self._tables.add_suggestions(rows)
        self._pending.append(json.dumps({"kind": "suggestions", "rows": rows},
                                        default=_json_default, allow_nan=True))

    # ------------------------------------------------------------------ persistence
    def flush(self) -> None:
        """Make everything added so far durable inside the (still incomplete) version.

        Appends one checksummed JSON line per trial to the journal; a line cut short by a
        crash fails its checksum and is ignored when the incomplete version is read."""
        self._check_open()
        if not self._pending:
            return
        if self._journal is None:
            self._journal = open(self._staging / store.JOURNAL, "a", encoding="utf-8")
        self._journal.write("".join(store.journal_line(p) for p in self._pending))
        self._journal.flush()
        now = time.monotonic()
        if now - self._last_fsync >= _FSYNC_INTERVAL_S:
            os.fsync(self._journal.fileno())
            self._last_fsync = now
        self._pending = []

    def finish(self, status: str, best: Mapping[str, Any] | None = None,
               extra: Mapping[str, Any] | None = None) -> Path:
        """Write the final tables and manifest and publish the version; returns its path."""
        self._check_open()
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self.flush()  # if publishing fails below, the journal still holds every trial
        if self._journal is not None:
            os.fsync(self._journal.fileno())
        files: dict[str, dict] = {}
        tables: dict[str, dict] = {}

        def put(fname: str, table: pa.Table, json_cols: list[str]) -> None:
            data = table_bytes(table)
            store.atomic_write(self.path / fname, data)
            files[fname] = {"sha256": store.sha256_bytes(data), "bytes": len(data)}
            tables[fname.split(".")[0]] = {"file": fname, "rows": table.num_rows, "json_columns": json_cols}

        put("trials.parquet", *self._tables.trials_table())
        put("metrics.parquet", self._tables.metrics_table(), [])
        sugg = self._tables.suggestions_table()
        if sugg is not None:
            put("suggestions.parquet", *sugg)

        manifest = dict(self._base)
        manifest.update({
            "format": store.FORMAT, "format_version": store.FORMAT_VERSION,
            "name": self.name, "version": self.version, "status": status,
            "ended_at": _now_iso(), "n_trials": len(self._tables.trials), "summary": self._summary(),
            "best": store.jsonable(dict(best)) if best is not None else None,
            "extra": store.jsonable(dict(extra)) if extra is not None else None,
            "tables": tables, "files": files,
        })
        manifest["manifest_sha256"] = store.manifest_digest(manifest)
        store.atomic_write(self.path / store.MANIFEST,
                           json.dumps(manifest, indent=1, allow_nan=False).encode(), exclusive=True)
        self._finished = True
        if self._journal is not None:
            self._journal.close()
        store.make_read_only([self.path / f for f in [*files, store.MANIFEST]])
        shutil.rmtree(self._staging, ignore_errors=True)  # published: the journal is no longer needed
        return self.path

    # ------------------------------------------------------------------ helpers
    def _summary(self) -> dict:
        """Counts by status and the best final metric, so listings need not read tables."""
        by_status: dict[str, int] = {}
        for r in self._tables.trials:
            s = str(r.get("status"))
            by_status[s] = by_status.get(s, 0) + 1
        top = best_of(self._tables.trials, self._base.get("mode") or "min",
                      key=lambda r: store.jsonable(r.get("final_metric")))
        return {"by_status": by_status, "best_trial_id": top["trial_id"] if top else None,
                "best_final_metric": float(top["final_metric"]) if top else None}

    @property
    def n_trials(self) -> int:
        return len(self._tables.trials)

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError(f"{self.name}@v{self.version} is already published")

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Leaving the block without finish(): publish what we have, saying why it stopped.
        if self._finished:
            return
        if exc_type is None:
            self.finish("completed")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("interrupted", extra={"error": "KeyboardInterrupt"})
        else:
            self.finish("failed", extra={"error": f"{exc_type.__name__}: {exc}"})

    # ------------------------------------------------------------------ resume (cluster engineer)
    # Kept apart from the writing path above: a resumed sweep (`tunekit run --resume`) goes on
    # writing the SAME incomplete version its killed driver left, instead of reserving a new one.
    @classmethod
    def reopen(cls, root: str | Path | None, name: str, version: int) -> "RecordWriter":
        """Take over the incomplete version ``name@v<version>``: its journal is replayed (every
        trial and suggestion row it holds), and new trials are appended to the same journal.
        `recorded_rows` holds the trial rows already there, so a resumed run adds none twice."""
        self = cls.__new__(cls)
        self.root = default_root(root)
        self.name = check_name(name)
        self.version = int(version)
        self.path = store.version_dir(self.root, self.name, self.version)
        self._staging = self.path / store.STAGING
        if store.is_published(self.path) or not self._staging.is_dir():
            raise ValueError(f"{self.name}@v{self.version} is not an incomplete version: nothing to resume")
        staging_manifest = json.loads((self._staging / store.MANIFEST).read_text())
        if store.writer_alive(staging_manifest.get("writer")):
            raise ValueError(f"{self.name}@v{self.version} is still being written by process "
                             f"{staging_manifest['writer'].get('pid')}")
        self._base = {k: v for k, v in staging_manifest.items()
                      if k not in ("name", "version", "status", "writer")}
        self._t0 = _parse_iso(self._base.get("started_at")) or time.time()
        self._tables = TableBuilder()
        self.recorded_rows: list[dict] = []
        for entry in store.read_journal(self._staging):
            if entry.get("kind") == "trial":
                trial = dict(entry["trial"])
                self._tables.add_trial(dict(trial), columns=entry.get("columns") or {})
                self.recorded_rows.append(trial)
            elif entry.get("kind") == "suggestions":
                self._tables.add_suggestions(entry["rows"])
        self._pending = []
        self._journal = None
        self._last_fsync = 0.0
        self._finished = False
        resumes = list(self._base.get("resumed_at") or []) + [_now_iso()]
        self._base["resumed_at"] = resumes
        store.atomic_write(self._staging / store.MANIFEST, json.dumps(
            dict(self._base, name=self.name, version=self.version, status="incomplete",
                 writer=store.writer_identity()), indent=1, allow_nan=False).encode())
        return self
