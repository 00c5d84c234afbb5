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


@pytest.mark.slow
def test_killed_local_driver_resumes_into_the_same_version_with_each_trial_once(tmp_path):
    storage = tmp_path / "records"
    spec = {"name": "q", "trainable": "trainables.synthetic:Quadratic", "metric": "loss", "mode": "min",
            "param_space": {"x": {"type": "uniform", "low": -2.0, "high": 2.0}, "sleep_s": 0.3},
            "searcher": "tpe", "num_samples": 6, "max_concurrent": 2, "resources_per_trial": {"cpu": 1},
            "stop": {"max_iterations": 3}, "seed": 0, "storage": str(storage), "local_ray": {"num_cpus": 2}}
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "toolkit.cli", "run", str(path), "--quiet"]
    driver = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    journal = storage / "q" / "v1" / store.STAGING / store.JOURNAL
    try:
        deadline = time.monotonic() + 400
        while not (journal.exists() and journal.read_text().count('"kind": "trial"') >= 2):
            assert driver.poll() is None, "the driver ended before it could be killed"
            assert time.monotonic() < deadline, "no two trials recorded in time"
            time.sleep(0.3)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started, nothing else
        driver.wait(timeout=60)
    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert store.versions(storage, "q") == [1]
    rec = load("q", root=storage)
    assert rec.manifest["status"] == "completed" and rec.manifest.get("resumed_at")
    ids = list(rec.trials["trial_id"])
    assert len(ids) == len(set(ids)) == 6
    per_trial = rec.metrics.groupby("trial_id")["training_iteration"]
    assert (per_trial.nunique() == per_trial.size()).all()  # one row per (trial, iteration)
