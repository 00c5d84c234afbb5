"""Optimizer and LR-schedule registries, gradient accumulation, early stopping and the
update/weight-ratio signal of `TorchTrainable` (CPU, one torch thread)."""

from __future__ import annotations

import math

import pytest
import torch

from trainables.digits import DigitsMLP
from trainables.local import close, run_local
from trainables.optim import OPTIMIZERS, resolve_optimizer
from trainables.schedules import SCHEDULES, resolve_schedule, schedule_factor

TINY = {"width": 16, "depth": 1, "dropout": 0.1, "seed": 1}
EXACT = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "grad_norm", "update_ratio", "step_update_ratio")
STEPS_PER_EPOCH = math.ceil(1438 / 64)  # digits training split at the default batch size

# One config per schedule, as a user would write it; `max_epochs` 4 is the horizon.
SCHEDULE_CONFIGS = {
    "constant": {"name": "constant", "warmup": 1},
    "step": {"name": "step", "step_size": 2, "gamma": 0.5},
    "multistep": {"name": "multistep", "milestones": [1, 3], "gamma": 0.3},
    "exponential": {"name": "exponential", "gamma": 0.7},
    "cosine": {"name": "cosine", "restart_period": 2, "min_lr_ratio": 0.1},
    "linear": {"name": "linear", "end_factor": 0.2, "warmup": 1, "warmup_start_factor": 0.5},
    "inverse_sqrt": {"name": "inverse_sqrt", "warmup": 10},
    "one_cycle": {"name": "one_cycle"},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_registered_schedule_has_an_example():
    assert set(SCHEDULE_CONFIGS) == set(SCHEDULES)


# ---- schedules against closed forms and torch's own schedulers --------------------------------

def _torch_lrs(make, n: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make(opt)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def _ours(cfg: dict, n: int, horizon: int | None) -> list[float]:
    resolved = resolve_schedule(cfg)
    return [schedule_factor(resolved, t, horizon) for t in range(n)]


@pytest.mark.parametrize("cfg,make", [
    ({"name": "step", "step_size": 3, "gamma": 0.5}, lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
    ({"name": "multistep", "milestones": [2, 5], "gamma": 0.1},
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5], 0.1)),
    ({"name": "exponential", "gamma": 0.9}, lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
    ({"name": "cosine", "min_lr_ratio": 0.1}, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 12, 0.1)),
    ({"name": "cosine", "restart_period": 3, "restart_mult": 2},
     lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 3, 2)),
    ({"name": "cosine", "restart_period": 4}, lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 4)),
    ({"name": "linear", "end_factor": 0.25},
     lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=1.0, end_factor=0.25, total_iters=12)),
    ({"name": "one_cycle"}, lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=1.0, total_steps=12, cycle_momentum=False, anneal_strategy="cos")),
])
def test_schedule_matches_torchs_implementation(cfg, make):
    assert _ours(cfg, 12, 12) == pytest.approx(_torch_lrs(make, 12), rel=1e-6, abs=1e-9)


def test_inverse_sqrt_and_warmup_closed_forms():
    # Linear warm-up over 4 units from 0.1, then the transformer's rule: sqrt(W / t) in absolute units.
    ours = _ours({"name": "inverse_sqrt", "warmup": 4}, 12, None)
    assert ours[:4] == pytest.approx([0.1, 0.325, 0.55, 0.775])
    assert ours[4:] == pytest.approx([math.sqrt(4 / (4 + t)) for t in range(8)])
    cos = _ours({"name": "cosine", "warmup": 2, "warmup_start_factor": 0.0}, 10, 10)
    assert cos[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert cos[2 + 4] == pytest.approx(0.5)  # halfway through the 8 post-warm-up units
    assert _ours({"name": "constant"}, 5, None) == [1.0] * 5


@pytest.mark.parametrize("name", SCHEDULE_CONFIGS)
def test_schedule_drives_the_trainers_lr_as_documented(name):
    cfg = SCHEDULE_CONFIGS[name]
    resolved = resolve_schedule(cfg)
    history = run_local(DigitsMLP, {**TINY, "lr": 0.01, "lr_schedule": cfg, "max_epochs": 4}, 4)
    per = STEPS_PER_EPOCH if resolved["interval"] == "step" else 1
    expected = [0.01 * schedule_factor(resolved, e * per, 4 * per) for e in range(4)]
    assert [r["lr"] for r in history] == pytest.approx(expected, rel=1e-9)
    assert len(set(round(r["lr"], 12) for r in history)) > 1  # it really changes the LR
    assert history[-1]["done"] and history[-1]["stop_reason"] == "max_epochs"


@pytest.mark.parametrize("name", SCHEDULE_CONFIGS)
def test_resume_is_bit_identical_for_each_schedule(name, tmp_path):
    cfg = {**TINY, "lr": 0.01, "lr_schedule": SCHEDULE_CONFIGS[name], "max_epochs": 4,
           "optimizer": {"name": "sgd", "momentum": 0.9}}
    full = run_local(DigitsMLP, cfg, 4)
    first = DigitsMLP(config=dict(cfg))
    try:
        head = [first.train() for _ in range(2)]
        saved = first.save(str(tmp_path / "ckpt"))
    finally:
        close(first)
    second = DigitsMLP(config=dict(cfg))
    try:
        second.restore(saved)
        tail = [second.train() for _ in range(2)]
    finally:
        close(second)
    assert [[r[k] for k in EXACT] for r in head + tail] == [[r[k] for k in EXACT] for r in full]


# ---- optimizers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("branch,expect", [
    ({"name": "sgd", "momentum": 0.8, "nesterov": True}, {"momentum": 0.8, "nesterov": True}),
    ({"name": "adagrad", "lr_decay": 0.01}, {"lr_decay": 0.01}),
    ({"name": "rmsprop", "alpha": 0.9, "centered": True}, {"alpha": 0.9, "centered": True}),
    ({"name": "adam", "beta1": 0.85, "amsgrad": True}, {"betas": (0.85, 0.999), "amsgrad": True}),
    ({"name": "adamw", "weight_decay": 0.05}, {"weight_decay": 0.05}),
])
def test_each_optimizer_builds_with_only_its_own_params_and_trains(branch, expect):
    lr = 0.05 if branch["name"] in ("sgd", "adagrad") else 1e-2
    t = DigitsMLP(config={**TINY, "optimizer": branch, "lr": lr})
    try:
        assert type(t.optimizer) is OPTIMIZERS[branch["name"]].cls
        for k, v in expect.items():
            assert t.optimizer.defaults[k] == v, k
        history = [t.train() for _ in range(2)]
    finally:
        close(t)
    assert history[-1]["val_acc"] > 0.8 and history[-1]["train_loss"] < history[0]["train_loss"]


