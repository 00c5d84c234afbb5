"""Record safety: versioning, atomic publication, concurrency, crashes, checksums, no pickles."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from toolkit.results import (IncompleteRecordError, IntegrityError, RecordNotFound, RecordWriter, list_records,
                             load, parse_ref)
from toolkit.results import store, synthetic
from toolkit.results.refs import RefError

ROOT = Path(__file__).resolve().parents[1]


def write(root, name="exp", n=6, iters=5, seed=0, status="completed", suggestions=True):
    w = RecordWriter(root, name, synthetic.manifest(name, seed))
    for trial, history in synthetic.sweep(n, iters, seed=seed):
        w.add_trial(trial, history)
    if suggestions:
        w.add_suggestions([{"trial_id": f"t{i:05d}", "time_s": 0.01 * i, "state_size": i} for i in range(n)])
    return w, w.finish(status, best={"trial_id": "t00000"})


# --------------------------------------------------------------------------- refs
def test_refs_parse_names_and_versions():
    assert parse_ref("digits") == store_ref("digits", None)
    assert parse_ref("digits@v3") == store_ref("digits", 3)
    assert parse_ref("digits@3").version == 3 and parse_ref("a.b-c_d@latest").version is None
    for bad in ["", "@v1", "x@v0", "x@vv1", "../x", "x/y", ".hidden", "x@v-1"]:
        with pytest.raises(RefError):
            parse_ref(bad)


def store_ref(name, version):
    from toolkit.results.refs import Ref
    return Ref(name, version)


# --------------------------------------------------------------------------- round trip
def test_write_then_load_round_trips_every_table(tmp_path):
    trials = list(synthetic.sweep(8, 4, seed=1))
    w = RecordWriter(tmp_path, "exp", synthetic.manifest("exp", 1))
    assert w.version == 1 and w.path == tmp_path / "exp" / "v1"
    for trial, history in trials:
        # Non-numeric and non-JSON values in a result are dropped from the metric table.
        w.add_trial(trial, [dict(h, note="text", obj=object()) for h in history])
    w.add_suggestions([{"trial_id": "t00000", "time_s": 0.5, "state": {"n": 1}}])
    path = w.finish("completed", best={"trial_id": "t00003", "value": 1.5}, extra={"why": "test"})
    rec = load("exp", root=tmp_path)
    assert path == rec.path and rec.complete and rec.ref == "exp@v1" and rec.status == "completed"
    assert list(rec.trials["trial_id"]) == [t["trial_id"] for t, _ in trials]
    # Nested config: flattened columns, conditional keys missing where inactive, exact JSON copy.
    for (t, _), (_, row) in zip(trials, rec.trials.iterrows()):
        assert json.loads(row["config_json"]) == t["config"]
        assert row["config.lr"] == t["config"]["lr"] and row["config.hidden"] == t["config"]["hidden"]
        assert row["config.optimizer.name"] == t["config"]["optimizer"]["name"]
        mom = row["config.optimizer.momentum"]
        assert (mom == t["config"]["optimizer"]["momentum"]) if t["config"]["optimizer"]["name"] == "sgd" \
            else pd.isna(mom)
        assert row["status"] == t["status"] and row["final_metric"] == t["final_metric"]
    assert rec.config("t00002") == trials[2][0]["config"]
    m = rec.metrics
    assert len(m) == sum(len(h) for _, h in trials)
    assert {"val_loss", "val_acc", "time_total_s"} <= set(m.columns)
    assert not {"note", "obj", "date"} & set(m.columns)
    first = m[m.trial_id == "t00001"].sort_values("training_iteration")
    assert list(first["val_loss"]) == [h["val_loss"] for h in trials[1][1]]
    assert rec.suggestions.loc[0, "state"] == {"n": 1}
    man = rec.manifest
    assert man["best"]["value"] == 1.5 and man["extra"] == {"why": "test"} and man["n_trials"] == 8
    assert set(man["files"]) == {"trials.parquet", "metrics.parquet", "suggestions.parquet"}
    for fname, meta in man["files"].items():
        assert meta["sha256"] == store.sha256_file(path / fname)
    assert man["summary"]["best_final_metric"] == min(t["final_metric"] for t, _ in trials)
    assert man["ended_at"] and man["started_at"] and man["spec"]["name"] == "exp"


def test_record_holds_only_json_and_parquet_never_pickles(tmp_path):
    _, path = write(tmp_path)
    files = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert files and not (path / store.STAGING).exists()
    for p in files:
        data = p.read_bytes()
        assert p.suffix in (".json", ".parquet"), p
        assert b"\x80\x04\x95" not in data[:3] and not p.suffix in (".pkl", ".pickle")
        if p.suffix == ".parquet":
            assert data[:4] == b"PAR1" and data[-4:] == b"PAR1"
        else:
            json.loads(data)
    # Published files are read-only: a careless open(..., "w") fails instead of altering them.
    assert not os.access(path / "trials.parquet", os.W_OK) or os.geteuid() == 0
    assert oct((path / "trials.parquet").stat().st_mode & 0o777) == "0o444"


def test_mixed_type_and_list_parameters_round_trip(tmp_path):
    w = RecordWriter(tmp_path, "mixed", {"metric": "loss", "mode": "min"})
    configs = [{"bs": 32, "layers": [64, 32], "act": "relu", "flag": True},
               {"bs": "auto", "layers": [16], "act": None, "flag": False},
               {"bs": 64, "layers": [], "act": "gelu", "flag": True, "extra": {"k": 1.5}}]
    for i, c in enumerate(configs):
        w.add_trial({"trial_id": str(i), "config": c, "status": "TERMINATED", "final_metric": float(i)},
                    [{"training_iteration": 1, "loss": float(i)}])
    w.finish("completed", None)
    rec = load("mixed", root=tmp_path)
    assert list(rec.trials["config.bs"]) == [32, "auto", 64]
    assert list(rec.trials["config.layers"]) == [[64, 32], [16], []]
    assert list(rec.trials["config.flag"]) == [True, False, True]
    assert [rec.config(str(i)) for i in range(3)] == configs


# --------------------------------------------------------------------------- versions
def test_versions_increase_and_published_versions_are_never_overwritten(tmp_path):
    w1, p1 = write(tmp_path, n=3)
    w2, p2 = write(tmp_path, n=5, seed=2)
    assert (w1.version, w2.version) == (1, 2)
    assert len(load("exp", root=tmp_path).trials) == 5  # latest complete
    assert len(load("exp@v1", root=tmp_path).trials) == 3
    with pytest.raises(RuntimeError):
        w1.finish("completed", None)
    with pytest.raises(RuntimeError):
        w1.add_trial({"trial_id": "late"}, [])
    before = (p1 / "manifest.json").read_bytes()
    with pytest.raises(FileExistsError):  # the publication primitive refuses to replace a manifest
        store.atomic_write(p1 / "manifest.json", b"{}", exclusive=True)
    assert (p1 / "manifest.json").read_bytes() == before
    with pytest.raises(RecordNotFound):
        load("exp@v9", root=tmp_path)
    with pytest.raises(RecordNotFound):
        load("other", root=tmp_path)
    (tmp_path / ".ray" / "exp-v1").mkdir(parents=True)  # the runner keeps Ray's files beside records
    (tmp_path / "notes").mkdir()
    assert [(r.name, r.version, r.status, r.n_trials) for r in list_records(tmp_path)] == [
        ("exp", 1, "completed", 3), ("exp", 2, "completed", 5)]


def test_duplicate_trial_and_bad_status_are_refused(tmp_path):
    w = RecordWriter(tmp_path, "exp", {})
    w.add_trial({"trial_id": "a", "config": {}}, [])
    with pytest.raises(ValueError):
        w.add_trial({"trial_id": "a", "config": {}}, [])
    with pytest.raises(ValueError):
        w.finish("done", None)


_CHILD = textwrap.dedent("""
    import sys, time
    from toolkit.results import RecordWriter, synthetic
    root, tag, start, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    time.sleep(max(0.0, start - time.time()))          # all reserve at the same moment
    w = RecordWriter(root, "race", synthetic.manifest("race"))
    for trial, hist in synthetic.sweep(n, 3, seed=int(tag)):
        w.add_trial(dict(trial, trial_id=f"{tag}-{trial['trial_id']}"), hist)
    time.sleep(max(0.0, start + 1.5 - time.time()))    # ... and publish at the same moment
    w.finish("completed", {"tag": tag})
    print(w.version, flush=True)
