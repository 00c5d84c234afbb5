"""Multi-fidelity benchmark: our ASHA / Hyperband / BOHB against Ray's and Optuna's, in `mf_sim`.

Every method is driven through its own API against N simulated workers on the same tasks
(`mf_tasks`) with the same simulated wall-clock budget; results go to
results/multifidelity_runs.jsonl (one line per run, appended; finished runs are skipped on a
rerun) and the tables to results/multifidelity.md.

    nice -n 10 python -m experiments.benchmarks.mf_bench --workers 1 8 32
    python -m experiments.benchmarks.mf_bench --table          # tables from the runs file only
    python -m experiments.benchmarks.mf_bench --decision-cost  # per-decision cost, 1,000 live trials

Regret is that of the best configuration trained to max_t so far (a partly trained model at a
low fidelity of Branin / Hartmann is not the objective, so only max_t results count). The
target is the regret of the best 2% of 20,000 random configurations (every configuration of
the digits table).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from experiments.benchmarks.mf_sim import Run, incumbent_regret, simulate, time_to_regret, utilisation
from experiments.benchmarks.mf_tasks import Branin, DigitsTable, Hartmann, DIGITS_TABLE

HERE = Path(__file__).resolve().parent
RUNS = HERE / "results" / "multifidelity_runs.jsonl"
TABLE = HERE / "results" / "multifidelity.md"
MAX_T = 27
ETA = 3
BUDGET_MAX_T_UNITS = 8  # simulated wall clock: 8 full trainings' worth of time, whatever N
# The digits table has only 64 configurations: at 8 units, 8 workers could train every one to
# max_t and every method would find the best; 2 units keep the search a search.
TASK_BUDGET_UNITS = {"digits_mlp": 2}
REPORT_SEEDS = (100, 101, 102, 103, 104)  # never used while building the schedulers
TARGET_QUANTILE = 0.02


def make_tasks(names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        if name == "branin":
            out[name] = Branin(MAX_T)
        elif name == "hartmann6":
            out[name] = Hartmann(6, MAX_T)
        elif name == "hartmann3":
            out[name] = Hartmann(3, MAX_T)
        elif name == "digits_mlp" and DIGITS_TABLE.exists():
            out[name] = DigitsTable()
    return out


def target_regret(task: Any) -> float:
    if isinstance(task, DigitsTable):
        regrets = task.curves[:, -1] - task.optimum
    else:
        from toolkit.space.ray import from_ray

        space = from_ray(task.param_space())
        rng = np.random.default_rng(12345)
        regrets = np.array([task.regret(space.to_config(space.sample(rng))) for _ in range(20_000)])
    return float(np.quantile(regrets, TARGET_QUANTILE))


# ---------------------------------------------------------------------- methods
def _ours_asha(variant: str) -> Callable:
    def make(task: Any, seed: int):
        from toolkit.schedulers.asha import ASHA

        return ASHA(task.metric, "min", max_t=task.max_t, reduction_factor=ETA, variant=variant, persist=False)
    return make


def _ours_hyperband(task: Any, seed: int):
    from toolkit.schedulers.hyperband import Hyperband

    return Hyperband(task.metric, "min", max_t=task.max_t, reduction_factor=ETA, persist=False)


def _ray_asha(task: Any, seed: int):
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(metric=task.metric, mode="min", max_t=task.max_t, grace_period=1, reduction_factor=ETA)


def _ray_hyperband(task: Any, seed: int):
    from ray.tune.schedulers import HyperBandScheduler

    return HyperBandScheduler(metric=task.metric, mode="min", max_t=task.max_t, reduction_factor=ETA)


def _ray_hb_bohb(task: Any, seed: int):
    from ray.tune.schedulers import HyperBandForBOHB

    return HyperBandForBOHB(metric=task.metric, mode="min", max_t=task.max_t, reduction_factor=ETA)


def _fifo(task: Any, seed: int):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _random(seed: int):
    from toolkit.searchers import RandomSearcher

    return RandomSearcher(seed=seed)


def _tpe(seed: int):
    from toolkit.searchers.tpe import TPESearcher

    return TPESearcher(seed=seed)


def _tpe_final_values(seed: int):
    """tunekit before this work: TPE fitted on whatever value a trial last reported."""
    from toolkit.searchers.tpe import TPESearcher

    return TPESearcher(seed=seed, fit_budget=None)


def _tune_bohb(seed: int):
    from ray.tune.search.bohb import TuneBOHB

    return TuneBOHB(seed=seed)


# name -> (searcher factory, scheduler factory, ray's pending-queue length for that searcher)
METHODS: dict[str, tuple[Callable, Callable, int]] = {
    "random + FIFO": (_random, _fifo, 1),
    "random + Ray ASHA": (_random, _ray_asha, 1),
    "random + Ray HyperBand": (_random, _ray_hyperband, 1),
    "TuneBOHB + Ray HyperBandForBOHB": (_tune_bohb, _ray_hb_bohb, 1),
    "our TPE + Ray ASHA (tunekit before)": (_tpe_final_values, _ray_asha, 1),
    "random + our ASHA stop": (_random, _ours_asha("stop"), 1),
    "random + our ASHA promote": (_random, _ours_asha("promote"), 1),
    "random + our Hyperband": (_random, _ours_hyperband, 1),
    "our BOHB (TPE + our Hyperband)": (_tpe, _ours_hyperband, 1),
    "our async BOHB (TPE + our ASHA promote)": (_tpe, _ours_asha("promote"), 1),
    "Optuna TPE + HyperbandPruner": (None, None, 0),  # driven through Optuna's ask/tell
}


def simulate_optuna(task: Any, n_workers: int, time_budget: float, seed: int) -> Run:
    """Optuna's TPESampler + HyperbandPruner with ask/tell, same workers, costs and budget."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from toolkit.space.ray import from_ray

    space = from_ray(task.param_space())
    dists = {}
    for p in space.params:
        d = p.dist
        if type(d).__name__.lower().startswith("int") or getattr(d, "is_integer", False):
            dists[p.key] = optuna.distributions.IntDistribution(int(d.low), int(d.high))
        else:
            dists[p.key] = optuna.distributions.FloatDistribution(float(d.low), float(d.high))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=task.max_t,
                                                                      reduction_factor=ETA))
    run = Run()
    events: list = []
    seq = itertools.count()
    now = 0.0

    def start():
        trial = study.ask(dists)
        config = dict(trial.params)
        tid = f"o{trial.number:05d}"
        run.trials += 1
        run.configs[tid] = config
        heapq.heappush(events, (now + task.epoch_cost(config), next(seq), trial, tid, config, 1, now))

    for _ in range(n_workers):
        start()
    while events:
        when, _, trial, tid, config, epoch, began = heapq.heappop(events)
        if when > time_budget:
            run.busy_s += time_budget - began
            for _, _, _, _, _, _, b in events:
                run.busy_s += max(0.0, time_budget - b)
            now = time_budget
            break
        now = when
        run.busy_s += now - began
        run.epochs += 1
        value = task.value(config, epoch)
        run.results.append((now, tid, epoch, value))
        trial.report(value, epoch)
        if epoch >= task.max_t:
            study.tell(trial, value)
            run.stops[tid] = epoch
            start()
        elif trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            run.stops[tid] = epoch
            start()
        else:
            heapq.heappush(events, (now + task.epoch_cost(config), next(seq), trial, tid, config, epoch + 1, now))
    run.end_time = now
    return run