def test_adamw_decay_is_decoupled_and_adam_decay_is_l2():
    # With zero gradients, AdamW still shrinks weights by lr * wd; Adam's L2 term goes through
    # the adaptive normalisation instead (a step of about lr in the sign direction).
    for name, expected in (("adamw", 1 - 0.1 * 0.5), ("adam", None)):
        p = torch.nn.Parameter(torch.full((3,), 2.0))
        from trainables.optim import build_optimizer

        opt = build_optimizer([p], resolve_optimizer(name), lr=0.1, weight_decay=0.5)
        p.grad = torch.zeros(3)
        opt.step()
        if expected is not None:
            assert p.detach() == pytest.approx(torch.full((3,), 2.0 * expected))
        else:
            assert p.detach() == pytest.approx(torch.full((3,), 2.0 - 0.1), rel=1e-4)


def test_gradient_accumulation_matches_one_large_batch():
    # Two micro-batches of 32 accumulated give the gradient of one batch of 64 (no dropout).
    base = {**TINY, "dropout": 0.0, "optimizer": {"name": "sgd", "momentum": 0.0}, "lr": 0.05}
    big = run_local(DigitsMLP, {**base, "batch_size": 64}, 2)
    accumulated = run_local(DigitsMLP, {**base, "batch_size": 32, "accumulate": 2}, 2)
    for a, b in zip(big, accumulated):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


def test_label_smoothing_raises_train_loss_but_not_the_validation_definition():
    plain = run_local(DigitsMLP, {**TINY, "lr": 0.01}, 1)[0]
    smooth = run_local(DigitsMLP, {**TINY, "lr": 0.01, "label_smoothing": 0.2}, 1)[0]
    assert smooth["train_loss"] > plain["train_loss"] + 0.2
    assert abs(smooth["val_loss"] - plain["val_loss"]) < 0.3  # both plain cross-entropy on validation


# ---- early stopping and signals -----------------------------------------------------------------

def test_early_stopping_fires_with_a_status_saying_why():
    # A tiny lr barely moves val_acc, so with min_delta 0.05 it never "improves".
    cfg = {**TINY, "lr": 1e-6, "early_stopping": {"metric": "val_acc", "patience": 2, "min_delta": 0.05}}
    history = run_local(DigitsMLP, cfg, 10)
    assert len(history) == 3 and history[-1]["done"]
    reason = history[-1]["stop_reason"]
    assert reason.startswith("early_stopping: val_acc has not improved") and "2 epochs" in reason
    # A healthy run is not stopped.
    healthy = run_local(DigitsMLP, {**TINY, "lr": 0.01, "early_stopping": {"patience": 2}}, 4)
    assert len(healthy) == 4 and not healthy[-1]["done"]


def test_update_ratio_warning_after_several_epochs_far_from_1e_3():
    low = run_local(DigitsMLP, {**TINY, "lr": 1e-7}, 3)
    assert all(r["step_update_ratio"] < 1e-5 for r in low)
    assert "warning" not in low[1] and "lr likely too low" in low[2]["warning"]
    healthy = run_local(DigitsMLP, {**TINY, "lr": 1e-2}, 3)
    assert all("warning" not in r for r in healthy)
    assert 1e-5 <= healthy[-1]["step_update_ratio"] <= 1e-1


# ---- GPU options: CUDA-only switches leave CPU training unchanged; exercised on CUDA where present ----

def test_cuda_only_options_are_ignored_on_cpu():
    cfg = {**TINY, "lr": 0.01}
    plain = run_local(DigitsMLP, cfg, 2)
    gpu_opts = run_local(DigitsMLP, {**cfg, "amp": True, "amp_dtype": "auto", "compile": True,
                                     "channels_last": True}, 2)
    assert [[r[k] for k in EXACT] for r in gpu_opts] == [[r[k] for k in EXACT] for r in plain]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_compile_channels_last_and_auto_amp_train():
    from trainables.digits import DigitsCNN

    t = DigitsCNN(config={"device": "cuda", "amp": True, "compile": True, "channels_last": True, "seed": 0})
    try:
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        assert t.trainer.amp and t.trainer.amp_dtype == expected
        assert t.scaler.is_enabled() == (expected == torch.float16)
        assert t.trainer.forward_model is not t.model  # compiled; checkpoints keep the plain names
        history = [t.train() for _ in range(3)]
    finally:
        close(t)
    assert history[-1]["val_acc"] > 0.9 and history[-1]["device"].startswith("cuda")
