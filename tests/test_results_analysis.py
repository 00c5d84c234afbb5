"""Aggregation API, compare, export, CLI and the HTML report."""

import argparse
import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toolkit.results import RecordWriter, compare, load, synthetic
from toolkit.results.cli import register
from toolkit.results.export import export
from toolkit.results.report import PLOTS, write_report


def make(root, name="exp", n=40, iters=6, seed=0, mode="min", env=None, spec_change=None, data=None, code=None,
         space=None):
    man = synthetic.manifest(name, seed, environment=env)
    man["mode"] = mode
    if spec_change:
        man["resolved_spec"].update(spec_change)
    if data is not None:
        man["data"] = data
    if code is not None:
        man["code"] = code
    if space is not None:
        man["space"] = space
    w = RecordWriter(root, name, man)
    for trial, history in synthetic.sweep(n, iters, seed=seed):
        w.add_trial(trial, history)
    w.finish("completed", None)
    return load(f"{name}@v{w.version}", root=root)


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return make(tmp_path_factory.mktemp("rec"), n=60)


def test_best_respects_mode_and_skips_missing_values(tmp_path):
    w = RecordWriter(tmp_path, "m", {"metric": "acc", "mode": "max"})
    for tid, v in [("a", 0.5), ("b", None), ("c", 0.9), ("d", float("nan")), ("e", 0.7)]:
        w.add_trial({"trial_id": tid, "config": {"x": 1}, "status": "TERMINATED", "final_metric": v,
                     "best_metric": v}, [])
    w.finish("completed", None)
    r = load("m", root=tmp_path)
    assert list(r.best(3)["trial_id"]) == ["c", "e", "a"]
    assert list(r.best_so_far()["best_so_far"]) == [0.5, 0.5, 0.9, 0.9, 0.9]


def test_best_so_far_is_monotone_and_matches_a_hand_computation(rec):
    d = rec.best_so_far()
    assert list(d["n_trials"]) == list(range(1, len(rec.trials) + 1))
    expect = np.minimum.accumulate(rec.trials["final_metric"].to_numpy())
    assert np.allclose(d["best_so_far"], expect)
    t = rec.best_so_far(by="time")
    assert t["elapsed_s"].is_monotonic_increasing and t["best_so_far"].is_monotonic_decreasing
    assert t["best_so_far"].iloc[-1] == rec.best(1)["value"].iloc[0] == rec.trials["final_metric"].min()
    b = rec.best_so_far(scope="best")
    assert b["best_so_far"].iloc[-1] == rec.trials["best_metric"].min()


def test_metric_values_fall_back_to_history_when_trials_lack_them(tmp_path):
    w = RecordWriter(tmp_path, "h", {"metric": "loss", "mode": "min"})
    w.add_trial({"trial_id": "a", "config": {"x": 1}}, [{"training_iteration": 1, "loss": 3.0},
                                                        {"training_iteration": 2, "loss": 2.0}])
    w.add_trial({"trial_id": "b", "config": {"x": 2}}, [{"training_iteration": 1, "loss": 1.0},
                                                        {"training_iteration": 2, "loss": 2.5}])
    w.finish("completed", None)
    r = load("h", root=tmp_path)
    assert list(r.best(2, scope="last")["trial_id"]) == ["a", "b"]   # last values 2.0, 2.5
    assert list(r.best(2, scope="best")["trial_id"]) == ["b", "a"]   # best values 1.0, 2.0


