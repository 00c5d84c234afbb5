"""Nightly sweeps end to end: real runs on an embedded local Ray, a controllable clock
(`--date`), a cheap objective, and a data file the test changes (the data fingerprint)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from toolkit.nightly import gate, ledger
from toolkit.nightly.night import NightOptions, run_night
from toolkit.results import load

pytestmark = pytest.mark.slow

OBJECTIVE = textwrap.dedent('''
    """A cheap objective whose optimum moves with the data file ($NIGHTLY_DATA)."""
    import hashlib, json, os, time
    from ray import tune

    def _offset():
        with open(os.environ["NIGHTLY_DATA"]) as f:
            return float(f.read())

    class Objective(tune.Trainable):
        METRICS = ("loss",)

        def setup(self, config):
            self.x, self.k, self.i = config["x"], config["k"], 0
            self.offset = _offset()
            self.step_s = float(os.environ.get("NIGHTLY_STEP_S", "0"))

        def step(self):
            self.i += 1
            time.sleep(self.step_s)
            return {"loss": (self.x - 0.3) ** 2 + (0.0 if self.k == "a" else 0.5) + self.offset + 0.1 / self.i}

        def save_checkpoint(self, d):
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"i": self.i}, f)

        def load_checkpoint(self, d):
            with open(os.path.join(d, "state.json")) as f:
                self.i = json.load(f)["i"]

        def reset_config(self, config):
            self.setup(config)
            return True

        @classmethod
        def data_fingerprint(cls):
            with open(os.environ["NIGHTLY_DATA"], "rb") as f:
                return {"fingerprint": hashlib.sha256(f.read()).hexdigest(), "description": "offset file"}
''')

SPEC = textwrap.dedent('''
    name: nightly-quad
    trainable: nightobj:Objective
    metric: loss
    mode: min
    param_space:
      x: {type: uniform, low: 0.0, high: 1.0}
      k: {type: choice, values: [a, b]}
    searcher: {type: tpe, n_startup: 3}
    num_samples: 6
    max_concurrent: 2
    stop: {max_iterations: 3}
    storage: STORAGE
    local_ray: {num_cpus: 2}
''')


@pytest.fixture
def sweep_dir(tmp_path, monkeypatch):
    (tmp_path / "nightobj.py").write_text(OBJECTIVE)
    storage = tmp_path / "records"
    (tmp_path / "night.yaml").write_text(SPEC.replace("STORAGE", str(storage)))
    data = tmp_path / "data.txt"
    data.write_text("0.0")
    monkeypatch.setenv("NIGHTLY_DATA", str(data))
    monkeypatch.setenv("NIGHTLY_STEP_S", "0")
    return tmp_path


@pytest.fixture
def shared_ray(sweep_dir, monkeypatch):
    """One local Ray for every night of a test (the runner reuses a Ray that is already up,
    as it would inside a Ray job); its workers see the objective's folder and data file."""
    import ray

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(sweep_dir), os.environ.get("PYTHONPATH")])))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    server.shutdown()
    server.server_close()


def _night(sweep_dir: Path, date: str, **kw) -> object:
    opts = NightOptions(date=date, **kw)
    return run_night(sweep_dir / "night.yaml", opts, log=lambda line: None)


