"""Finite spaces and warm starts: does a searcher propose every trial the user asked for?

Counts only (no timing), so it runs in seconds. It uses nothing but the searchers' Ray API,
so the same file measures an older checkout too (`--label`), which is how the "before"
column of results/finite.md was produced:

    python -m experiments.benchmarks.bench_finite --label after
    (cd <checkout of 3be4029> && PYTHONPATH=. python <this file> --label before)
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from ray.tune.search import Searcher

from toolkit.searchers import RandomSearcher
from toolkit.space import Categorical, Float, Int, SearchSpace

RESULTS = Path(__file__).parent / "results"
SEEDS = range(5)  # --seeds n: the first n


def _searchers():
    from toolkit.searchers.gp import GPSearcher
    from toolkit.searchers.tpe import TPESearcher

    return {"random": RandomSearcher, "tpe": TPESearcher, "gp": GPSearcher}


def proposals_until_finished(cls, space: SearchSpace, num_samples: int, seed: int, f) -> int:
    """How many of `num_samples` sequential asks got a configuration (not FINISHED)."""
    s = cls(space=space, metric="loss", mode="min", seed=seed)
    s.set_search_properties("loss", "min", {}, num_samples=num_samples)
    for i in range(num_samples):
        c = s.suggest(f"t{i}")
        if c is None or c == Searcher.FINISHED:
            return i
        s.on_trial_complete(f"t{i}", {"loss": f(c)})
    return num_samples


def tpe_model_fallbacks(space: SearchSpace, n: int, seed: int, f) -> int:
    """TPE proposals after the start-up that came from uniform random search."""
    from toolkit.searchers.tpe import TPESearcher

    s = TPESearcher(space=space, metric="loss", mode="min", seed=seed)
    s.set_search_properties("loss", "min", {}, num_samples=n)
    count = [0]
    original = s.random_unseen

    def counting():
        if len(s.observations) >= 10:
            count[0] += 1
        return original()

    s.random_unseen = counting
    for i in range(n):
        c = s.suggest(f"t{i}")
        if c is None or c == Searcher.FINISHED:
            break
        s.on_trial_complete(f"t{i}", {"loss": f(c)})
    return count[0]


def report() -> str:
    saved = json.loads((RESULTS / "finite.json").read_text())
    labels = [x for x in ("before", "after") if x in saved]
    lines = ["# Finite spaces and warm starts: every trial asked for", "",
             "Produced by `python -m experiments.benchmarks.bench_finite --label after` on this tree and the",
             "same file run in a checkout of 3be4029 (`--label before`); `--report` writes this table.",
             "One value per seed (before: seeds 0-4; after: as many as listed, the machine was overloaded).",
             "Counts, not a quality comparison: what each searcher did.", "",
             "| measurement | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for key in saved[labels[0]]:
        cells = []
        for x in labels:
            v = saved[x].get(key, "not run")
            cells.append("; ".join(map(str, v)) if isinstance(v, list) and v and isinstance(v[0], str) else str(v))
        lines.append(f"| {key} | " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    global SEEDS
    SEEDS = range(args.seeds)
    if args.report:
        (RESULTS / "finite.md").write_text(report())
        print(report())
        return
    out: dict = {}
    rng = np.random.default_rng(0)

    two = SearchSpace({"lr": Categorical((0.01, 0.1))})
    noisy = lambda c: c["lr"] + 0.05 * rng.standard_normal()  # noqa: E731
    for name, cls in _searchers().items():
        out[f"2-point space, num_samples 50: trials proposed ({name})"] = [proposals_until_finished(cls, two, 50, s, noisy) for s in SEEDS]

    cube = SearchSpace({"a": Int(0, 9), "b": Int(0, 9), "c": Int(0, 9)})
    bowl = lambda c: (c["a"] - 3) ** 2 + (c["b"] - 6) ** 2 + (c["c"] - 1) ** 2  # noqa: E731
    for name in ("random", "tpe"):
        cls = _searchers()[name]
        out[f"1,000-point space, num_samples 1000: trials proposed ({name})"] = [proposals_until_finished(cls, cube, 1000, s, bowl) for s in SEEDS]

    grid = SearchSpace({"x": Int(0, 20), "y": Int(0, 20), "k": Categorical(("a", "b", "c"))})
    g = lambda c: (c["x"] - 14) ** 2 / 20 + (c["y"] - 5) ** 2 / 20 + {"a": 0.5, "b": 0.0, "c": 1.0}[c["k"]]  # noqa: E731
    out["1,323-point space, 700 TPE proposals: uniform-random fallbacks after start-up"] = [tpe_model_fallbacks(grid, 700, s, g) for s in SEEDS]

    # Warm start on a q = 0.5 grid {0, 0.5, 1} with two off-grid points.
    q = SearchSpace({"x": Float(0.0, 1.0, q=0.5)})
    res = []
    for name, cls in _searchers().items():
        s = cls(space=q, metric="loss", mode="min", seed=0)
        try:
            s.warm_start([({"x": 0.1}, 1.0), ({"x": 0.2}, 2.0)])
        except Exception as e:  # noqa: BLE001 - record what happened
            res.append(f"{name}: warm start raised {type(e).__name__}")
            continue
        got = []
        for i in range(3):
            c = s.suggest(f"t{i}")
            got.append("FINISHED" if c == Searcher.FINISHED else c["x"])
            if c != Searcher.FINISHED:
                s.on_trial_complete(f"t{i}", {"loss": 0.0})
        stored = sorted({o.flat["x"] for o in s.observations[:2]})
        res.append(f"{name}: stored {stored}, next 3 suggestions {got}")
    out["warm start x=0.1, 0.2 on grid {0, 0.5, 1}"] = res

    s = RandomSearcher(space=SearchSpace({"x": Float(0.0, 1.0)}), seed=0)
    try:
        s.warm_start([({"x": 0.5}, 3.0)])
        out["warm start before the mode is known"] = f"accepted, stored loss {s.observations[0].loss}"
    except Exception as e:  # noqa: BLE001
        out["warm start before the mode is known"] = f"{type(e).__name__}: {e}"

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "finite.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved[args.label] = out
    path.write_text(json.dumps(saved, indent=1))
    for k, v in out.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
