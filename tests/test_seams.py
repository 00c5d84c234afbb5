"""First contact: errors before anything starts, trainables found where users keep them,
fail fast, function trainables through the runner. Real Ray, real runs, small."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUADRATIC = ROOT / "experiments" / "quadratic.yaml"

# A user's module of trainables, written next to a spec outside the repository.
USER_MODULE = textwrap.dedent('''
    from ray import tune


    class Tiny(tune.Trainable):
        def setup(self, config):
            self.x = config["x"]

        def step(self):
            return {"loss": (self.x - 0.3) ** 2}


    def curve(config):
        for i in range(3):
            tune.report({"loss": (config["x"] - 0.3) ** 2 + 1.0 / (i + 1)})


    def silent(config):
        tune.report({"accuracy": 0.5})


    def broken(config):
        raise ValueError("the data folder is missing")
''')
SPEC = textwrap.dedent('''
    name: mine
    trainable: mymodels:{trainable}
    metric: loss
    mode: min
    param_space:
      x: {{type: uniform, low: 0, high: 1}}
    num_samples: {num_samples}
    max_concurrent: 1
    stop: {{max_iterations: 3}}
    local_ray: {{num_cpus: 2}}
''')


def _user_project(folder: Path, trainable: str = "Tiny", num_samples: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mymodels.py").write_text(USER_MODULE)
    spec = folder / f"{trainable.lower()}.yaml"
    spec.write_text(SPEC.format(trainable=trainable, num_samples=num_samples))
    return spec


def _tunekit(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TUNEKIT_STORAGE")}
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("overrides, expected", [
    (["searcher.type=tpe", "searcher.n_startups=5"],
     "tunekit: searcher.n_startups: unknown option for tpe (did you mean n_startup?)"),
    (["scheduler.grace=2"], "tunekit: scheduler.grace: unknown option for asha (did you mean grace_period?)"),
])
def test_mistyped_options_are_refused_before_anything_starts(tmp_path, overrides, expected):
    sets = [a for o in overrides for a in ("--set", o)]
    storage = tmp_path / "records"
    for extra in (["--dry-run"], []):  # the real run too: refused before Ray or a record version
        out = _tunekit("run", QUADRATIC, "--storage", storage, *sets, *extra, cwd=ROOT)
        assert out.returncode == 2 and out.stderr.strip() == expected, out.stderr[-2000:]
        assert not storage.exists()


def test_dry_run_shows_every_value_and_warns_about_the_startup_design(tmp_path):
    out = _tunekit("run", QUADRATIC, "--dry-run", "--set", "searcher=tpe", "--set", "searcher.n_startup=10",
                   "--set", "num_samples=8", "--set", "param_space.x.low=0", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    x_row = next(line for line in out.stdout.splitlines() if line.strip().startswith("x "))
    assert "'low': 0" in x_row
    assert "amplitude = 1.0" in out.stdout  # fixed values are listed
    assert "'n_startup': 10" in out.stdout and "'n_candidates': 64" in out.stdout  # defaults in effect
    assert "'grace_period': 1" in out.stdout and "'max_t': 9" in out.stdout
    assert "warning: num_samples (8) is not larger than the searcher's start-up design (10 trials)" in out.stdout


@pytest.mark.slow
def test_a_trainable_module_beside_the_spec_imports_without_pythonpath(tmp_path):
    spec = _user_project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = tmp_path / "project" / "missing.yaml"
    missing.write_text(spec.read_text().replace("mymodels:", "mymodelz:"))
    bad = _tunekit("run", missing, "--dry-run", cwd=elsewhere)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert f"tunekit: trainable: no module named 'mymodelz' (looked in {tmp_path / 'project'}, {elsewhere}" \
        in bad.stderr
    run = _tunekit("run", spec, "--storage", tmp_path / "records", "--quiet", cwd=elsewhere)
    assert run.returncode == 0, run.stderr[-3000:]
    from toolkit.results import load

    rec = load("mine", root=tmp_path / "records")
    assert len(rec.trials) == 2 and (rec.trials["status"] == "TERMINATED").all()


# --------------------------------------------------------------------------- in-process runs on one Ray
@pytest.fixture(scope="module")
def user_project(tmp_path_factory):
    """A user's folder of trainables, and a local Ray whose workers can import from it."""
    import ray

    folder = tmp_path_factory.mktemp("user_project")
    (folder / "mymodels.py").write_text(USER_MODULE)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(folder)] + ([old] if old else []))  # workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield folder
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _run(folder: Path, storage: Path, trainable: str, num_samples: int = 2):
    from toolkit.runner import run_experiment
    from toolkit.spec import load_spec

    lines: list[str] = []
    spec = load_spec(_user_project(folder, trainable, num_samples), [f"storage={storage}"])
    return run_experiment(spec, verbose=0, log=lines.append), lines


@pytest.mark.slow
def test_function_trainables_run_and_are_guarded_like_classes(user_project, tmp_path):
    from toolkit.results import load

    out, _ = _run(user_project, tmp_path, "curve")
    assert out.status == "completed" and out.n_trials == 2 and out.n_errors == 0
    history = load("mine", root=tmp_path).metrics
    assert history.groupby("trial_id")["training_iteration"].max().tolist() == [3, 3]
    silent, _ = _run(user_project, tmp_path, "silent")
    trials = load(f"mine@v{silent.version}", root=tmp_path).trials
    assert silent.status == "failed" and silent.n_errors == 2
    assert trials["error"].str.contains("did not report the metric 'loss' \\(it reported: accuracy").all()


@pytest.mark.slow
def test_identical_failures_stop_the_sweep_once(user_project, tmp_path):
    from toolkit.results import load

    out, lines = _run(user_project, tmp_path, "broken", num_samples=10)
    assert out.status == "failed" and out.n_trials == 3  # one at a time: the 4th never started
    said = [line for line in lines if "stopping the sweep" in line]
    assert said == ["[tunekit] stopping the sweep: the first 3 trials all failed with "
                    "ValueError: the data folder is missing"]
    rec = load("mine", root=tmp_path)
    assert rec.manifest["status"] == "failed"
    assert rec.manifest["extra"]["error"] == "ValueError: the data folder is missing"


@pytest.mark.slow
def test_a_run_that_fails_before_its_first_trial_leaves_no_version(user_project, tmp_path):
    (tmp_path / ".ray").write_text("")  # where Tune keeps its experiment folders: not a folder
    with pytest.raises(OSError):
        _run(user_project, tmp_path, "Tiny")
    assert not (tmp_path / "mine").exists()
