"""`RecordWriter`: stream a sweep's trials into a new, immutable record version."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

from toolkit.results import store
from toolkit.results.refs import check_name, default_root
from toolkit.results.tables import flatten, float_column, rows_to_table, table_bytes

STATUSES = ("completed", "interrupted", "failed")
TRIAL_FIRST = ("trial_id", "status", "error", "iterations", "run_time_s", "final_metric",
               "best_metric", "seed", "completed_s", "config_json")
METRIC_FIRST = ("trial_id", "training_iteration")
# Flush on our own when this many metric rows are pending, bounding memory in long sweeps.
_AUTO_CHUNK_ROWS = 200_000


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


class RecordWriter:
    """Writes one version ``<root>/<name>/v<N>/`` of an experiment record.

    The version number is reserved at construction (safe across processes), trials are
    added as they finish, `flush` makes them durable in the staging area, and `finish`
    publishes the version atomically. Until then the version is marked incomplete and
    `load` refuses it unless asked explicitly.
    """

    def __init__(self, root: str | Path | None, name: str, manifest: Mapping[str, Any]):
        self.root = default_root(root)
        self.name = check_name(name)
        self._base = store.jsonable(dict(manifest))
        if not self._base.get("started_at"):
            self._base["started_at"] = _now_iso()
        self._t0 = _parse_iso(self._base["started_at"]) or time.time()
        self.version, self.path = store.reserve_version(self.root, self.name)
        self._staging = self.path / store.STAGING
        self._trials: list[dict] = []  # all trial rows (small: one per trial)
        self._pending_trials: list[dict] = []
        self._metric_chunks: list[pa.Table] = []
        self._m_cols: dict[str, list] = {}
        self._m_len = 0
        self._suggestions: list[dict] = []
        self._pending_suggestions: list[dict] = []
        self._seq = 0
        self._finished = False
        self._trial_ids: set[str] = set()
        staging_manifest = dict(self._base, name=self.name, version=self.version,
                                status="incomplete", writer=store.writer_identity())
        store.atomic_write(self._staging / store.MANIFEST,
                           json.dumps(staging_manifest, indent=1, allow_nan=False).encode())

    # ------------------------------------------------------------------ adding data
    def add_trial(self, trial: Mapping[str, Any], history: list[Mapping[str, Any]] | None = None) -> None:
        """One finished trial: its summary row and its per-iteration results."""
        self._check_open()
        trial = dict(trial)
        tid = str(trial.get("trial_id", ""))
        if not tid:
            raise ValueError("trial needs a non-empty 'trial_id'")
        if tid in self._trial_ids:
            raise ValueError(f"trial {tid!r} was already added to {self.name}@v{self.version}")
        self._trial_ids.add(tid)
        config = trial.pop("config", None) or {}
        row: dict[str, Any] = {"trial_id": tid}
        for k, v in trial.items():
            if k != "trial_id":
                row[k] = v
        # Seconds from the sweep start to when the trial was handed over: the x axis of
        # best-so-far-by-time, unless the runner timed it itself.
        row.setdefault("completed_s", round(time.time() - self._t0, 3))
        row["config_json"] = json.dumps(store.jsonable(config), sort_keys=True, allow_nan=False)
        row.update(flatten(config))
        self._trials.append(row)
        self._pending_trials.append(row)
        self._add_history(tid, history or [])
        if self._m_len >= _AUTO_CHUNK_ROWS:
            self._seal_metrics()

    def _add_history(self, tid: str, history: list[Mapping[str, Any]]) -> None:
        n = len(history)
        if not n:
            return
        cols = self._m_cols
        if not cols:
            cols["trial_id"] = []
            cols["training_iteration"] = []
        keys: dict[str, None] = {}
        for r in history:
            keys.update(dict.fromkeys(r))
        keys.pop("trial_id", None)
        keys.pop("training_iteration", None)
        # Skip plainly non-numeric entries (Ray's date, hostname, config, ...) up front.
        first = history[0]
        for k in [k for k in keys if isinstance(first.get(k), (str, dict, list, tuple))]:
            if k not in cols:
                del keys[k]
        cols["trial_id"].extend([tid] * n)
        cols["training_iteration"].extend(
            [r.get("training_iteration", i + 1) for i, r in enumerate(history)])
        for k in keys:
            col = cols.get(k)
            if col is None:
                col = cols[k] = [None] * self._m_len
            col.extend([r.get(k) for r in history])
        total = self._m_len + n
        for k, col in cols.items():
            if len(col) < total:
                col.extend([None] * (total - len(col)))
        self._m_len = total

    def _seal_metrics(self) -> pa.Table | None:
        """Turn pending metric rows into an Arrow chunk (kept in memory for `finish`)."""
        if not self._m_len:
            return None
        cols = self._m_cols
        arrays = [pa.array(cols["trial_id"], type=pa.string()),
                  pa.array([int(i) for i in cols["training_iteration"]], type=pa.int64())]
        names = list(METRIC_FIRST)
        for k, col in cols.items():
            if k in METRIC_FIRST:
                continue
            arr = float_column(col)
            if arr is not None:
                arrays.append(arr)
                names.append(k)
        chunk = pa.Table.from_arrays(arrays, names=names)
        self._metric_chunks.append(chunk)
        self._m_cols, self._m_len = {}, 0
        return chunk

    def add_suggestions(self, rows: list[Mapping[str, Any]]) -> None:
        """Searcher suggestions (one row each: trial_id, time_s, state size, ...)."""
        self._check_open()
        rows = [dict(r) for r in rows]
        self._suggestions.extend(rows)
        self._pending_suggestions.extend(rows)

    # ------------------------------------------------------------------ persistence
    def flush(self) -> None:
        """Make everything added so far durable inside the (still incomplete) version."""
        self._check_open()
        n_metric_chunks = len(self._metric_chunks)
        self._seal_metrics()
        new_metrics = self._metric_chunks[n_metric_chunks:]
        if not (self._pending_trials or new_metrics or self._pending_suggestions):
            return
        self._seq += 1
        files: dict[str, str] = {}
        json_cols: dict[str, list[str]] = {}

        def put(kind: str, table: pa.Table) -> None:
            fname = f"part-{self._seq:06d}.{kind}.parquet"
            data = table_bytes(table)
            store.atomic_write(self._staging / fname, data)
            files[fname] = store.sha256_bytes(data)

        if self._pending_trials:
            table, jc = rows_to_table(self._pending_trials, TRIAL_FIRST)
            put("trials", table)
            json_cols["trials"] = jc
        if new_metrics:
            put("metrics", pa.concat_tables(new_metrics, promote_options="default"))
        if self._pending_suggestions:
            table, jc = rows_to_table(self._pending_suggestions, ("trial_id",))
            put("suggestions", table)
            json_cols["suggestions"] = jc
        entry = {"seq": self._seq, "at": _now_iso(), "n_trials": len(self._trials),
                 "files": files, "json_columns": json_cols}
        # The journal line is the commit point of a flush: chunks it does not name are ignored.
        store.append_line(self._staging / store.JOURNAL, json.dumps(entry, allow_nan=False))
        self._pending_trials, self._pending_suggestions = [], []

    def finish(self, status: str, best: Mapping[str, Any] | None = None,
               extra: Mapping[str, Any] | None = None) -> Path:
        """Write the final tables and manifest and publish the version; returns its path."""
        self._check_open()
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self._seal_metrics()
        files: dict[str, dict] = {}
        tables: dict[str, dict] = {}

        def put(fname: str, table: pa.Table, json_cols: list[str]) -> None:
            data = table_bytes(table)
            store.atomic_write(self.path / fname, data)
            files[fname] = {"sha256": store.sha256_bytes(data), "bytes": len(data)}
            tables[fname.split(".")[0]] = {"file": fname, "rows": table.num_rows,
                                           "json_columns": json_cols}

        trials, jc = rows_to_table(self._trials, TRIAL_FIRST)
        put("trials.parquet", trials, jc)
        if self._metric_chunks:
            metrics = pa.concat_tables(self._metric_chunks, promote_options="default")
        else:
            metrics = pa.table({"trial_id": pa.array([], pa.string()),
                                "training_iteration": pa.array([], pa.int64())})
        put("metrics.parquet", metrics, [])
        if self._suggestions:
            sugg, jc = rows_to_table(self._suggestions, ("trial_id",))
            put("suggestions.parquet", sugg, jc)

        manifest = dict(self._base)
        manifest.update({
            "format": store.FORMAT, "format_version": store.FORMAT_VERSION,
            "name": self.name, "version": self.version, "status": status,
            "ended_at": _now_iso(), "n_trials": len(self._trials), "summary": self._summary(),
            "best": store.jsonable(dict(best)) if best is not None else None,
            "extra": store.jsonable(dict(extra)) if extra is not None else None,
            "tables": tables, "files": files,
        })
        manifest["manifest_sha256"] = store.manifest_digest(manifest)
        store.atomic_write(self.path / store.MANIFEST,
                           json.dumps(manifest, indent=1, allow_nan=False).encode(), exclusive=True)
        self._finished = True
        store.make_read_only([self.path / f for f in [*files, store.MANIFEST]])
        shutil.rmtree(self._staging, ignore_errors=True)  # published: staging no longer needed
        return self.path

    # ------------------------------------------------------------------ helpers
    def _summary(self) -> dict:
        """Counts by status and the best final metric, so listings need not read tables."""
        by_status: dict[str, int] = {}
        for r in self._trials:
            s = str(r.get("status"))
            by_status[s] = by_status.get(s, 0) + 1
        sign = -1.0 if self._base.get("mode") == "max" else 1.0
        best_id, best_val = None, None
        for r in self._trials:
            v = store.jsonable(r.get("final_metric"))
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if best_val is None or sign * v < sign * best_val:
                    best_id, best_val = r["trial_id"], float(v)
        return {"by_status": by_status, "best_trial_id": best_id, "best_final_metric": best_val}

    @property
    def n_trials(self) -> int:
        return len(self._trials)

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