""")


def test_concurrent_writer_processes_get_distinct_versions_and_lose_nothing(tmp_path):
    n_proc, n_trials = 5, 12
    start = time.time() + 6.0
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path), str(i), str(start), str(n_trials)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
             for i in range(n_proc)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-2000:] for o in outs]
    versions = sorted(int(o[0].split()[-1]) for o in outs)
    assert versions == list(range(1, n_proc + 1))
    seen = set()
    for v in versions:
        rec = load(f"race@v{v}", root=tmp_path)
        tag = rec.manifest["best"]["tag"]
        assert len(rec.trials) == n_trials and all(t.startswith(f"{tag}-") for t in rec.trials.trial_id)
        assert len(rec.metrics) == rec.trials["iterations"].sum() > 0
        seen.add(tag)
    assert seen == {str(i) for i in range(n_proc)}


# --------------------------------------------------------------------------- crashes
_KILLED = textwrap.dedent("""
    import sys, time
    from toolkit.results import RecordWriter, synthetic
    w = RecordWriter(sys.argv[1], "exp", synthetic.manifest("exp"))
    for i, (trial, hist) in enumerate(synthetic.sweep(7, 4)):
        w.add_trial(trial, hist)
        if i in (2, 4):
            w.flush()                    # durable: trials 0..4
    print("READY", w.version, flush=True)  # trials 5, 6 were added but never flushed
    time.sleep(600)
