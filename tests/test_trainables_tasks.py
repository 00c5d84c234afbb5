"""The bundled tasks beyond digits (tabular classification, regression, a generated sequence task)
and their example specs (CPU, one torch thread)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.spec import load_spec
from trainables.local import run_local
from trainables.sequence import DistantXor, distant_xor_dataset
from trainables.tabular import BreastCancerMLP, DiabetesMLP, WineMLP

ROOT = Path(__file__).resolve().parents[1]
# The example specs of the bundled tasks (other engineers' specs are tested with their features).
EXAMPLES = [ROOT / "experiments" / f for f in ("digits.yaml", "breast_cancer.yaml", "wine.yaml", "diabetes.yaml",
                                               "distant_xor.yaml", "user_model/user_model.yaml")]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cls,epochs,floor", [(BreastCancerMLP, 3, 0.9), (WineMLP, 5, 0.9)])
def test_tabular_classifiers_learn_with_their_defaults(cls, epochs, floor):
    history = run_local(cls, {}, epochs)
    assert history[-1]["val_acc"] >= floor and history[-1]["train_loss"] < history[0]["train_loss"]
    assert set(cls.METRICS) <= set(history[-1])


def test_diabetes_regression_reports_rmse_and_r2():
    history = run_local(DiabetesMLP, {}, 6)
    last = history[-1]
    assert set(DiabetesMLP.METRICS) <= set(last) and "val_acc" not in last
    assert last["val_r2"] > 0.3 and last["val_rmse"] == pytest.approx(math.sqrt(last["val_loss"]), rel=1e-5)
    assert DiabetesMLP.data_fingerprint()["name"] == "diabetes"


def test_distant_xor_data_is_every_string_split_disjointly():
    ds = distant_xor_dataset()
    x = np.concatenate([ds.x_train, ds.x_val]).astype(int)
    codes = (x * (1 << np.arange(x.shape[1])[::-1])).sum(1)
    assert sorted(codes) == list(range(2 ** x.shape[1]))  # all strings, none twice: train and val disjoint
    y = np.concatenate([ds.y_train, ds.y_val])
    np.testing.assert_array_equal(y, x[:, 0] ^ x[:, -1])
    assert abs(ds.y_train.mean() - 0.5) < 0.05
    assert DistantXor.data_fingerprint()["fingerprint"] == ds.fingerprint


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_distant_xor_models_train(arch):
    r = run_local(DistantXor, {"arch": arch, "hidden": 16}, 1)[0]
    assert math.isfinite(r["train_loss"]) and 0 <= r["val_acc"] <= 1 and r["grad_norm"] > 0


@pytest.mark.slow
def test_distant_xor_is_learned_after_a_plateau():
    history = run_local(DistantXor, {"arch": "transformer", "lr": 3e-3}, 12)
    accs = [r["val_acc"] for r in history]
    assert accs[0] < 0.6 and max(accs) == 1.0


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "experiments")))
def test_example_specs_validate_and_their_default_config_trains(path):
    spec = load_spec(path)
    assert spec.num_samples <= 16  # small settings: an example runs in well under a minute of CPU
    cls = spec.trainable_class()
    if getattr(cls, "DATASET", None) is None and cls.__name__ != "DistantXor":
        return  # synthetic or user-model specs: the runner and generic tests cover them
    r = run_local(cls, {}, 1)[0]
    assert math.isfinite(r["train_loss"]) and spec.metric in r
