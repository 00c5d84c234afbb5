"""Peers that are not Ray schedulers, driven through their own ask/tell APIs in `mf_sim`'s terms.

- Optuna's TPESampler + HyperbandPruner: one Optuna trial per configuration, reported every
  epoch, pruned when the pruner says so (Optuna never pauses, so nothing is resumed).
- DEHB (`dehb`) and SMAC3's `MultiFidelityFacade` (`smac`): both hand out *jobs*, a
  configuration and a budget in epochs. A job for a configuration that already ran to a lower
  budget (a promotion in their successive halving) is charged only its extra epochs, as if
  the user's function resumed from a checkpoint kept per configuration; that is the same
  charging as a resumed Ray trial, and the most favourable reading for these peers.

DEHB and SMAC3 are optional: they pin numpy < 2 (DEHB) and pull dask, so they live in a
separate venv (see results/multifidelity.md); `available()` says which can be imported.

Every driver keeps N jobs (trials) in flight, one per simulated worker, for the same
simulated wall-clock budget, and returns an `mf_sim.Run`.
"""

from __future__ import annotations

import heapq
import importlib.util
import itertools
import tempfile
from typing import Any, Callable

from experiments.benchmarks.mf_sim import Run


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _space(task: Any):
    from toolkit.space.ray import from_ray

    return from_ray(task.param_space())


def _is_int(dist: Any) -> bool:
    return type(dist).__name__.lower().startswith("int") or bool(getattr(dist, "is_integer", False))


def config_space(task: Any, seed: int) -> tuple[Any, dict]:
    """The task's space as a ConfigSpace space, and the one-value parameters kept outside it
    (ConfigSpace refuses a range with one value, e.g. the digits table's single dropout)."""
    import ConfigSpace as CS

    cs = CS.ConfigurationSpace(seed=seed)
    fixed: dict = {}
    params = []
    for p in _space(task).params:
        d = p.dist
        if d.low == d.high:
            fixed[p.key] = int(d.low) if _is_int(d) else float(d.low)
        elif _is_int(d):
            params.append(CS.Integer(p.key, (int(d.low), int(d.high)), log=bool(d.log)))
        else:
            params.append(CS.Float(p.key, (float(d.low), float(d.high)), log=bool(d.log)))
    cs.add(params)
    return cs, fixed


# ---------------------------------------------------------------------- Optuna
def simulate_optuna(task: Any, n_workers: int, time_budget: float, seed: int, eta: int = 3) -> Run:
    """Optuna's TPESampler + HyperbandPruner with ask/tell, same workers, costs and budget."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {}
    for p in _space(task).params:
        d = p.dist
        if _is_int(d):
            dists[p.key] = optuna.distributions.IntDistribution(int(d.low), int(d.high))
        else:
            dists[p.key] = optuna.distributions.FloatDistribution(float(d.low), float(d.high))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=task.max_t,
                                                                      reduction_factor=eta))
    run = Run()
    events: list = []
    seq = itertools.count()
    now = 0.0

    def start() -> None:
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


# ---------------------------------------------------------------------- job-based peers (DEHB, SMAC3)
def simulate_jobs(task: Any, ask: Callable[[], tuple[Any, Any, dict, int] | None],
                  tell: Callable[[Any, float, int], None], n_workers: int, time_budget: float) -> Run:
    """N workers each running one job at a time. `ask()` gives (job, configuration key, config,
    budget in epochs), or None when the optimiser has nothing to hand out (the worker idles
    until a job ends); `tell(job, value, budget)` reports the value at that budget. A job is
    charged the epochs from the configuration's furthest checkpoint to its budget."""
    run = Run()
    events: list = []
    seq = itertools.count()
    trained: dict[Any, int] = {}  # configuration key -> epochs in its checkpoint
    tid_of: dict[Any, str] = {}
    now = 0.0
    idle = n_workers

    def fill() -> None:
        nonlocal idle
        while idle > 0:
            asked = ask()
            if asked is None:
                return
            idle -= 1
            job, key, config, budget = asked
            budget = max(1, min(task.max_t, int(budget)))
            if key not in tid_of:
                tid_of[key] = f"j{len(tid_of):05d}"
                run.trials += 1
                run.configs[tid_of[key]] = config
            begin_epoch = trained.get(key, 0)
            if 0 < begin_epoch < budget:
                run.resumes += 1
            extra = max(0, budget - begin_epoch)
            trained[key] = max(begin_epoch, budget)
            cost = extra * task.epoch_cost(config)
            heapq.heappush(events, (now + cost, next(seq), job, key, config, budget, extra, now))

    fill()
    while events:
        when, _, job, key, config, budget, extra, began = heapq.heappop(events)
        if when > time_budget:
            run.busy_s += time_budget - began
            for e in events:
                run.busy_s += max(0.0, time_budget - e[-1])
            now = time_budget
            break
        now = when
        run.busy_s += now - began
        run.epochs += extra
        value = task.value(config, budget)
        run.results.append((now, tid_of[key], budget, value))
        if budget >= task.max_t:
            run.stops[tid_of[key]] = budget
        tell(job, value, budget)
        idle += 1
        fill()
    run.end_time = now
    return run


