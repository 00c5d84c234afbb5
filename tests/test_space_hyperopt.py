"""Converting hyperopt `hp` spaces to our SearchSpace and back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hyperopt import hp
from hyperopt.pyll import scope
from hyperopt.pyll.stochastic import sample as hp_sample

from toolkit.space import Categorical, Float, Int, Normal, SearchSpace, SpaceError
from toolkit.space.hyperopt import from_hyperopt, is_hyperopt_space, to_hyperopt


def test_every_hp_type():
    space = from_hyperopt(
        {
            "u": hp.uniform("u", -1, 2),
            "lu": hp.loguniform("lu", math.log(1e-4), math.log(1e-1)),
            "qu": hp.quniform("qu", 0, 10, 2.5),
            "qlu": hp.qloguniform("qlu", math.log(1), math.log(100), 5),
            "ri": hp.randint("ri", 5),
            "ri2": hp.randint("ri2", 3, 9),
            "ui": hp.uniformint("ui", 1, 6),
            "qi": scope.int(hp.quniform("qi", 0, 12, 4)),
            "n": hp.normal("n", 1.0, 0.5),
            "qn": hp.qnormal("qn", 0.0, 2.0, 0.5),
            "c": hp.choice("c", ["a", 1, None]),
            "pc": hp.pchoice("pc", [(0.2, "x"), (0.8, "y")]),
            "fixed": 7,
        }
    )
    d = {p.key: p.dist for p in space.params}
    assert d["u"] == Float(-1, 2)
    assert d["lu"].log and math.isclose(d["lu"].low, 1e-4) and math.isclose(d["lu"].high, 1e-1)
    assert d["qu"] == Float(0, 10, q=2.5)
    assert d["qlu"].log and d["qlu"].q == 5 and math.isclose(d["qlu"].high, 100)
    assert d["ri"] == Int(0, 4) and d["ri2"] == Int(3, 8)  # hyperopt's randint excludes the top
    assert d["ui"] == Int(1, 6)  # uniformint includes it
    assert d["qi"] == Int(0, 12, step=4)
    assert d["n"] == Normal(1.0, 0.5) and d["qn"] == Normal(0.0, 2.0, q=0.5)
    assert d["c"] == Categorical(("a", 1, None)) and d["pc"] == Categorical(("x", "y"))
    assert space.to_config(space.sample(np.random.default_rng(0)))["fixed"] == 7


def test_nested_choice_is_conditional():
    space = from_hyperopt(
        {
            "opt": hp.choice(
                "opt",
                [
                    {"name": "sgd", "lr": hp.loguniform("sgd_lr", -9, 0), "mom": hp.uniform("mom", 0, 1)},
                    {"name": "adam", "lr": hp.loguniform("adam_lr", -11, -2),
                     "sched": hp.choice("sched", [{"kind": "cos"}, {"kind": "step", "g": hp.uniform("g", 0.1, 0.9)}])},
                ],
            ),
            "layers": [hp.uniformint("l0", 8, 64), 3],
        }
    )
    keys = {p.key: p for p in space.params}
    assert keys["opt[sgd].mom"].parent == ("opt", 0)
    assert keys["opt[adam].lr"].parent == ("opt", 1)
    assert keys["opt[adam].sched[step].g"].parent == ("opt[adam].sched", 1)
    rng = np.random.default_rng(1)
    shapes = set()
    for _ in range(50):
        c = space.to_config(space.sample(rng))
        shapes.add(tuple(sorted(c["opt"])))
        assert c["layers"][1] == 3 and 8 <= c["layers"][0] <= 64
    assert shapes == {("lr", "mom", "name"), ("lr", "name", "sched")}


def test_unsupported_expressions_raise():
    with pytest.raises(SpaceError):
        from_hyperopt({"x": hp.lognormal("x", 0, 1)})
    with pytest.raises(SpaceError):
        from_hyperopt({"x": hp.uniform("x", 0, 1) ** 2})
    with pytest.raises(SpaceError):
        from_hyperopt(hp.uniform("x", 0, 1))  # the root must be a mapping


def test_is_hyperopt_space():
    assert is_hyperopt_space({"a": {"b": [hp.uniform("x", 0, 1)]}})
    assert not is_hyperopt_space({"a": 1, "b": [2.0]})


SPACE = SearchSpace(
    {
        "f": Float(-2.0, 3.0),
        "flog": Float(1e-5, 1.0, log=True),
        "fq": Float(0.05, 1.0, q=0.1),
        "i": Int(-3, 7),
        "ilog": Int(2, 300, log=True),
        "istep": Int(2, 20, step=3),
        "n": Normal(1.0, 2.0),
        "c": Categorical(("a", 2, None)),
        "opt": Categorical(
            ({"name": "sgd", "m": Float(0.0, 0.99)}, {"name": "adam", "b": Int(1, 4), "e": Categorical((1e-8, 1e-6))})
        ),
        "fixed": {"k": [1, "two"]},
    }
)


def test_to_hyperopt_samples_are_valid_configs_and_cover_the_grid():
    hspace = to_hyperopt(SPACE)
    rng = np.random.default_rng(0)
    seen_i, seen_step, branches = set(), set(), set()
    for _ in range(400):
        c = hp_sample(hspace, rng=rng)
        flat = SPACE.from_config(c)  # raises if any value is outside the space
        snapped = SPACE.canonical(flat)  # on the grid, up to hyperopt's float rounding noise
        assert snapped.keys() == flat.keys()
        assert all(math.isclose(snapped[k], v, rel_tol=1e-12, abs_tol=1e-12) for k, v in flat.items())
        assert list(c["fixed"]["k"]) == [1, "two"]  # hyperopt evaluates lists to tuples
        seen_i.add(c["i"])
        seen_step.add(c["istep"])
        branches.add(c["opt"]["name"])
        assert set(c["opt"]) == ({"name", "m"} if c["opt"]["name"] == "sgd" else {"name", "b", "e"})
    assert seen_i == set(range(-3, 8))  # the end points too
    assert seen_step == set(range(2, 21, 3))
    assert branches == {"sgd", "adam"}


def test_round_trip_for_directly_mapped_types():
    space = SearchSpace({"u": Float(0.0, 1.0), "l": Float(1e-3, 1.0, log=True), "c": Categorical(("x", "y")),
                         "n": Normal(0.0, 1.0)})
    back = from_hyperopt(to_hyperopt(space))
    for a, b in zip(space.params, back.params):
        assert a.key == b.key
        assert type(a.dist) is type(b.dist)
        if isinstance(a.dist, Float):
            assert math.isclose(a.dist.low, b.dist.low) and math.isclose(a.dist.high, b.dist.high) and a.dist.log == b.dist.log
        else:
            assert a.dist == b.dist