def test_param_summary_counts_levels_and_correlations(rec):
    s = rec.param_summary()
    assert "seed" not in set(s["param"])  # seeds are not hyperparameters
    opt = s[s.param == "optimizer.name"].set_index("level")
    counts = rec.trials["config.optimizer.name"].value_counts()
    assert opt.loc["sgd", "n"] == counts["sgd"] and opt.loc["adam", "n"] == counts["adam"]
    sgd = rec.trials[rec.trials["config.optimizer.name"] == "sgd"]["final_metric"]
    assert opt.loc["sgd", "metric_mean"] == pytest.approx(sgd.mean())
    assert opt.loc["sgd", "metric_best"] == pytest.approx(sgd.min())
    lr = s[s.param == "lr"].iloc[0]
    assert lr["kind"] == "numeric" and lr["min"] == rec.trials["config.lr"].min()
    mom = s[s.param == "optimizer.momentum"].iloc[0]
    assert mom["n"] == counts["sgd"]  # conditional: only active in sgd trials


def test_importance_finds_the_parameter_that_matters(tmp_path):
    r = make(tmp_path, n=80, iters=3)
    imp = r.importance()
    assert imp.attrs["method"] == "rf-permutation" and imp.attrs["surrogate_r2"] > 0.5
    assert imp["param"].iloc[0] == "lr" and imp["share"].iloc[0] > 0.6
    unused = imp.set_index("param").loc["unused", "share"]
    assert unused < 0.1
    assert np.isclose(imp["share"].sum(), 1.0)
    # Deterministic for a fixed seed.
    assert imp.equals(r.importance())


def test_importance_with_too_few_trials_says_so(tmp_path):
    r = make(tmp_path, n=4)
    imp = r.importance()
    assert imp["importance"].isna().all() and "needs" in imp.attrs["note"]


def test_compare_reports_setup_differences_and_metric_deltas(tmp_path):
    env_a = {"python": {"version": "3.11.7"}, "versions": {"torch": "2.13.0"},
             "packages": ["numpy==2.4.6", "torch==2.13.0"], "env_vars": {"TUNEKIT_STORAGE": "/a"}}
    env_b = {"python": {"version": "3.11.7"}, "versions": {"torch": "2.14.0"},
             "packages": ["numpy==2.4.6", "torch==2.14.0", "newpkg==1.0"], "env_vars": {"TUNEKIT_STORAGE": "/b"}}
    code_a = {"trainable": "m:T", "file": "/x/m.py", "file_sha256": "1" * 64, "status": "git",
              "git": {"root": "/x", "commit": "aaa", "dirty": False}}
    code_b = {"trainable": "m:T", "file": "/y/m.py", "file_sha256": "2" * 64, "status": "git",
              "git": {"root": "/y", "commit": "bbb", "dirty": True, "diff_sha256": "f00"}}
    a = make(tmp_path, n=20, seed=0, env=env_a, code=code_a)
    b = make(tmp_path, n=30, seed=1, env=env_b, spec_change={"num_samples": 30},
             data={"fingerprint": "sha256:other", "description": "x"}, code=code_b)
    c = compare("exp@v1", "exp@v2", root=tmp_path)
    assert (c.a, c.b) == ("exp@v1", "exp@v2")
    assert ("num_samples", None, 30) in c.spec
    assert any(p == "seed" for p, _, _ in c.search)
    assert ("fingerprint", "sha256:synthetic", "sha256:other") in c.data
    assert ("git.commit", "aaa", "bbb") in c.code and ("git.dirty", False, True) in c.code
    assert ("file_sha256", "1" * 64, "2" * 64) in c.code
    assert not any("root" in p or p == "file" for p, _, _ in c.code)  # paths differ between machines
    env = {p: (x, y) for p, x, y in c.environment}
    assert env["versions.torch"] == ("2.13.0", "2.14.0")
    assert env["packages.newpkg"] == (None, "1.0") and env["packages.torch"] == ("2.13.0", "2.14.0")
    assert "packages.numpy" not in env and "python.version" not in env
    assert "env_vars.TUNEKIT_STORAGE" not in env  # where records are stored changes no result
    ma, mb = a.trials["final_metric"], b.trials["final_metric"]
    assert c.metrics["a"]["best"] == ma.min() and c.metrics["b"]["best"] == mb.min()
    assert c.metrics["delta"]["best"] == pytest.approx(mb.min() - ma.min())
    assert c.metrics["delta"]["n_trials"] == 10
    assert c.metrics["delta"]["better"] == (mb.min() < ma.min())
    text = c.to_text()
    assert "versions.torch" in text and "num_samples" in text and "delta" in text
    json.dumps(c.to_dict(), default=str)
    same = compare(a, a)
    assert same.identical_setup and not same.environment and same.metrics["delta"]["best"] == 0


