"""Resuming a sweep whose driver died: the record version is reopened, never duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from toolkit.cluster.recovery import find_resumable
from toolkit.results import RecordWriter, load, store

ROOT = Path(__file__).resolve().parents[1]


def dead_writer(root: Path, trials: int) -> None:
    """A process that opens a record, journals `trials` trials and dies without finishing."""
    code = textwrap.dedent(f"""
        import os
        from toolkit.results import RecordWriter
        w = RecordWriter({str(root)!r}, "q", {{"metric": "loss", "mode": "min", "spec": {{"name": "q"}}}})
        for i in range({trials}):
            w.add_trial({{"trial_id": f"t{{i}}", "config": {{"x": i}}, "status": "TERMINATED", "final_metric": float(i)}},
                        [{{"training_iteration": 1, "loss": float(i)}}])
        w.flush()
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_reopen_replays_the_journal_and_finishes_the_same_version(tmp_path):
    dead_writer(tmp_path, 2)
    assert find_resumable(tmp_path, "q", {"name": "q"}) == 1
    assert find_resumable(tmp_path, "q", {"name": "other"}) is None  # another spec's run is not ours
    w = RecordWriter.reopen(tmp_path, "q", 1)
    assert [r["trial_id"] for r in w.recorded_rows] == ["t0", "t1"]
    w.add_trial({"trial_id": "t2", "config": {"x": 2}, "status": "TERMINATED", "final_metric": 2.0},
                [{"training_iteration": 1, "loss": 2.0}])
    w.finish("completed")
    rec = load("q", root=tmp_path)
    assert store.versions(tmp_path, "q") == [1]
    assert sorted(rec.trials["trial_id"]) == ["t0", "t1", "t2"]
    assert len(rec.manifest["resumed_at"]) == 1
    with pytest.raises(ValueError, match="not an incomplete version"):
        RecordWriter.reopen(tmp_path, "q", 1)


def test_a_version_whose_writer_is_alive_is_not_taken_over(tmp_path):
    w = RecordWriter(tmp_path, "q", {"metric": "loss", "mode": "min", "spec": {"name": "q"}})
    assert find_resumable(tmp_path, "q", {"name": "q"}) is None
    with pytest.raises(ValueError, match="still being written"):
        RecordWriter.reopen(tmp_path, "q", w.version)
    w.finish("completed")


def kill_points() -> tuple[int, list[tuple[int, float]]]:
    """Two random moments to kill a driver: once the sweep has started k trials, plus up to a
    trial's length. k1 in 2..5 and k2 in k1+2..8 of 10 keep both kills inside the sweep. The seed
    is fresh per run and named in every assertion (replay a failure with TUNEKIT_KILL_SEED)."""
    import random

    seed = int(os.environ.get("TUNEKIT_KILL_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    k1 = rng.randint(2, 5)
    k2 = rng.randint(k1 + 2, 8)
    return seed, [(k1, rng.uniform(0.0, 1.0)), (k2, rng.uniform(0.0, 1.0))]


# Two sweeps whose outcome is fixed whatever the timing, so a resumed run can be compared with an
# uninterrupted one: TPE one trial at a time (the order of results, and so its proposals, is
# fixed; a short start-up so most proposals come from the model, whose state must survive), and
# random search with deterministic promotion ASHA (paused trials, rung state saved by us since
# Ray does not save schedulers).
SWEEPS = {
    "tpe": {"searcher": {"type": "tpe", "n_startup": 3}, "max_concurrent": 1, "stop": {"max_iterations": 3},
            "local_ray": {"num_cpus": 1}},
    "asha": {"searcher": "random", "stop": {"max_iterations": 9}, "local_ray": {"num_cpus": 2},
             "scheduler": {"type": "asha", "mode": "promote", "grace_period": 1, "reduction_factor": 3,
                           "deterministic": True}},
}


def sweep_spec(storage: Path, path: Path, sweep: str) -> list[str]:
    spec = {"name": "q", "trainable": "trainables.synthetic:Quadratic", "metric": "loss", "mode": "min",
            "param_space": {"x": {"type": "uniform", "low": -2.0, "high": 2.0},
                            "y": {"type": "uniform", "low": -2.0, "high": 2.0}, "sleep_s": 0.25},
            "num_samples": 10, "resources_per_trial": {"cpu": 1}, "seed": 0, "storage": str(storage),
            **SWEEPS[sweep]}
    path.write_text(json.dumps(spec))
    return [sys.executable, "-m", "toolkit.cli", "run", str(path), "--quiet"]


def outcomes(storage: Path) -> list[tuple[float, float, int, str]]:
    """Each trial's configuration, iterations and status, sorted: a trial that ended just before
    a kill is recorded by the next driver, so the record's row order is not the order of proposals."""
    t = load("q", root=storage).trials
    return sorted((round(x, 9), round(y, 9), int(n), st)
                  for x, y, n, st in zip(t["config.x"], t["config.y"], t["iterations"], t["status"]))


@pytest.mark.slow
@pytest.mark.parametrize("sweep", sorted(SWEEPS))
def test_driver_killed_twice_at_random_points_resumes_into_one_version_with_the_uninterrupted_outcome(tmp_path, sweep):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    reference = tmp_path / "uninterrupted"
    cmd = sweep_spec(reference, tmp_path / "reference.yaml", sweep)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    storage = tmp_path / "records"
    cmd = sweep_spec(storage, tmp_path / "sweep.yaml", sweep)
    trial_dirs = storage / ".ray" / "q-v1"
    seed, kills = kill_points()
    why = f"(kill seed {seed}, kills after trial/s {[(k, round(d, 2)) for k, d in kills]})"
    for attempt, (started, delay) in enumerate(kills):
        driver = subprocess.Popen(cmd + (["--resume"] if attempt else []), env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 400
            while len(list(trial_dirs.glob("Quadratic_*"))) < started:
                assert driver.poll() is None, f"driver {attempt + 1} ended before it could be killed {why}"
                assert time.monotonic() < deadline, f"driver {attempt + 1} started no trial {started} in time {why}"
                time.sleep(0.05)
            time.sleep(delay)
        finally:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started, nothing else
            driver.wait(timeout=60)
        assert not store.is_published(store.version_dir(storage, "q", 1)), f"the sweep ended before kill {why}"
    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, why + resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert store.versions(storage, "q") == [1], why
    rec = load("q", root=storage)
    assert rec.manifest["status"] == "completed" and rec.manifest.get("resumed_at"), why
    ids = list(rec.trials["trial_id"])
    assert len(ids) == len(set(ids)) == 10, f"{why} {ids}"
    per_trial = rec.metrics.groupby("trial_id")["training_iteration"]
    assert (per_trial.nunique() == per_trial.size()).all(), why  # one row per (trial, iteration)
    # The searcher restored after each kill proposes exactly what the uninterrupted one did, and
    # the scheduler restored from its saved rungs stops and promotes exactly the same trials.
    assert outcomes(storage) == outcomes(reference), why
