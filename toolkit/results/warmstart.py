"""Warm starts: what an earlier record teaches a searcher before its first suggestion."""

from __future__ import annotations

import json
import math
import os

from toolkit.results.record import load


def warm_start_points(ref: str, root: str | os.PathLike | None, metric: str,
                      mode: str) -> list[tuple[dict, float | None]]:
    """``(config, metric value)`` of every finished trial of record ``ref`` under ``root``.

    Early-stopped trials count with the metric they were stopped at: that is what the
    searcher would have learned from them in their own run. Failed trials count as failures
    (value None); interrupted ones are left out (they say nothing about their config).
    A record that optimised another metric or direction is refused (`ValueError`)."""
    rec = load(ref, root)
    if rec.metric != metric or rec.mode != mode:
        raise ValueError(f"{rec.ref} optimised {rec.mode} {rec.metric!r}, not {mode} {metric!r}")
    points: list[tuple[dict, float | None]] = []
    for _, row in rec.trials.iterrows():
        if row.get("status") == "INTERRUPTED":
            continue
        value = row.get("final_metric") if row.get("status") != "ERROR" else None
        usable = value is not None and not (isinstance(value, float) and math.isnan(value))
        points.append((json.loads(row["config_json"]), float(value) if usable else None))
    return points
