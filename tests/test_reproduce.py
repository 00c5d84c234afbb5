"""`reproduce`: rerun a recorded trial in-process and compare it with the record."""

import math
import platform

import numpy as np
import pytest
from ray import tune

from toolkit.imports import TrainableImportError, import_trainable
from toolkit.reproduce import CodeRefused, reproduce
from toolkit.results import RecordWriter, collect_environment, load


class Noisy(tune.Trainable):
    """Deterministic given its seed: a decaying loss plus seeded noise."""

    def setup(self, config):
        self.rng = np.random.default_rng(config["seed"])
        self.x = config["x"]
        self.t = 0

    def step(self):
        self.t += 1
        return {"loss": self.x ** 2 + math.exp(-self.t) + 0.01 * float(self.rng.standard_normal())}


TRAINABLE = f"{__name__}:Noisy"


def _history(config, iters):
    t = Noisy(config=dict(config))
    try:
        return [{"training_iteration": i + 1, "loss": t.train()["loss"]} for i in range(iters)]
    finally:
        t.stop()


def _record(root, perturb=None, env=None):
    w = RecordWriter(root, "noisy", {"trainable": TRAINABLE, "metric": "loss", "mode": "min",
                                     "environment": env if env is not None else collect_environment()})
    for i, x in enumerate([0.5, -0.1, 0.3]):
        config = {"x": x, "seed": 100 + i}
        h = _history(config, 4)
        if perturb is not None and i == 1:
            h[perturb]["loss"] += 1e-9
        w.add_trial({"trial_id": f"t{i}", "config": config, "status": "TERMINATED", "iterations": 4,
                     "final_metric": h[-1]["loss"], "best_metric": min(r["loss"] for r in h)}, h)
    w.finish("completed", None)
    return load(f"noisy@v{w.version}", root=root)


def test_import_trainable_accepts_colon_and_dot_paths():
    assert import_trainable(TRAINABLE) is Noisy
    assert import_trainable("trainables.synthetic.Quadratic").__name__ == "Quadratic"
    with pytest.raises(TrainableImportError):
        import_trainable("nomodule")


def test_best_trial_reproduces_exactly_and_reports_no_environment_change(tmp_path):
    rec = _record(tmp_path)
    r = reproduce(rec)
    assert r.trial_id == "t1" and r.iterations == 4  # x = -0.1 has the lowest loss
    assert r.exact and r.reproduced == r.recorded and r.abs_diff == 0.0
    assert r.recorded_history == list(rec.metrics[rec.metrics.trial_id == "t1"]["loss"])
    # Only volatile fields may differ between two captures on the same machine (tunekit's own
    # checkout may be edited in between).
    assert all(k.startswith("tunekit.git.") for k, _, _ in r.environment_diff), r.environment_diff
    assert r.code is not None and r.code.matches and r.code.file.name == "test_reproduce.py"
    assert "trial t1" in r.to_text() and "every iteration identical: yes" in r.to_text()
    other = reproduce(rec, trial="t2", iterations=2)
    assert other.exact is False and other.iterations == 2 and len(other.reproduced_history) == 2


def test_a_differing_history_is_reported_with_its_first_difference(tmp_path):
    rec = _record(tmp_path, perturb=2)
    r = reproduce(rec, trial="t1")
    assert not r.exact and r.recorded == r.reproduced  # the final value matches, iteration 3 did not
    assert "first difference at iteration 3" in r.to_text()


def test_environment_differences_are_listed(tmp_path):
    env = collect_environment()
    env["versions"] = dict(env["versions"], torch="1.0.0")
    env["packages"] = [p for p in env["packages"] if not p.lower().startswith("numpy==")] + ["ancientpkg==0.1"]
    env["python"] = dict(env["python"], version="3.9.0")
    r = reproduce(_record(tmp_path, env=env))
    diff = {k: (a, b) for k, a, b in r.environment_diff}
    assert diff["versions.torch"][0] == "1.0.0"
    assert diff["python.version"] == ("3.9.0", platform.python_version())
    assert diff["packages.ancientpkg"] == ("0.1", None)
    assert diff["packages.numpy"][0] is None and diff["packages.numpy"][1] == np.__version__
    assert "versions.torch" in r.to_text()


def test_function_trainables_are_refused_clearly(tmp_path):
    w = RecordWriter(tmp_path, "fn", {"trainable": "math:sqrt", "metric": "loss", "mode": "min"})
    w.add_trial({"trial_id": "a", "config": {"seed": 1}, "final_metric": 1.0, "iterations": 1},
                [{"training_iteration": 1, "loss": 1.0}])
    w.finish("completed", None)
    with pytest.raises(CodeRefused, match="not a ray.tune.Trainable"):
        reproduce("fn", root=tmp_path)


@pytest.mark.slow
def test_digits_sweep_on_real_ray_reproduces_exactly_on_cpu(tmp_path):
    """A real Tune sweep of the digits MLP (Ray workers), then an in-process rerun of its best
    trial: every recorded val_loss must come back bit for bit."""
    import ray

    from toolkit.runner import run_experiment
    from toolkit.spec import validate_spec

    spec = validate_spec({
        "name": "digits-repro", "trainable": "trainables.digits:DigitsMLP", "metric": "val_loss", "mode": "min",
        "param_space": {"lr": {"type": "loguniform", "low": 1e-3, "high": 3e-2},
                        "width": {"type": "choice", "values": [16, 32]}},
        "searcher": "random", "scheduler": "fifo", "num_samples": 2, "max_concurrent": 2,
        "stop": {"max_iterations": 2}, "seed": 3, "storage": str(tmp_path)})
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        out = run_experiment(spec, verbose=0)
    finally:
        ray.shutdown()
    assert out.status == "completed"
    rec = load("digits-repro", root=tmp_path)
    assert rec.manifest["data"] and rec.manifest["data"]["fingerprint"]
    for trial in ["best", rec.trials.trial_id.iloc[-1]]:
        r = reproduce(rec, trial=trial)
        assert r.iterations == 2 and r.exact, r.to_text()
        assert r.reproduced == r.recorded
