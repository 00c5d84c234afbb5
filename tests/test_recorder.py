"""Records from every path: the public Tune callback, the user's code provenance, the code
check before `reproduce` runs anything, spec files as record names, typed report axes."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from toolkit.cli import main
from toolkit.results import RecordWriter, collect_environment, describe_code, load, synthetic
from toolkit.space import parse_space

REPO = Path(__file__).resolve().parents[1]

QUADRATIC_MODULE = '''
from ray import tune


class Quad(tune.Trainable):
    def setup(self, config):
        self.x, self.t = config["x"], 0

    def step(self):
        self.t += 1
        return {"loss": (self.x - 0.3) ** 2 + 1.0 / self.t}
'''


def _module(folder: Path, name: str, source: str = QUADRATIC_MODULE) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def _record(root: Path, trainable: str, name: str = "quad", xs=(0.1, 0.25, 0.9)) -> str:
    """A record of the module's `Quad`, written as the runner writes one (code described
    at writing time, from the module as it is then)."""
    w = RecordWriter(root, name, {"trainable": trainable, "metric": "loss", "mode": "min",
                                  "environment": collect_environment()})
    for i, x in enumerate(xs):
        hist = [{"training_iteration": t, "loss": (x - 0.3) ** 2 + 1.0 / t} for t in (1, 2)]
        w.add_trial({"trial_id": f"t{i}", "config": {"x": x, "seed": i}, "status": "TERMINATED",
                     "iterations": 2, "final_metric": hist[-1]["loss"]}, hist)
    w.finish("completed")
    return f"{name}@v{w.version}"


# --------------------------------------------------------------------------- importing
def test_importing_toolkit_results_leaves_ray_tune_and_torch_out():
    code = ("import sys, toolkit.results, toolkit.results.report, toolkit.results.targets\n"
            "bad = [m for m in ('ray.tune', 'torch', 'toolkit.runner', 'toolkit.reproduce') if m in sys.modules]\n"
            "print(json.dumps(bad))")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


# --------------------------------------------------------------------------- provenance
def test_provenance_of_a_trainable_outside_git_is_its_file_hash(tmp_path, monkeypatch):
    path = _module(tmp_path, "outside_git_quad")
    monkeypatch.syspath_prepend(str(tmp_path))
    code = describe_code("outside_git_quad:Quad")
    assert code["status"] == "not under version control" and code["git"] is None
    assert code["file"] == str(path.resolve())
    import hashlib
    assert code["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "outside_git_quad" not in sys.modules  # found without importing it
    # tunekit's own version is recorded apart from the user's code.
    env = collect_environment()
    assert env["tunekit"]["version"] and "git" not in env
    ref = _record(tmp_path / "records", "outside_git_quad:Quad")
    meta = load(ref, root=tmp_path / "records").meta
    assert meta.code.status == "not under version control" and meta.code.file_sha256 == code["file_sha256"]


# --------------------------------------------------------------------------- reproduce: code check
def test_reproduce_refuses_a_changed_module_and_runs_it_with_trust(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # reproduce looks for the module in the current folder
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _module(tmp_path, "changed_quad")
    ref = _record(tmp_path / "records", "changed_quad:Quad")
    store = ["--storage", str(tmp_path / "records")]
    path.write_text(path.read_text() + "\nprint('SIDE EFFECT')\n")  # the code changed after the run
    assert main(["reproduce", ref, *store]) == 2
    out, err = capsys.readouterr()
    assert f"class Quad from {path.resolve()}" in out and "CHANGED" in out  # shown before refusing
    assert len(err.strip().splitlines()) == 1 and "differs from the code the record ran" in err
    assert "--trust" in err and "SIDE EFFECT" not in out  # never imported
    assert "changed_quad" not in sys.modules
    assert main(["reproduce", ref, *store, "--trust"]) == 0
    out = capsys.readouterr().out
    assert "SIDE EFFECT" in out and "every iteration identical: yes" in out and "--trust" in out


@pytest.mark.parametrize("case", ["missing-module", "missing-attribute", "not-a-trainable", "exits-on-import"])
def test_reproduce_of_unrunnable_code_is_one_line(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"unrunnable_{case.replace('-', '_')}"
    source = {"missing-module": QUADRATIC_MODULE, "missing-attribute": QUADRATIC_MODULE,
              "not-a-trainable": "class Quad:\n    pass\n",
              "exits-on-import": "import sys\nsys.exit(7)\n"}[case]
    path = _module(tmp_path, name, source)
    trainable = f"{name}:{'Nope' if case == 'missing-attribute' else 'Quad'}"
    ref = _record(tmp_path / "records", trainable)
    if case == "missing-module":
        path.unlink()
    code = main(["reproduce", ref, "--storage", str(tmp_path / "records")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("tunekit: trainable: ")
    expected = {"missing-module": f"no module named '{name}'", "missing-attribute": "has no attribute 'Nope'",
                "not-a-trainable": "not a ray.tune.Trainable", "exits-on-import": "called sys.exit(7)"}[case]
    assert expected in err


# --------------------------------------------------------------------------- spec files as names
def test_results_and_reproduce_accept_the_spec_file_and_use_its_storage(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("TUNEKIT_STORAGE", raising=False)
    _module(tmp_path, "spec_quad")
    _record(tmp_path / "elsewhere", "spec_quad:Quad", name="specced")
    spec = tmp_path / "exp.yaml"
    spec.write_text("name: specced\ntrainable: spec_quad:Quad\nmetric: loss\nmode: min\n"
                    "storage: ./elsewhere\nparam_space: {x: {type: uniform, low: 0, high: 1}}\n"
                    "stop: {max_iterations: 2}\n")
    assert main(["results", "show", str(spec)]) == 0
    assert "specced@v1" in capsys.readouterr().out
    assert main(["results", "export", f"{spec}@v1", "--format", "csv", "--out", str(tmp_path / "csv")]) == 0
    assert (tmp_path / "csv" / "trials.csv").exists()
    assert main(["reproduce", str(spec)]) == 0
    assert "every iteration identical: yes" in capsys.readouterr().out
    assert main(["results", "show", "specced"]) == 1  # by name, without the spec: default storage


# --------------------------------------------------------------------------- report axes
def test_report_axes_come_from_the_typed_space(tmp_path):
    from toolkit.results.report import axis_label, axis_scale, render_html

    space = parse_space({"lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
                         "unused": {"type": "uniform", "low": 0.0, "high": 1.0},
                         "width": {"type": "choice", "values": [32, 64, 128]}}).describe()
    w = RecordWriter(tmp_path, "axes", dict(synthetic.manifest("axes"), space=space))
    for trial, history in synthetic.sweep(7, 3):  # < 8 trials: no importance forest, a quick report
        trial["config"] = {k: trial["config"][k] for k in ("lr", "unused", "width", "seed")}
        w.add_trial(trial, history)
    w.finish("completed")
    rec = load("axes", root=tmp_path)
    assert axis_scale(rec, "config.lr") == "log" and axis_label(rec, "config.lr") == "lr (log)"
    assert axis_scale(rec, "config.unused") == "linear" and axis_label(rec, "config.unused") == "unused"
    # Nothing is conditional: the parallel-coordinates view has no "inactive" level.
    assert "inactive" not in render_html(rec)


# --------------------------------------------------------------------------- the public callback
@pytest.mark.slow
def test_a_plain_tuner_with_the_recorder_writes_a_record_show_and_reproduce_accept(tmp_path, monkeypatch, capsys):
    import ray
    from ray import tune

    from toolkit.results import Recorder
    from trainables.synthetic import Quadratic

    monkeypatch.chdir(tmp_path)
    space = {"x": tune.uniform(-2.0, 2.0), "lr": tune.loguniform(1e-4, 1e-1), "seed": 5}
    recorder = Recorder("plain", metric="loss", mode="min", storage=tmp_path / "records", param_space=space)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        tuner = tune.Tuner(Quadratic, param_space=space,
                           tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=3),
                           run_config=tune.RunConfig(stop={"training_iteration": 2}, callbacks=[recorder],
                                                     storage_path=str(tmp_path / "ray"), verbose=0))
        tuner.fit()
    finally:
        ray.shutdown()
    assert recorder.record_path is not None and recorder.version == 1
    rec = load("plain", root=tmp_path / "records")
    assert rec.status == "completed" and len(rec.trials) == 3 and set(rec.trials["iterations"]) == {2}
    assert len(rec.metrics) == 6 and rec.meta.trainable == "trainables.synthetic:Quadratic"
    assert rec.meta.code.file.endswith("trainables/synthetic.py") and rec.meta.code.file_sha256
    assert [p.key for p in rec.meta.space if p.log] == ["lr"]
    store = ["--storage", str(tmp_path / "records")]
    assert main(["results", "show", "plain", *store]) == 0
    assert "plain@v1" in capsys.readouterr().out
    assert main(["reproduce", "plain", *store, "--strict"]) == 0
    out = capsys.readouterr().out
    assert "every iteration identical: yes" in out and "unchanged since the run" in out
