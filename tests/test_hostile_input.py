"""Careless and hostile input: a clear one-line error, nothing written, nothing run unasked.

Records are written by the real `RecordWriter` and then damaged the way a shared record can
be (edited manifests, FIFOs, symlinks, forged journal lines). Process-level behaviour (a
FIFO that would hang, a closed pipe, "one line and no traceback") runs the real `tunekit`
executable; the other CLI cases call the same entry point, `toolkit.cli.main`, in-process,
which keeps this file fast (each `tunekit` process costs seconds of imports).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.results import IntegrityError, RecordWriter, list_records, load, store, synthetic
from toolkit.space import SpaceError, parse_space

ROOT = Path(__file__).resolve().parents[1]
TUNEKIT = Path(sys.executable).parent / "tunekit"


# --------------------------------------------------------------------------- helpers
def write(root: Path, name: str = "exp", n: int = 6, iters: int = 3, seed: int = 0, finish: bool = True,
          **manifest_changes) -> RecordWriter:
    w = RecordWriter(root, name, {**synthetic.manifest(name, seed), **manifest_changes})
    for trial, history in synthetic.sweep(n, iters, seed=seed):
        w.add_trial(trial, history)
    if finish:
        w.finish("completed")
    else:
        w.flush()
    return w


def rewrite_manifest(vdir: Path, recompute_checksum: bool = True, **changes) -> None:
    """Edit a published manifest as a forger would: change fields, recompute its checksum."""
    path = vdir / store.MANIFEST
    m = json.loads(path.read_text())
    m.update(changes)
    if recompute_checksum:
        m["manifest_sha256"] = store.manifest_digest(m)
    os.chmod(path, 0o644)
    path.write_text(json.dumps(m))


def tunekit(*args: str, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [str(TUNEKIT)] if TUNEKIT.exists() else [sys.executable, "-m", "toolkit.cli"]
    return subprocess.run(cmd + list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def one_line_error(p: subprocess.CompletedProcess | tuple, *needles: str) -> str:
    err = p.stderr if isinstance(p, subprocess.CompletedProcess) else p[1]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tunekit: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """The real `tunekit` entry point, in-process; returns (exit code, stdout, stderr)."""
    from toolkit.cli import main

    try:
        code = main(list(args))
    except SystemExit as e:  # argparse usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- records
def test_manifest_naming_another_path_is_refused_and_writes_nothing(tmp_path, capsys, monkeypatch):
    storage, work = tmp_path / "records", tmp_path / "work"
    work.mkdir()
    vdir = write(storage).path
    rewrite_manifest(vdir, name="../escaped")
    with pytest.raises(IntegrityError) as e:
        load("exp", root=storage)
    assert "'../escaped'" in str(e.value) and "exp/v1" in str(e.value)
    p = tunekit("report", "exp", "--storage", str(storage), cwd=work)
    assert p.returncode == 1
    one_line_error(p, "'../escaped'", "exp/v1", "must match its folder")
    monkeypatch.chdir(work)
    code, _, err = cli(capsys, "results", "export", "exp", "--format", "json", "--storage", str(storage))
    assert code == 1 and "must match its folder" in err
    assert list(work.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["records", "work"]
    # A copied record keeps its manifest's name: found under another name, it is refused too.
    shutil.copytree(storage / "exp", storage / "other")
    rewrite_manifest(storage / "other" / "v1", name="exp")
    with pytest.raises(IntegrityError, match="'exp' version 1 but it was loaded from other/v1"):
        load("other", root=storage)
    (storage / "other" / "v1").rename(storage / "other" / "v2")
    with pytest.raises(IntegrityError, match="loaded from other/v2"):
        load("other@v2", root=storage)


def test_default_output_names_come_from_the_folder_and_reports_never_overwrite(tmp_path, capsys, monkeypatch):
    storage, work = tmp_path / "records", tmp_path / "work"
    work.mkdir()
    write(storage, "exp", n=4, iters=2)
    monkeypatch.chdir(work)
    s = ("--storage", str(storage))
    assert cli(capsys, "results", "export", "exp", "--format", "json", *s)[0] == 0
    html = work / "exp-v1.html"
    html.write_text("mine")
    code, _, err = cli(capsys, "report", "exp", *s)
    assert code == 2
    one_line_error((code, err), "exp-v1.html already exists", "--force")
    assert html.read_text() == "mine"
    assert cli(capsys, "report", "exp", "--force", *s)[0] == 0  # the one report this file renders
    assert "<html" in html.read_text()[:300].lower() and sorted(os.listdir(work)) == ["exp-v1.html", "exp-v1.json"]


def test_results_list_says_corrupt_and_mismatch(tmp_path, capsys):
    write(tmp_path, "good")
    rewrite_manifest(write(tmp_path, "edited").path, recompute_checksum=False, n_trials=999)
    rewrite_manifest(write(tmp_path, "moved").path, version=7)
    status = {r.name: r.status for r in list_records(tmp_path)}
    assert status == {"good": "completed", "edited": "corrupt", "moved": "mismatch"}
    code, out, _ = cli(capsys, "results", "list", "--storage", str(tmp_path))
    assert code == 0 and "corrupt" in out and "mismatch" in out


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "outside", "directory"])
def test_files_that_are_not_files_are_refused_without_reading_them(tmp_path, kind):
    vdir = write(tmp_path / "records").path
    target = vdir / "trials.parquet"
    original = target.read_bytes()
    os.chmod(target, 0o644)
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
        needle = "named pipe"
    elif kind == "dev-zero":
        target.symlink_to("/dev/zero")
        needle = "symbolic link (to /dev/zero)"
    elif kind == "outside":
        outside = tmp_path / "elsewhere.parquet"
        outside.write_bytes(original)  # same bytes: its checksum matches
        target.symlink_to(outside)
        needle = "symbolic link"
    else:
        target.mkdir()
        needle = "a folder"
    with pytest.raises(IntegrityError, match=re.escape(needle)):
        load("exp", root=tmp_path / "records")
    if kind == "fifo":  # the reader would block forever on a FIFO: a real process, with a deadline
        p = tunekit("results", "show", "exp", "--storage", str(tmp_path / "records"), cwd=tmp_path, timeout=60)
        assert p.returncode == 1
        one_line_error(p, "trials.parquet", "named pipe")


def test_a_version_folder_that_is_a_symlink_is_refused(tmp_path):
    storage = tmp_path / "records"
    real = write(storage).path
    elsewhere = tmp_path / "elsewhere"
    real.rename(elsewhere)
    (storage / "exp" / "v1").symlink_to(elsewhere)
    with pytest.raises(IntegrityError, match="v1: is a symbolic link"):
        load("exp", root=storage)
    assert {r.status for r in list_records(storage)} == {"corrupt"}


def test_a_file_whose_size_differs_from_the_manifest_is_not_read(tmp_path):
    vdir = write(tmp_path).path
    target = vdir / "metrics.parquet"
    os.chmod(target, 0o644)
    with open(target, "ab") as f:
        f.truncate(1 << 40)  # sparse: a terabyte that reading would try to hold in memory
    with pytest.raises(IntegrityError, match=r"size 1099511627776 bytes, manifest says \d+"):
        load("exp", root=tmp_path)


def test_a_dead_writer_whose_pid_was_reused_is_not_running(tmp_path):
    live = write(tmp_path, finish=False)  # this process: really running
    dead = write(tmp_path, finish=False)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # The dead writer's pid now belongs to another process (the sleeper), whose start
        # time differs from the one the writer recorded.
        mpath = dead.path / store.STAGING / store.MANIFEST
        m = json.loads(mpath.read_text())
        assert m["writer"]["pid"] == os.getpid() and m["writer"]["process_start"]
        m["writer"]["pid"] = sleeper.pid
        mpath.write_text(json.dumps(m))
        status = {r.version: r.status for r in list_records(tmp_path)}
        assert status == {live.version: "running", dead.version: "incomplete"}
        assert not load(f"exp@v{dead.version}", root=tmp_path, allow_incomplete=True).complete
        assert store.writer_alive({"pid": sleeper.pid, "host": socket.gethostname()}) is True  # pid only
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("payload, needle", [
    ({"kind": "trial", "trial": "not an object"}, "'trial' is not an object"),
    ({"kind": "trial", "trial": {"config": {}}}, "no trial_id"),
    ({"kind": "trial", "trial": {"trial_id": "t00000"}}, "appears twice"),
    ({"kind": "trial", "trial": {"trial_id": "x", "config": []}}, "'config' is not an object"),
    ({"kind": "trial", "trial": {"trial_id": "x"}, "columns": {"training_iteration": [1, 2], "loss": [1.0]}},
     "different lengths"),
    ({"kind": "trial", "trial": {"trial_id": "x"}, "columns": {"training_iteration": ["one"]}}, "not an integer"),
    ({"kind": "suggestions", "rows": "many"}, "not a list of objects"),
])
def test_forged_journal_lines_are_one_clear_error(tmp_path, capsys, payload, needle):
    w = write(tmp_path, n=2, finish=False)
    with open(w.path / store.STAGING / store.JOURNAL, "a") as f:
        f.write(store.journal_line(json.dumps(payload)))  # checksum recomputed: only the content is wrong
    with pytest.raises(IntegrityError, match="line 3 is not a journal entry"):
        load("exp@v1", root=tmp_path, allow_incomplete=True)
    code, _, err = cli(capsys, "results", "show", "exp", "--incomplete", "--storage", str(tmp_path))
    assert code == 1
    one_line_error((code, err), needle)


@pytest.mark.parametrize("field, value", [
    ("format_version", "one"), ("format_version", True), ("environment", ["x"]),
    ("environment", {"git": "abc"}), ("data", [1, 2]), ("environment", {"versions": "x"}),
])
def test_manifest_fields_of_the_wrong_type_are_one_line(tmp_path, capsys, field, value):
    rewrite_manifest(write(tmp_path).path, **{field: value})
    with pytest.raises(IntegrityError, match="malformed manifest"):
        load("exp", root=tmp_path)
    code, _, err = cli(capsys, "results", "show", "exp", "--storage", str(tmp_path))
    assert code == 1
    one_line_error((code, err), field if field != "environment" else "environment")
    assert {r.status for r in list_records(tmp_path)} == {"corrupt"}


# --------------------------------------------------------------------------- CLI
def test_export_never_overwrites_without_force(tmp_path, capsys):
    s = ("--storage", str(tmp_path / "records"))
    write(tmp_path / "records")
    js, folder = tmp_path / "x.json", tmp_path / "csv"
    js.write_text("mine")
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for args, target in ((("results", "export", "exp", "--format", "json", "--out", str(js)), js),
                         (("results", "export", "exp", "--format", "csv", "--out", str(folder)), folder)):
        code, _, err = cli(capsys, *args, *s)
        assert code == 2
        one_line_error((code, err), str(target), "--force")
    assert js.read_text() == "mine" and os.listdir(folder) == ["notes.txt"]
    assert cli(capsys, "results", "export", "exp", "--format", "json", "--out", str(js), "--force", *s)[0] == 0
    assert cli(capsys, "results", "export", "exp", "--format", "csv", "--out", str(folder), "--force", *s)[0] == 0
    assert json.loads(js.read_text())["manifest"]["name"] == "exp"
    assert sorted(os.listdir(folder)) == ["manifest.json", "metrics.csv", "notes.txt", "trials.csv"]


def test_outputs_of_the_wrong_kind_or_unwritable_are_one_line(tmp_path, capsys):
    s = ("--storage", str(tmp_path / "records"))
    write(tmp_path / "records")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (("report", "exp", "--out", str(tmp_path)), "is a folder"),
        (("report", "exp", "--out", "/proc/tunekit-report.html"), "/proc/tunekit-report.html"),
        (("report", "exp", "--out", str(a_file / "r.html")), "r.html"),
        (("results", "export", "exp", "--format", "json", "--out", str(tmp_path)), "is a folder"),
        (("results", "export", "exp", "--format", "csv", "--out", str(a_file)), "is a file"),
        (("results", "export", "exp", "--format", "parquet", "--out", str(tmp_path / "t.parquet")),
         "looks like a file name"),
    ]
    for args, needle in cases:
        code, _, err = cli(capsys, *args, *s)
        assert code in (1, 2), (args, err)
        one_line_error((code, err), needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "records"]


def test_incomplete_versions_are_read_with_the_incomplete_flag(tmp_path, capsys):
    s = ("--storage", str(tmp_path))
    write(tmp_path, n=3, finish=False)
    for args in (("results", "show", "exp"), ("results", "export", "exp", "--format", "json",
                                               "--out", str(tmp_path / "e.json")),
                 ("reproduce", "exp")):
        code, _, err = cli(capsys, *args, *s)
        assert code == 1
        line = one_line_error((code, err), "--incomplete")
        assert args[0] == "reproduce" or "allow_incomplete" not in line  # reproduce's wording is its own
    code, out, _ = cli(capsys, "results", "show", "exp", "--incomplete", *s)
    assert code == 0 and "INCOMPLETE" in out and "3 flushed trial(s)" in out
    code, _, _ = cli(capsys, "results", "export", "exp", "--incomplete", "--format", "json",
                     "--out", str(tmp_path / "e.json"), *s)
    assert code == 0 and json.loads((tmp_path / "e.json").read_text())["complete"] is False
    # reproduce accepts the flag and gets as far as the record's trainable (here not importable)
    code, _, err = cli(capsys, "reproduce", "exp", "--incomplete", *s)
    assert "--incomplete" not in err and "Traceback" not in err


def test_show_top_zero_and_negative(tmp_path, capsys):
    write(tmp_path)
    code, out, _ = cli(capsys, "results", "show", "exp", "--top", "0", "--storage", str(tmp_path))
    assert code == 0 and "best trial" in out and "top " not in out and "no trial reported" not in out
    code, _, err = cli(capsys, "results", "show", "exp", "--top", "-1", "--storage", str(tmp_path))
    assert code == 2 and "must be 0 or more" in err


def test_compare_of_different_experiments_warns_and_gives_no_verdict(tmp_path, capsys):
    s = ("--storage", str(tmp_path))
    write(tmp_path, "a")
    write(tmp_path, "b", seed=1)
    write(tmp_path, "acc", metric="val_acc", mode="max")
    code, out, err = cli(capsys, "results", "compare", "a", "b", *s)
    assert code == 0 and "different experiments (name a vs b)" in err and "better" in out
    code, out, err = cli(capsys, "results", "compare", "a", "acc", *s)
    assert code == 0 and "metric val_loss vs val_acc" in err and "mode min vs max" in err
    assert "better" not in out
    code, out, _ = cli(capsys, "results", "compare", "a", "acc", "--json", *s)
    assert "better" not in json.loads(out)["metrics"]["delta"]


def test_refs_as_folder_paths_work_in_every_command(tmp_path, capsys, monkeypatch):
    storage = tmp_path / "records"
    write(storage)
    write(storage, seed=1)
    monkeypatch.chdir(tmp_path)
    v1, latest = "records/exp/v1", "records/exp"
    code, out, _ = cli(capsys, "results", "show", v1)
    assert code == 0 and "exp@v1" in out
    code, out, _ = cli(capsys, "results", "show", latest)
    assert code == 0 and "exp@v2" in out
    assert cli(capsys, "results", "compare", v1, latest)[0] == 0
    assert cli(capsys, "results", "export", str(storage / "exp" / "v2"), "--format", "json")[0] == 0
    assert cli(capsys, "results", "export", v1, "--format", "csv")[0] == 0
    assert (tmp_path / "exp-v2.json").exists() and (tmp_path / "exp-v1-csv" / "trials.csv").exists()
    code, _, err = cli(capsys, "report", v1, "--out", str(tmp_path))  # reaches the output check
    assert code == 2 and "is a folder" in err
    code, _, err = cli(capsys, "results", "show", "records/nothing/v1")
    assert code == 2 and "no such record folder" in err
    code, _, err = cli(capsys, "results", "show", str(tmp_path))
    assert code == 1 and "no record named" in err


def test_odd_refs_are_one_line(tmp_path, capsys):
    write(tmp_path)
    p = tunekit("results", "show", "exp\n", "--storage", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 2
    one_line_error(p, "trailing whitespace")
    for ref in ("x" * 300 + "@v1", "/" + "x" * 300 + "/v1"):
        code, _, err = cli(capsys, "results", "show", ref, "--storage", str(tmp_path))
        assert code == 2
        one_line_error((code, err), "300 characters" if ref[0] == "x" else "not a record folder")


def test_show_into_a_closed_pipe_is_silent(tmp_path):
    write(tmp_path, n=1000, iters=1)
    cmd = [str(TUNEKIT)] if TUNEKIT.exists() else [sys.executable, "-m", "toolkit.cli"]
    p = subprocess.Popen(cmd + ["results", "show", "exp", "--top", "1000", "--storage", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    first = p.stdout.readline()  # like `| head -1`: read a line, then go away
    p.stdout.close()
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert first.startswith(b"exp@v1") and err == "" and p.returncode == 141


# --------------------------------------------------------------------------- space definitions
@pytest.mark.parametrize("definition, needle", [
    ({"x": {"type": "uniform", "low": 0, "hihg": 1}}, "param_space.x: unknown key 'hihg' for a uniform parameter "
                                                      "(did you mean 'high'?)"),
    ({"x": {"type": "uniform", "low": 0, "high": 1, "q": 0.1}}, "'q' is not an option of uniform"),
    ({"x": {"type": "unifrom", "low": 0, "high": 1}}, "unknown parameter type 'unifrom' (did you mean 'uniform'?)"),
    ({"m": {"type": "resnet", "depth": 18}}, "{type: fixed, value: {...}}"),
    ({"x": {"type": "choice", "values": ["a", "b", "a"]}}, "param_space.x.values[2]: 'a' is listed twice"),
    ({"x": {"type": "choice", "values": [1, 1.0]}}, "listed twice"),
    ({"o": {"type": "choice", "values": [{"name": "sgd"}, {"lr": 1}]}},
     "param_space.o.values[1]: a conditional branch needs a `name`"),
    ({"o": {"type": "choice", "values": [{"name": "sgd"}, {"name": "sgd", "m": 1}]}},
     "branch name 'sgd' is already used by values[0]"),
    ({"x": {"type": "quniform", "low": 0, "high": 0.5, "q": 1}}, "q=1 leaves 1 value(s) in [0, 0.5]"),
    ({"x": {"type": "qrandint", "low": 0, "high": 5, "q": 10}}, "step 10 is larger than the range"),
    ({"x": {"type": "uniform", "low": False, "high": True}}, "low must be a number, got False"),
    ({"x": {"type": "int", "low": 1, "high": 9, "log": "yes"}}, "log must be true or false"),
    ({"a.b": 1, "a": {"b": {"type": "uniform", "low": 0, "high": 1}}}, "column 'config.a.b'"),
    ({True: 1}, "parameter names must be text"),
])
def test_careless_space_definitions_are_refused_by_name(definition, needle):
    with pytest.raises(SpaceError) as e:
        parse_space(definition)
    assert needle in str(e.value)


def test_space_definitions_that_stay_valid():
    # Same parameter name in two branches is one column by design; a fixed mapping with a
    # `type` key is written as a fixed value; YAML 1.1 reads 1e-4 as text, still a number.
    space = parse_space({
        "o": {"type": "choice", "values": [{"name": "sgd", "lr": {"type": "uniform", "low": 0, "high": 1}},
                                           {"name": "adam", "lr": {"type": "uniform", "low": 0, "high": 2}}]},
        "model": {"type": "fixed", "value": {"type": "resnet", "depth": 18}},
        "y": {"type": "loguniform", "low": "1e-4", "high": "1e-1"},
        "flag": {"type": "choice", "values": [True, 1, "1"]},
    })
    assert {p.key for p in space.params} == {"o", "o[sgd].lr", "o[adam].lr", "y", "flag"}
    y = next(p.dist for p in space.params if p.key == "y")
    assert (y.low, y.high) == (1e-4, 1e-1)


# --------------------------------------------------------------------------- careless specs, refused at --dry-run
QUADRATIC = (ROOT / "experiments" / "quadratic.yaml").read_text()


def spec_file(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def dry_run(capsys, spec: Path, *extra: str) -> tuple[int, str, str]:
    return cli(capsys, "run", str(spec), "--dry-run", "--storage", str(spec.parent / "records"), *extra)


@pytest.mark.parametrize("change, needles", [
    (lambda t: t + "num_samples: 30\n", ["key 'num_samples' is given twice", "first on line"]),
    (lambda t: t.replace("num_samples: 12", "num_samples: true"), ["num_samples", "boolean true"]),
    (lambda t: t.replace("max_concurrent: 2", "max_concurrent: yes"), ["max_concurrent", "boolean true"]),
    (lambda t: t.replace("num_samples: 12", "num_samples: 1e9"), ["num_samples", "whole number"]),
    (lambda t: t.replace("grace_period: 1", "grace_period: 20"),
     ["scheduler.grace_period", "larger than stop.max_iterations (9)"]),
    (lambda t: t.replace("resources_per_trial: {cpu: 1}", "resources_per_trial: {cpu: 4}\nlocal_ray: {num_cpus: 2}"),
     ["resources_per_trial.cpu", "4 CPU(s)", "has 2"]),
    (lambda t: t.replace("searcher: random", "searcher: {type: random, warm_start: [gone@v3]}"),
     ["searcher.warm_start", "gone"]),
    (lambda t: t.replace("name: quadratic", "name: " + "q" * 254), ["name", "254 characters"]),
    (lambda t: t.replace("trainable: trainables.synthetic:Quadratic", "trainable: os:system"), ["trainable"]),
    (lambda t: t.replace("x: {type: uniform, low: -2.0, high: 2.0}", "x: {type: uniform, low: -2.0, hihg: 2.0}"),
     ["param_space.x", "did you mean 'high'"]),
])
def test_careless_specs_are_refused_by_dry_run_by_name(tmp_path, capsys, change, needles):
    spec = spec_file(tmp_path, change(QUADRATIC))
    code, out, err = dry_run(capsys, spec)
    assert code == 2, (out, err)
    assert "Traceback" not in err and err.startswith("tunekit: ")
    for n in needles:
        assert n in err, err
    assert not (tmp_path / "records").exists()


@pytest.mark.parametrize("storage, needle", [
    ("/proc/tunekit-records", "under /proc"),
    ("{file}", "is a file"),
    ("{file}/below", "is a file"),
])
def test_storage_that_cannot_hold_records_is_refused_by_dry_run(tmp_path, capsys, storage, needle):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    spec = spec_file(tmp_path, QUADRATIC)
    code, _, err = cli(capsys, "run", str(spec), "--dry-run", "--storage", storage.format(file=a_file))
    assert code == 2 and "storage" in err and needle in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "spec.yaml"]


def test_spec_files_that_are_not_yaml_specs_are_one_line(tmp_path, capsys):
    binary = tmp_path / "model.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    code, _, err = dry_run(capsys, binary)
    assert code == 2
    one_line_error((code, err), "binary")
    deep = spec_file(tmp_path, "a:" + "".join(f"\n{'  ' * i}b:" for i in range(1, 500)) + " 1\n", "deep.yaml")
    code, _, err = dry_run(capsys, deep)
    assert code == 2
    one_line_error((code, err), "nested more than")
    flow = spec_file(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n", "flow.yaml")
    code, _, err = dry_run(capsys, flow)
    assert code == 2 and "nested" in err and "Traceback" not in err


def test_a_trainable_module_that_exits_on_import_is_one_line(tmp_path):
    (tmp_path / "exiting.py").write_text("import sys\nsys.exit(3)\n")
    spec = spec_file(tmp_path, QUADRATIC.replace("trainables.synthetic:Quadratic", "exiting:Model"))
    p = tunekit("run", str(spec), "--dry-run", "--storage", str(tmp_path / "records"), cwd=tmp_path)
    assert p.returncode == 2
    one_line_error(p, "exiting", "sys.exit")
    assert not (tmp_path / "records").exists()


def test_tunekit_storage_is_honoured_by_run(tmp_path, capsys, monkeypatch):
    spec = spec_file(tmp_path, QUADRATIC.replace("storage: ./tunekit-results\n", ""))
    monkeypatch.setenv("TUNEKIT_STORAGE", str(tmp_path / "from-env"))
    code, out, _ = cli(capsys, "run", str(spec), "--dry-run")
    assert code == 0 and str(tmp_path / "from-env" / "quadratic") in out
    # The spec's own storage and --storage still come first.
    code, out, _ = cli(capsys, "run", str(ROOT / "experiments" / "quadratic.yaml"), "--dry-run")
    assert code == 0 and str(tmp_path / "from-env") not in out


def test_an_address_where_nothing_listens_fails_promptly_naming_it(tmp_path):
    spec = spec_file(tmp_path, QUADRATIC)
    p = tunekit("run", str(spec), "--address", "127.0.0.1:1", "--storage", str(tmp_path / "records"),
                cwd=tmp_path, timeout=90)  # it used to hang for minutes: the timeout is the check
    assert p.returncode != 0
    one_line_error(p, "cannot reach a Ray cluster at 127.0.0.1:1")
    assert not (tmp_path / "records" / "quadratic").exists()  # no version (the error's log may be there)


def test_a_ctrl_c_while_a_version_is_being_reserved_is_held_back_until_it_can_be_removed(tmp_path):
    """The runner reserves a version inside `defer_sigint` and only then raises the held-back
    KeyboardInterrupt, where its error path removes the unstarted version."""
    import signal

    from toolkit.interrupt import defer_sigint
    from toolkit.runner import discard_unstarted

    before = signal.getsignal(signal.SIGINT)  # an earlier in-process Tune run may have left its own
    with pytest.raises(KeyboardInterrupt):
        with defer_sigint() as pending:
            writer = RecordWriter(tmp_path, "exp", synthetic.manifest("exp"))
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, mid-reservation
            assert writer.path.is_dir()  # still here: the signal did not cut the block short
        try:
            pending.raise_if_fired()
        except KeyboardInterrupt:
            discard_unstarted(writer)
            raise
    assert not (tmp_path / "exp").exists() and list_records(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is before  # the handler in place before is back


@pytest.mark.slow
def test_ctrl_c_right_after_the_version_is_reserved_leaves_no_orphan(tmp_path):
    """A real `tunekit run` (storage from $TUNEKIT_STORAGE) gets SIGINT the moment its version
    folder appears: the version is removed, or published if the sweep had begun; never left
    incomplete."""
    import signal
    import time

    spec = spec_file(tmp_path, QUADRATIC.replace("storage: ./tunekit-results\n", ""))
    storage = tmp_path / "from-env"
    cmd = [str(TUNEKIT)] if TUNEKIT.exists() else [sys.executable, "-m", "toolkit.cli"]
    for attempt in range(3):
        p = subprocess.Popen(cmd + ["run", str(spec), "--set", "num_samples=2", "--set", "stop.max_iterations=2",
                                    "--set", "local_ray.num_cpus=1"],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "TUNEKIT_STORAGE": str(storage)})
        try:
            deadline = time.monotonic() + 240
            while not (storage / "quadratic" / "v1").exists() and p.poll() is None:
                assert time.monotonic() < deadline, "the run never reserved a version"
                time.sleep(0.005)
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=240)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        # Ray's raylet must register within a fixed 30 s; on a crowded machine it sometimes
        # does not, before any version is reserved: that says nothing about tunekit, so retry.
        if "node timed out during startup" not in err:
            break
    else:
        pytest.skip("Ray could not start a local node on this machine (raylet startup timed out, 3 tries)")
    assert "Traceback" not in err
    statuses = {r.version: r.status for r in list_records(storage)}
    assert all(s in ("completed", "interrupted") for s in statuses.values()), statuses
    if not statuses:  # stopped before the sweep began: nothing kept, and the exit code says why
        assert p.returncode == 130 and "interrupted" in err, err
