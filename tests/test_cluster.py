"""tunekit on a real multi-node Ray cluster on loopback: a head (job server on 127.0.0.1) and two
worker nodes started by clusters/local/up.sh, token auth on, shared by every test of this module
(starting nodes is the expensive part on a small machine) and stopped by pid at the end.

Order matters: the last test kills a worker node.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PORT = 6433
DASHBOARD = 8433
JOBS = f"http://127.0.0.1:{DASHBOARD}"

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    # Short: Ray's unix sockets live under it and AF_UNIX paths are limited to 107 bytes.
    cluster_dir = Path(tempfile.mkdtemp(prefix="tkc-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    # Our own token in our own HOME: a ray.init() elsewhere on this machine writes ~/.ray/auth_token.
    env.update(HOME=str(home), RAY_AUTH_TOKEN_PATH=str(home / ".ray" / "auth_token"),
               PATH=str(Path(sys.executable).parent) + os.pathsep + env["PATH"], PYTHONPATH=str(ROOT),
               CLUSTER_DIR=str(cluster_dir), DASHBOARD_PORT=str(DASHBOARD), NODE_PORT_BASE="26433",
               HEAD_GPUS="0", RAY_USAGE_STATS_ENABLED="0")
    # head: 1 CPU, no GPU; 2 workers: 1 CPU and 2 logical GPUs each.
    up = subprocess.run(["bash", str(ROOT / "clusters/local/up.sh"), "2", "1", "2", str(PORT)], env=env,
                        capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield {"env": env, "dir": cluster_dir, "home": home}
    finally:
        subprocess.run(["bash", str(ROOT / "clusters/local/down.sh"), str(PORT)], env=env, timeout=120)
        shutil.rmtree(cluster_dir, ignore_errors=True)


def tunekit(cluster, *args, cwd=None, timeout=400, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**cluster["env"], **(env or {})})


def project(tmp_path: Path, storage: Path, **fields) -> Path:
    """A folder holding one spec (the quadratic sweep, made tiny) to submit as a job."""
    spec = {"name": "q", "trainable": "trainables.synthetic:Quadratic", "metric": "loss", "mode": "min",
            "param_space": {"x": {"type": "uniform", "low": -2.0, "high": 2.0}, "sleep_s": 0.0},
            "searcher": "random", "num_samples": 4, "max_concurrent": 3, "resources_per_trial": {"cpu": 1},
            "stop": {"max_iterations": 2}, "seed": 0, "storage": str(storage)}
    for key, value in fields.items():
        spec[key] = value
    (tmp_path / "sweep.yaml").write_text(json.dumps(spec))
    return tmp_path


def record(storage: Path, name: str = "q"):
    from toolkit.results import load

    return load(name, root=storage)


def job_id_of(output: str) -> str:
    for line in output.splitlines():
        if " as job " in line:
            return line.split(" as job ")[1].split()[0]
    raise AssertionError(f"no job id in: {output[-2000:]}")


def test_submit_runs_on_three_nodes_and_a_second_submission_is_refused(cluster, tmp_path):
    storage = tmp_path / "records"
    (tmp_path / "p").mkdir()
    proj = project(tmp_path / "p", storage,  # steps of 1 s: still running when submitted again
                   param_space={"x": {"type": "uniform", "low": -2.0, "high": 2.0}, "sleep_s": 1.0})
    first = tunekit(cluster, "submit", "sweep.yaml", "--address", JOBS, "--no-wait", cwd=proj)
    assert first.returncode == 0, first.stderr[-3000:]
    job = job_id_of(first.stdout)
    second = tunekit(cluster, "submit", "sweep.yaml", "--address", JOBS, cwd=proj)
    assert second.returncode == 3, second.stdout + second.stderr
    assert f"as job {job}" in second.stderr and ("already running" in second.stderr or "already pending" in second.stderr)
    follow = tunekit(cluster, "jobs", "logs", job, "--follow", "--address", JOBS)
    assert follow.returncode == 0, follow.stdout[-3000:] + follow.stderr[-2000:]
    rec = record(storage)
    assert rec.manifest["status"] == "completed"
    assert rec.manifest["environment"]["ray_cluster"]["nodes"] == 3
    assert len(rec.trials) == 4 and set(rec.trials["status"]) == {"TERMINATED"}
    listing = tunekit(cluster, "jobs", "list", "--address", JOBS)
    assert job in listing.stdout and "SUCCEEDED" in listing.stdout
    again = tunekit(cluster, "submit", "sweep.yaml", "--address", JOBS, cwd=proj)
    assert again.returncode == 3 and "already completed" in again.stderr


def test_no_token_wrong_token_and_right_token_are_three_outcomes(cluster, tmp_path):
    token_file = Path(cluster["env"]["RAY_AUTH_TOKEN_PATH"])
    missing = tunekit(cluster, "jobs", "list", "--address", JOBS,
                      env={"RAY_AUTH_TOKEN_PATH": str(tmp_path / "none"), "HOME": str(tmp_path)})
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text("0" * 64)
    wrong = tunekit(cluster, "jobs", "list", "--address", JOBS, env={"RAY_AUTH_TOKEN_PATH": str(wrong_file)})
    right = tunekit(cluster, "jobs", "list", "--address", JOBS, env={"RAY_AUTH_TOKEN": token_file.read_text()})
    assert (missing.returncode, wrong.returncode, right.returncode) == (4, 5, 0)
    assert "requires a token and none was found" in missing.stderr
    assert "rejected the token" in wrong.stderr
    assert missing.stderr.count("\n") == wrong.stderr.count("\n") == 1  # one line each


def test_jobs_stop_leaves_an_interrupted_record_and_no_trial_actors(cluster, tmp_path):
    storage = tmp_path / "records"
    (tmp_path / "p").mkdir()
    proj = project(tmp_path / "p", storage, num_samples=6,
                   param_space={"x": {"type": "uniform", "low": -2.0, "high": 2.0}, "sleep_s": 1.0},
                   stop={"max_iterations": 30})
    sub = tunekit(cluster, "submit", "sweep.yaml", "--address", JOBS, "--no-wait", cwd=proj)
    assert sub.returncode == 0, sub.stderr[-3000:]
    job = job_id_of(sub.stdout)
    wait_for(lambda: (storage / ".ray").exists() and any((storage / ".ray").rglob("result.json")), 300,
             "trials to report")
    time.sleep(5)
    stop = tunekit(cluster, "jobs", "stop", job, "--address", JOBS)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    rec = record(storage)
    assert rec.manifest["status"] == "interrupted"
    assert len(rec.trials) >= 1
    import requests

    token = Path(cluster["env"]["RAY_AUTH_TOKEN_PATH"]).read_text().strip()

    def no_live_trials():
        r = requests.get(f"{JOBS}/api/v0/actors", params={"detail": "1", "limit": "1000"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
        actors = r.json()["data"]["result"]["result"]
        return not [a for a in actors if a["state"] == "ALIVE" and "Quadratic" in a.get("class_name", "")]

    wait_for(no_live_trials, 60, "the trial actors to end")


def test_driver_killed_then_resumed_finishes_the_same_version_with_each_trial_once(cluster, tmp_path):
    storage = tmp_path / "records"
    spec = project(tmp_path, storage, num_samples=6, searcher="tpe",
                   param_space={"x": {"type": "uniform", "low": -2.0, "high": 2.0}, "sleep_s": 0.5},
                   stop={"max_iterations": 4}) / "sweep.yaml"
    args = [sys.executable, "-m", "toolkit.cli", "run", str(spec), "--address", f"127.0.0.1:{PORT}", "--quiet"]
    driver = subprocess.Popen(args, env=cluster["env"], cwd=ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from toolkit.results import store

    journal = storage / "q" / "v1" / store.STAGING / store.JOURNAL
    try:
        wait_for(lambda: journal.exists() and journal.read_text().count('"kind": "trial"') >= 2, 300,
                 "two trials in the record's journal")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and only it: trials die with their owner
        driver.wait(timeout=60)
    resumed = tunekit(cluster, "run", str(spec), "--address", f"127.0.0.1:{PORT}", "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert store.versions(storage, "q") == [1]
    rec = record(storage)
    assert rec.manifest["status"] == "completed" and rec.manifest.get("resumed_at")
    ids = list(rec.trials["trial_id"])
    assert len(ids) == len(set(ids)) == 6
    per_trial = rec.metrics.groupby("trial_id")["training_iteration"]
    assert (per_trial.nunique() == per_trial.size()).all()  # one row per (trial, iteration)


GPU_PROBE = '''
import json, os, time
from pathlib import Path
import ray
from ray import tune


class GPUProbe(tune.Trainable):
    """Writes which GPUs Ray gave it, then waits until every trial of the sweep runs at once."""

    def setup(self, config):
        self.out = Path(config["probe_dir"])
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"{self.trial_id}.json").write_text(json.dumps({
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "node": ray.get_runtime_context().get_node_id()}))

    def step(self):
        deadline = time.time() + self.config["wait_s"]
        while len(list(self.out.glob("*.json"))) < self.config["expect"] and time.time() < deadline:
            time.sleep(0.2)
        together = len(list(self.out.glob("*.json")))
        return {"loss": float(together), "together": together}
'''


def test_half_gpu_trials_pack_two_per_logical_gpu_and_see_only_their_own(cluster, tmp_path):
    storage = tmp_path / "records"
    probe_dir = tmp_path / "probe"
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "gpu_probe.py").write_text(GPU_PROBE)
    proj = project(tmp_path / "p", storage, name="gpu", trainable="gpu_probe:GPUProbe", metric="loss",
                   param_space={"probe_dir": str(probe_dir), "wait_s": 180, "expect": 8}, num_samples=8,
                   max_concurrent=8, resources_per_trial={"cpu": 0, "gpu": 0.5}, stop={"max_iterations": 1})
    # --dry-run on the connected cluster: 4 logical GPUs / 0.5 per trial
    dry = tunekit(cluster, "run", "sweep.yaml", "--dry-run", "--address", f"127.0.0.1:{PORT}", cwd=proj,
                  env={"PYTHONPATH": f"{proj}{os.pathsep}{ROOT}"})
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "expected concurrency: 8 trial(s) at once" in dry.stdout and "GPUs allow 8" in dry.stdout
    run = tunekit(cluster, "submit", "sweep.yaml", "--address", JOBS, "--follow", cwd=proj, timeout=500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    seen = [json.loads(p.read_text()) for p in probe_dir.glob("*.json")]
    assert len(seen) == 8
    assert all(len(s["gpu_ids"]) == 1 and s["cuda_visible_devices"] == s["gpu_ids"][0] for s in seen)
    per_device: dict[tuple, int] = {}
    for s in seen:
        per_device[(s["node"], s["gpu_ids"][0])] = per_device.get((s["node"], s["gpu_ids"][0]), 0) + 1
    assert sorted(per_device.values()) == [2, 2, 2, 2]  # 2 workers x 2 logical GPUs, two trials on each
    rec = record(storage, "gpu")
    assert (rec.trials["final_metric"] == 8).all()  # all 8 ran at the same time


def test_worker_node_killed_mid_sweep_loses_no_trial(cluster, tmp_path):
    storage = tmp_path / "records"
    (tmp_path / "p").mkdir()
    # A logical GPU per trial: trials run only on the two worker nodes (the head has no GPU).
    proj = project(tmp_path / "p", storage, num_samples=4, resources_per_trial={"cpu": 0, "gpu": 1},
                   param_space={"x": {"type": "uniform", "low": -2.0, "high": 2.0}, "sleep_s": 1.0},
                   stop={"max_iterations": 8})
    sub = tunekit(cluster, "submit", "sweep.yaml", "--address", JOBS, "--no-wait", cwd=proj)
    assert sub.returncode == 0, sub.stderr[-3000:]
    job = job_id_of(sub.stdout)

    def a_trial_pid() -> int | None:
        for result_file in (storage / ".ray").rglob("result.json") if (storage / ".ray").exists() else ():
            lines = [line for line in result_file.read_text().splitlines() if line.strip()]
            if len(lines) >= 2:  # two results: a checkpoint is behind it
                return json.loads(lines[-1])["pid"]
        return None

    wait_for(lambda: a_trial_pid() is not None, 300, "a trial to report twice")
    # Kill the raylet of the node that runs that trial: the trial's worker process is its child.
    raylet = a_trial_pid()
    while raylet > 1 and "raylet/raylet" not in Path(f"/proc/{raylet}/cmdline").read_text():
        raylet = int(Path(f"/proc/{raylet}/stat").read_text().rsplit(")", 1)[1].split()[1])
    head_group = int((cluster["dir"] / "pids").read_text().split()[0])
    assert raylet > 1 and os.getpgid(raylet) != head_group, "the trial does not run under a worker node's raylet"
    os.kill(raylet, signal.SIGKILL)
    done = tunekit(cluster, "jobs", "logs", job, "--follow", "--address", JOBS, timeout=500)
    assert done.returncode == 0, done.stdout[-3000:]
    rec = record(storage)
    assert rec.manifest["status"] == "completed"
    # No trial is lost: all four are in the record once, each with all 8 iterations.
    assert len(rec.trials) == 4 and rec.trials["trial_id"].is_unique, rec.trials.to_string()
    assert (rec.trials["status"] == "TERMINATED").all() and (rec.trials["iterations"] == 8).all(), \
        rec.trials.to_string()
    # The dead node's trials continued from their last checkpoint (taken every iteration on a
    # cluster), not from scratch: Ray numbers the results after a restore from 1 again.
    restored = []
    for result_file in (storage / ".ray").rglob("result.json"):
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        restored += [r for r in rows if r["iterations_since_restore"] < r["training_iteration"]]
    assert restored, "no trial continued from a checkpoint"
