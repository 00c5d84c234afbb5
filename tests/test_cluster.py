"""`tunekit run --address` against a real multi-node Ray cluster on loopback (token auth on)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PORT = "6433"

pytestmark = pytest.mark.slow


@pytest.fixture
def loopback_cluster():
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env["PATH"]  # the `ray` of this environment
    subprocess.run(["bash", str(ROOT / "clusters/local/up.sh"), "2", "1", "1", PORT], env=env, check=True,
                   timeout=180)
    try:
        yield env
    finally:
        subprocess.run(["bash", str(ROOT / "clusters/local/down.sh"), PORT], env=env, timeout=60)


def test_sweep_runs_on_a_three_node_cluster(loopback_cluster, tmp_path):
    env = {k: v for k, v in loopback_cluster.items() if k != "RAY_AUTH_MODE"}  # the runner turns it on
    run = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "run", str(ROOT / "experiments/quadratic.yaml"),
         "--address", f"127.0.0.1:{PORT}", "--storage", str(tmp_path), "--quiet",
         "--set", "num_samples=6", "--set", "stop.max_iterations=3", "--set", "max_concurrent=3",
         "--set", "resources_per_trial.gpu=0.5"],
        capture_output=True, text=True, timeout=400, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    from toolkit.results import load

    rec = load("quadratic", root=tmp_path)
    cluster = rec.manifest["environment"]["ray_cluster"]
    assert cluster["nodes"] == 3 and cluster["resources"]["CPU"] == 3 and cluster["resources"]["GPU"] == 3
    assert len(rec.trials) == 6 and (rec.trials["status"] != "ERROR").all()
