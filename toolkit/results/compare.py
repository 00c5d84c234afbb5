"""`compare(a, b)`: what differs between two record versions, and by how much."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolkit.results.analysis import best_so_far, best_value, trial_values
from toolkit.results.manifest import CodeInfo
from toolkit.results.objective import is_better
from toolkit.results.provenance import diff_environments
from toolkit.results.record import Record, load


def diff_tree(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted path, a, b)`` for every leaf that differs between two JSON-like trees."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{prefix}.{k}" if prefix else str(k)
            if k not in a:
                out.append((p, None, b[k]))
            elif k not in b:
                out.append((p, a[k], None))
            else:
                out.extend(diff_tree(a[k], b[k], p))
        return out
    return [] if a == b else [(prefix or "<root>", a, b)]


def _metric_summary(rec: Record) -> dict[str, Any]:
    v = trial_values(rec, "last").dropna()
    best = best_value(v, rec.mode)
    counts = rec.trials["status"].value_counts().to_dict() if "status" in rec.trials else {}
    return {"n_trials": len(rec.trials), "n_with_metric": len(v),
            "best": None if best is None else float(best),
            "median": float(v.median()) if len(v) else None,
            "q25": float(v.quantile(0.25)) if len(v) else None,
            "q75": float(v.quantile(0.75)) if len(v) else None,
            "by_status": {str(k): int(n) for k, n in counts.items()}}


@dataclass
class Comparison:
    a: str
    b: str
    metric: str | None
    mode: str
    spec: list = field(default_factory=list)            # resolved spec differences
    spec_as_given: list = field(default_factory=list)
    search: list = field(default_factory=list)          # seed, searcher, scheduler, trainable
    data: list = field(default_factory=list)
    data_known: bool = True                             # False: neither record has a data fingerprint
    code: list = field(default_factory=list)            # trainable file hash, git commit / dirty / diff hash
    environment: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)         # {"a": summary, "b": summary, "delta": ...}
    best_so_far_at: list = field(default_factory=list)  # (n_trials, a, b)

    @property
    def identical_setup(self) -> bool:
        return not (self.spec or self.search or self.data or self.code)

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)

    def to_text(self) -> str:
        def fmt(v: Any) -> str:
            s = repr(v) if not isinstance(v, float) else f"{v:.6g}"
            return s if len(s) <= 60 else s[:57] + "..."

        lines = [f"compare {self.a}  vs  {self.b}   (metric {self.metric}, mode {self.mode})", ""]
        sections = [("spec (resolved)", self.spec), ("spec (as given)", self.spec_as_given),
                    ("search setup", self.search), ("data", self.data), ("code", self.code),
                    ("environment", self.environment)]
        for title, diffs in sections:
            if title == "data" and not self.data_known:
                lines.append("data: unknown (neither record has a data fingerprint)")
                continue
            if not diffs:
                lines.append(f"{title}: identical")
                continue
            lines.append(f"{title}: {len(diffs)} difference(s)")
            for path, x, y in diffs[:40]:
                lines.append(f"  {path}: {fmt(x)} -> {fmt(y)}")
            if len(diffs) > 40:
                lines.append(f"  ... {len(diffs) - 40} more")
        ma, mb, d = self.metrics.get("a", {}), self.metrics.get("b", {}), self.metrics.get("delta", {})
        lines += ["", f"{'metrics':<18}{self.a:>16}{self.b:>16}{'delta (b-a)':>16}"]
        for key in ("n_trials", "n_with_metric", "best", "median", "q25", "q75"):
            dv = d.get(key)
            lines.append(f"  {key:<16}{fmt(ma.get(key)):>16}{fmt(mb.get(key)):>16}"
                         f"{'' if dv is None else fmt(dv):>16}")
        if d.get("better") is not None:
            lines.append(f"  best is {'better' if d['better'] else 'not better'} in {self.b} "
                         f"({'lower' if self.mode == 'min' else 'higher'} is better)")
        if self.best_so_far_at:
            lines.append("  best so far after n trials: " + ", ".join(
                f"n={n}: {fmt(x)} vs {fmt(y)}" for n, x, y in self.best_so_far_at))
        return "\n".join(lines)

    __str__ = to_text


def _code_identity(code: CodeInfo | None, legacy_git) -> dict:
    """What identifies the user's code, without paths that differ between machines."""
    if code is None:  # a record from before `code` existed: only the git state it recorded
        return {"git": legacy_git.model_dump(exclude={"root"}) if legacy_git is not None else None}
    git = code.git.model_dump(exclude={"root"}) if code.git is not None else None
    return {"file_sha256": code.file_sha256, "status": code.status, "git": git}


def compare(a: Record | str, b: Record | str, root: str | os.PathLike | None = None) -> Comparison:
    """Differences between two versions in spec, search setup, data, code and environment,
    and their metric summaries with deltas (b minus a)."""
    ra = a if isinstance(a, Record) else load(a, root)
    rb = b if isinstance(b, Record) else load(b, root)
    ma, mb = ra.meta, rb.meta
    c = Comparison(ra.ref, rb.ref, ma.metric, ma.mode)
    c.spec = diff_tree(ma.resolved_spec, mb.resolved_spec)
    c.spec_as_given = diff_tree(ma.spec, mb.spec)
    search_keys = ("seed", "searcher", "scheduler", "trainable", "metric", "mode")
    c.search = diff_tree(ma.model_dump(include=set(search_keys)), mb.model_dump(include=set(search_keys)))
    c.data_known = bool(ma.data) or bool(mb.data)  # any description of the data, fingerprint or not
    c.data = diff_tree(ma.data, mb.data) if c.data_known else []
    c.code = diff_tree(_code_identity(ma.code, ma.environment.git), _code_identity(mb.code, mb.environment.git))
    c.environment = [d for d in diff_environments(ma.environment.as_dict(), mb.environment.as_dict())
                     if not d[0].startswith("git.")]
    sa, sb = _metric_summary(ra), _metric_summary(rb)
    delta: dict[str, Any] = {}
    for k in ("n_trials", "n_with_metric", "best", "median", "q25", "q75"):
        if sa.get(k) is not None and sb.get(k) is not None:
            delta[k] = sb[k] - sa[k]
    if "best" in delta and ma.metric == mb.metric and ma.mode == mb.mode:
        delta["better"] = is_better(sb["best"], sa["best"], c.mode)
    c.metrics = {"a": sa, "b": sb, "delta": delta}
    ba, bb = best_so_far(ra), best_so_far(rb)
    n = min(len(ba), len(bb))
    for k in sorted({x for x in (1, 5, 10, 20, 50, 100, 200, 500, 1000) if x <= n} | ({n} if n else set())):
        x, y = ba["best_so_far"].iloc[k - 1], bb["best_so_far"].iloc[k - 1]
        c.best_so_far_at.append((k, None if np.isnan(x) else float(x), None if np.isnan(y) else float(y)))
    return c
