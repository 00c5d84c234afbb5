"""End to end on a real local Ray: spec -> runner -> Tune -> trainables -> record."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from ray import tune

from toolkit.runner import make_searcher, plan, run_experiment
from toolkit.spec import load_spec, validate_spec

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    # Two logical GPUs let Ray schedule fractional-GPU trials on a CPU-only machine.
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def _spec(tmp_path, **changes):
    raw = {
        "name": "quad", "trainable": "trainables.synthetic:Quadratic", "metric": "loss", "mode": "min",
        "param_space": {"x": {"type": "uniform", "low": -2.0, "high": 2.0},
                        "act": {"type": "choice", "values": ["relu", "gelu"]}},
        "searcher": "random", "scheduler": "fifo", "num_samples": 6, "max_concurrent": 2,
        "stop": {"max_iterations": 3}, "seed": 0, "storage": str(tmp_path),
    }
    raw.update(changes)
    return validate_spec(raw)


def test_random_asha_sweep_stops_trials_early_and_writes_a_record(local_ray, tmp_path):
    from toolkit.results import load

    spec = _spec(tmp_path, num_samples=12, scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
                 stop={"max_iterations": 9})
    out = run_experiment(spec, verbose=0)
    assert out.status == "completed" and out.n_trials == 12 and out.n_errors == 0
    assert out.n_early_stopped > 0  # ASHA cut some trials before 9 iterations
    rec = load("quad", root=tmp_path)
    assert len(rec.trials) == 12 and rec.trials["trial_id"].is_unique
    iters = rec.metrics.groupby("trial_id")["training_iteration"].max()
    assert iters.max() == 9 and iters.min() < 9
    finals = rec.trials.dropna(subset=["final_metric"])
    assert out.best["value"] == pytest.approx(finals["final_metric"].min())
    assert rec.manifest["seed"] == 0 and rec.manifest["searcher"]["type"] == "random"
    assert rec.manifest["spec"]["scheduler"]["type"] == "asha"
    sugg = rec.suggestions  # one row per searcher call, timed
    assert set(rec.trials["trial_id"]) <= set(sugg["trial_id"]) and (sugg["suggest_s"] >= 0).all()
    # A second run of the same name gets a new version; the first is untouched; its searcher
    # starts from the first run's trials (warm start from a record).
    spec2 = _spec(tmp_path, num_samples=2, searcher={"type": "random", "warm_start": f"quad@v{out.version}"})
    assert len(make_searcher(spec2).observations) == 12
    out2 = run_experiment(spec2, verbose=0)
    assert out2.version == out.version + 1 and len(load(f"quad@v{out.version}", root=tmp_path).trials) == 12
    assert load("quad", root=tmp_path).manifest["searcher"]["warm_start"] == ["quad@v1"]


def test_raising_and_nan_trials_fail_alone(local_ray, tmp_path):
    from toolkit.results import load

    # fail_fast off: the first trials may well all raise the same injected failure here.
    spec = _spec(tmp_path, num_samples=12, seed=3, fail_fast=0, param_space={
        "x": {"type": "uniform", "low": -2.0, "high": 2.0},
        "fail_at_iteration": {"type": "choice", "values": [2, 1000]},
        "nan_at_iteration": {"type": "choice", "values": [2, 1000]},
    })
    out = run_experiment(spec, verbose=0)
    trials = load("quad", root=tmp_path).trials
    raised = trials[trials["config.fail_at_iteration"] == 2]
    nan = trials[(trials["config.fail_at_iteration"] == 1000) & (trials["config.nan_at_iteration"] == 2)]
    healthy = trials[(trials["config.fail_at_iteration"] == 1000) & (trials["config.nan_at_iteration"] == 1000)]
    assert len(raised) and len(nan) and len(healthy), "seed must give every kind of trial"
    assert (raised["status"] == "ERROR").all() and raised["error"].str.contains("InjectedFailure").all()
    assert (nan["status"] == "ERROR").all() and nan["error"].str.contains("NonFiniteMetric").all()
    assert (healthy["status"] == "TERMINATED").all() and healthy["final_metric"].notna().all()
    assert out.status == "completed" and out.n_errors == len(raised) + len(nan)


def test_a_metric_the_trainable_never_reports_fails_each_trial_clearly(local_ray, tmp_path):
    from toolkit.results import load

    raw = {**_spec(tmp_path).given, "metric": "accuracy", "num_samples": 2}
    spec = validate_spec(raw, check_trainable=False)  # skip the up-front METRICS check: test the run-time one
    out = run_experiment(spec, verbose=0)
    trials = load("quad", root=tmp_path, allow_incomplete=True).trials if out.status != "completed" else \
        load("quad", root=tmp_path).trials
    assert out.n_errors == 2 and out.best is None
    assert trials["error"].str.contains("did not report the metric 'accuracy'").all()


def test_fractional_gpus_pack_trials(local_ray, tmp_path):
    spec = _spec(tmp_path, num_samples=4, max_concurrent=None,
                 resources_per_trial={"cpu": 0.5, "gpu": 0.5}, param_space={
                     "x": {"type": "uniform", "low": -2.0, "high": 2.0}, "sleep_s": 0.5})
    assert plan(spec, {"CPU": 2, "GPU": 2}).concurrency == 4
    assert plan(spec, {"CPU": 2, "GPU": 1}).concurrency == 2

    class PendingLimit(tune.Callback):  # what Tune's controller reads when the sweep starts
        seen: list = []

        def setup(self, **info):
            self.seen.append(os.environ.get("TUNE_MAX_PENDING_TRIALS_PG"))

    out = run_experiment(spec, verbose=0, callbacks=[PendingLimit()])
    assert out.n_trials == 4 and out.n_errors == 0
    # Ray's default for a custom searcher is one pending trial: actors would start one by one.
    assert PendingLimit.seen == ["4"] and "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ


def test_cli_dry_run_and_run_with_overrides(tmp_path):
    env_python = sys.executable
    dry = subprocess.run([env_python, "-m", "toolkit.cli", "run", str(ROOT / "experiments/digits.yaml"), "--dry-run"],
                         capture_output=True, text=True, check=True)
    assert "optimizer[sgd].momentum" in dry.stdout and "expected concurrency: 2" in dry.stdout
    run = subprocess.run(
        [env_python, "-m", "toolkit.cli", "run", str(ROOT / "experiments/quadratic.yaml"), "--storage", str(tmp_path),
         "--set", "num_samples=3", "--set", "stop.max_iterations=2", "--set", "local_ray.num_cpus=2", "--quiet"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "best config:" in run.stdout and "record:" in run.stdout
    best = json.loads(run.stdout.split("best config: ", 1)[1].splitlines()[0])
    assert set(best) >= {"x", "y", "act", "seed"}
    bad = subprocess.run([env_python, "-m", "toolkit.cli", "run", str(ROOT / "experiments/quadratic.yaml"),
                          "--set", "param_space.x.low=5", "--dry-run"], capture_output=True, text=True)
    assert bad.returncode == 2 and "param_space.x: low (5) must be < high (2.0)" in bad.stderr


def test_shipped_specs_dry_run():
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        assert "expected concurrency" in plan(load_spec(path), {"CPU": 2, "GPU": 0}).render()