def test_compare_says_data_unknown_when_neither_record_has_a_fingerprint(tmp_path):
    make(tmp_path, n=6, data={})
    make(tmp_path, n=6, seed=1, data={})
    c = compare("exp@v1", "exp@v2", root=tmp_path)
    assert not c.data_known and not c.data
    text = c.to_text()
    assert "data: unknown" in text and "data: identical" not in text
    make(tmp_path, n=6, seed=2)  # has a fingerprint: now the difference is known
    c = compare("exp@v1", "exp@v3", root=tmp_path)
    assert c.data_known and ("fingerprint", None, "sha256:synthetic") in c.data


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_round_trips(rec, tmp_path, fmt):
    files = export(rec, fmt, tmp_path / f"out.{fmt}" if fmt == "json" else tmp_path / "out")
    if fmt == "json":
        doc = json.loads(files[0].read_text())
        assert doc["manifest"] == rec.manifest
        trials, metrics = pd.DataFrame(doc["trials"]), pd.DataFrame(doc["metrics"])
        assert [t["config"] for t in doc["trials"]] == [rec.config(t) for t in rec.trials.trial_id]
    else:
        read = pd.read_csv if fmt == "csv" else pd.read_parquet
        trials, metrics = read(tmp_path / "out" / f"trials.{fmt}"), read(tmp_path / "out" / f"metrics.{fmt}")
        assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == rec.manifest
    assert list(trials["trial_id"]) == list(rec.trials["trial_id"])
    assert np.allclose(trials["final_metric"], rec.trials["final_metric"])
    assert [json.loads(c) for c in trials["config_json"]] == [json.loads(c) for c in rec.trials["config_json"]]
    pd.testing.assert_frame_equal(metrics.reset_index(drop=True)[list(rec.metrics.columns)],
                                  rec.metrics.reset_index(drop=True), check_dtype=False)


