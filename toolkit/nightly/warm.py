"""What tonight learns from earlier nights: champions to re-evaluate, observations to model.

Three modes:
- ``off``: a cold start.
- ``topk``: the last good night's top-k configurations are evaluated first (they measure drift
  and noise for the gate), and the searcher learns from that night's trials.
- ``full``: as ``topk``, plus the trials of every earlier good night; a night ``a`` nights older
  than the last good one keeps a seeded random share ``decay**a`` of its trials, so old nights
  inform the model less without biasing it towards their best regions.
Points that no longer fit tonight's space (the spec changed) are dropped and counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from toolkit.space import SearchSpace, SpaceError

MODES = ("off", "topk", "full")


@dataclass
class WarmStart:
    mode: str
    champions: list[dict] = field(default_factory=list)                 # evaluated first, in order
    observations: list[tuple[dict, float | None]] = field(default_factory=list)
    dropped: int = 0                                                     # points outside tonight's space
    sources: list[str] = field(default_factory=list)                     # record refs used

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "champions": len(self.champions), "observations": len(self.observations),
                "dropped": self.dropped, "sources": list(self.sources)}


def fit_to_space(space: SearchSpace, configs: Iterable[Mapping]) -> tuple[list[dict], int]:
    """Configs snapped onto tonight's space, and how many could not be (out of bounds, a
    parameter added or removed, an unknown category)."""
    kept, dropped = [], 0
    for config in configs:
        try:
            kept.append(space.to_config(space.from_config(config, snap=True)))
        except SpaceError:
            dropped += 1
    return kept, dropped


def trial_points(trials: Any, metric_column: str = "final_metric") -> list[tuple[dict, float | None]]:
    """(config, final metric) for every finished trial of a record's trials table; failed
    trials count with ``None`` (a failure the model should avoid), interrupted ones not at all."""
    out = []
    for _, row in trials.iterrows():
        if row.get("status") == "INTERRUPTED":
            continue
        value = row.get(metric_column) if row.get("status") != "ERROR" else None
        finite = value is not None and isinstance(value, (int, float)) and math.isfinite(value)
        out.append((json.loads(row["config_json"]), float(value) if finite else None))
    return out


def champions_of(trials: Any, mode: str, k: int, space: SearchSpace | None = None,
                 metric_column: str = "final_metric") -> list[dict]:
    """The ``k`` best distinct configurations of a trials table, best first; with ``space``,
    only those that fit it, snapped onto it."""
    ok = trials[trials[metric_column].notna() & (trials.get("status") != "ERROR")]
    ok = ok.sort_values(metric_column, ascending=(mode == "min"), kind="stable")
    seen, out = set(), []
    for _, row in ok.iterrows():
        config = json.loads(row["config_json"])
        if space is not None:
            fitted, _ = fit_to_space(space, [config])
            if not fitted:
                continue
            config = fitted[0]
        key = json.dumps(config, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(config)
        if len(out) == k:
            break
    return out


def plan_warm_start(space: SearchSpace, mode: str, how: str, top_k: int, decay: float,
                    nights: list[tuple[str, Any]], seed: int = 0) -> WarmStart:
    """The warm start for tonight from earlier good nights' trials tables.

    ``nights`` is [(record ref, trials table)], newest first; ``nights[0]`` is the last good night.
    ``dropped`` counts the used trials whose configuration no longer fits the space.
    """
    if how not in MODES:
        raise ValueError(f"warm start must be one of {', '.join(MODES)}, got {how!r}")
    ws = WarmStart(how)
    if how == "off" or not nights:
        return ws
    ws.champions = champions_of(nights[0][1], mode, top_k, space)
    rng = np.random.default_rng(seed)
    used = nights if how == "full" else nights[:1]
    for age, (ref, trials) in enumerate(used):
        points = trial_points(trials)
        if age:
            keep = int(math.ceil(len(points) * decay ** age))
            points = [points[i] for i in sorted(rng.choice(len(points), size=keep, replace=False))] if keep else []
        for config, value in points:
            snapped, n_dropped = fit_to_space(space, [config])
            ws.dropped += n_dropped
            ws.observations.extend((c, value) for c in snapped)
        ws.sources.append(ref)
    return ws
