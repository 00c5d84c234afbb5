"""Accumulates trial rows and metric histories and turns them into the record's tables.

Used by `RecordWriter` while a sweep runs and by `load` to rebuild an incomplete version
from its journal, so both produce exactly the same tables."""

from __future__ import annotations

import json
from typing import Any, Mapping

import pyarrow as pa

from toolkit.results import store
from toolkit.results.tables import flatten, float_column, rows_to_table

TRIAL_FIRST = ("trial_id", "status", "error", "iterations", "run_time_s", "final_metric",
               "best_metric", "seed", "completed_s", "config_json")
METRIC_FIRST = ("trial_id", "training_iteration")
# Pending metric rows are sealed into an Arrow chunk at this size, bounding Python memory.
_CHUNK_ROWS = 200_000


def history_columns(history: list[Mapping[str, Any]]) -> dict[str, list]:
    """Per-iteration result rows -> ``{column: values}``, training_iteration first (1, 2, ...
    when missing). Plainly non-numeric entries (Ray's date, hostname, config) are left out;
    stray non-numeric values in numeric columns become nulls when the table is built."""
    n = len(history)
    if not n:
        return {}
    keys: dict[str, None] = {}
    for r in history:
        keys.update(dict.fromkeys(r))
    keys.pop("trial_id", None)
    keys.pop("training_iteration", None)
    first = history[0]
    cols = {"training_iteration": [r.get("training_iteration", i + 1) for i, r in enumerate(history)]}
    for k in keys:
        if not isinstance(first.get(k), (str, dict, list, tuple)):
            cols[k] = [r.get(k) for r in history]
    return cols


class TableBuilder:
    def __init__(self) -> None:
        self.trials: list[dict] = []
        self.suggestions: list[dict] = []
        self._ids: set[str] = set()
        self._chunks: list[pa.Table] = []
        self._cols: dict[str, list] = {}
        self._len = 0

    def add_trial(self, trial: Mapping[str, Any], history: list[Mapping[str, Any]] | None = None, *,
                  columns: Mapping[str, list] | None = None) -> dict[str, list]:
        """Add one trial with its history given as rows or, column-wise, as ``columns``
        (what the journal stores). Returns the history columns that were kept."""
        trial = dict(trial)
        tid = str(trial.get("trial_id", ""))
        if not tid:
            raise ValueError("trial needs a non-empty 'trial_id'")
        if tid in self._ids:
            raise ValueError(f"trial {tid!r} was already added")
        config = trial.pop("config", None) or {}
        row: dict[str, Any] = {"trial_id": tid}
        row.update((k, v) for k, v in trial.items() if k != "trial_id")
        row["config_json"] = json.dumps(store.jsonable(config), sort_keys=True, allow_nan=False)
        row.update(flatten(config))
        cols = dict(columns) if columns is not None else history_columns(history or [])
        self._ids.add(tid)
        self.trials.append(row)
        self._append(tid, cols)
        if self._len >= _CHUNK_ROWS:
            self._seal()
        return cols

    def _append(self, tid: str, tcols: Mapping[str, list]) -> None:
        n = len(tcols.get("training_iteration") or [])
        if not n:
            return
        cols = self._cols
        if not cols:
            cols["trial_id"], cols["training_iteration"] = [], []
        cols["trial_id"].extend([tid] * n)
        for k, values in tcols.items():
            col = cols.get(k)
            if col is None:
                col = cols[k] = [None] * self._len
            col.extend(values)
        total = self._len + n
        for col in cols.values():
            if len(col) < total:
                col.extend([None] * (total - len(col)))
        self._len = total

    def _seal(self) -> None:
        if not self._len:
            return
        cols = self._cols
        arrays = [pa.array(cols["trial_id"], type=pa.string()),
                  pa.array([int(i) for i in cols["training_iteration"]], type=pa.int64())]
        names = list(METRIC_FIRST)
        for k, col in cols.items():
            if k not in METRIC_FIRST:
                arr = float_column(col)
                if arr is not None:
                    arrays.append(arr)
                    names.append(k)
        self._chunks.append(pa.Table.from_arrays(arrays, names=names))
        self._cols, self._len = {}, 0

    def add_suggestions(self, rows: list[Mapping[str, Any]]) -> None:
        self.suggestions.extend(dict(r) for r in rows)

    # ------------------------------------------------------------------ tables
    def trials_table(self) -> tuple[pa.Table, list[str]]:
        return rows_to_table(self.trials, TRIAL_FIRST)

    def metrics_table(self) -> pa.Table:
        self._seal()
        if not self._chunks:
            return pa.table({"trial_id": pa.array([], pa.string()),
                             "training_iteration": pa.array([], pa.int64())})
        if len(self._chunks) > 1:
            self._chunks = [pa.concat_tables(self._chunks, promote_options="default").combine_chunks()]
        return self._chunks[0]

    def suggestions_table(self) -> tuple[pa.Table, list[str]] | None:
        return rows_to_table(self.suggestions, ("trial_id",)) if self.suggestions else None
