"""The terminal a person reads: tunekit's progress lines on stdout, Ray's output in a log file."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ray.tune.experiment import Trial

from toolkit.logs import LOG_NAME, ray_output_to
from toolkit.progress import SweepProgress, format_duration

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """Time that a test moves by hand (the display's `clock` argument)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _trial(i: int, **config) -> Trial:
    return Trial("Quadratic", config={"x": 0.1 * i, "act": "relu", **config}, trial_id=f"t{i:03d}", stub=True)


def _sweep(progress: SweepProgress, clock: Clock, n: int, fail_every: int = 0, seconds_per_trial: float = 3.0,
           metric: str = "loss"):
    """Feed `progress` the events of an n-trial sweep: 3 results per trial, some early stops/failures."""
    for i in range(n):
        t = _trial(i)
        progress.on_trial_start(0, [], t)
        for it in (1, 2, 3):
            clock.now += seconds_per_trial / 3
            if fail_every and i % fail_every == fail_every - 1 and it == 2:
                progress.on_trial_error(0, [], t)
                break
            result = {metric: (i - 37) ** 2 / 100 + 1.0 / it, "training_iteration": it}
            t.update_last_result(result)
            progress.on_trial_result(0, [], t, result)
            progress.on_step_end(0, [])
            if i % 4 == 0 and it == 1:  # the scheduler stops every fourth trial after one iteration
                progress.on_trial_complete(0, [], t)
                break
        else:
            progress.on_trial_complete(0, [], t)
    progress.on_experiment_end([])


def test_plain_output_of_a_long_sweep_stays_short_and_names_the_best_trial():
    out, clock = io.StringIO(), Clock()
    progress = SweepProgress("loss", "min", num_samples=200, max_iterations=3, stream=out, clock=clock,
                             log_path="/records/quadratic/v1/ray.log")
    _sweep(progress, clock, 200, fail_every=50)  # 10 simulated minutes
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()  # not a terminal: plain lines only
    assert 5 <= len(lines) <= 25, lines
    last = [ln for ln in lines if "trials done" in ln][-1]
    assert last.startswith("[tunekit] 200/200 trials done (50 stopped early, 4 failed), 0 running")
    assert "best loss=0.3333 (trial t037: x=3.7, act=relu)" in last  # trial 37 minimises (i-37)^2
    # One warning for the first failure, with the log path; the three repeats summed up once.
    failures = [ln for ln in lines if "failed:" in ln]
    assert len(failures) == 1 and "trial t049" in failures[0] and "/records/quadratic/v1/ray.log" in failures[0]
    assert lines[-1].startswith("[tunekit] 3 more trial(s) failed with the error of trial t049")


def test_plain_lines_come_less_often_as_the_sweep_goes_on():
    out, clock = io.StringIO(), Clock()
    progress = SweepProgress("loss", "min", num_samples=10**4, stream=out, clock=clock)
    times = []
    for step in range(36_000):  # one simulated hour, a step every 0.1 s
        clock.now = step / 10
        before = progress.lines_printed
        progress.on_step_end(0, [])
        if progress.lines_printed > before:
            times.append(clock.now)
    gaps = [b - a for a, b in zip([0.0, *times], times)]
    assert 10 <= len(times) <= 25
    # Non-decreasing gaps (up to the 0.1 s step), capped at five minutes.
    assert all(b >= a - 0.11 for a, b in zip(gaps, gaps[1:])) and max(gaps) <= 300.11


def test_terminal_bar_redraws_one_line_and_warnings_go_above_it():
    out, clock = io.StringIO(), Clock()
    progress = SweepProgress("score", "max", num_samples=10, max_iterations=3, stream=out, live=True, clock=clock)
    nan_trial = _trial(99)
    progress.on_trial_start(0, [], nan_trial)
    progress.on_trial_result(0, [], nan_trial, {"score": float("nan"), "training_iteration": 1})
    progress.on_trial_result(0, [], nan_trial, {"score": float("nan"), "training_iteration": 2})
    progress.on_trial_complete(0, [], nan_trial)
    silent = _trial(98)
    progress.on_trial_start(0, [], silent)
    progress.on_trial_complete(0, [], silent)
    _sweep(progress, clock, 8, metric="score")
    text = out.getvalue()
    assert text.count("reported score=nan") == 1 and "trial t099" in text  # once, however often
    assert text.count("finished without reporting 'score'") == 1 and "trial t098" in text
    assert text.count("\r\x1b[K[") >= 2  # the bar was redrawn in place
    assert text.endswith("\n") and "[####################]" in text.splitlines()[-1]


def test_duration_and_eta():
    assert format_duration(59.6) == "1:00" and format_duration(3725) == "1:02:05"
    clock = Clock()
    progress = SweepProgress("loss", "min", num_samples=4, stream=io.StringIO(), clock=clock)
    clock.now = 30.0  # Ray's start-up: not counted in the rate of trials
    for i in range(2):
        t = _trial(i)
        progress.on_trial_start(0, [], t)
        clock.now += 10
        progress.on_trial_complete(0, [], t)
    assert progress.eta_s() == pytest.approx(20.0)


def test_ray_output_goes_to_the_log_and_our_lines_to_the_terminal(tmp_path):
    log = tmp_path / "run.log"
    terminal = io.StringIO()
    with ray_output_to(log, terminal=terminal) as out:
        print("python-level chatter")
        os.write(1, b"fd-1 chatter\n")
        os.write(2, b"fd-2 chatter\n")
        subprocess.run([sys.executable, "-c", "import sys; print('child stdout'); print('child stderr', file=sys.stderr)"],
                       check=True)
        out.terminal.write("progress line\n")
        record = tmp_path / "record"
        record.mkdir()
        moved = out.move_into(record)
        print("after the move")
    assert moved == record / LOG_NAME and not log.exists()
    with ray_output_to(tmp_path / "again.log", terminal=io.StringIO()) as out:  # a resumed run
        print("second run")
        assert out.move_into(record) == record / "ray.1.log"
    text = moved.read_text()
    for expected in ("python-level chatter", "fd-1 chatter", "fd-2 chatter", "child stdout", "child stderr",
                     "after the move"):
        assert expected in text
    assert terminal.getvalue() == "progress line\n"
    print("stdout is restored")  # would land in the log if it were not


def test_verbose_copies_ray_output_to_the_terminal_too(tmp_path):
    log = tmp_path / "run.log"
    read_fd, write_fd = os.pipe()
    terminal = open(write_fd, "w", buffering=1)
    with ray_output_to(log, live=True, terminal=terminal):
        os.write(2, b"live chatter\n")
    terminal.close()
    with open(read_fd) as r:
        shown = r.read()
    assert "live chatter" in shown and "live chatter" in log.read_text()


@pytest.mark.slow
def test_tunekit_run_not_on_a_terminal_prints_a_few_lines_and_logs_ray(tmp_path):
    """A real sweep through the CLI: short stdout with the best trial; Ray's chatter in the record's log."""
    cmd = [sys.executable, "-m", "toolkit.cli", "run", str(ROOT / "experiments" / "quadratic.yaml"),
           "--storage", str(tmp_path), "--set", "num_samples=10", "--set", "stop.max_iterations=3",
           "--set", "local_ray.num_cpus=2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) <= 20, proc.stdout
    assert re.search(r"best trial \w+: loss = ", proc.stdout)
    for chatter in ("INFO", "WARNING", "Trial status", "pid=", "Checkpoint", "tensorboard", "\u256d"):
        assert chatter not in proc.stdout + proc.stderr, chatter
    logs = list(tmp_path.glob(f"quadratic/v1/{LOG_NAME}"))
    assert len(logs) == 1 and proc.stdout.count(str(logs[0])) == 1  # named once
    log_text = logs[0].read_text()
    assert "Trial status" in log_text and "Trial Quadratic_" in log_text  # Tune's tables and trial lines


def test_best_is_ranked_by_each_trials_latest_value_as_the_record_ranks_final_metrics():
    # Trial 1 dipped to 0.1 at its second iteration but ended at 0.9; trial 2 ended at 0.5.
    progress = SweepProgress("loss", "min", 2, 3, stream=io.StringIO(), quiet=True, clock=Clock())
    for t, values in ((_trial(1), (0.8, 0.1, 0.9)), (_trial(2), (0.7, 0.6, 0.5))):
        progress.on_trial_start(0, [], t)
        for it, v in enumerate(values, 1):
            progress.on_trial_result(0, [], t, {"loss": v, "training_iteration": it})
        progress.on_trial_complete(0, [], t)
    assert progress.best["trial_id"] == "t002" and progress.best["value"] == 0.5
