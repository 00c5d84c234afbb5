"""The pre-sweep tools: LR range test and sanity check, in process and as `tunekit lr-find` /
`tunekit sanity` (CPU, one torch thread)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from toolkit.cli import main
from trainables import data
from trainables.digits import DigitsMLP
from trainables.generic import Generic
from trainables.local import close, run_local
from trainables.lr_find import lr_range_test
from trainables.sanity import sanity_check

MODULE = Path(__file__).stem
ROOT = Path(__file__).resolve().parents[1]


class DetachedHead(nn.Module):
    """A classic bug: the features are detached before the head, so they never learn."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.features(x).detach())


def build_detached(config):
    return DetachedHead()


def build_overconfident(config):
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        model[2].weight.mul_(50.0)
    return model


def load_digits(config):
    ds = data.load("digits")
    return (ds.x_train, ds.y_train), (ds.x_val, ds.y_val)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _checked(cls, config, **kwargs):
    t = cls(config=dict(config))
    try:
        return sanity_check(t, **kwargs)
    finally:
        close(t)


def test_lr_find_on_digits_contains_the_lr_a_short_search_finds_best():
    t = DigitsMLP(config={"optimizer": "adam", "seed": 0})
    try:
        found = lr_range_test(t, num_steps=150)
    finally:
        close(t)
    low, high = found.suggestion
    assert found.stopped_early and low < found.steepest_lr * 1.0001 and high < found.min_loss_lr
    # The short search: a log grid of lrs, 3 epochs each, best final validation loss.
    grid = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
    scores = {lr: run_local(DigitsMLP, {"optimizer": "adam", "seed": 0, "lr": lr}, 3)[-1]["val_loss"] for lr in grid}
    best = min(scores, key=scores.get)
    assert low <= best <= high, (found.suggestion, scores)
    assert found.snippet() == f"lr: {{type: loguniform, low: {low:.2e}, high: {high:.2e}}}"


def test_sanity_passes_on_a_correct_model():
    report = _checked(DigitsMLP, {})
    assert report.ok, report.render()
    assert [c.name for c in report.checks] == ["initial_loss", "gradients", "overfit"]


def test_sanity_names_a_detached_head_and_an_overconfident_init():
    detached = _checked(Generic, {"model": f"{MODULE}:build_detached", "data": f"{MODULE}:load_digits"}, steps=40)
    assert detached.failed[0] == "gradients"  # (a frozen random feature layer may not overfit either)
    assert "no gradient" in detached.render() and "features.0.weight" in detached.render()
    loud = _checked(Generic, {"model": f"{MODULE}:build_overconfident", "data": f"{MODULE}:load_digits"},
                    steps=40)
    assert "initial_loss" in loud.failed


def _write_spec(tmp_path, **changes) -> Path:
    raw = yaml.safe_load((ROOT / "experiments" / "digits.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_cli_lr_find_writes_a_plot_and_prints_a_spec_snippet(tmp_path, capsys):
    spec = _write_spec(tmp_path, trainable="trainables.digits:DigitsMLP")
    out = tmp_path / "lr.png"
    assert main(["lr-find", str(spec), "--steps", "80", "--out", str(out), "--param", "optimizer=sgd"]) == 0
    text = capsys.readouterr().out
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    assert '"optimizer": "sgd"' in text  # the configuration used is printed
    snippet = text.strip().splitlines()[-1].strip()
    parsed = yaml.safe_load(snippet)
    assert parsed["lr"]["type"] == "loguniform" and 0 < parsed["lr"]["low"] < parsed["lr"]["high"]


def test_cli_sanity_fails_naming_the_problem_and_refuses_non_torch_trainables(tmp_path, capsys):
    spec = _write_spec(tmp_path, trainable="trainables.generic:Generic",
                       param_space={"model": f"{MODULE}:build_detached", "data": f"{MODULE}:load_digits",
                                    "lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}})
    assert main(["sanity", str(spec), "--steps", "30"]) == 1
    captured = capsys.readouterr()
    assert "FAIL gradients: no gradient" in captured.out and "sanity: failed: gradients" in captured.err
    quad = _write_spec(tmp_path, trainable="trainables.synthetic:Quadratic", metric="loss",
                       param_space={"x": {"type": "uniform", "low": -1.0, "high": 1.0}})
    assert main(["sanity", str(quad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tunekit: trainable:") and "TorchTrainable" in err[0]
