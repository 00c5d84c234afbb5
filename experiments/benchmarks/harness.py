"""Ask/tell benchmark harness shared by the searcher benchmarks.

An *adapter* is one optimiser instance for one run: `ask()` gives a (token, nested config)
pair, `tell(token, value)` returns the objective value (None = failed trial). `run` keeps
`batch` asks outstanding, the way Tune runs k trials at once: k suggestions are asked before
any result returns, then each finished trial (oldest first: equal run times) is told and
replaced by one new ask while the other k - 1 are still pending (asynchronous, not
synchronous batches).

Seeds: `TUNING_SEEDS` are the only seeds any default of our searchers was chosen on (the
tuning script `tune_searchers.py` and earlier tuning used seeds below 200);
`REPORTING_SEEDS` are used only for the reported tables and were never looked at while
choosing anything.

Adapters here: any Ray Tune `Searcher` (driven exactly as Tune drives it), native Optuna
(ask/tell on a study, so pending trials are RUNNING and constant-liar sees them) and native
hyperopt (the Trials/Domain ask/tell that Ray's HyperOptSearch also uses).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Protocol

import numpy as np

from experiments.benchmarks.problems import Problem
from toolkit.space.params import Categorical, Float, Int, Normal
from toolkit.space.space import SearchSpace

TUNING_SEEDS: tuple[int, ...] = tuple(range(0, 200))
REPORTING_SEEDS: tuple[int, ...] = tuple(range(5000, 5100))


def reporting_seeds(n: int) -> list[int]:
    """The first `n` reporting seeds (never used while tuning)."""
    return list(REPORTING_SEEDS[:n])


def tuning_seeds(n: int, offset: int = 0) -> list[int]:
    return list(TUNING_SEEDS[offset : offset + n])


class Adapter(Protocol):
    def ask(self) -> tuple[Any, dict] | None:  # None: the optimiser has nothing more to try
        ...

    def tell(self, token: Any, value: float | None) -> None:
        ...


# ---------------------------------------------------------------------- Ray Tune searchers
class _RaySearcherAdapter:
    """Drives a Ray `Searcher` with metric "loss", mode "min", as Tune's SearchGenerator does."""

    def __init__(self, searcher: Any, problem: Problem) -> None:
        from ray.tune.search import Searcher

        from toolkit.space.ray import to_ray

        self.searcher = searcher
        self._finished = Searcher.FINISHED
        self._ids = itertools.count()
        self._config = to_ray(problem.space)
        self._started = False

    def start(self, num_samples: int) -> None:
        # Tune hands over metric, mode, param_space and num_samples; a searcher that already
        # has a space answers False, and Tune then only checks the param_space holds no
        # unresolved domains.
        if not self.searcher.set_search_properties("loss", "min", self._config, num_samples=num_samples):
            self.searcher.set_search_properties("loss", "min", {}, num_samples=num_samples)
        self._started = True

    def ask(self) -> tuple[Any, dict] | None:
        if not self._started:
            self.start(None)  # type: ignore[arg-type]
        trial_id = f"t{next(self._ids):05d}"
        config = self.searcher.suggest(trial_id)
        if config is None or config == self._finished:
            return None
        return trial_id, config

    def tell(self, token: Any, value: float | None) -> None:
        if value is None:
            self.searcher.on_trial_complete(token, result=None, error=True)
            return
        result = {"loss": value, "training_iteration": 1}
        self.searcher.on_trial_result(token, result)
        self.searcher.on_trial_complete(token, result=result)


def ray_searcher_adapter(searcher: Any, problem: Problem) -> Adapter:
    return _RaySearcherAdapter(searcher, problem)


