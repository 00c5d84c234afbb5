"""Our searchers end to end: a spec with `searcher: tpe` / `searcher: gp` through the runner,
on a conditional choice-of-mappings space, on a real local Ray and a real tune.Tuner."""

from __future__ import annotations

import json

import pytest
import ray

from toolkit.results import load
from toolkit.runner import run_experiment
from toolkit.spec import validate_spec

pytestmark = pytest.mark.slow

# Two branches with their own parameters (a choice of mappings), plus a shared float.
CONDITIONAL = {
    "x": {"type": "uniform", "low": -2.0, "high": 2.0},
    "optimizer": {
        "type": "choice",
        "values": [
            {"name": "sgd", "momentum": {"type": "uniform", "low": 0.0, "high": 0.99}},
            {"name": "adam", "beta1": {"type": "uniform", "low": 0.5, "high": 0.999},
             "eps": {"type": "loguniform", "low": 1.0e-8, "high": 1.0e-4}},
        ],
    },
}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.mark.parametrize("kind", ["tpe", "gp"])
def test_spec_with_our_searcher_sweeps_a_conditional_space(local_ray, tmp_path, kind):
    spec = validate_spec({
        "name": f"cond-{kind}", "trainable": "trainables.synthetic:Quadratic", "metric": "loss", "mode": "min",
        "param_space": CONDITIONAL, "searcher": {"type": kind, "n_startup": 3}, "scheduler": "fifo",
        "num_samples": 8, "max_concurrent": 2, "stop": {"max_iterations": 1}, "seed": 0, "storage": str(tmp_path),
    })
    out = run_experiment(spec, verbose=0)
    assert out.status == "completed" and out.n_trials == 8 and out.n_errors == 0
    rec = load(f"cond-{kind}", root=tmp_path)
    assert rec.manifest["searcher"]["type"] == kind
    configs = [json.loads(c) for c in rec.trials["config_json"]]
    assert len(configs) == 8
    branches = set()
    for c in configs:
        opt = c["optimizer"]
        # Only the chosen branch's parameters reach the trainable, each inside its bounds.
        if opt["name"] == "sgd":
            assert set(opt) == {"name", "momentum"} and 0.0 <= opt["momentum"] <= 0.99
        else:
            assert set(opt) == {"name", "beta1", "eps"} and 0.5 <= opt["beta1"] <= 0.999 and 1e-8 <= opt["eps"] <= 1e-4
        assert -2.0 <= c["x"] <= 2.0
        branches.add(opt["name"])
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 8  # no point proposed twice
    assert branches == {"sgd", "adam"}
