"""Experiment spec: every bad input gets an error naming the field and the problem."""

import subprocess
import sys
import textwrap

import pytest

from toolkit.spec import SpecError, apply_overrides, load_spec, validate_spec

BASE = {
    "name": "quad",
    "trainable": "trainables.synthetic:Quadratic",
    "metric": "loss",
    "mode": "min",
    "param_space": {"x": {"type": "uniform", "low": -2.0, "high": 2.0}},
    "stop": {"max_iterations": 3},
}


def _with(**changes):
    raw = {**BASE, **changes}
    return {k: v for k, v in raw.items() if v is not None}


def _problems(raw) -> str:
    with pytest.raises(SpecError) as err:
        validate_spec(raw)
    return str(err.value)


def test_a_good_spec_resolves_with_defaults():
    spec = validate_spec(_with(searcher="random", scheduler={"type": "asha", "grace_period": 1}))
    resolved = spec.resolved()
    assert resolved["searcher"]["type"] == "random" and resolved["searcher"]["warm_start"] == []
    assert resolved["scheduler"]["type"] == "asha" and resolved["num_samples"] == 8
    assert spec.given["searcher"] == "random"  # the spec as written is kept too
    assert spec.search_space().to_config({"x": 0.5, "seed": 0}) == {"x": 0.5, "seed": 0}


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"mode": "maximise"}, "mode: Input should be 'min' or 'max'"),
        ({"name": None}, "name: required field is missing"),
        ({"num_samples": 0}, "num_samples: Input should be greater than or equal to 1"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"searcher": "bayes"}, "searcher.type: unknown searcher 'bayes'; choose from: random, tpe, gp"),
        ({"scheduler": "hyperbandit"}, "scheduler.type: unknown scheduler 'hyperbandit'"),
        ({"searcher": {"type": "tpe", "n_startups": 5}}, "searcher.n_startups: unknown option for tpe (did you mean n_startup?)"),
        ({"searcher": {"type": "gp", "acquisition": "ei"}}, "searcher.acquisition: Input should be 'logei' or 'ucb'"),
        ({"searcher": {"n_startup": 5}}, "searcher.n_startup: unknown option for random (n_startup is an option of tpe: set the type)"),
        ({"scheduler": {"type": "asha", "grace": 2}}, "scheduler.grace: unknown option for asha (did you mean grace_period?)"),
        ({"scheduler": {"type": "asha", "reduction_factor": 1}}, "scheduler.reduction_factor: Input should be greater than 1"),
        ({"seeed": 1}, "seeed: unknown field (did you mean seed?)"),
        ({"stop": {}}, "stop: Value error, give max_iterations and/or time_budget_s"[len("stop: Value error, "):]),
        ({"resources_per_trial": {"cpu": 1, "gpu": 1.5}}, "resources_per_trial.gpu: gpu above 1 must be a whole"),
        ({"param_space": {"x": {"type": "uniform", "low": 3, "high": 1}}}, "param_space.x: low (3) must be < high (1)"),
        ({"param_space": {"x": {"type": "loguniform", "low": 0, "high": 1}}}, "param_space.x: log-scale bounds must be > 0"),
        ({"param_space": {"x": {"type": "choice", "values": []}}}, "param_space.x: choice needs at least one value"),
        ({"param_space": {"x": {"type": "beta", "low": 0, "high": 1}}}, "param_space.x: unknown parameter type 'beta'"),
        ({"trainable": "trainables.nowhere:Model"}, "trainable: no module named 'trainables.nowhere' (looked in "),
        ({"trainable": "os:system"}, "trainable: os:system: a built-in function is neither a ray.tune.Trainable"),
        ({"trainable": "json:JSONDecoder"}, "json.decoder.JSONDecoder is a class but not a ray.tune.Trainable"),
        ({"trainable": "textwrap:indent"}, "function indent(text, prefix, predicate=None) cannot be called with one"),
        ({"trainable": "trainables.synthetic:Nope"}, "trainable: module 'trainables.synthetic' has no attribute 'Nope'"),
        ({"trainable": "not a path"}, "trainable: Value error, must be an import path"[len("trainable: Value error, "):]),
        ({"metric": "accuracy"}, "metric: trainables.synthetic:Quadratic never reports 'accuracy'"),
        ({"scheduler": "asha", "stop": {"time_budget_s": 10}}, "scheduler asha needs stop.max_iterations"),
    ],
)
def test_each_bad_input_names_its_field(changes, expected):
    assert expected in _problems(_with(**changes))


def test_searcher_and_scheduler_sections_fill_in_every_default():
    spec = validate_spec(_with(searcher={"type": "tpe", "n_startup": 5, "warm_start": "quad@v1"},
                               scheduler={"type": "asha", "grace_period": 2}))
    resolved = spec.resolved()
    assert resolved["searcher"]["n_startup"] == 5 and resolved["searcher"]["warm_start"] == ["quad@v1"]
    assert resolved["searcher"]["n_candidates"] == 64  # a default, shown in the record and --dry-run
    assert resolved["scheduler"] == {"type": "asha", "mode": "stop", "grace_period": 2, "reduction_factor": 3.0,
                                     "min_evidence": None, "deterministic": False}
    # `--set` on a shorthand section keeps its type
    spec = validate_spec(apply_overrides(_with(searcher="tpe"), ["searcher.n_startup=3"]))
    assert spec.searcher.type == "tpe" and spec.searcher.n_startup == 3


def test_importing_the_spec_does_not_import_ray_or_torch():
    code = "import sys, toolkit.spec; print(sorted(m for m in ('ray', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_overrides_set_dotted_fields_with_yaml_values():
    raw = apply_overrides(BASE, ["num_samples=4", "stop.max_iterations=2", "scheduler.grace_period=2",
                                 "param_space.x.high=1.5", "searcher=tpe"])
    assert raw["num_samples"] == 4 and raw["stop"]["max_iterations"] == 2
    assert raw["scheduler"] == {"grace_period": 2} and raw["param_space"]["x"]["high"] == 1.5
    assert raw["searcher"] == "tpe" and BASE["stop"]["max_iterations"] == 3  # original untouched
    with pytest.raises(SpecError, match="expected FIELD=VALUE"):
        apply_overrides(BASE, ["num_samples"])


def test_yaml_files_load_and_malformed_yaml_is_reported(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(textwrap.dedent("""
        name: quad
        trainable: trainables.synthetic:Quadratic
        metric: loss
        mode: min
        param_space:
          x: {type: uniform, low: -1, high: 1}
          opt:
            type: choice
            values:
              - {name: a, k: {type: randint, low: 1, high: 4}}
              - {name: b}
        stop: {max_iterations: 2}
    """))
    spec = load_spec(good, ["seed=7"])
    assert spec.seed == 7 and "opt[a].k" in spec.search_space().keys
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="bad.yaml is not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")


def test_every_shipped_spec_is_valid():
    from pathlib import Path

    specs = sorted(Path(__file__).resolve().parents[1].joinpath("experiments").glob("*.yaml"))
    assert specs, "experiments/*.yaml missing"
    for path in specs:
        load_spec(path)
