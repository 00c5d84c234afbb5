"""Benchmark: our TPESearcher against hyperopt, Optuna, Ray's wrappers and random search.

Parts (each saves raw results to results/tpe_<part>.json; `report` builds results/tpe.md):
    quality  all problems, core peers, --seeds seeds, regret at --budgets
    ray      Ray's HyperOptSearch / OptunaSearch (and their native twins, ours) on a subset
    batch    8 trials in flight vs 1, ours vs Optuna's constant liar (and hyperopt)
    timing   CPU time per suggestion after 100 / 300 / 1000 observations
    digits   the digits trainable (few seeds: every evaluation trains a network)

    nice -n 10 python -m experiments.benchmarks.bench_tpe all
"""

from __future__ import annotations

import os

# One BLAS thread: the machine is shared, and CPU-time figures should not count idle spinning.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from experiments.benchmarks import harness as H
from experiments.benchmarks.problems import PROBLEMS, Problem

RESULTS = Path(__file__).parent / "results"
SYNTHETIC = ["branin", "hartmann3", "hartmann6", "ackley5", "rosenbrock4", "levy4", "mixed", "conditional", "noisy",
             "noisy_branin", "tiny", "far", "normals"]
RAY_SUBSET = ["branin", "hartmann6", "levy4", "mixed"]
BATCH_SUBSET = ["branin", "hartmann6", "levy4", "mixed"]

# Our default options are the TPESearcher defaults; nothing is tuned per problem.
OURS_LABEL = "ours (TPESearcher)"


def _quiet() -> None:
    import logging
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("hyperopt").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


# ---------------------------------------------------------------------- peers
def peers(names: list[str]) -> dict[str, Callable[[Problem, int], H.Adapter]]:
    import optuna

    from toolkit.searchers import RandomSearcher, TPESearcher

    def ray_hyperopt(p: Problem, s: int) -> H.Adapter:
        from ray.tune.search.hyperopt import HyperOptSearch

        return H.ray_searcher_adapter(HyperOptSearch(random_state_seed=s), p)

    def ray_optuna(p: Problem, s: int) -> H.Adapter:
        from ray.tune.search.optuna import OptunaSearch

        return H.ray_searcher_adapter(OptunaSearch(seed=s), p)

    table = {
        "random": lambda p, s: H.ray_searcher_adapter(RandomSearcher(seed=s), p),
        "hyperopt tpe": lambda p, s: H.hyperopt_adapter(p, s),
        # Optuna 5.0's TPESampler() default: multivariate=True (single objective), constant_liar=True.
        "optuna TPE (default)": lambda p, s: H.optuna_adapter(optuna.samplers.TPESampler(seed=s), p),
        "optuna TPE (classic)": lambda p, s: H.optuna_adapter(
            optuna.samplers.TPESampler(seed=s, multivariate=False, constant_liar=False), p
        ),
        "ray HyperOptSearch": ray_hyperopt,
        "ray OptunaSearch": ray_optuna,
        OURS_LABEL: lambda p, s: H.ray_searcher_adapter(TPESearcher(seed=s), p),
    }
    return {n: table[n] for n in names}


CORE = ["random", "hyperopt tpe", "optuna TPE (default)", "optuna TPE (classic)", OURS_LABEL]
RAY = ["ray HyperOptSearch", "ray OptunaSearch"]  # reported next to the quality part's natives
BATCH_PEERS = ["hyperopt tpe", "optuna TPE (default)", OURS_LABEL]
# Ray's wrappers cannot express this problem: HyperOptSearch names both branches' "lr"
# "optimizer/lr" (hyperopt rejects the duplicate label), OptunaSearch has no conditional
# param_space support (define-by-run only).
UNSUPPORTED = {("ray HyperOptSearch", "conditional"), ("ray OptunaSearch", "conditional")}


# ---------------------------------------------------------------------- running
def _run_grid(
    peer_names: list[str], problem_names: list[str], seeds: list[int], budget: int, batch: int, label: str
) -> dict[str, dict[str, list[list[float]]]]:
    peer_names = _select(peer_names)
    makers = peers(peer_names)
    out: dict[str, dict[str, list[list[float]]]] = {p: {} for p in peer_names}
    for name in problem_names:
        problem = PROBLEMS[name]()
        for peer, make in makers.items():
            if (peer, name) in UNSUPPORTED:
                continue
            t0 = time.process_time()
            runs = [H.run(make, problem, budget, seed, batch=batch).tolist() for seed in seeds]
            out[peer][name] = runs
            print(f"[{label}] {name:12s} {peer:24s} {time.process_time() - t0:7.1f}s cpu", file=sys.stderr, flush=True)
    return out