def test_three_nights_warm_start_regression_gate_webhook_and_retention(sweep_dir, webhook, shared_ray):
    url, posts = webhook
    storage = sweep_dir / "records"

    first = _night(sweep_dir, "2026-11-01", webhook=url, top_k=2)
    assert first.exit_code == gate.EXIT_GOOD and first.night.version == 1
    second = _night(sweep_dir, "2026-11-02", webhook=url, top_k=2)
    assert second.exit_code == gate.EXIT_GOOD and second.night.version == 2, second.message

    # Night 2 evaluated night 1's two best configurations first, in order.
    night1, night2 = load("nightly-quad@v1", root=storage), load("nightly-quad@v2", root=storage)
    top = night1.trials.sort_values("final_metric").head(2)["config_json"].map(json.loads).tolist()
    asked_first = night2.suggestions["trial_id"].head(2).tolist()  # in the order the searcher answered
    by_id = night2.trials.set_index("trial_id")["config_json"].map(json.loads)
    first_two = [by_id[t] for t in asked_first]
    assert first_two == top
    assert len(second.night.summary["champions"]) == 2
    assert night2.manifest["spec"]["tags"] == {"nightly": "2026-11-02"}

    # The objective changes (new data): night 3 is flagged and the webhook hears about it once.
    (sweep_dir / "data.txt").write_text("1.0")
    third = _night(sweep_dir, "2026-11-03", webhook=url, top_k=2)
    assert third.exit_code == gate.EXIT_REGRESSED, third.message
    assert third.night.status == "regressed" and third.night.delta > 0.5
    assert len(posts) == 1 and posts[0]["status"] == "regressed" and posts[0]["date"] == "2026-11-03"
    assert any(line.startswith("data:") for line in posts[0]["changed"])
    summary_md = (storage / "nightly-quad" / "nightly" / "2026-11-03.summary.md").read_text()
    assert "regressed" in summary_md and "data:" in summary_md

    # The same night again does nothing and says so; no new version, no second POST.
    again = _night(sweep_dir, "2026-11-03", webhook=url, top_k=2)
    assert again.exit_code == gate.EXIT_REGRESSED and "already ran" in again.message
    assert sorted(p.name for p in (storage / "nightly-quad").glob("v*")) == ["v1", "v2", "v3"]
    assert len(posts) == 1

    # Night 4: the data is back, the space shrank (x <= 0.5): night 2's points beyond it are
    # dropped and counted; keep 1 night plus the protected ones (v1 is pinned).
    (sweep_dir / "data.txt").write_text("0.0")
    ledger.pin(storage, "nightly-quad", 1)
    fourth = _night(sweep_dir, "2026-11-04", top_k=2, keep=1,
                    overrides=["param_space.x.high=0.5"])
    outside = sum(json.loads(c)["x"] > 0.5 for c in night2.trials["config_json"])
    assert outside > 0 and fourth.night.warm_start["dropped"] == outside
    assert fourth.night.baseline == "nightly-quad@v2"  # night 3 regressed: not a baseline

    from toolkit.nightly.retention import reasons_to_keep

    kept = reasons_to_keep(ledger.nights(storage, "nightly-quad"), 1, {1}, "min")
    assert "pinned" in kept["2026-11-01"] and "flagged" in kept["2026-11-03"]
    for night in ledger.nights(storage, "nightly-quad"):
        assert (storage / "nightly-quad" / f"v{night.version}" / "manifest.json").is_file()  # evidence stays
        assert (storage / ".ray" / f"nightly-quad-v{night.version}").exists() == (night.date in kept)

    hist = subprocess.run([sys.executable, "-m", "toolkit.cli", "nightly", "history", str(sweep_dir / "night.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert hist.returncode == 0, hist.stderr
    rows = hist.stdout.strip().splitlines()
    assert len(rows) == 5 and "regressed" in rows[3] and "data:" in rows[3]


def _cli(sweep_dir: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "toolkit.cli", "nightly", "run", str(sweep_dir / "night.yaml"),
                             *args], cwd=sweep_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def test_a_killed_night_resumes_into_the_same_version_and_a_concurrent_start_is_refused(sweep_dir, monkeypatch):
    storage = sweep_dir / "records"
    env = dict(os.environ, NIGHTLY_STEP_S="3.0")  # slow enough to still run while a second start is tried
    killed = _cli(sweep_dir, "--date", "2026-11-10", "--set", "num_samples=4", "--set", "max_concurrent=1",
                  "--set", "stop.max_iterations=4", env=env)
    try:
        deadline = time.monotonic() + 180
        journal = storage / "nightly-quad" / "v1"
        while time.monotonic() < deadline:  # wait until at least one trial is recorded
            entry = ledger.read(storage, "nightly-quad", "2026-11-10")
            if entry is not None and entry.version == 1 and any(journal.rglob("journal*")) and \
                    sum(p.stat().st_size for p in journal.rglob("journal*")) > 0:
                break
            assert killed.poll() is None, killed.communicate()
            time.sleep(0.5)
        else:
            pytest.fail("the night never recorded a trial")
        # A second start of the same night while the first runs: refused with its own exit code.
        second = _cli(sweep_dir, "--date", "2026-11-10", env=env)
        _, err = second.communicate(timeout=120)
        assert second.returncode == gate.EXIT_LOCKED and "already running" in err
        assert killed.poll() is None, "the first run ended before it could be killed"
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
    assert ledger.read(storage, "nightly-quad", "2026-11-10").status == "running"

    import ray

    monkeypatch.setenv("PYTHONPATH", str(sweep_dir))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        resumed = _night(sweep_dir, "2026-11-10", overrides=["num_samples=4", "max_concurrent=1",
                                                             "stop.max_iterations=4"])
    finally:
        ray.shutdown()
    assert resumed.exit_code == gate.EXIT_GOOD, resumed.message
    assert resumed.night.version == 1
    rec = load("nightly-quad@v1", root=storage)
    assert len(rec.trials) == 4 and rec.trials["trial_id"].is_unique
    assert sorted(p.name for p in (storage / "nightly-quad").glob("v*")) == ["v1"]
