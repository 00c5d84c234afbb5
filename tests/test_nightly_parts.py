"""Nightly sweeps, the parts that need no Ray: gate, ledger and lock, retention, schedules."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import yaml

from toolkit.nightly import gate, ledger, retention, schedule, warm
from toolkit.nightly.ledger import Night
from toolkit.space import parse_space


def test_gate_flags_a_shift_outside_the_noise_band_only():
    # Champions moved by noise only (spread 0.01): a best 0.005 worse is within the band.
    noisy = [(1.00, 1.01), (1.10, 1.09), (1.20, 1.205)]
    ok = gate.judge("min", "completed", 1.005, 1.0, noisy, tolerance=0.0, z=3.0)
    assert ok.status == "good" and ok.exit_code == gate.EXIT_GOOD
    # Every champion got worse by ~1 (the objective changed): flagged, and the reason says so.
    shifted = [(1.00, 2.00), (1.10, 2.11), (1.20, 2.19)]
    bad = gate.judge("min", "completed", 2.0, 1.0, shifted, tolerance=0.0, z=3.0)
    assert bad.status == "regressed" and bad.exit_code == gate.EXIT_REGRESSED
    assert bad.delta == pytest.approx(1.0) and bad.noise_band < 0.1
    assert any("champions got worse" in r for r in bad.reasons)
    # max mode: a lower best is worse.
    assert gate.judge("max", "completed", 0.5, 0.9, [], tolerance=0.1).status == "regressed"
    assert gate.judge("max", "completed", 0.85, 0.9, [], tolerance=0.1).status == "good"


def test_gate_statuses_for_first_interrupted_and_failed_nights():
    assert gate.judge("min", "completed", 1.0, None).status == "good"
    assert gate.judge("min", "interrupted", 1.0, 0.5).exit_code == gate.EXIT_INCOMPLETE
    assert gate.judge("min", "completed", None, 0.5).exit_code == gate.EXIT_FAILED
    assert gate.judge("min", "failed", 1.0, 0.5).status == "failed"


def test_ledger_round_trip_last_good_and_pins(tmp_path):
    for date, status, version in (("2026-11-01", "good", 1), ("2026-11-02", "regressed", 2),
                                  ("2026-11-03", "failed", 3)):
        ledger.write(tmp_path, Night(date, "s", status=status, version=version, best=float(version)))
    assert [n.date for n in ledger.nights(tmp_path, "s")] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert ledger.last_good(tmp_path, "s", before="2026-11-04").ref == "s@v1"
    assert ledger.last_good(tmp_path, "s", before="2026-11-01") is None
    ledger.pin(tmp_path, "s", 3)
    ledger.pin(tmp_path, "s", 3)
    assert ledger.pins(tmp_path, "s") == {3}
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        ledger.check_date("2026-1-1")
    with pytest.raises(ValueError, match="2026-02-30"):
        ledger.check_date("2026-02-30")


def test_a_second_process_cannot_take_the_same_night(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from toolkit.nightly.ledger import NightLock
        with NightLock({str(tmp_path)!r}, "s", "2026-11-05"):
            print("locked", flush=True)
            time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ledger.NightLocked, match="already running"):
            with ledger.NightLock(tmp_path, "s", "2026-11-05"):
                pass
        with ledger.NightLock(tmp_path, "s", "2026-11-06"):  # another night is free
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)
    with ledger.NightLock(tmp_path, "s", "2026-11-05"):  # a dead holder leaves no stale lock
        pass


def test_retention_keeps_last_n_last_good_best_flagged_and_pinned(tmp_path):
    nights = [Night("2026-11-01", "s", "good", 1, best=0.5), Night("2026-11-02", "s", "good", 2, best=0.9),
              Night("2026-11-03", "s", "regressed", 3, best=2.0), Night("2026-11-04", "s", "good", 4, best=0.8),
              Night("2026-11-05", "s", "failed", 5), Night("2026-11-06", "s", "good", 6, best=0.7),
              Night("2026-11-07", "s", "failed", 7)]
    for n in nights:
        d = tmp_path / ".ray" / f"s-v{n.version}" / "trial" / "checkpoint_000001"
        d.mkdir(parents=True)
        (d / "model.pt").write_bytes(b"x" * 1000)
        record = tmp_path / "s" / f"v{n.version}"
        record.mkdir(parents=True)
        (record / "manifest.json").write_text("{}")
    out = retention.prune(tmp_path, "s", nights, keep_last=2, pinned={2}, mode="min")
    kept = {d: why for d, why in out.kept.items()}
    assert set(kept) == {"2026-11-01", "2026-11-02", "2026-11-03", "2026-11-06", "2026-11-07"}
    assert "best ever" in kept["2026-11-01"] and "pinned" in kept["2026-11-02"]
    assert "flagged" in kept["2026-11-03"] and "last good" in kept["2026-11-06"]
    assert sorted(d for d, _ in out.pruned) == ["2026-11-04", "2026-11-05"]
    assert not (tmp_path / ".ray" / "s-v4").exists() and (tmp_path / ".ray" / "s-v6").exists()
    assert all((tmp_path / "s" / f"v{v}" / "manifest.json").exists() for v in range(1, 8))  # records untouched
    assert out.freed_bytes == 2000


def test_warm_start_drops_points_outside_a_changed_space_and_counts_them():
    trials = pd.DataFrame({
        "trial_id": ["a", "b", "c", "d"], "status": ["TERMINATED"] * 3 + ["ERROR"],
        "final_metric": [0.3, 0.1, 0.2, None],
        "config_json": ['{"x": 0.5, "k": "a"}', '{"x": 4.0, "k": "a"}', '{"x": 1.5, "k": "b"}',
                        '{"x": 0.2, "k": "a"}']})
    space = parse_space({"x": {"type": "uniform", "low": 0.0, "high": 2.0}, "k": {"type": "choice", "values": ["a", "b"]}})
    ws = warm.plan_warm_start(space, "min", "topk", 2, 0.5, [("s@v1", trials)])
    # x=4.0 (the best) no longer fits [0, 2]: dropped from champions and observations.
    assert ws.champions == [{"x": 1.5, "k": "b"}, {"x": 0.5, "k": "a"}]
    assert len(ws.observations) == 3 and ws.dropped == 1
    assert ({"x": 0.2, "k": "a"}, None) in ws.observations  # a failure stays a failure
    assert warm.plan_warm_start(space, "min", "off", 2, 0.5, [("s@v1", trials)]).champions == []


def test_full_warm_start_keeps_a_decaying_share_of_older_nights():
    def night(n):
        return pd.DataFrame({"trial_id": [str(i) for i in range(n)], "status": ["TERMINATED"] * n,
                             "final_metric": [float(i) for i in range(n)],
                             "config_json": [f'{{"x": {i / n}}}' for i in range(n)]})
    space = parse_space({"x": {"type": "uniform", "low": 0.0, "high": 1.0}})
    ws = warm.plan_warm_start(space, "min", "full", 1, 0.5, [("s@v3", night(8)), ("s@v2", night(8)),
                                                            ("s@v1", night(8))])
    assert len(ws.observations) == 8 + 4 + 2 and ws.sources == ["s@v3", "s@v2", "s@v1"]


@pytest.mark.parametrize("kind", schedule.KINDS)
def test_schedules_run_tunekit_nightly_run(kind, tmp_path):
    s = schedule.ScheduleSettings(spec="experiments/quadratic.yaml", name="quadratic", workdir="/srv/tk",
                                  hour=3, minute=30, keep=7)
    files = schedule.emit(kind, s, tmp_path)
    text = "".join(files.values())
    assert "tunekit nightly run experiments/quadratic.yaml" in text and "--keep 7" in text
    if kind == "cron":
        assert "30 3 * * *" in text and "CRON_TZ=UTC" in text
    if kind == "systemd":
        assert "OnCalendar=*-*-* 03:30:00 UTC" in files["tunekit-nightly-quadratic.timer"]
    if kind == "k8s":
        docs = list(yaml.safe_load_all(text))
        cron_job = next(d for d in docs if d["kind"] == "CronJob")
        assert cron_job["spec"]["concurrencyPolicy"] == "Forbid" and cron_job["spec"]["schedule"] == "30 3 * * *"
        rayjob = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["rayjob.yaml"])
        assert rayjob["kind"] == "RayJob" and rayjob["spec"]["shutdownAfterJobFinishes"] is True
        assert "--date __NIGHT__" in rayjob["spec"]["entrypoint"]
    if kind == "github":
        wf = yaml.safe_load(text)
        assert wf["on"]["schedule"][0]["cron"] == "30 3 * * *"
        assert wf["concurrency"]["cancel-in-progress"] is False
    with pytest.raises(FileExistsError):
        schedule.emit(kind, s, tmp_path)