""")


def test_killed_writer_leaves_an_incomplete_version_that_never_loads_as_complete(tmp_path):
    write(tmp_path, n=3)  # v1, complete
    p = subprocess.Popen([sys.executable, "-c", _KILLED, str(tmp_path)], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        line = p.stdout.readline().decode().split()
        assert line[0] == "READY" and line[1] == "2"
        statuses = {r.version: r.status for r in list_records(tmp_path)}
        assert statuses == {1: "completed", 2: "running"}  # its writer is alive
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert {r.version: (r.status, r.n_trials) for r in list_records(tmp_path)} == {
        1: ("completed", 3), 2: ("incomplete", 5)}
    assert load("exp", root=tmp_path).version == 1  # the latest COMPLETE version
    with pytest.raises(IncompleteRecordError) as e:
        load("exp@v2", root=tmp_path)
    assert "v2" in str(e.value) and "allow_incomplete" in str(e.value)
    rec = load("exp@v2", root=tmp_path, allow_incomplete=True)
    assert not rec.complete and rec.status == "incomplete" and "INCOMPLETE" in rec.notes[0]
    assert list(rec.trials.trial_id) == [f"t{i:05d}" for i in range(5)]
    assert sorted(rec.metrics.trial_id.unique()) == [f"t{i:05d}" for i in range(5)]
    # A torn journal line (crash in the middle of a flush) is ignored, not fatal.
    with open(tmp_path / "exp" / "v2" / store.STAGING / store.JOURNAL, "a") as f:
        f.write('{"seq": 3, "files": {"part-000003.tri')
    assert len(load("exp@v2", root=tmp_path, allow_incomplete=True).trials) == 5
    # The next sweep does not reuse the dead version's number.
    w = RecordWriter(tmp_path, "exp", {})
    assert w.version == 3


def test_only_incomplete_versions_means_no_default_load(tmp_path):
    w = RecordWriter(tmp_path, "exp", {"metric": "loss"})
    with pytest.raises(IncompleteRecordError):
        load("exp", root=tmp_path)
    assert load("exp", root=tmp_path, allow_incomplete=True).version == w.version


# --------------------------------------------------------------------------- integrity
@pytest.fixture
def published(tmp_path):
    _, path = write(tmp_path)
    for p in path.iterdir():
        os.chmod(p, 0o644)
    return tmp_path, path


def _expect_integrity_error(root, fname):
    with pytest.raises(IntegrityError) as e:
        load("exp", root=root)
    assert fname in str(e.value) and e.value.path.name == fname
    return str(e.value)


def test_flipped_byte_is_detected_naming_the_file(published):
    root, path = published
    data = bytearray((path / "metrics.parquet").read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / "metrics.parquet").write_bytes(bytes(data))
    _expect_integrity_error(root, "metrics.parquet")


def test_truncated_table_is_detected_naming_the_file(published):
    root, path = published
    data = (path / "trials.parquet").read_bytes()
    (path / "trials.parquet").write_bytes(data[: len(data) - 100])
    assert "truncated" in _expect_integrity_error(root, "trials.parquet")


def test_missing_table_is_detected(published):
    root, path = published
    (path / "suggestions.parquet").unlink()
    _expect_integrity_error(root, "suggestions.parquet")


def test_truncated_or_edited_manifest_is_refused(published):
    root, path = published
    original = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(original[: len(original) // 2])
    assert "malformed" in _expect_integrity_error(root, "manifest.json")
    m = json.loads(original)
    m["seed"] = 12345  # a plausible edit that keeps the JSON valid
    (path / "manifest.json").write_text(json.dumps(m))
    assert "edited" in _expect_integrity_error(root, "manifest.json")
    m = json.loads(original)
    del m["files"]
    (path / "manifest.json").write_text(json.dumps(m))
    assert "files" in _expect_integrity_error(root, "manifest.json")


def test_swapped_table_with_matching_manifest_hash_is_still_caught(published, tmp_path_factory):
    # Replacing a table with another valid Parquet file (e.g. from another version) is caught
    # because the manifest pins the exact bytes.
    root, path = published
    other = tmp_path_factory.mktemp("other")
    _, p2 = write(other, n=9, seed=5)
    (path / "trials.parquet").write_bytes((p2 / "trials.parquet").read_bytes())
    _expect_integrity_error(root, "trials.parquet")


def test_altered_journal_of_an_incomplete_version_is_detected(tmp_path):
    w = RecordWriter(tmp_path, "exp", {})
    for trial, hist in synthetic.sweep(3, 2):
        w.add_trial(trial, hist)
        w.flush()
    journal = w.path / store.STAGING / store.JOURNAL
    lines = journal.read_text().splitlines(keepends=True)
    assert len(lines) == 3
    lines[1] = lines[1].replace('"status": "TERMINATED"', '"status": "TERMINATEX"', 1)
    journal.write_text("".join(lines))
    with pytest.raises(IntegrityError) as e:
        load("exp@v1", root=tmp_path, allow_incomplete=True)
    assert "journal.jsonl" in str(e.value) and "line 2" in str(e.value)


def test_incomplete_view_has_the_same_tables_the_published_version_gets(tmp_path):
    w = RecordWriter(tmp_path, "exp", synthetic.manifest("exp"))
    for trial, hist in synthetic.sweep(9, 5, seed=4):
        w.add_trial(trial, hist)
        w.flush()
    w.add_suggestions([{"trial_id": "t00000", "time_s": 0.1}])
    w.flush()
    staged = load("exp@v1", root=tmp_path, allow_incomplete=True)
    w.finish("completed", None)
    final = load("exp@v1", root=tmp_path)
    pd.testing.assert_frame_equal(staged.trials, final.trials)
    pd.testing.assert_frame_equal(staged.metrics, final.metrics)
    pd.testing.assert_frame_equal(staged.suggestions, final.suggestions)


def test_results_package_stays_apart_from_runner_ray_and_torch():
    code = ("import sys, toolkit.results, toolkit.results.cli, toolkit.results.report, toolkit.reproduce; "
            "print(sorted(m for m in ('ray', 'torch', 'toolkit.runner') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