def run_one(task: Any, method: str, n_workers: int, seed: int) -> dict:
    budget = TASK_BUDGET_UNITS.get(task.name, BUDGET_MAX_T_UNITS) * task.max_t
    started = time.process_time()
    if method.startswith("Optuna"):
        run = simulate_optuna(task, n_workers, budget, seed)
    else:
        make_searcher, make_scheduler, max_pending = METHODS[method]
        run = simulate(task, make_scheduler(task, seed), make_searcher(seed), n_workers, budget,
                       max_pending=max_pending)
    cpu = time.process_time() - started
    checkpoints = {f"{f:.2f}": incumbent_regret(task, run, f * budget) for f in (0.25, 0.5, 1.0)}
    return {
        "task": task.name, "method": method, "workers": n_workers, "seed": seed, "budget": budget,
        "regret": checkpoints, "time_to_target": time_to_regret(task, run, target_regret_cached(task)),
        "epochs": run.epochs, "trials": run.trials, "resumes": run.resumes, "stalled": run.stalled,
        "utilisation": utilisation(run, n_workers), "scheduler_ms_per_call": 1000 * run.scheduler_s / max(1, run.scheduler_calls),
        "cpu_s": round(cpu, 2),
    }


_TARGETS: dict[str, float] = {}


def target_regret_cached(task: Any) -> float:
    if task.name not in _TARGETS:
        _TARGETS[task.name] = target_regret(task)
    return _TARGETS[task.name]


