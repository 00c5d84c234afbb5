"""Asynchronous parallelism as Tune produces it: k trials in flight, one finishes, one is asked.

Both our searchers against the Optuna sampler of the same family, driven the same way
(`harness.run` with `batch=k`: k asks before any result, then tell the oldest and ask one
more, so k - 1 trials are pending at every ask; Optuna sees them as RUNNING trials through
`study.ask()` / `study.tell()`, which its samplers' constant liar uses):

    ours (TPESearcher) vs optuna TPESampler()      ours (GPSearcher) vs optuna GPSampler()

on REPORTING seeds only. Raw runs go to results/async.json (appended per run, so the command
can be stopped and resumed); `report` writes results/async.md.

    nice -n 10 python -m experiments.benchmarks.bench_async run --seeds 3 --budget 64
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
PROBLEM_NAMES = ["branin", "hartmann6", "noisy"]
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
             "Produced by (2 shared CPU cores under heavy load, hence 3 seeds and short budgets)",
             "`nice -n 10 python -m experiments.benchmarks.bench_async run --families TPE --seeds 3 --budget 64`,",
             "`nice -n 10 python -m experiments.benchmarks.bench_async run --families GP --seeds 3 --budget 40 --problems branin hartmann6`,",
             "then `python -m experiments.benchmarks.bench_async report` (raw runs: `results/async.json`).", "",
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
            verdicts.append(f"- {family}, k = {k}: ours at least as good as {theirs} by median regret on "
                            f"{len(wins)} of {len(common)} problems ({', '.join(wins) or 'none'})")
    lines += ["## Target: at every k, ours at least as good as the Optuna sampler of its family on most problems", ""]
    lines += verdicts + [""]
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