ONLY: list[str] | None = None  # --only: re-run these peers, keep the others' saved results


def _select(names: list[str]) -> list[str]:
    return [n for n in names if ONLY is None or n in ONLY]


def _save(part: str, payload: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    old = _load(part)
    if ONLY is not None and old is not None:
        # Merge: re-run peers replace their entries, the others keep their saved runs.
        for peer, per in old["results"].items():
            if peer not in payload["results"] or not payload["results"][peer]:
                payload["results"][peer] = per
    payload["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()}
    (RESULTS / f"tpe_{part}.json").write_text(json.dumps(payload))


def _load(part: str) -> dict | None:
    path = RESULTS / f"tpe_{part}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _seeds(args: argparse.Namespace) -> list[int]:
    # Reporting seeds only: every default was chosen on harness.TUNING_SEEDS.
    return H.reporting_seeds(args.seeds)


def part_quality(args: argparse.Namespace) -> None:
    res = _run_grid(CORE, args.problems or SYNTHETIC, _seeds(args), max(args.budgets), 1, "quality")
    _save("quality", {"seeds": args.seeds, "budgets": args.budgets, "results": res})


def part_ray(args: argparse.Namespace) -> None:
    res = _run_grid(RAY, args.problems or RAY_SUBSET, _seeds(args), max(args.budgets), 1, "ray")
    _save("ray", {"seeds": args.seeds, "budgets": args.budgets, "results": res})


def part_batch(args: argparse.Namespace) -> None:
    # Batch 1 is the quality part's run (same seeds and budget); only batch 8 runs here.
    budget = max(args.budgets)
    res = _run_grid(BATCH_PEERS, args.problems or BATCH_SUBSET, _seeds(args), budget, 8, "batch8")
    _save("batch", {"seeds": args.seeds, "budget": budget, "results": res})


def part_digits(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    names = ["random", "hyperopt tpe", "optuna TPE (default)", OURS_LABEL]
    res = _run_grid(names, ["digits"], H.reporting_seeds(args.digits_seeds), args.digits_budget, 1, "digits")
    _save("digits", {"seeds": args.digits_seeds, "budget": args.digits_budget, "results": res})


def part_timing(args: argparse.Namespace) -> None:
    """CPU seconds per suggestion with n finished observations already in the model."""
    import optuna

    from toolkit.searchers import TPESearcher

    problem = PROBLEMS["hartmann6"]()
    space = problem.space
    rng = np.random.default_rng(0)
    out: dict[str, dict[str, float]] = {}
    reps = args.timing_reps
    for n in (100, 300, 1000):
        pts = [space.to_config(space.sample(rng)) for _ in range(n)]
        vals = [problem.objective(c) for c in pts]
        row: dict[str, float] = {}

        for label, kw in (("ours (multivariate, default)", {}), ("ours (univariate)", {"multivariate": False})):
            s = TPESearcher(space, "loss", "min", seed=0, **kw)
            for c, v in zip(pts, vals):
                s.add_evaluated_point(c, v)
            s.suggest("warm")
            t0 = time.process_time()
            for i in range(reps):
                c = s.suggest(f"t{i}")
                s.on_trial_complete(f"t{i}", {"loss": problem.objective(c)})
            row[label] = (time.process_time() - t0) / reps

        for label, kw in (
            ("optuna TPE (default)", {}),
            ("optuna TPE (classic)", {"multivariate": False, "constant_liar": False}),
        ):
            study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, **kw))
            dists = {k: optuna.distributions.FloatDistribution(0.0, 1.0) for k in pts[0]}
            study.add_trials([optuna.trial.create_trial(params=c, distributions=dists, value=v) for c, v in zip(pts, vals)])
            adapter_space = space

            def one() -> None:
                trial = study.ask()
                c = H._optuna_suggest(trial, adapter_space)
                study.tell(trial, problem.objective(c))

            one()
            t0 = time.process_time()
            for _ in range(reps):
                one()
            row[label] = (time.process_time() - t0) / reps
        out[str(n)] = row
        print(f"[timing] n={n} " + ", ".join(f"{k}: {v * 1e3:.1f} ms" for k, v in row.items()), file=sys.stderr, flush=True)
    _save("timing", {"reps": reps, "results": out})


# ---------------------------------------------------------------------- report
ORDER = ["random", "hyperopt tpe", "optuna TPE (default)", "optuna TPE (classic)", "ray HyperOptSearch",
         "ray OptunaSearch", OURS_LABEL]


def _as_arrays(res: dict) -> dict[str, dict[str, list[np.ndarray]]]:
    peers_in_order = sorted(res, key=lambda p: ORDER.index(p) if p in ORDER else len(ORDER))
    return {p: {name: [np.asarray(v, dtype=float) for v in runs] for name, runs in res[p].items()} for p in peers_in_order}


def _worse_than_random(arr: dict, problems: dict, budget: int) -> list[str]:
    reg = H.regrets(arr, problems, budget)
    bad = []
    for name in reg.get("random", {}):
        if name in reg.get(OURS_LABEL, {}) and np.median(reg[OURS_LABEL][name]) > np.median(reg["random"][name]):
            bad.append(name)
    return bad


def _rank_of(arr: dict, problems: dict, budget: int, tpe_peers: list[str]) -> dict[str, float]:
    reg = H.regrets(arr, problems, budget)
    names = sorted(set.intersection(*(set(reg[p]) for p in tpe_peers)))
    ranks = {p: 0.0 for p in tpe_peers}
    for name in names:
        med = [float(np.median(reg[p][name])) for p in tpe_peers]
        for p, r in zip(tpe_peers, H._rank(med)):
            ranks[p] += r / len(names)
    return ranks


def report(args: argparse.Namespace) -> str:
    problems = {n: PROBLEMS[n]() for n in SYNTHETIC}
    lines = [
        "# TPE benchmark",
        "",
        "Produced by `" + (args.command or "nice -n 10 python -m experiments.benchmarks.bench_tpe all") + "`",
        "(sections from `experiments/benchmarks/bench_tpe.py`; raw values in `results/tpe_*.json`).",
        "Simple regret = best objective value found so far minus the known optimum (noisy problem: the",
        "noise-free value of the evaluated points). Lower is better; **bold** = best median in the row.",
        "Mean rank: peers ranked by median regret on each problem (ties share), averaged over problems.",
        "Every peer runs with its library defaults; ours with the `TPESearcher` defaults (multivariate,",
        "64 candidates, gamma 15% capped at 25, categorical smoothing 0.4 except a fading one for a",
        "categorical that selects conditional branches, each branch split into good and bad among the",
        "trials that took it, Sobol start-up of max(5, min(10, parameters + 1)) points capped at a",
        "quarter of the budget, pending trials as bad observations of weight 0.3), nothing tuned per",
        "problem. Every default was chosen on",
        "`harness.TUNING_SEEDS` (below 200; `tune_searchers.py`, results/tuning.md); the runs below use",
        "`harness.REPORTING_SEEDS` (from 5000), never looked at while choosing anything.",
        "",
    ]
    q = _load("quality")
    targets = []
    if q:
        arr = _as_arrays(q["results"])
        lines += [f"## Synthetic problems ({q['seeds']} seeds each, sequential)", "", H.summarize(arr, q["budgets"], problems)]
        tpe_peers = [p for p in arr if p != "random"]
        for b in q["budgets"]:
            ranks = _rank_of(arr, problems, b, tpe_peers)
            best = min(ranks, key=ranks.get)
            targets.append(
                f"- Mean rank among TPE peers after {b}: "
                + ", ".join(f"{p} {r:.2f}" for p, r in sorted(ranks.items(), key=lambda kv: kv[1]))
                + f" -> best: **{best}**"
            )
            worse = _worse_than_random(arr, problems, b)
            targets.append(f"- Problems where ours has a worse median than random after {b}: {', '.join(worse) or 'none'}")
    r = _load("ray")
    if r:
        arr = _as_arrays(r["results"])
        if q:  # the native twins and ours, from the quality part (same seeds and budget)
            qa = _as_arrays(q["results"])
            for peer in ("hyperopt tpe", "optuna TPE (default)", OURS_LABEL):
                arr[peer] = {n: qa[peer][n] for n in next(iter(arr.values())) if n in qa.get(peer, {})}
        lines += [
            f"## Ray Tune's wrappers ({r['seeds']} seeds, subset of problems to fit the time budget)",
            "",
            "Ray's `HyperOptSearch` / `OptunaSearch` wrap the same algorithms as the native peers",
            "(OptunaSearch's default sampler is `TPESampler(seed=seed)`; HyperOptSearch uses 20 random start-ups).",
            "The conditional problem is n/a for both: see `UNSUPPORTED` in the script.",
            "",
            H.summarize(arr, r["budgets"], problems),
        ]
    bt = _load("batch")
    if bt:
        lines += [f"## 8 trials in flight vs 1 ({bt['seeds']} seeds, budget {bt['budget']})", ""]
        eight = _as_arrays(bt["results"])
        qa = _as_arrays(q["results"]) if q else {}
        one = {p: {n: qa[p][n] for n in eight[p]} for p in eight if p in qa}
        budget = bt["budget"]
        r1, r8 = H.regrets(one, problems, budget), H.regrets(eight, problems, budget)
        names = list(next(iter(r1.values())))
        lines.append("Median simple regret at batch 1 -> batch 8 (ratio batch8 / batch1; mean log10 ratio over problems last).")
        lines.append("")
        lines.append("| peer | " + " | ".join(names) + " | mean log10 ratio |")
        lines.append("|---" * (len(names) + 2) + "|")
        degr = {}
        for peer in r1:
            cells, logs = [], []
            for n in names:
                a, b = float(np.median(r1[peer][n])), float(np.median(r8[peer][n]))
                ratio = b / a if a > 0 else math.inf
                logs.append(math.log10(max(b, 1e-12)) - math.log10(max(a, 1e-12)))
                cells.append(f"{H._fmt(a)} -> {H._fmt(b)} ({ratio:.2f}x)")
            degr[peer] = float(np.mean(logs))
            lines.append(f"| {peer} | " + " | ".join(cells) + f" | {degr[peer]:+.3f} |")
        lines.append("")
        lines.append("Batch 8 directly against the peers (all at 8 in flight):")
        lines.append("")
        lines.append(H.summarize(eight, [budget], problems))
        others = [p for p in degr if p != OURS_LABEL]
        peer_loss = min(degr[p] for p in others)
        verdicts = [
            f"{'met' if degr[OURS_LABEL] <= degr[p] + 1e-9 else f'missed by {degr[OURS_LABEL] - degr[p]:.3f}'} vs {p}"
            for p in others
        ]
        targets.append(
            f"- Batch 8 degradation (mean log10 regret ratio vs batch 1): ours {degr[OURS_LABEL]:+.3f}; peers "
            + ", ".join(f"{p} {degr[p]:+.3f}" for p in others)
            + " -> " + "; ".join(verdicts)
            + ("" if degr[OURS_LABEL] <= peer_loss + 1e-9 else " (**missed** on the strict reading)")
        )
    tm = _load("timing")
    if tm:
        lines += [f"## CPU time per suggestion (hartmann6, mean of {tm['reps']} suggestions, each result told back)", ""]
        cols = list(next(iter(tm["results"].values())))
        lines.append("| observations | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for n, row in tm["results"].items():
            lines.append(f"| {n} | " + " | ".join(f"{row[c] * 1e3:.1f} ms" for c in cols) + " |")
        row = tm["results"]["1000"]
        ours = row["ours (multivariate, default)"]
        ratio = {k: row[k] / ours for k in row if k.startswith("optuna")}
        targets.append(
            "- Time per suggestion at 1000 observations: ours "
            + f"{ours * 1e3:.1f} ms; Optuna "
            + ", ".join(f"{k} {row[k] * 1e3:.1f} ms ({v:.1f}x ours)" for k, v in ratio.items())
            + (" -> **met** (>= 5x)" if min(ratio.values()) >= 5 else " -> missed")
        )
        lines.append("")
    dg = _load("digits")
    if dg:
        arr = _as_arrays(dg["results"])
        dprob = {"digits": PROBLEMS["digits"]()}
        lines += [
            f"## Digits trainable ({dg['seeds']} seeds only, budget {dg['budget']}: each evaluation trains an MLP)",
            "",
            "Objective: validation loss after 3 epochs (`trainables.digits.evaluate`); optimum unknown,",
            "so regret is against the best value any run found.",
            "",
            H.summarize(arr, [dg["budget"] // 2, dg["budget"]], dprob),
        ]
    lines += ["## Targets", ""] + targets + [""]
    lines += [
        "## Notes",
        "",
        "- Scope: the quality part ran 10 reporting seeds (5000-5009) on 8 problems with 4 peers, in",
        "  two steps of the command above (`--only` the three peers, then `--only 'ours (TPESearcher)'`",
        "  after the conditional-branch change, 2f147e2). The first 3 seeds reproduce the earlier",
        "  3-seed runs exactly for every peer and problem except ours on conditional (changed by",
        "  design). Optuna's classic TPE, Ray's wrappers, the digits trainable, the batch-8 part and",
        "  CPU time per suggestion were not re-run, so they are not in this file (earlier tables are in",
        "  git history). Trials in flight: results/async.md (k = 2, 8, 32, ours against Optuna's TPE).",
        "- Where a peer wins. After 100 evaluations Optuna's TPE has the lower median on branin",
        "  (0.0128 vs 0.015), hartmann6 (0.152 vs 0.167; ours solves 90% against 70% and its 75% quartile",
        "  is 0.188 against 0.376), noisy Hartmann6 (0.122 vs 0.162) and far (0.042 vs 0.047), and the",
        "  better mean rank among TPE peers (1.62 vs 1.75); hyperopt has the lowest median on normals",
        "  (0.0253 vs ours 0.0265, Optuna 0.0345). After 50, Optuna leads on conditional (0.272 vs",
        "  0.337) and hyperopt on normals (0.154 vs 0.263); ours has the best mean rank (1.50 vs 1.88).",
        "  Except conditional, every margin at 100 lies inside both peers' quartile ranges.",
        "- Why ours fell behind after 100 (issue 10 item 3; results/tuning.md, 20 tuning seeds): on",
        "  branin, hartmann6, noisy, far and normals the old defaults already beat Optuna's TPE at 100 on",
        "  tuning seeds (0.016 vs 0.047, 0.078 vs 0.107, 0.106 vs 0.141, 0.037 vs 0.066, 0.030 vs",
        "  0.051), so the 3-seed gaps were seed-to-seed spread, not a defect we could find; the",
        "  estimator otherwise follows Optuna's (neighbour bandwidths with the magic clip, endpoints",
        "  not considered, prior weight 1, linear forgetting after 25). Conditional was structural: a",
        "  branch with no globally good trial was sampled from its prior, so runs that started on the",
        "  broad sgd branch stayed on its 0.3 floor (30 of 40 tuning runs; 16 after the change; on the",
        "  reporting seeds ours now leads on conditional at 100, 0.031 vs Optuna's 0.13).",
        "- Tried on tuning seeds and not kept: Optuna's 24 candidates (better at 50 and on conditional,",
        "  mixed and branin, but worse at 100 on hartmann6, 0.078 -> 0.104, and far, 0.037 -> 0.086);",
        "  gamma 10% (worse overall; normals 0.030 -> 0.86 at 100); Optuna's fading smoothing for every",
        "  categorical (mixed 0.041 -> 0.105). No noise-specific change: on tuning seeds ours leads",
        "  Optuna on noisy Hartmann6 at 50 and 100.",
        "- Problems: tiny (24 points, noisy; every peer tries all 24 within 50 evaluations, so it",
        "  only checks that the sweep runs to the end), far (a narrow optimum far from the centre of",
        "  wide ranges), normals (unbounded normal parameters, optimum 1.5-2.5 sd out); noisy_branin",
        "  exists in `problems.py` but was not run here.",
        "- Timing is CPU time (`time.process_time`, one BLAS thread) per ask+tell after n random",
        "  observations on hartmann6, so other users' load on the machine does not count; Optuna's figure",
        "  includes its in-memory storage, ours the Ray Searcher plumbing (suggest / on_trial_complete).",
        "- Choices behind the defaults (categorical smoothing 0.4, branch split and fading selector,",
        "  liar weight 0.3, start-up size) were made on tuning seeds only: results/tuning.md and git.",
        "- hyperopt runs through its own Trials/Domain ask-tell (what Ray's HyperOptSearch does); Optuna",
        "  through `study.ask()` / `study.tell()` with define-by-run suggestions, conditionals included.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["quality", "ray", "batch", "timing", "digits", "report", "all"])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budgets", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--problems", nargs="*", default=None)
    ap.add_argument("--digits-seeds", type=int, default=3)
    ap.add_argument("--digits-budget", type=int, default=20)
    ap.add_argument("--timing-reps", type=int, default=10)
    ap.add_argument("--command", default=None, help="the command line to print in the report")
    ap.add_argument("--only", nargs="+", default=None, help="re-run only these peers; merge with saved results")
    args = ap.parse_args(argv)
    global ONLY
    ONLY = args.only
    _quiet()
    parts = ["quality", "ray", "batch", "timing", "digits"] if args.part == "all" else [args.part]
    for part in parts:
        if part != "report":
            t0 = time.time()
            globals()[f"part_{part}"](args)
            print(f"[{part}] done in {time.time() - t0:.0f}s wall", file=sys.stderr, flush=True)
    md = report(args)
    (RESULTS / "tpe.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