def load_runs() -> list[dict]:
    if not RUNS.exists():
        return []
    return [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------- decision cost
def decision_cost(n_trials: int = 1000, repeats: int = 3) -> dict[str, float]:
    """Median ms per scheduler call (on_trial_result at a rung + choose_trial_to_run) with
    `n_trials` live trials, all having reported at the first rung."""
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler

    from experiments.benchmarks.mf_sim import SimController, SimSearchAlg, SimTrial
    from toolkit.schedulers.asha import ASHA
    from toolkit.schedulers.hyperband import Hyperband
    from toolkit.searchers import RandomSearcher

    task = Hartmann(6, 81)
    makers = {
        "our ASHA promote": lambda: ASHA("loss", "min", max_t=81, variant="promote", persist=False),
        "our ASHA stop": lambda: ASHA("loss", "min", max_t=81, variant="stop", persist=False),
        "our Hyperband": lambda: Hyperband("loss", "min", max_t=81, persist=False),
        "Ray ASHAScheduler": lambda: ASHAScheduler(metric="loss", mode="min", max_t=81),
        "Ray HyperBandScheduler": lambda: HyperBandScheduler(metric="loss", mode="min", max_t=81),
    }
    out = {}
    rng = np.random.default_rng(0)
    for name, make in makers.items():
        per_call = []
        for _ in range(repeats):
            sched = make()
            searcher = RandomSearcher(seed=0)
            searcher.set_search_properties("loss", "min", task.param_space())
            ctrl = SimController(task, sched, SimSearchAlg(searcher, 10**6), n_trials, 1e9)
            trials = [SimTrial(f"t{i:05d}", {}) for i in range(n_trials)]
            for trial in trials:
                ctrl.trials.append(trial)
                sched.on_trial_add(ctrl, trial)
                trial.status = "RUNNING"
            start = time.process_time()  # CPU time: the machine is shared, wall time is not ours
            calls = 0
            for trial in trials:
                d = sched.on_trial_result(ctrl, trial, {"loss": float(rng.random()), "training_iteration": 1})
                if d == "PAUSE":
                    trial.status = "PAUSED"
                elif d == "STOP":
                    trial.status = "TERMINATED"
                sched.choose_trial_to_run(ctrl)
                calls += 2
            per_call.append(1000 * (time.process_time() - start) / calls)
        out[name] = statistics.median(per_call)
    return out


# ---------------------------------------------------------------------- deterministic mode's cost
def deterministic_cost(n_workers: int = 8, num_samples: int = 200, seeds: tuple[int, ...] = REPORT_SEEDS) -> dict:
    """Same trials (random search), ASHA stop vs ASHA stop deterministic, epoch times varying
    per trial (exponential, mean 1): how much longer the sweep takes and how busy workers are."""
    from toolkit.schedulers.asha import ASHA
    from toolkit.searchers import RandomSearcher

    task = Hartmann(6, MAX_T)
    rows = {"asynchronous": [], "deterministic": []}
    for seed in seeds:
        for name, det in (("asynchronous", False), ("deterministic", True)):
            rng = np.random.default_rng(seed)
            speed: dict[str, float] = {}

            def noise(trial: Any, epoch: int, rng=rng, speed=speed) -> float:
                return speed.setdefault(trial.trial_id, float(rng.exponential(1.0)))

            run = simulate(task, ASHA(task.metric, "min", max_t=MAX_T, variant="stop", deterministic=det, persist=False),
                           RandomSearcher(seed=seed), n_workers, 1e12, num_samples=num_samples, order_noise=noise)
            rows[name].append({"makespan": run.end_time, "utilisation": utilisation(run, n_workers),
                               "epochs": run.epochs, "regret": incumbent_regret(task, run), "stalled": run.stalled})
    return {name: {k: _median([r[k] for r in v]) for k in ("makespan", "utilisation", "epochs", "regret")}
            for name, v in rows.items()} | {"workers": n_workers, "num_samples": num_samples, "seeds": list(seeds)}


# ---------------------------------------------------------------------- tables
def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _fmt(v: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "never"
    return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"


def tables(runs: list[dict], decision: dict[str, float] | None = None, notes: str = "") -> str:
    lines = ["# Multi-fidelity schedulers: replay-simulator benchmark", "",
             "Produced by `nice -n 10 python -m experiments.benchmarks.mf_bench` (see its docstring); raw runs in "
             "`multifidelity_runs.jsonl`. Every method is driven through its own API (Ray's scheduler API as Ray's "
             "controller drives it, Optuna's ask/tell) against N simulated workers; a resumed trial is charged only "
             "its extra epochs. Budget: the same simulated wall clock for every N "
             f"({BUDGET_MAX_T_UNITS} x max_t epoch-times; digits_mlp {TASK_BUDGET_UNITS['digits_mlp']} x, its table "
             f"has only 64 configurations; max_t = {MAX_T}, eta = {ETA}). Regret: the best configuration "
             "trained to max_t so far. Seeds: " + ", ".join(map(str, sorted({r['seed'] for r in runs}))) + ".", ""]
    if notes:
        lines += [notes, ""]
    for task in sorted({r["task"] for r in runs}):
        for n in sorted({r["workers"] for r in runs if r["task"] == task}):
            rows = [r for r in runs if r["task"] == task and r["workers"] == n]
            if not rows:
                continue
            lines += [f"## {task}, N = {n} workers", "",
                      "| method | median regret @25% / 50% / 100% budget | median time to target (s) | reached target | "
                      "utilisation | epochs | trials | resumes | stalled | seeds |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
            for m in methods:
                mine = [r for r in rows if r["method"] == m]
                reg = [_fmt(_median([r["regret"][k] for r in mine])) for k in ("0.25", "0.50", "1.00")]
                ttt = [r["time_to_target"] for r in mine]
                reached = sum(1 for t in ttt if math.isfinite(t))
                lines.append(
                    f"| {m} | {' / '.join(reg)} | {_fmt(_median(ttt))} | {reached}/{len(mine)} | "
                    f"{_median([r['utilisation'] for r in mine]):.3f} | {_median([r['epochs'] for r in mine]):.0f} | "
                    f"{_median([r['trials'] for r in mine]):.0f} | {_median([r['resumes'] for r in mine]):.0f} | "
                    f"{sum(r['stalled'] for r in mine)} | {len(mine)} |")
            lines.append("")
    ours = ["our BOHB (TPE + our Hyperband)", "our async BOHB (TPE + our ASHA promote)", "random + our ASHA promote"]
    present = {r["method"] for r in runs}
    peers = [m for m in METHODS if m not in ours and m in present]
    final = {(r["task"], r["workers"], r["seed"], r["method"]): r["regret"]["1.00"] for r in runs}
    lines += ["## Head to head: final regret, share of (task, N, seed) where ours is lower (ties count half)", "",
              "| ours \\ peer | " + " | ".join(peers) + " |", "|---|" + "---|" * len(peers)]
    for mine in ours:
        cells = []
        for peer in peers:
            wins = total = 0.0
            for (task, n, seed, method), v in final.items():
                if method != mine or (task, n, seed, peer) not in final:
                    continue
                w = final[(task, n, seed, peer)]
                total += 1
                wins += 1.0 if v < w else 0.5 if v == w else 0.0
            cells.append(f"{wins / total:.2f} ({int(total)})" if total else "-")
        lines.append(f"| {mine} | " + " | ".join(cells) + " |")
    lines.append("")
    det_file = HERE / "results" / "multifidelity_deterministic_cost.json"
    if det_file.exists():
        det = json.loads(det_file.read_text())
        lines += ["## The price of `deterministic: true`", "",
                  "`python -m experiments.benchmarks.mf_bench --deterministic-cost`: random search, 200 trials, ASHA "
                  "stop, Hartmann6, epoch times drawn per trial (exponential, mean 1), medians over the report seeds.", "",
                  "| workers | mode | makespan (s) | utilisation | epochs | regret |", "|---|---|---|---|---|---|"]
        for key, v in det.items():
            for mode in ("asynchronous", "deterministic"):
                m = v[mode]
                lines.append(f"| {key} | {mode} | {m['makespan']:.0f} | {m['utilisation']:.3f} | {m['epochs']:.0f} | "
                             f"{_fmt(m['regret'])} |")
        lines.append("")
    if decision:
        lines += ["## Per-decision cost, 1,000 live trials", "",
                  "`python -m experiments.benchmarks.mf_bench --decision-cost`: median ms per scheduler call "
                  "of CPU (a rung result, then choose_trial_to_run) while 1,000 trials report at the first rung.", "",
                  "| scheduler | ms per call |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in decision.items()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["branin", "hartmann6", "digits_mlp"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(REPORT_SEEDS))
    parser.add_argument("--methods", nargs="+", default=None, help="substrings of method names")
    parser.add_argument("--table", action="store_true", help="only rebuild the tables")
    parser.add_argument("--decision-cost", action="store_true")
    parser.add_argument("--deterministic-cost", action="store_true")
    args = parser.parse_args()
    if args.decision_cost:
        cost = decision_cost()
        print(json.dumps(cost, indent=1))
        (HERE / "results" / "multifidelity_decision_cost.json").write_text(json.dumps(cost, indent=1))
        return
    if args.deterministic_cost:
        cost = {f"N={n}": deterministic_cost(n) for n in (8, 32)}
        print(json.dumps(cost, indent=1))
        (HERE / "results" / "multifidelity_deterministic_cost.json").write_text(json.dumps(cost, indent=1))
        return
    if not args.table:
        done = {(r["task"], r["method"], r["workers"], r["seed"]) for r in load_runs()}
        methods = [m for m in METHODS if args.methods is None or any(s in m for s in args.methods)]
        tasks = make_tasks(args.tasks)
        RUNS.parent.mkdir(parents=True, exist_ok=True)
        for n in args.workers:
            for seed in args.seeds:
                for name, task in tasks.items():
                    for method in methods:
                        if (name, method, n, seed) in done:
                            continue
                        row = run_one(task, method, n, seed)
                        with RUNS.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        print(f"{name} N={n} seed={seed} {method}: regret {row['regret']['1.00']:.4g} "
                              f"ttt {row['time_to_target']:.4g} ({row['cpu_s']} s CPU)", flush=True)
    cost_file = HERE / "results" / "multifidelity_decision_cost.json"
    decision = json.loads(cost_file.read_text()) if cost_file.exists() else None
    notes_file = HERE / "results" / "multifidelity_notes.md"
    notes = notes_file.read_text() if notes_file.exists() else ""
    TABLE.write_text(tables(load_runs(), decision, notes))
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
