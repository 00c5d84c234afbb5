"""A user's own model and data without a subclass (`trainables.generic:Generic`), and the helpers
for plain function trainables (`trainables.report`). The builders below are the "user code":
the slow tests import them by path inside Ray's trial processes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trainables import data
from trainables.generic import Generic
from trainables.local import run_local

HERE = Path(__file__).resolve().parent
MODULE = Path(__file__).stem  # how a trial process imports this file (tests/ is on its PYTHONPATH)


# ---- the user's code ---------------------------------------------------------------------------

def build_classifier(config):
    return nn.Sequential(nn.Linear(30, config["width"]), nn.ReLU(), nn.Linear(config["width"], 2))


def load_arrays(config):
    ds = data.load("breast_cancer")
    return (ds.x_train, ds.y_train), (ds.x_val, ds.y_val)


class PairDataset(torch.utils.data.Dataset):
    """A map-style Dataset that is not a TensorDataset (goes through a DataLoader)."""

    def __init__(self, x, y):
        self.x, self.y = torch.tensor(np.array(x)), torch.tensor(np.array(y))

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def load_datasets(config):
    ds = data.load("breast_cancer")
    return {"train": PairDataset(ds.x_train, ds.y_train), "val": PairDataset(ds.x_val, ds.y_val)}


def build_regressor(config):
    return nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1))


def load_regression(config):
    ds = data.load("diabetes")
    return (ds.x_train, ds.y_train), (ds.x_val, ds.y_val)


def positive_rate(outputs, targets):
    return float((outputs.argmax(1) == 1).float().mean())


def build_nan_model(config):
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(30, 2)

        def forward(self, x):
            return self.lin(x) * torch.tensor(float("inf"))

    return Exploding()


USER = {"model": f"{MODULE}:build_classifier", "data": f"{MODULE}:load_arrays", "width": 16}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- in process --------------------------------------------------------------------------------

def test_user_classifier_from_arrays_trains_and_reports_extra_metrics():
    history = run_local(Generic, {**USER, "lr": 1e-2, "metrics": [f"{MODULE}:positive_rate"]}, 3)
    last = history[-1]
    assert last["val_acc"] >= 0.9 and last["train_loss"] < history[0]["train_loss"]
    assert 0.3 < last["val_positive_rate"] < 0.9  # the user's metric, computed on all validation outputs
    assert math.isfinite(last["step_update_ratio"]) and last["device"] == "cpu"


def test_dataset_splits_go_through_a_seeded_loader_and_match_across_runs():
    cfg = {**USER, "data": f"{MODULE}:load_datasets", "lr": 1e-2, "batch_size": 32}
    first, second = run_local(Generic, cfg, 2), run_local(Generic, cfg, 2)
    assert [r["val_loss"] for r in first] == [r["val_loss"] for r in second]
    assert first[-1]["val_acc"] >= 0.85


def test_regression_is_inferred_from_float_targets_and_reports_rmse_and_r2():
    cfg = {"model": f"{MODULE}:build_regressor", "data": f"{MODULE}:load_regression", "lr": 1e-2}
    history = run_local(Generic, cfg, 6)
    last = history[-1]
    assert "val_acc" not in last and "train_acc" not in last
    assert last["val_rmse"] == pytest.approx(math.sqrt(last["val_loss"]), rel=1e-5)  # the loss is MSE
    assert last["val_r2"] > 0.3  # diabetes: a linear model reaches about 0.5
    l1 = run_local(Generic, {**cfg, "loss": "l1"}, 1)[0]
    assert l1["val_loss"] != pytest.approx(l1["val_rmse"] ** 2)


@pytest.mark.parametrize("change,message", [
    ({"weight_decy": 1e-3}, "did you mean 'weight_decay'"),
    ({"model": f"{MODULE}:nope"}, "model: module"),
    ({"model": "no_such_module:build"}, "model: cannot import module 'no_such_module'"),
    ({"data": None}, "data: Generic needs an import path"),
    ({"data": f"{MODULE}:positive_rate"}, "data"),
    ({"task": "ranking"}, "task"),
    ({"metrics": 3}, "metrics"),
])
def test_bad_generic_config_is_refused_naming_the_field(change, message):
    with pytest.raises((ValueError, TypeError), match=message):
        run_local(Generic, {**USER, **change}, 1)


def test_a_non_finite_user_loss_ends_the_trial_as_diverged():
    history = run_local(Generic, {**USER, "model": f"{MODULE}:build_nan_model"}, 4)
    assert len(history) == 1 and history[0]["done"] and history[0]["stop_reason"].startswith("diverged")
    assert math.isnan(history[0]["val_loss"]) and math.isnan(history[0]["val_acc"])


# ---- through Ray -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_with_tests_on_path():
    import ray

    # Trial processes import the user's builders from this folder, as they would from a spec's folder.
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}})
    yield
    ray.shutdown()


@pytest.mark.slow
def test_spec_with_a_user_model_and_data_runs_through_the_runner(ray_with_tests_on_path, tmp_path):
    """Healthy user models train; a diverging one ends its trial as a failure the searcher never sees."""
    from toolkit.results import load
    from toolkit.runner import run_experiment
    from toolkit.spec import validate_spec

    spec = validate_spec({
        "name": "user-model", "trainable": "trainables.generic:Generic", "metric": "val_loss", "mode": "min",
        "param_space": {"model": {"type": "choice", "values": [f"{MODULE}:build_classifier",
                                                                f"{MODULE}:build_nan_model"]},
                        "data": f"{MODULE}:load_arrays", "width": 8,
                        "lr": {"type": "loguniform", "low": 1e-3, "high": 3e-2},
                        "early_stopping": {"metric": "val_loss", "patience": 2}},
        "searcher": "random", "scheduler": "fifo", "num_samples": 4, "max_concurrent": 2, "fail_fast": 0,
        "stop": {"max_iterations": 2}, "seed": 1, "storage": str(tmp_path),
    })
    run_experiment(spec, verbose=0)
    trials = load("user-model", root=tmp_path).trials
    healthy = trials[trials["config.model"].str.endswith("build_classifier")]
    diverged = trials[trials["config.model"].str.endswith("build_nan_model")]
    assert len(healthy) and len(diverged), "the seed must give both kinds of trial"
    assert (healthy["status"] == "TERMINATED").all() and healthy["final_metric"].notna().all()
    assert (diverged["status"] == "ERROR").all() and diverged["final_metric"].isna().all()
    assert diverged["error"].str.contains("val_loss").all()


def _function_trainable(config):
    """A user's own loop, checkpointing through trainables.report; fails once after two epochs."""
    from trainables.report import report, restore, rng_state, seed_everything, set_rng_state

    seed_everything(config["seed"])
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    start = 0
    state = restore()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start = state["epoch"]
    marker = Path(config["marker"])
    for epoch in range(start, 4):
        x = torch.randn(64, 4)
        loss = ((model(x).squeeze(1) - x.sum(1)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        report({"loss": loss.item(), "epoch": epoch + 1, "resumed_from": start},
               state={"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                      "rng": rng_state()})
        if epoch == 1 and not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError("injected failure after epoch 2")


@pytest.mark.slow
def test_function_trainable_resumes_from_its_reported_state(ray_with_tests_on_path, tmp_path):
    from ray import tune

    results = tune.Tuner(
        _function_trainable,
        param_space={"seed": 3, "marker": str(tmp_path / "marker")},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)),
    ).fit()
    assert not results.errors
    history = results[0].metrics_dataframe
    assert list(history["epoch"])[-2:] == [3, 4] and history["resumed_from"].iloc[-1] == 2
    with results[0].checkpoint.as_directory() as d:
        state = torch.load(Path(d, "state.pt"), weights_only=True)
    assert state["epoch"] == 4
