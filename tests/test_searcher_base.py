"""Behaviour every searcher shares (toolkit.searchers.base): every trial asked for, the
exhaustive option, warm starts snapped or refused, the metric mode required, JSON state."""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest
from ray.tune.search import Searcher

from toolkit.searchers.gp import GPSearcher
from toolkit.searchers.random import RandomSearcher
from toolkit.searchers.startup import default_startup_size
from toolkit.searchers.tpe import TPESearcher
from toolkit.space import Categorical, Float, Int, SearchSpace, SpaceError

SEARCHERS = [RandomSearcher, TPESearcher, GPSearcher]


def _ask_tell(s, n: int, f) -> list:
    out = []
    for i in range(n):
        c = s.suggest(f"t{i}")
        out.append(c)
        if c != Searcher.FINISHED:
            s.on_trial_complete(f"t{i}", {"loss": f(c)})
    return out


@pytest.mark.parametrize("cls", SEARCHERS)
def test_every_trial_asked_for_on_a_two_point_space(cls):
    rng = np.random.default_rng(0)
    space = SearchSpace({"lr": Categorical((0.01, 0.1))})
    configs = _ask_tell(cls(space, "loss", "min", seed=0), 12, lambda c: c["lr"] + 0.05 * rng.standard_normal())
    assert Searcher.FINISHED not in configs
    assert {c["lr"] for c in configs[:2]} == {0.01, 0.1}  # both points first, then repeats
    done = _ask_tell(cls(space, "loss", "min", seed=0, exhaustive=True), 4, lambda c: c["lr"])
    assert done[2:] == [Searcher.FINISHED, Searcher.FINISHED]


def test_random_search_proposes_every_point_of_a_nearly_exhausted_space():
    space = SearchSpace({"a": Int(0, 9), "b": Int(0, 9), "c": Int(0, 4)})
    s = RandomSearcher(space, "loss", "min", seed=1, exhaustive=True)
    configs = _ask_tell(s, 501, lambda c: 0.0)
    assert len({(c["a"], c["b"], c["c"]) for c in configs[:500]}) == 500 and configs[500] == Searcher.FINISHED


def test_tpe_proposes_the_best_untried_point_not_a_random_one():
    # Model phase on a 64-point space: once the model's favourite is taken, the next proposal
    # is the untried point with the best l/g, so late proposals stay near the optimum.
    space = SearchSpace({"x": Int(0, 7), "y": Int(0, 7)})
    s = TPESearcher(space, "loss", "min", seed=0, n_startup=5)
    configs = _ask_tell(s, 40, lambda c: (c["x"] - 5) ** 2 + (c["y"] - 2) ** 2)
    assert len({(c["x"], c["y"]) for c in configs}) == 40
    late = [(c["x"] - 5) ** 2 + (c["y"] - 2) ** 2 for c in configs[10:25]]
    assert np.median(late) <= 5  # uniform points on this grid have a median of about 13


@pytest.mark.parametrize("cls", SEARCHERS)
def test_warm_start_snaps_to_the_grid_and_drops_points_outside(cls, caplog):
    space = SearchSpace({"x": Float(0.0, 1.0, q=0.5)})
    s = cls(space, "loss", "min", seed=0)
    with caplog.at_level(logging.WARNING, logger="tunekit.searchers"):
        added = s.warm_start([({"x": 0.1}, 1.0), ({"x": 0.2}, 2.0), ({"x": 3.0}, 0.0), ({"y": 1.0}, 0.0)])
    assert added == 2 and [o.flat["x"] for o in s.observations] == [0.0, 0.0]
    assert [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()][0].startswith("warm start: dropped 2 of 4")
    nxt = [s.suggest(f"t{i}") for i in range(2)]
    assert sorted(c["x"] for c in nxt) == [0.5, 1.0]  # the two untried grid points, not FINISHED


@pytest.mark.parametrize("cls", SEARCHERS)
def test_evaluated_points_need_the_mode_and_the_space(cls):
    s = cls(SearchSpace({"x": Float(0.0, 1.0)}), seed=0)
    with pytest.raises(ValueError, match="mode"):
        s.warm_start([({"x": 0.5}, 3.0)])
    with pytest.raises(ValueError, match="mode"):
        s.add_evaluated_point({"x": 0.5}, 3.0)
    s.set_search_properties("score", "max", {})
    s.add_evaluated_point({"x": 0.5}, 3.0)
    assert s.observations[0].loss == -3.0  # a score, so the loss is its negation
    with pytest.raises(SpaceError, match="x"):
        s.add_evaluated_point({"x": 1.5}, 3.0)
    with pytest.raises(SpaceError, match=r"points_to_evaluate\[1\]"):
        cls(SearchSpace({"x": Float(0.0, 1.0)}), "loss", "min", points_to_evaluate=[{"x": 0.2}, {"x": 7.0}])


def test_points_to_evaluate_are_snapped_to_the_grid():
    s = RandomSearcher(SearchSpace({"n": Int(1, 9, step=2)}), "loss", "min", points_to_evaluate=[{"n": 4}], seed=0)
    assert s.suggest("t0") == {"n": 5}


def test_startup_size_follows_the_budget_tune_reports():
    assert default_startup_size(2, None) == 5 and default_startup_size(20, None) == 10
    assert default_startup_size(6, 12) == 3 and default_startup_size(6, 20) == 5 and default_startup_size(6, 100) == 7
    s = TPESearcher(seed=0)
    s.set_search_properties("loss", "min", {"x": __import__("ray").tune.uniform(0, 1)}, num_samples=12)
    assert s.startup_size() == 3
    assert TPESearcher(SearchSpace({"x": Float(0.0, 1.0)}), seed=0, n_startup=7).startup_size() == 7


@pytest.mark.parametrize("cls", SEARCHERS)
def test_state_is_versioned_json_and_restores_exactly(cls, tmp_path):
    space = SearchSpace({"x": Float(0.0, 1.0), "c": Categorical(({"name": "a", "m": Int(1, 5)}, "b"))})
    f = lambda c: c["x"] + (0.1 * c["c"]["m"] if isinstance(c["c"], dict) else 0.3)  # noqa: E731
    a = cls(space, "loss", "min", seed=3, **({} if cls is RandomSearcher else {"n_startup": 3}))
    _ask_tell(a, 6, f)
    a.suggest("pending")
    path = tmp_path / "state.json"
    a.save(str(path))
    state = json.loads(path.read_text())
    assert state["format"] == "tunekit-searcher-state" and state["version"] == 2 and state["searcher"] == cls.__name__
    b = cls(seed=99)
    b.restore(str(path))
    for s in (a, b):
        s.on_trial_complete("pending", {"loss": 0.5})
    assert _ask_tell(a, 4, f) == _ask_tell(b, 4, f)
    path.write_bytes(pickle.dumps(a.get_state()))
    with pytest.raises(ValueError, match="not a JSON state file"):
        cls(seed=0).restore(str(path))
