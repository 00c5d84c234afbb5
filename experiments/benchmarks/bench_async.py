"""Asynchronous parallelism as Tune produces it: k trials in flight, one finishes, one is asked.

Both our searchers against the Optuna sampler of the same family, driven the same way
(`harness.run` with `batch=k`: k asks before any result, then tell the oldest and ask one
more, so k - 1 trials are pending at every ask; Optuna sees them as RUNNING trials through
`study.ask()` / `study.tell()`, which its samplers' constant liar uses):

    ours (TPESearcher) vs optuna TPESampler()      ours (GPSearcher) vs optuna GPSampler()

on REPORTING seeds only. Raw runs go to results/async.json (appended per run, so the command
can be stopped and resumed); `report` writes results/async.md.

    nice -n 15 python -m experiments.benchmarks.bench_async run --families TPE --seeds 20 --budget 64
    nice -n 15 python -m experiments.benchmarks.bench_async run --families GP --seeds 15 --budget 40
    python -m experiments.benchmarks.bench_async report
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from experiments.benchmarks import harness as H  # noqa: E402
from experiments.benchmarks.problems import PROBLEMS  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RAW = RESULTS / "async.json"
KS = (2, 8, 32)
PROBLEM_NAMES = ["branin", "hartmann6", "noisy", "noisy_branin"]
# The commands behind results/async.md, as it says at its top (set when it is regenerated).
COMMANDS_NOTE = [
    "Produced by (2 shared CPU cores under heavy load; about 3 min for TPE and 30 min for GP)",
    "`nice -n 15 python -m experiments.benchmarks.bench_async run --families TPE --seeds 20 --budget 64`,",
    "`nice -n 15 python -m experiments.benchmarks.bench_async run --families GP --seeds 20 --budget 40`,",
    "then `python -m experiments.benchmarks.bench_async report` (raw runs: `results/async.json`).",
    "Run in steps (10, then 15/20 seeds; `run` skips runs already in async.json). Before it, the runs of",
    "ours (GPSearcher) made before the GP change (8fc6850, 21e4084) were deleted from async.json; the",
    "earlier runs of the other three peers on seeds 5000-5002 were kept (the TPE code only changed a",
    "comment since; four of them re-run give identical values). Problems: branin, hartmann6, noisy",
    "(Hartmann6, noise sd 0.1) and noisy_branin (noise sd 1) for both families; all 4 x 3 k x 20 seeds",
    "ran for every peer. Budgets: 64 for TPE, 40 for GP (as in gp.md), so at k = 32 only the last 32",
    "(TPE) or 8 (GP) proposals can see any result.",
    "GP at k = 32 was then extended to 100 seeds (the 20-seed row missed the target by margins inside",
    "the quartiles): `nice -n 15 python -m experiments.benchmarks.bench_async run --families GP --ks 32",
    "--seeds 100 --budget 40`; its table and verdict below are the 100-seed ones.",
]
# Hand-written reading of the tables, appended after the computed verdicts.
NOTES = [
    "Reading: the target is met at every k for TPE and GP. GP at k = 32 is a tie, not a win: on 20",
    "seeds it was missed (2 of 4; Optuna ahead on hartmann6 1.61 vs 1.66 and noisy 1.61 vs 1.70); on",
    "100 seeds it is met (4 of 4), but paired seed by seed ours is lower on only 47-54% of seeds. With",
    "38 of our 40 points (and all 40 of Optuna's) start-up designs at k = 32, both are a space-filling",
    "design plus luck. Most other margins are also well inside the quartile ranges; the larger leads are ours:",
    "TPE on noisy_branin at k = 8 (0.10 vs 0.24), GP on noisy_branin at k = 2 (0.011 vs 0.037) and on",
    "branin at k = 8 (0.0036 vs 0.027). Optuna's TPE is ahead on noisy Hartmann6 at every k.",
    "Against the 3-seed run before the GP change (GP only on branin and hartmann6): GP k = 2 went from",
    "0 of 2 to 4 of 4, k = 32 from 0 of 2 to 2 of 4; the old TPE figures were 3 seeds, too few to compare.",
    "TPE rows and the shipped defaults: the TPE change after this run (2f147e2, conditional branches",
    "modelled from their own trials) only changes proposals on spaces with conditional branches, and",
    "these four problems have none; 24 of its runs re-run after it (seeds 5000 and 5007, every problem",
    "and k) gave identical values, so the TPE rows still describe the shipped TPESearcher defaults.",
]
FAMILIES = {"TPE": ("ours (TPESearcher)", "optuna TPESampler"), "GP": ("ours (GPSearcher)", "optuna GPSampler")}


def make(peer: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if peer == "ours (TPESearcher)":
        from toolkit.searchers.tpe import TPESearcher

        return lambda p, s: H.ray_searcher_adapter(TPESearcher(space=p.space, seed=s), p)
    if peer == "ours (GPSearcher)":
        from toolkit.searchers.gp import GPSearcher

        return lambda p, s: H.ray_searcher_adapter(GPSearcher(space=p.space, seed=s), p)
    if peer == "optuna TPESampler":
        return lambda p, s: H.optuna_adapter(optuna.samplers.TPESampler(seed=s), p)
    if peer == "optuna GPSampler":
        return lambda p, s: H.optuna_adapter(optuna.samplers.GPSampler(seed=s), p)
    raise ValueError(peer)


def _load() -> dict:
    return json.loads(RAW.read_text()) if RAW.exists() else {}


def cmd_run(args) -> None:
    seeds = H.reporting_seeds(args.seeds)
    for k in args.ks:
        for name in args.problems:
            problem = PROBLEMS[name]()
            for family in args.families:
                for peer in FAMILIES[family]:
                    for seed in seeds:
                        key = f"{peer}|{name}|{k}|{seed}|{args.budget}"
                        if key in _load():
                            continue
                        t = time.process_time()
                        values = H.run(make(peer), problem, args.budget, seed, batch=k)
                        raw = _load()
                        raw[key] = [float(v) for v in values]
                        RAW.write_text(json.dumps(raw))
                        print(f"k={k:2d} {name:10s} {peer:20s} seed {seed}: best {np.min(values):.4g} "
                              f"({time.process_time() - t:.1f}s cpu)", file=sys.stderr, flush=True)


def _budget_of(raw: dict, peers: tuple[str, ...]) -> int | None:
    budgets = {int(k.split("|")[4]) for k in raw if k.split("|")[0] in peers}
    return max(budgets) if budgets else None


def report() -> str:
    raw = _load()
    problems = {n: PROBLEMS[n]() for n in PROBLEM_NAMES}
    lines = ["# Asynchronous parallelism: k trials in flight", "",
             *COMMANDS_NOTE, "",
             "k trials are asked before any result returns; then the oldest finishes, is told, and one new",
             "configuration is asked while k - 1 are still pending (Tune's pattern with equal trial run times).",
             "Optuna runs through `study.ask()`/`study.tell()`, so its samplers see the pending trials as RUNNING.",
             "Every peer at its library defaults; seeds are `harness.REPORTING_SEEDS` (never used while tuning).",
             "Cells: median [25%, 75%] simple regret after the budget (solved fraction); noisy: noise-free regret.",
             ""]
    verdicts = []
    for family, peers in FAMILIES.items():
        budget = _budget_of(raw, peers)
        for k in KS:
            res: dict = {}
            for peer in peers:
                for name in PROBLEM_NAMES:
                    runs = [np.array(v) for key, v in raw.items()
                            if key.startswith(f"{peer}|{name}|{k}|") and key.endswith(f"|{budget}")]
                    if runs:
                        res.setdefault(peer, {})[name] = runs
            if len(res) < 2:
                continue
            seeds = max(len(r) for per in res.values() for r in per.values())
            lines += [f"## {family}, k = {k} ({seeds} seeds, budget {budget})", ""]
            lines.append(H.summarize(res, [budget], problems).split("\n", 2)[2])
            reg = H.regrets(res, problems, budget)
            ours, theirs = peers
            common = [n for n in PROBLEM_NAMES if n in reg.get(ours, {}) and n in reg.get(theirs, {})]
            wins = [n for n in common if np.median(reg[ours][n]) <= np.median(reg[theirs][n])]
            losses = [n for n in common if n not in wins]
            met = "met" if 2 * len(wins) > len(common) else "missed"
            verdicts.append(f"- {family}, k = {k} ({seeds} seeds): {met}; ours at least as good as {theirs} by "
                            f"median regret on {len(wins)} of {len(common)} problems ({', '.join(wins) or 'none'}); "
                            f"Optuna ahead on {', '.join(losses) or 'none'}")
    lines += ["## Target: at every k, ours at least as good as the Optuna sampler of its family on most problems", "",
              "\"Most\" is more than half of the problems a family ran (3 of 4). Ties count for ours.", ""]
    lines += verdicts + [""] + NOTES + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["run", "report"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--ks", type=int, nargs="+", default=list(KS))
    ap.add_argument("--problems", nargs="+", default=PROBLEM_NAMES)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES))
    args = ap.parse_args(argv)
    if args.command == "run":
        cmd_run(args)
    md = report()
    (RESULTS / "async.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
