"""BOHB: TPE fitted on the largest budget with enough results; the searcher/scheduler seams."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.benchmarks.mf_sim import simulate
from experiments.benchmarks.mf_tasks import Branin
from toolkit.schedulers.asha import ASHA
from toolkit.schedulers.hyperband import Hyperband
from toolkit.searchers import RandomSearcher
from toolkit.searchers.base import Observation
from toolkit.searchers.tpe import TPESearcher
from toolkit.searchers.tpe.budgets import enough, largest_fit_budget, n_good, rung_budgets, set_rung_budgets
from toolkit.space import parse_space

ROOT = Path(__file__).resolve().parents[1]


def test_bohb_budget_rule_needs_more_than_d_good_and_bad_points():
    d = 2
    assert n_good(20, d) == 3 and n_good(40, d) == 6  # max(d + 1, 15%)
    assert not enough(5, d) and enough(6, d)  # 6 results: 3 good, 3 bad > d
    assert largest_fit_budget({1.0: 30, 3.0: 8, 9.0: 4}, d) == 3.0
    assert largest_fit_budget({1.0: 5}, d) is None


def _bohb_searcher_on_unit_square() -> TPESearcher:
    return TPESearcher(parse_space({"x": {"type": "uniform", "low": 0, "high": 1},
                                    "y": {"type": "uniform", "low": 0, "high": 1}}),
                       metric="loss", mode="min", seed=0, fit_budget="largest")


def _searcher_with_history() -> TPESearcher:
    """Budget 1: good results near x=0.1; budget 3: good results near x=0.9; budget 9: too few."""
    s = _bohb_searcher_on_unit_square()
    rng = np.random.default_rng(0)
    for i in range(30):
        x, y = float(rng.random()), float(rng.random())
        history = [(1.0, abs(x - 0.1))]
        if i < 12:
            history.append((3.0, abs(x - 0.9)))
        if i < 3:
            history.append((9.0, abs(x - 0.5)))
        s.observations.append(Observation({"x": x, "y": y}, history[-1][1], f"t{i}", history))
    return s


def test_bohb_fits_on_the_largest_budget_with_enough_points():
    s = _searcher_with_history()
    proposals = []
    for i in range(60):
        s.last_fit_budget = None
        flat = s.suggest(f"new{i}")
        if s.last_fit_budget is not None:  # a model proposal (a third are random)
            assert s.last_fit_budget == 3.0
            proposals.append(flat["x"])
    assert 25 <= len(proposals) <= 55
    assert np.median(proposals) > 0.6  # it follows budget 3 (good near 0.9), not budget 1 (near 0.1)


def test_told_the_rungs_bohb_fits_on_the_largest_rung_below_max_t():
    """Budget 9 (a rung): good near x = 0.1. Budget 14 (an epoch between rungs, passed only by
    trials still running) and budget 27 (max_t): good near x = 0.9, with enough points at each.
    Told the rungs 1, 3, 9 (as our schedulers do), the model follows budget 9; the paper's
    rule over every budget would follow 27."""
    s = _bohb_searcher_on_unit_square()
    rng = np.random.default_rng(1)
    for i in range(40):
        x, y = float(rng.random()), float(rng.random())
        history = [(1.0, abs(x - 0.1)), (3.0, abs(x - 0.1)), (9.0, abs(x - 0.1))]
        if i < 20:
            history += [(14.0, abs(x - 0.9)), (27.0, abs(x - 0.9))]
        s.observations.append(Observation({"x": x, "y": y}, history[-1][1], f"t{i}", history))

    def model_proposals(searcher: TPESearcher) -> tuple[list[float], set[float]]:
        xs, budgets = [], set()
        for i in range(45):
            searcher.last_fit_budget = None
            flat = searcher.suggest(f"new{len(searcher.live)}")
            if searcher.last_fit_budget is not None:
                xs.append(flat["x"])
                budgets.add(searcher.last_fit_budget)
        return xs, budgets

    set_rung_budgets(s, [9, 1, 3])
    assert rung_budgets(s) == (1.0, 3.0, 9.0)
    xs, budgets = model_proposals(s)
    assert budgets == {9.0} and np.median(xs) < 0.4
    setattr(s, "bohb_rung_budgets", None)  # no scheduler: every budget counts (the paper)
    xs, budgets = model_proposals(s)
    assert budgets == {27.0} and np.median(xs) > 0.6


def test_bohb_is_random_until_a_budget_has_enough_points():
    s = TPESearcher(parse_space({"x": {"type": "uniform", "low": 0, "high": 1}}), metric="loss", mode="min",
                    seed=0, fit_budget="largest")
    s.observations.append(Observation({"x": 0.5}, 1.0, "t0", [(1.0, 1.0)]))
    for i in range(10):
        s.last_fit_budget = None
        s.suggest(f"n{i}")
        assert s.last_fit_budget is None


def test_bohb_on_a_conditional_space_proposes_only_active_parameters():
    space = parse_space({
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
        "optimizer": {"type": "choice", "values": [
            {"name": "sgd", "momentum": {"type": "uniform", "low": 0.0, "high": 0.99}},
            {"name": "adam", "beta1": {"type": "uniform", "low": 0.8, "high": 0.99}}]},
    })
    s = TPESearcher(space, metric="loss", mode="min", seed=1, fit_budget="largest")
    rng = np.random.default_rng(1)
    for i in range(40):
        config = s.suggest(f"t{i}")
        loss = abs(np.log10(config["lr"]) + 2) + (0.5 if config["optimizer"]["name"] == "sgd" else 0.0)
        loss += float(rng.normal(0, 0.01))
        for b in (1, 3):
            s.on_trial_result(f"t{i}", {"loss": loss * (1 + 1 / b), "training_iteration": b})
        s.on_trial_complete(f"t{i}", {"loss": loss * (1 + 1 / 3), "training_iteration": 3})
    for i in range(20):
        config = s.suggest(f"u{i}")
        opt = config["optimizer"]
        assert ("momentum" in opt) == (opt["name"] == "sgd") and ("beta1" in opt) == (opt["name"] == "adam")


def test_a_trial_stopped_while_paused_is_not_a_failure_and_a_stop_result_enters_the_history():
    s = TPESearcher(parse_space({"x": {"type": "uniform", "low": 0, "high": 1}}), metric="loss", mode="min", seed=0)
    s.suggest("paused")
    s.on_trial_result("paused", {"loss": 0.3, "training_iteration": 1})
    s.on_trial_complete("paused")  # Ray: stop_trial on a PAUSED trial passes no result
    s.suggest("cut")
    s.on_trial_complete("cut", {"loss": 0.7, "training_iteration": 3})  # STOP: no on_trial_result
    s.suggest("never_ran")
    s.on_trial_complete("never_ran")
    by_id = {o.trial_id: o for o in s.observations}
    assert by_id["paused"].ok and by_id["paused"].loss == 0.3
    assert by_id["cut"].history == [(3.0, 0.7)]
    assert "never_ran" not in by_id  # nothing to learn, and no failure either


@pytest.mark.parametrize("make", [
    lambda: Hyperband("loss", "min", max_t=27, persist=False),
    lambda: ASHA("loss", "min", max_t=27, variant="promote", persist=False),
], ids=["bohb", "async_bohb"])
def test_schedulers_switch_tpe_to_budgets_and_it_beats_random_on_branin(make):
    task = Branin(max_t=27)
    regrets = {}
    for name, searcher in [("tpe", TPESearcher(seed=0)), ("random", RandomSearcher(seed=0))]:
        run = simulate(task, make(), searcher, n_workers=4, time_budget=27 * 12)
        assert not run.stalled
        best = min((v, tid) for _, tid, ep, v in run.results if ep == 27)
        regrets[name] = task.regret(run.configs[best[1]])
        if name == "tpe":
            assert searcher.fit_budget == "largest"
            # The scheduler told it its rungs below max_t, and it fitted on one of them.
            assert rung_budgets(searcher) == (1.0, 3.0, 9.0) and searcher.last_fit_budget in (1.0, 3.0, 9.0)
            # Milestone values of trials the scheduler stopped reached the model.
            assert sum(len(o.history) for o in searcher.observations) >= len(searcher.observations)
    assert regrets["tpe"] < regrets["random"]


def _dry_run(tmp_path, *sets):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: pairing\ntrainable: trainables.digits:DigitsMLP\nmetric: val_loss\nmode: min\n"
        "param_space:\n  lr: {type: loguniform, low: 1.0e-4, high: 3.0e-1}\n"
        "num_samples: 4\nstop: {max_iterations: 9}\n")
    return subprocess.run([sys.executable, "-m", "toolkit.cli", "run", str(spec), "--dry-run",
                           "--storage", str(tmp_path / "records"), *[a for s in sets for a in ("--set", s)]],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_nonsensical_pairing_is_refused_at_dry_run_with_the_reason(tmp_path):
    out = _dry_run(tmp_path, "searcher=random", "scheduler=bohb")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("tunekit: scheduler.type: bohb needs searcher tpe")
    out = _dry_run(tmp_path, "searcher=gp", "scheduler.type=asha", "scheduler.deterministic=true")
    assert out.returncode == 2 and "scheduler.deterministic: needs searcher random" in out.stderr
    assert not (tmp_path / "records").exists()
    out = _dry_run(tmp_path, "searcher=tpe", "scheduler=bohb")
    assert out.returncode == 0, out.stderr
    assert "'type': 'bohb'" in out.stdout