# --------------------------------------------------------------------------- report
class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.figures, self.imgs, self.tables, self._fig = [], {}, [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure":
            self._fig = a.get("id")
            self.figures.append(self._fig)
        elif tag == "img" and self._fig:
            self.imgs[self._fig] = a.get("src", "")
        elif tag == "table":
            self.tables.append(a.get("id"))
        elif tag in ("script", "link") or (tag == "img" and not a.get("src", "").startswith("data:")):
            raise AssertionError(f"report is not self-contained: <{tag} {a}>")

    def handle_endtag(self, tag):
        if tag == "figure":
            self._fig = None


def test_report_is_self_contained_with_every_plot(rec, tmp_path):
    out = write_report(rec, tmp_path / "r.html")
    text = out.read_text()
    p = _Collect()
    p.feed(text)
    assert p.figures == [f"plot-{k}" for k in PLOTS]
    for key in PLOTS:
        src = p.imgs[f"plot-{key}"]
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "provenance" in p.tables
    for needle in ("stopped early", rec.ref, "sha256 trials.parquet", rec.manifest["data"]["fingerprint"]):
        assert needle in text
    best_id = rec.best(1)["trial_id"].iloc[0]
    assert f"Best trial: {best_id}" in text


# --------------------------------------------------------------------------- CLI
def _cli(argv):
    parser = argparse.ArgumentParser(prog="tunekit")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_list_show_compare_export_report(tmp_path, capsys, monkeypatch):
    make(tmp_path, n=12, seed=0)
    make(tmp_path, n=15, seed=1)
    s = ["--storage", str(tmp_path)]
    assert _cli(["results", "list", *s]) == 0
    out = capsys.readouterr().out
    assert "exp@v1" in out and "exp@v2" in out and "completed" in out
    assert _cli(["results", "show", "exp", *s]) == 0
    out = capsys.readouterr().out
    assert "exp@v2" in out and "best trial" in out and "val_loss" in out
    assert _cli(["results", "compare", "exp@v1", "exp@v2", *s]) == 0
    assert "delta" in capsys.readouterr().out
    assert _cli(["results", "export", "exp@v1", "--format", "csv", "--out", str(tmp_path / "csv"), *s]) == 0
    assert (tmp_path / "csv" / "trials.csv").exists()
    assert _cli(["report", "exp", "--out", str(tmp_path / "r.html"), *s]) == 0
    assert (tmp_path / "r.html").stat().st_size > 10000
    # Errors are one clear line and exit code 1, not a traceback.
    assert _cli(["results", "show", "missing", *s]) == 1
    assert "no record named 'missing'" in capsys.readouterr().err
    # --storage defaults to $TUNEKIT_STORAGE.
    monkeypatch.setenv("TUNEKIT_STORAGE", str(tmp_path))
    assert _cli(["results", "list"]) == 0 and "exp@v2" in capsys.readouterr().out


def test_importance_judges_early_stopped_sweeps_at_a_common_iteration(tmp_path):
    from toolkit.results.analysis import common_budget, values_at

    r = make(tmp_path, n=40, iters=8)  # early-stopped trials ran 2 of 8 iterations
    reached = r.metrics.groupby("trial_id")["training_iteration"].max()
    assert set(reached) == {2, 8}
    b = common_budget(r)
    assert (reached >= b).sum() >= 20 and ((reached > b).sum() < 20 or b == reached.max())
    v = values_at(r, b)
    assert v.notna().sum() == (reached >= b).sum()
    first = r.metrics[(r.metrics.trial_id == "t00000") & (r.metrics.training_iteration == b)]["val_loss"].iloc[0]
    assert v.iloc[0] == first
    assert r.importance().attrs["budget"] == b and r.importance(budget=None).attrs["budget"] is None


def test_environment_diff_ignores_ray_memory_sizing_but_not_cpus():
    from toolkit.results import diff_environments

    a = {"ray_cluster": {"nodes": 1, "resources": {"CPU": 2.0, "memory": 1.69e10, "object_store_memory": 7.2e9}}}
    b = {"ray_cluster": {"nodes": 2, "resources": {"CPU": 4.0, "memory": 1.70e10, "object_store_memory": 7.3e9}}}
    assert {k for k, _, _ in diff_environments(a, b)} == {"ray_cluster.nodes", "ray_cluster.resources.CPU"}
    assert diff_environments(a, b, ignore=("ray_cluster",)) == []
    # torch's view is captured only when torch was already imported: absent is not a difference,
    # a different value is.
    with_torch, without = {"gpus": {"devices": [], "torch_num_threads": 2}}, {"gpus": {"devices": []}}
    assert diff_environments(with_torch, without) == []
    assert diff_environments(with_torch, {"gpus": {"devices": [], "torch_num_threads": 4}}) != []


def test_report_of_an_incomplete_version_says_so(tmp_path):
    from toolkit.results.report import render_html

    w = RecordWriter(tmp_path, "exp", synthetic.manifest("exp"))
    for trial, history in synthetic.sweep(12, 4):
        w.add_trial(trial, history)
    w.flush()
    rec = load("exp@v1", root=tmp_path, allow_incomplete=True)
    text = render_html(rec)
    p = _Collect()
    p.feed(text)
    assert p.figures == [f"plot-{k}" for k in PLOTS]
    assert "This version is INCOMPLETE" in text and "12 flushed trial(s)" in text
