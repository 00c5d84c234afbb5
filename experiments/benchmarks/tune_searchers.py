"""Tuning experiments behind our searchers' defaults, on TUNING seeds only.

Every choice below was made from these runs, which use `harness.TUNING_SEEDS` (never the
reporting seeds of the benchmark tables). Each part writes `results/tuning_<part>.json`;
`report` rebuilds `results/tuning.md` from them.

    nice -n 10 python -m experiments.benchmarks.tune_searchers incumbent   # GP, k in flight
    nice -n 10 python -m experiments.benchmarks.tune_searchers startup     # start-up size
    nice -n 10 python -m experiments.benchmarks.tune_searchers noise       # GP noise prior
    nice -n 10 python -m experiments.benchmarks.tune_searchers tpe --seeds 20   # TPE estimator variants
    nice -n 10 python -m experiments.benchmarks.tune_searchers tpe_conditional --seeds 40
    nice -n 10 python -m experiments.benchmarks.tune_searchers tpe_candidates --seeds 40
    python -m experiments.benchmarks.tune_searchers report
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
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

from experiments.benchmarks import harness as H  # noqa: E402
from experiments.benchmarks.problems import PROBLEMS  # noqa: E402

RESULTS = Path(__file__).parent / "results"


# ---------------------------------------------------------------------- variants
def believer_gp(**kw: Any):
    """The former GP: plain kriging believer, whose believed values also lower the incumbent."""
    from toolkit.searchers.gp import GPSearcher

    class BelieverIncumbentGP(GPSearcher):
        def incumbent(self, observed_means, pending_means=None):
            best = float(np.min(observed_means))
            return best if pending_means is None else min(best, float(np.min(pending_means)))

        def belief(self, pending_means, incumbent):
            return pending_means

    return BelieverIncumbentGP(**kw)


def unclipped_gp(**kw: Any):
    """Incumbent from real observations only, beliefs not clipped at it."""
    from toolkit.searchers.gp import GPSearcher

    class UnclippedBeliefGP(GPSearcher):
        def belief(self, pending_means, incumbent):
            return pending_means

    return UnclippedBeliefGP(**kw)


def fixed_selector_tpe(**kw: Any):
    """The former TPE categorical kernels: a branch selector smoothed like any categorical."""
    import dataclasses

    from toolkit.searchers.tpe import TPESearcher

    class FixedSelectorTPE(TPESearcher):
        def _get_layout(self):
            dims, groups = super()._get_layout()
            if any(d.selects_branches for d in dims):
                dims = [dataclasses.replace(d, selects_branches=False) for d in dims]
                self._layout = (self._layout[0], dims, groups)
            return dims, groups

    return FixedSelectorTPE(**kw)


def make(kind: str, **options: Any) -> Callable[[Any, int], Any]:
    def build(problem, seed):
        from toolkit.searchers.gp import GPSearcher
        from toolkit.searchers.tpe import TPESearcher

        cls = {"gp": GPSearcher, "tpe": TPESearcher, "gp-believer": believer_gp, "gp-unclipped": unclipped_gp,
               "tpe-fixed-selector": fixed_selector_tpe}[kind]
        return H.ray_searcher_adapter(cls(space=problem.space, seed=seed, **options), problem)

    return build


def regret_runs(build, problem_name: str, seeds: list[int], budget: int, batch: int = 1) -> list[list[float]]:
    problem = PROBLEMS[problem_name]()
    out = []
    for seed in seeds:
        values = H.run(build, problem, budget, seed, batch=batch)
        out.append([float(H.best_so_far(values, b) - problem.optimum) for b in range(1, len(values) + 1)])
    return out


def _save(part: str, payload: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"tuning_{part}.json").write_text(json.dumps(payload))


def _load(part: str) -> dict | None:
    path = RESULTS / f"tuning_{part}.json"
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------------- parts
def part_incumbent(args) -> None:
    seeds = H.tuning_seeds(args.seeds, offset=100)
    res: dict = {}
    for k in (2, 8):
        for label, kind in (("observed; beliefs clipped at it (new)", "gp"),
                            ("observed; beliefs not clipped", "gp-unclipped"),
                            ("lowered by beliefs (old, kriging believer)", "gp-believer")):
            t = time.time()
            res[f"{label}|{k}"] = regret_runs(make(kind), "branin", seeds, 40, batch=k)
            print(f"[incumbent] k={k} {label}: {time.time() - t:.0f}s", file=sys.stderr, flush=True)
    _save("incumbent", {"seeds": seeds, "problem": "branin", "budget": 40, "results": res})


def part_startup(args) -> None:
    """Start-up size: the budget-aware default against the former fixed sizes (TPE 10; GP
    max(5, min(10, parameters + 1)), which the default equals from 40 trials on)."""
    seeds = H.tuning_seeds(args.seeds, offset=100)
    res: dict = {}
    plan = [("tpe", (12, 20, 100), ["branin", "hartmann6", "mixed", "tiny"], {"10 (old TPE default)": {"n_startup": 10}}),
            ("gp", (12, 20), ["branin", "hartmann6"], {"old GP rule": "old"})]
    for kind, budgets, problems, others in plan:
        for budget in budgets:
            for label, opts in [("default rule", {})] + list(others.items()):
                for name in problems:
                    options = opts
                    if opts == "old":
                        options = {"n_startup": max(5, min(10, len(PROBLEMS[name]().space.params) + 1))}
                    t = time.time()
                    runs = regret_runs(make(kind, **options), name, seeds[: args.seeds if kind == "tpe" else 3], budget)
                    res[f"{kind}|{budget}|{label}|{name}"] = runs
                    print(f"[startup] {kind} {budget} {label} {name}: {time.time() - t:.0f}s", file=sys.stderr, flush=True)
    _save("startup", {"seeds": seeds, "results": res})


def part_noise(args) -> None:
    from toolkit.searchers.gp import model

    seeds = H.tuning_seeds(args.seeds, offset=100)
    res: dict = {}
    default = model.NOISE_PRIOR
    for label, prior in (("loc -8, scale 2 (old)", (-8.0, 2.0)), ("loc -6, scale 3", (-6.0, 3.0)), ("loc -4, scale 3", (-4.0, 3.0))):
        model.NOISE_PRIOR = prior
        for name in ("noisy", "noisy_branin", "hartmann6"):
            t = time.time()
            res[f"{label}|{name}"] = regret_runs(make("gp"), name, seeds, args.budget)
            print(f"[noise] {label} {name}: {time.time() - t:.0f}s", file=sys.stderr, flush=True)
    model.NOISE_PRIOR = default
    _save("noise", {"seeds": seeds, "budget": args.budget, "results": res})


# TPE estimator variants (issue 10 item 3): label -> (searcher kind, TPESearcher options).
# "optuna" is Optuna's default TPE on the same tuning seeds, a reference, not a variant.
OLD_TPE = {"n_candidates": 64, "gamma": 0.15, "categorical_smoothing": 0.4, "conditional_split": "global"}
TPE_VARIANTS: dict[str, tuple[str, dict]] = {
    "old default": ("tpe-fixed-selector", OLD_TPE),
    "24 candidates": ("tpe-fixed-selector", {**OLD_TPE, "n_candidates": 24}),
    "gamma 10%": ("tpe-fixed-selector", {**OLD_TPE, "gamma": "linear"}),
    "fading categorical (all)": ("tpe", {**OLD_TPE, "categorical_smoothing": None}),
    "branch split": ("tpe-fixed-selector", {**OLD_TPE, "conditional_split": "branch"}),
    "fading branch selector": ("tpe", OLD_TPE),
    "new default (branch split + fading selector)": ("tpe", {}),
    "new default, 24 candidates": ("tpe", {"n_candidates": 24}),
    "new default, 32 candidates": ("tpe", {"n_candidates": 32}),
}
TPE_PROBLEMS = ["branin", "hartmann6", "mixed", "conditional", "noisy", "far", "normals"]


def part_tpe(args) -> None:
    """TPE estimator choices, regret at 50 and 100 evaluations; results merge into the saved file."""
    seeds = H.tuning_seeds(args.seeds, offset=100)
    saved = _load("tpe") or {}
    res: dict = saved.get("results", {}) if saved.get("seeds") == seeds else {}
    for label in args.variants or list(TPE_VARIANTS) + ["optuna"]:
        for name in args.problems or TPE_PROBLEMS:
            t = time.time()
            if label == "optuna":
                import optuna

                optuna.logging.set_verbosity(optuna.logging.ERROR)
                build = lambda p, s: H.optuna_adapter(optuna.samplers.TPESampler(seed=s), p)  # noqa: E731
            else:
                kind, options = TPE_VARIANTS[label]
                build = make(kind, **options)
            res[f"{label}|{name}"] = regret_runs(build, name, seeds, 100)
            print(f"[tpe] {label} {name}: {time.time() - t:.0f}s", file=sys.stderr, flush=True)
            _save("tpe", {"seeds": seeds, "results": res})


# Conditional problem: how many runs leave the broad "sgd" branch (regret floor 0.3) for the
# narrow, better "adam" branch; medians sit on that floor, so counts say more.
BRANCH_VARIANTS = ["old default", "branch split", "fading branch selector",
                   "new default (branch split + fading selector)", "new default, 24 candidates"]


def part_tpe_conditional(args) -> None:
    seeds = H.tuning_seeds(args.seeds, offset=100)
    res: dict = {}
    for label in BRANCH_VARIANTS:
        t = time.time()
        kind, options = TPE_VARIANTS[label]
        res[label] = regret_runs(make(kind, **options), "conditional", seeds, 100)
        print(f"[tpe_conditional] {label}: {time.time() - t:.0f}s", file=sys.stderr, flush=True)
    _save("tpe_conditional", {"seeds": seeds, "results": res})


CANDIDATE_VARIANTS = ["new default (branch split + fading selector)", "new default, 24 candidates"]


def part_tpe_candidates(args) -> None:
    """64 (ours) against 24 (Optuna's) EI candidates on more seeds: the 20-seed table is mixed."""
    seeds = H.tuning_seeds(args.seeds, offset=100)
    res: dict = {}
    for label in CANDIDATE_VARIANTS:
        kind, options = TPE_VARIANTS[label]
        for name in TPE_PROBLEMS:
            t = time.time()
            res[f"{label}|{name}"] = regret_runs(make(kind, **options), name, seeds, 100)
            print(f"[tpe_candidates] {label} {name}: {time.time() - t:.0f}s", file=sys.stderr, flush=True)
    _save("tpe_candidates", {"seeds": seeds, "results": res})


def _tpe_table(tp: dict, base: str = "old default") -> list[str]:
    """Median regret per variant and problem at 50 and 100, and the mean log10 ratio to the
    `base` variant over all problems and seeds (negative: better than the base)."""
    res = tp["results"]
    labels = list(dict.fromkeys(k.split("|")[0] for k in res))
    names = [n for n in TPE_PROBLEMS if any(f"{x}|{n}" in res for x in labels)]
    out = []
    for at in (50, 100):
        out += [f"### TPE variants, regret @{at} (median over {len(tp['seeds'])} seeds {tp['seeds'][0]}-{tp['seeds'][-1]})", "",
                "| variant | " + " | ".join(names) + f" | mean log10 ratio to {base} |",
                "|---" * (len(names) + 2) + "|"]
        for label in labels:
            cells, logs = [], []
            for n in names:
                key = f"{label}|{n}"
                if key not in res:
                    cells.append("-")
                    continue
                r = np.array([run[at - 1] for run in res[key]])
                cells.append(H._fmt(float(np.median(r))))
                base_runs = res.get(f"{base}|{n}")
                if base_runs is not None:
                    b = np.array([run[at - 1] for run in base_runs])
                    logs.extend(np.log10((r + 1e-4) / (b + 1e-4)))
            ratio = f"{np.mean(logs):+.3f}" if logs else "-"
            out.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
        out.append("")
    return out


# ---------------------------------------------------------------------- report
def _cell(runs: list[list[float]], at: int) -> str:
    r = np.array([run[min(at, len(run)) - 1] for run in runs])
    return f"{H._fmt(float(np.median(r)))} (max {H._fmt(float(np.max(r)))})"


def report() -> str:
    lines = ["# Tuning runs (tuning seeds only)", "",
             "Produced by `experiments/benchmarks/tune_searchers.py` (commands in its docstring). Seeds are",
             "`harness.TUNING_SEEDS` (below 200); the benchmark tables use `REPORTING_SEEDS` (from 5000).",
             "Cells: median simple regret over the seeds (max in brackets).", ""]
    inc = _load("incumbent")
    if inc:
        lines += [f"## GP incumbent with trials in flight (branin, {len(inc['seeds'])} seeds {inc['seeds'][0]}-{inc['seeds'][-1]})", "",
                  "| k in flight | incumbent | regret @20 | regret @40 |", "|---|---|---|---|"]
        for key, runs in inc["results"].items():
            label, k = key.split("|")
            lines.append(f"| {k} | {label} | {_cell(runs, 20)} | {_cell(runs, 40)} |")
        lines.append("")
    st = _load("startup")
    if st:
        lines += [f"## Start-up design size ({len(st['seeds'])} seeds {st['seeds'][0]}-{st['seeds'][-1]}; regret at the budget)", ""]
        keys = list(st["results"])
        combos = sorted({tuple(k.split("|")[:2]) for k in keys}, key=lambda c: (c[0], int(c[1])))
        labels = list(dict.fromkeys(k.split("|")[2] for k in keys))
        names = list(dict.fromkeys(k.split("|")[3] for k in keys))
        lines += ["| searcher | budget | problem | " + " | ".join(f"n_startup: {x}" for x in labels) + " |",
                  "|---" * (3 + len(labels)) + "|"]
        for kind, budget in combos:
            for name in names:
                keys = [f"{kind}|{budget}|{x}|{name}" for x in labels]
                if not any(k in st["results"] for k in keys):
                    continue
                cells = [_cell(st["results"][k], int(budget)) if k in st["results"] else "-" for k in keys]
                lines.append(f"| {kind} | {budget} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    nz = _load("noise")
    if nz:
        b = nz["budget"]
        lines += [f"## GP noise-variance prior (log-normal; {len(nz['seeds'])} seeds, budget {b})", "",
                  "| prior | problem | regret @50 | regret @budget |", "|---|---|---|---|"]
        for key, runs in nz["results"].items():
            label, name = key.split("|")
            lines.append(f"| {label} | {name} | {_cell(runs, 50)} | {_cell(runs, b)} |")
        lines.append("")
    tp = _load("tpe")
    if tp:
        lines += ["## TPE estimator (issue 10 item 3; options in `TPE_VARIANTS`)", ""] + _tpe_table(tp)
    tk = _load("tpe_candidates")
    if tk:
        lines += ["64 against 24 EI candidates on 40 seeds (`tpe_candidates`):", ""]
        lines += _tpe_table(tk, base="new default (branch split + fading selector)")
    tc = _load("tpe_conditional")
    if tc:
        seeds = tc["seeds"]
        lines += [f"### TPE on `conditional`: runs that reach the better branch ({len(seeds)} seeds {seeds[0]}-{seeds[-1]})", "",
                  "| variant | regret < 0.3 @50 | regret < 0.3 @100 | median @100 |", "|---|---|---|---|"]
        for label, runs in tc["results"].items():
            at = lambda b: np.array([run[b - 1] for run in runs])  # noqa: E731
            lines.append(f"| {label} | {int((at(50) < 0.3).sum())} | {int((at(100) < 0.3).sum())} | {H._fmt(float(np.median(at(100))))} |")
        lines.append("")
    if tp or tc:
        lines += [
            "Choice (TPE): the branch split and the fading branch selector are kept; they change proposals",
            "only on spaces with conditional branches (every other column above is identical to the old",
            "default) and together take conditional from 10 to 24 of 40 runs reaching the better branch",
            "(each alone: 14 and 10). 24 candidates (Optuna's) is not kept: better on branin, mixed,",
            "conditional and normals but worse at 100 on hartmann6, noisy and far, no overall gain at 100",
            "on 40 seeds. Gamma 10% and fading smoothing for every categorical are worse overall. Optuna's",
            "TPE on the same tuning seeds trails the old default at 100 on every problem but conditional",
            "and mixed.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["incumbent", "startup", "noise", "tpe", "tpe_conditional", "tpe_candidates", "report"])
    ap.add_argument("--variants", nargs="*", help="tpe: the TPE_VARIANTS labels to (re-)run ('optuna': the reference)")
    ap.add_argument("--problems", nargs="*", help="tpe: problems to (re-)run")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=60)
    args = ap.parse_args(argv)
    if args.part != "report":
        globals()[f"part_{args.part}"](args)
    md = report()
    (RESULTS / "tuning.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