# ---------------------------------------------------------------------- native Optuna
def _optuna_suggest(trial: Any, space: SearchSpace) -> dict:
    """Define-by-run over our space: only active parameters are suggested (conditionals too)."""
    flat: dict = {}
    for p in space.params:  # parents precede children, so activity is known in time
        if not space.is_active(p.key, flat):
            continue
        d = p.dist
        if isinstance(d, Categorical):
            flat[p.key] = trial.suggest_categorical(p.key, list(range(d.n_options)))
        elif isinstance(d, Int):
            flat[p.key] = trial.suggest_int(p.key, int(d.low), int(d.high), step=int(d.step), log=d.log)
        elif isinstance(d, Float):
            if d.q is not None and not d.log:
                lo, hi = d.grid()[0], d.grid()[-1]
                flat[p.key] = trial.suggest_float(p.key, lo, hi, step=d.q)
            else:  # Optuna has no quantised log floats: sample on the log scale, then snap
                flat[p.key] = trial.suggest_float(p.key, d.low, d.high, log=d.log)
        elif isinstance(d, Normal):  # Optuna has no unbounded prior: use the +-6 sd box
            lo, hi = d.internal_bounds
            flat[p.key] = trial.suggest_float(p.key, lo, hi)
    return space.to_config(space.canonical(flat))


