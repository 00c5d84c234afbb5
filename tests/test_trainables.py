"""Behaviour of the trainables package: data splits, digits models, exact checkpoints,
optimizer/schedule configs, divergence reporting, synthetic fault injection, devices.

CPU only, one torch thread (CPU kernels are only bit-reproducible at a fixed thread count).
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import ray
import torch
from ray import tune

from trainables import data
from trainables.base import TorchTrainable, resolve_device
from trainables.digits import DigitsCNN, DigitsMLP, evaluate
from trainables.local import close, run_local
from trainables.models import MLP
from trainables.synthetic import InjectedFailure, Quadratic, category_penalty, objective

# Everything a run reports that does not depend on wall time or process memory.
EXACT = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch", "grad_norm", "update_ratio", "device")
SMALL_CNN = {"width": 8, "depth": 1, "lr": 1e-2}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def exact(history: list[dict]) -> list[tuple]:
    return [tuple(r[k] for k in EXACT) for r in history]


# ---- data --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in data.DATASETS if n not in data.REGRESSION])
def test_split_is_fixed_stratified_disjoint_and_standardised_on_train(name):
    ds = data.load(name)
    x, y = data.read_raw(name)
    tr, va = data.stratified_split(y, data.VAL_FRACTION, data.SPLIT_SEED)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
    np.testing.assert_array_equal(ds.y_train, y[tr])
    np.testing.assert_array_equal(ds.y_val, y[va])
    # Every class is in validation in proportion to its size.
    counts, val_counts = np.bincount(y), np.bincount(ds.y_val, minlength=ds.n_classes)
    assert np.all(np.abs(val_counts - data.VAL_FRACTION * counts) <= 1)
    # Statistics fitted on the training part only: train is exactly centred, validation is not forced to be.
    axis = None if name == "digits" else 0
    assert np.allclose(ds.x_train.mean(axis=axis), 0, atol=1e-4)
    assert np.allclose(ds.x_train.std(axis=axis)[ds.x_train.std(axis=axis) > 0], 1, atol=1e-3)
    mean, std = (x[tr].mean(), x[tr].std()) if axis is None else (x[tr].mean(0), x[tr].std(0))
    expected_val = (x[va] - mean) / np.where(std > 0, std, 1)
    np.testing.assert_allclose(ds.x_val, expected_val.astype(np.float32), rtol=1e-5, atol=1e-5)
    assert not ds.x_train.flags.writeable


def test_regression_split_spans_the_target_range_and_standardises_the_target_on_train():
    ds = data.load("diabetes")
    x, y = data.read_raw("diabetes")
    assert ds.task == "regression" and ds.n_classes == 0 and ds.y_train.dtype == np.float32
    assert len(ds.y_train) + len(ds.y_val) == len(y) and ds.n_features == 10
    assert abs(float(ds.y_train.mean())) < 1e-4 and abs(float(ds.y_train.std()) - 1) < 1e-3
    # Validation targets reach both tails (the split is stratified by target quintile).
    assert ds.y_val.min() < -1.0 and ds.y_val.max() > 1.5


@pytest.mark.parametrize("name", data.DATASETS)
def test_fast_reader_matches_sklearn_loader(name):
    fast, official = data.read_raw(name), data.read_raw(name, via_sklearn=True)
    for a, b in zip(fast, official):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_fingerprint_is_sha256_of_the_exact_arrays():
    ds = data.load("digits")
    assert ds.fingerprint == data.fingerprint(ds.x_train, ds.y_train, ds.x_val, ds.y_val)
    assert len(ds.fingerprint) == 64
    changed = ds.x_val.copy()
    changed[0, 0] += 1e-3
    assert data.fingerprint(ds.x_train, ds.y_train, changed, ds.y_val) != ds.fingerprint
    info = DigitsCNN.data_fingerprint()
    assert info["fingerprint"] == ds.fingerprint and "digits" in info["description"]
    assert DigitsMLP.data_fingerprint() == info
    assert Quadratic.data_fingerprint() is None


def test_base_class_needs_a_dataset_and_a_model():
    assert TorchTrainable.data_fingerprint() is None
    with pytest.raises(NotImplementedError, match="DATASET"):
        run_local(TorchTrainable, {}, 1)


class WineMLP(TorchTrainable):
    """The base class reused on another bundled dataset, as its docstring shows."""

    DATASET = "wine"
    DEFAULTS = {**TorchTrainable.DEFAULTS, "width": 32}

    def build_model(self, cfg, data):
        return MLP(data.n_features, data.n_classes, width=cfg["width"])


def test_base_class_serves_other_datasets():
    history = run_local(WineMLP, {"lr": 1e-2, "batch_size": 16}, 4)
    assert history[-1]["val_acc"] >= 0.9
    assert WineMLP.data_fingerprint()["fingerprint"] == data.load("wine").fingerprint


# ---- digits training ---------------------------------------------------------------------------

def test_cnn_reaches_90_percent_within_a_few_epochs():
    history = run_local(DigitsCNN, {}, iterations=4)
    assert max(r["val_acc"] for r in history) >= 0.9
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for r in history:
        assert set(DigitsCNN.METRICS) <= set(r)
        assert r["device"] == "cpu" and r["memory_mb"] > 0 and r["samples_per_s"] > 0
        assert r["epoch_time_s"] > 0 and r["grad_norm"] > 0 and 0 < r["update_ratio"] < 10


def test_same_config_and_seed_give_identical_metrics():
    cfg = {"seed": 7, "dropout": 0.3, "optimizer": {"name": "sgd", "momentum": 0.9}, "lr": 0.05}
    first, second = run_local(DigitsMLP, cfg, 3), run_local(DigitsMLP, cfg, 3)
    assert exact(first) == exact(second)
    other = run_local(DigitsMLP, {**cfg, "seed": 8}, 3)
    assert exact(other) != exact(first)  # the seed really drives init, dropout and shuffling


@pytest.mark.parametrize("cls,cfg", [
    (DigitsCNN, {**SMALL_CNN, "dropout": 0.2, "seed": 3, "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},
                 "lr": 0.05, "lr_schedule": "cosine", "max_epochs": 5}),
    (DigitsMLP, {"dropout": 0.3, "seed": 5, "optimizer": {"name": "adamw", "beta1": 0.85},
                 "weight_decay": 1e-3, "lr_schedule": {"name": "step", "step_size": 2, "gamma": 0.5}, "max_epochs": 6,
                 "grad_clip": 0.5}),
])
def test_restored_checkpoint_continues_identically(cls, cfg, tmp_path):
    uninterrupted = run_local(cls, cfg, 5)
    first = cls(config=dict(cfg))
    try:
        head = [first.train() for _ in range(2)]
        saved = first.save(str(tmp_path / "ckpt"))
    finally:
        close(first)
    # A fresh instance (as Tune creates after a pause, failure or PBT exploit) restores and goes on.
    second = cls(config=dict(cfg))
    try:
        second.restore(saved)
        tail = [second.train() for _ in range(3)]
    finally:
        close(second)
    assert exact(head + tail) == exact(uninterrupted)
    assert [r["training_iteration"] for r in tail] == [3, 4, 5]
    assert tail[-1]["done"] is (cfg["max_epochs"] == 5)


def test_reused_actor_matches_fresh_trainable():
    cfg_a, cfg_b = {"seed": 1, "dropout": 0.2}, {"seed": 2, "lr": 3e-3, "width": 32}
    t = DigitsMLP(config=dict(cfg_a))
    first_logdir = t.logdir
    try:
        t.train()
        assert t.reset(dict(cfg_b))  # what Tune calls with reuse_actors=True
        reused = [t.train() for _ in range(2)]
    finally:
        close(t)
        shutil.rmtree(first_logdir, ignore_errors=True)  # reset() made the trainable a new one
    assert exact(reused) == exact(run_local(DigitsMLP, cfg_b, 2))


@pytest.mark.parametrize("optimizer,torch_cls,expect", [
    ({"name": "sgd", "momentum": 0.8, "nesterov": True}, torch.optim.SGD, {"momentum": 0.8, "nesterov": True}),
    ({"name": "sgd"}, torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
    ({"name": "adam", "beta1": 0.8, "beta2": 0.99}, torch.optim.Adam, {"betas": (0.8, 0.99)}),
    ("adamw", torch.optim.AdamW, {"betas": (0.9, 0.999)}),
    ({"name": "adam", "beta1": 0.9, "lr": 0.02, "weight_decay": 1e-4}, torch.optim.Adam, {"lr": 0.02, "weight_decay": 1e-4}),
])
def test_conditional_optimizer_configs_build_and_train(optimizer, torch_cls, expect):
    lr = 0.05 if torch_cls is torch.optim.SGD else 1e-2
    t = DigitsMLP(config={"optimizer": optimizer, "lr": lr})
    try:
        assert type(t.optimizer) is torch_cls
        for k, v in expect.items():
            assert t.optimizer.defaults[k] == v, k
        history = [t.train() for _ in range(3)]
    finally:
        close(t)
    assert history[-1]["val_acc"] >= 0.85
    assert history[0]["lr"] == expect.get("lr", lr)


@pytest.mark.parametrize("config,field", [
    ({"learning_rate": 0.1}, "learning_rate"),
    ({"optimizer": {"name": "lion"}}, "optimizer"),
    ({"optimizer": {"name": "rmsprop", "beta1": 0.9}}, "beta1"),
    ({"optimizer": {"name": "adagrad", "momentum": 0.9}}, "momentum"),
    ({"optimizer": {"name": "sgd", "beta1": 0.9}}, "beta1"),
    ({"optimizer": {"name": "adam", "beta1": 1.5}}, "optimizer.beta1"),
    ({"optimizer": {"name": "sgd", "momentum": 0.0, "nesterov": True}}, "nesterov"),
    ({"lr": 0}, "lr"),
    ({"batch_size": 12.5}, "batch_size"),
    ({"lr_schedule": "cosine"}, "max_epochs"),
    ({"lr_schedule": "polynomial", "max_epochs": 3}, "lr_schedule"),
    ({"lr_schedule": {"name": "multistep", "milestones": [5, 2]}}, "milestones"),
    ({"lr_schedule": {"name": "one_cycle"}}, "max_epochs"),
    ({"lr_schedule": {"name": "step", "step_size": 2, "interval": "batch"}}, "interval"),
    ({"early_stopping": {"metric": "val_loss", "patience": 0}}, "patience"),
    ({"early_stopping": {"metric": "val_loss", "patiance": 2}}, "patiance"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"accumulate": 0}, "accumulate"),
    ({"compile": "fast"}, "compile"),
    ({"device": "tpu"}, "device"),
    ({"depth": 4}, "depth"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_config_raises_naming_the_field(config, field):
    cls = DigitsCNN if "depth" in config else DigitsMLP
    with pytest.raises(ValueError, match=field):
        run_local(cls, config, 1)


def test_lr_schedules_follow_their_shape_and_end_with_done():
    cosine = run_local(DigitsMLP, {"lr": 0.01, "lr_schedule": "cosine", "max_epochs": 4}, 10)
    assert len(cosine) == 4 and cosine[-1]["done"] is True
    lrs = [r["lr"] for r in cosine]
    assert lrs[0] == 0.01 and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[2] == pytest.approx(0.01 * (1 + math.cos(math.pi * 2 / 4)) / 2)
    step = run_local(DigitsMLP, {"lr": 0.01, "lr_schedule": {"name": "step", "step_size": 2, "gamma": 0.1},
                                 "max_epochs": 5}, 5)
    assert [r["lr"] for r in step] == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001])


def test_divergence_ends_the_trial_with_every_quality_metric_nan():
    history = run_local(DigitsMLP, {"lr": 1e6, "optimizer": {"name": "sgd", "momentum": 0.9}}, 3)
    assert len(history) == 1 and history[0]["done"] is True
    last = history[0]
    assert last["stop_reason"].startswith("diverged: non-finite")
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert math.isnan(last[key]), key  # whichever metric is tuned, the guard fails the trial


def test_amp_is_ignored_on_cpu():
    cfg = {"seed": 4, "dropout": 0.1}
    assert exact(run_local(DigitsMLP, {**cfg, "amp": True}, 2)) == exact(run_local(DigitsMLP, cfg, 2))


def test_evaluate_returns_final_and_best_metrics():
    out = evaluate({**SMALL_CNN, "seed": 2}, epochs=3, model="cnn")
    assert out["training_iteration"] == 3 and out["epoch"] == 3
    assert out["best_val_acc"] >= out["val_acc"] and out["best_val_acc"] >= 0.9
    assert set(DigitsCNN.METRICS) <= set(out)
    with pytest.raises(ValueError, match="model"):
        evaluate({}, model="resnet")


# ---- devices -----------------------------------------------------------------------------------

def test_device_auto_falls_back_to_cpu_and_cuda_request_is_explicit():
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
        return
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="cuda"):
        resolve_device("cuda")
    assert run_local(DigitsMLP, {"device": "auto"}, 1)[0]["device"] == "cpu"


# ---- synthetic ---------------------------------------------------------------------------------

def test_quadratic_curves_decrease_towards_the_objective():
    cfg = {"x": 1.5, "opt": {"name": "sgd", "m": 0.25}, "centre": {"x": 0.5, "opt.m": 0.0}, "rate": 1.0}
    f = 1.0 + 0.0625 + category_penalty("opt.name", "sgd")
    assert objective(cfg) == pytest.approx(f)
    losses = [r["loss"] for r in run_local(Quadratic, cfg, 6)]
    assert all(a > b for a, b in zip(losses, losses[1:])) and losses[0] == pytest.approx(f + 1.0)
    assert losses[-1] == pytest.approx(f + math.exp(-5))
    # Categorical choices score differently and reproducibly.
    assert objective({"opt": {"name": "adam"}}) != objective({"opt": {"name": "sgd"}})


def test_quadratic_fault_injection():
    with pytest.raises(InjectedFailure, match="iteration 3"):
        run_local(Quadratic, {"x": 0.0, "fail_at_iteration": 3}, 5)
    history = run_local(Quadratic, {"x": 0.0, "nan_at_iteration": 2}, 4)
    assert not math.isnan(history[0]["loss"])
    assert all(math.isnan(r["loss"]) and math.isnan(r["score"]) for r in history[1:])


def test_quadratic_noise_is_seeded_and_checkpoint_exact(tmp_path):
    cfg = {"x": 0.3, "noise_sd": 0.5, "seed": 11}
    full = [r["loss"] for r in run_local(Quadratic, cfg, 6)]
    assert full == [r["loss"] for r in run_local(Quadratic, cfg, 6)]
    assert full != [r["loss"] for r in run_local(Quadratic, {**cfg, "seed": 12}, 6)]
    a = Quadratic(config=dict(cfg))
    try:
        head = [a.train()["loss"] for _ in range(3)]
        saved = a.save(str(tmp_path / "ckpt"))
    finally:
        close(a)
    b = Quadratic(config=dict(cfg))
    try:
        b.restore(saved)
        tail = [b.train()["loss"] for _ in range(3)]
    finally:
        close(b)
    assert head + tail == full


# ---- CUDA (run where a GPU is present; skipped on CPU-only machines) ---------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("amp_dtype", ["float16", "bfloat16"])
def test_cuda_amp_trains_and_checkpoints_move_to_cpu(amp_dtype, tmp_path):
    cfg = {"device": "cuda", "amp": True, "amp_dtype": amp_dtype, "seed": 0}
    history = run_local(DigitsCNN, cfg, 4)
    assert all(r["device"].startswith("cuda") for r in history)
    assert max(r["val_acc"] for r in history) >= 0.9
    assert all(0 < r["memory_mb"] < 4096 and math.isfinite(r["grad_norm"]) for r in history)
    gpu = DigitsCNN(config=dict(cfg))
    try:
        gpu.train()
        saved = gpu.save(str(tmp_path / "gpu"))
    finally:
        close(gpu)
    cpu = DigitsCNN(config={**cfg, "device": "cpu"})
    try:
        cpu.restore(saved)
        r = cpu.train()
    finally:
        close(cpu)
    assert r["device"] == "cpu" and r["epoch"] == 2 and math.isfinite(r["train_loss"]) and r["val_acc"] > 0.5


@needs_cuda
def test_fractional_gpus_under_ray_tune(tmp_path):
    """Two trials asking for half a GPU each share the one GPU Ray assigns them. (The CPU-only
    path inside Ray actors is exercised by the runner's end-to-end tests with DigitsMLP.)"""
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        results = tune.Tuner(
            tune.with_resources(DigitsCNN, {"cpu": 1, "gpu": 0.5}),
            param_space={"seed": tune.grid_search([0, 1]), "amp": True},
            tune_config=tune.TuneConfig(metric="val_acc", mode="max"),
            run_config=tune.RunConfig(stop={"training_iteration": 2}, storage_path=str(tmp_path), verbose=0),
        ).fit()
        assert len(results) == 2 and not results.errors
        assert all(r.metrics["device"] == "cuda:0" for r in results)
    finally:
        ray.shutdown()


def test_benchmark_space_yields_configs_the_objective_accepts():
    from toolkit.space.parse import parse_space  # tests may use toolkit; the trainables never do

    from trainables.digits import PARAM_SPACE, objective

    space = parse_space(PARAM_SPACE)
    rng = np.random.default_rng(0)
    configs = [space.to_config(space.sample(rng)) for _ in range(20)]
    assert {c["optimizer"]["name"] for c in configs} == {"sgd", "adam"}
    for c in configs:
        DigitsMLP.resolve_config(c)  # raises on any key or value the trainable would refuse
    value = objective(configs[0], epochs=1)
    assert isinstance(value, float) and value == objective(configs[0], epochs=1)
    assert math.isnan(objective({"lr": 1e6, "optimizer": "sgd"}, epochs=1))