def simulate_dehb(task: Any, n_workers: int, time_budget: float, seed: int, eta: int = 3) -> Run:
    """DEHB (Awad et al., 2021) at its defaults, asynchronous ask/tell, budgets 1..max_t epochs."""
    from dehb import DEHB

    cs, fixed = config_space(task, seed)
    # n_workers=1 only keeps DEHB from starting a Dask cluster; the workers are ours, and
    # DEHB's ask() hands out jobs while earlier ones are pending (its asynchronous mode).
    dehb = DEHB(cs=cs, f=None, min_fidelity=1, max_fidelity=task.max_t, eta=eta, n_workers=1, seed=seed,
                output_path=tempfile.mkdtemp(prefix="mf-dehb-"), save_freq="end", log_level="WARNING")

    def ask() -> tuple[Any, Any, dict, int]:
        job = dehb.ask()
        config = dict(job["config"]) | fixed
        return job, job["config_id"], config, int(round(job["fidelity"]))

    def tell(job: Any, value: float, budget: int) -> None:
        dehb.tell(job, {"fitness": float(value), "cost": float(budget)})

    return simulate_jobs(task, ask, tell, n_workers, time_budget)


def simulate_smac(task: Any, n_workers: int, time_budget: float, seed: int, eta: int = 3) -> Run:
    """SMAC3's MultiFidelityFacade (random forest + Hyperband intensifier) at its defaults."""
    from smac import MultiFidelityFacade, Scenario
    from smac.main.exceptions import ConfigurationSpaceExhaustedException
    from smac.runhistory.dataclasses import TrialValue

    cs, fixed = config_space(task, seed)
    scenario = Scenario(cs, deterministic=True, n_trials=10**7, min_budget=1, max_budget=task.max_t, seed=seed,
                        output_directory=tempfile.mkdtemp(prefix="mf-smac-"))
    smac = MultiFidelityFacade(scenario, target_function=lambda config, seed, budget: 0.0,
                               intensifier=MultiFidelityFacade.get_intensifier(scenario, eta=eta),
                               overwrite=True, logging_level=40)

    def ask() -> tuple[Any, Any, dict, int] | None:
        try:
            info = smac.ask()
        except (ConfigurationSpaceExhaustedException, StopIteration):
            return None  # a finite space SMAC has used up (the digits table): it hands out nothing more
        config = dict(info.config) | fixed
        return info, tuple(sorted(dict(info.config).items())), config, int(round(info.budget))

    def tell(info: Any, value: float, budget: int) -> None:
        smac.tell(info, TrialValue(cost=float(value), time=float(budget)), save=False)

    return simulate_jobs(task, ask, tell, n_workers, time_budget)