class _OptunaAdapter:
    def __init__(self, sampler: Any, problem: Problem) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.space = problem.space

    def ask(self) -> tuple[Any, dict]:
        trial = self.study.ask()
        return trial, _optuna_suggest(trial, self.space)

    def tell(self, token: Any, value: float | None) -> None:
        if value is None:
            self.study.tell(token, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(token, value)


def optuna_adapter(sampler: Any, problem: Problem) -> Adapter:
    return _OptunaAdapter(sampler, problem)


# ---------------------------------------------------------------------- native hyperopt
class _HyperoptAdapter:
    """hyperopt's own ask/tell: new trial docs from `algo`, results written back into Trials."""

    def __init__(self, problem: Problem, seed: int, algo: Callable | None = None) -> None:
        import hyperopt

        from toolkit.space.hyperopt import to_hyperopt

        self.hp = hyperopt
        self.algo = algo or hyperopt.tpe.suggest
        self.space = to_hyperopt(problem.space)
        self.domain = hyperopt.Domain(lambda config: 0.0, self.space)
        self.trials = hyperopt.Trials()
        self.rng = np.random.default_rng(seed)

    def ask(self) -> tuple[Any, dict]:
        hp = self.hp
        tid = self.trials.new_trial_ids(1)
        self.trials.refresh()
        docs = self.algo(tid, self.domain, self.trials, int(self.rng.integers(2**31 - 1)))
        self.trials.insert_trial_docs(docs)
        self.trials.refresh()
        doc = docs[0]
        vals = hp.base.spec_from_misc(doc["misc"])
        return doc["tid"], hp.space_eval(self.space, vals)

    def tell(self, token: Any, value: float | None) -> None:
        hp = self.hp
        for doc in self.trials._dynamic_trials:
            if doc["tid"] == token:
                doc["state"] = hp.JOB_STATE_DONE
                doc["result"] = {"loss": value, "status": hp.STATUS_OK} if value is not None else {"status": hp.STATUS_FAIL}
                break
        self.trials.refresh()


def hyperopt_adapter(problem: Problem, seed: int, algo: Callable | None = None) -> Adapter:
    return _HyperoptAdapter(problem, seed, algo)


# ---------------------------------------------------------------------- running
def run(
    make_adapter: Callable[[Problem, int], Adapter],
    problem: Problem,
    budget: int,
    seed: int,
    batch: int = 1,
) -> np.ndarray:
    """Objective values in evaluation order (noise-free ones for noisy problems).

    `batch` asks stay outstanding: the first `batch` are asked before any tell, then the
    oldest is told and replaced. A run that the optimiser ends early (exhausted finite space)
    returns fewer values.
    """
    if problem.reseed is not None:
        problem.reseed(seed)
    adapter = make_adapter(problem, seed)
    if hasattr(adapter, "start"):
        adapter.start(budget)  # what Tune tells a searcher: num_samples
    values: list[float] = []
    outstanding: list[tuple[Any, dict]] = []
    asked = 0
    done = False
    while len(values) < budget:
        while not done and asked < budget and len(outstanding) < batch:
            item = adapter.ask()
            if item is None:
                done = True
                break
            outstanding.append(item)
            asked += 1
        if not outstanding:
            break
        token, config = outstanding.pop(0)
        try:
            value = float(problem.objective(config))
        except Exception:  # noqa: BLE001 - a failing trial is a result the optimiser must take
            value = math.nan
        adapter.tell(token, value if math.isfinite(value) else None)
        truth = problem.true_objective(config) if problem.true_objective is not None else value
        values.append(truth)
    return np.asarray(values, dtype=float)


def best_so_far(values: np.ndarray, budget: int) -> float:
    v = values[:budget]
    v = v[np.isfinite(v)]
    return float(v.min()) if len(v) else math.inf


def regrets(
    results: dict[str, dict[str, list[np.ndarray]]], problems: dict[str, Problem], budget: int
) -> dict[str, dict[str, np.ndarray]]:
    """Simple regret per peer, problem and seed at `budget` (optimum unknown: best any run found)."""
    out: dict[str, dict[str, np.ndarray]] = {peer: {} for peer in results}
    names = sorted({name for per in results.values() for name in per})
    for name in names:
        opt = problems[name].optimum
        if opt is None:
            opt = min(best_so_far(v, len(v)) for per in results.values() for v in per.get(name, []))
        for peer, per in results.items():
            if name in per:
                out[peer][name] = np.array([best_so_far(v, budget) - opt for v in per[name]])
    return out


def _rank(values: list[float]) -> list[float]:
    """Ranks 1..n with ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "inf"
    if x == 0:
        return "0"
    return f"{x:.3g}" if abs(x) >= 1e-3 else f"{x:.1e}"


def summarize(
    results: dict[str, dict[str, list[np.ndarray]]],
    budgets: list[int],
    problems: dict[str, Problem],
) -> str:
    """Markdown: per budget, median [IQR] simple regret and solved fraction; then mean rank.

    Mean rank: on each problem, peers are ranked by median regret (ties share a rank), and
    the ranks are averaged over the problems a peer ran. Lower is better.
    """
    peers = list(results)
    names = [n for n in problems if any(n in results[p] for p in peers)]
    lines: list[str] = []
    for budget in budgets:
        reg = regrets(results, problems, budget)
        lines.append(f"### Simple regret after {budget} evaluations: median [25%, 75%] (solved fraction)\n")
        lines.append("| problem (threshold) | " + " | ".join(peers) + " |")
        lines.append("|---" * (len(peers) + 1) + "|")
        rank_sum = {p: 0.0 for p in peers}
        rank_n = {p: 0 for p in peers}
        for name in names:
            present = [p for p in peers if name in reg[p]]
            medians = [float(np.median(reg[p][name])) for p in present]
            ranks = dict(zip(present, _rank(medians)))
            best = min(medians)
            cells = []
            for p in peers:
                if p not in present:
                    cells.append("n/a")
                    continue
                r = reg[p][name]
                q25, med, q75 = np.percentile(r, [25, 50, 75])
                solved = float(np.mean(r <= problems[name].threshold))
                cell = f"{_fmt(med)} [{_fmt(q25)}, {_fmt(q75)}] ({solved:.0%})"
                cells.append(f"**{cell}**" if med == best else cell)
                rank_sum[p] += ranks[p]
                rank_n[p] += 1
            seeds = max(len(results[p][name]) for p in present)
            lines.append(f"| {name} ({_fmt(problems[name].threshold)}, {seeds} seeds) | " + " | ".join(cells) + " |")
        lines.append(
            "| **mean rank** | "
            + " | ".join(f"**{rank_sum[p] / rank_n[p]:.2f}**" if rank_n[p] else "n/a" for p in peers)
            + " |"
        )
        lines.append("")
    return "\n".join(lines)
