"""Search-space types: bounds, scales, quantisation, conditional activity, unit-cube round trips."""

import math

import numpy as np
import pytest

from toolkit.space import Categorical, Float, Int, Normal, SearchSpace, SpaceError, parse_space
from toolkit.space.ray import from_ray, to_ray

MIXED = {
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
    "dropout": {"type": "quniform", "low": 0.0, "high": 0.5, "q": 0.05},
    "width": {"type": "randint", "low": 16, "high": 129},
    "layers": {"type": "qrandint", "low": 2, "high": 8, "q": 2},
    "units": {"type": "lograndint", "low": 8, "high": 513},
    "batch_size": {"type": "choice", "values": [32, 64, 128]},
    "noise": {"type": "normal", "mean": 0.0, "sd": 2.0},
    "epochs": 5,
    "model": {"depth": 3, "act": {"type": "choice", "values": ["relu", "gelu"]}},
    "optimizer": {
        "type": "choice",
        "values": [
            {"name": "sgd", "momentum": {"type": "uniform", "low": 0.0, "high": 0.99}},
            {"name": "adam", "beta1": {"type": "uniform", "low": 0.8, "high": 0.999}},
            "rmsprop",
        ],
    },
}


def _valid(space: SearchSpace, config: dict) -> None:
    assert 1e-4 <= config["lr"] <= 1e-1
    assert config["dropout"] in [round(0.05 * k, 10) for k in range(11)]
    assert isinstance(config["width"], int) and 16 <= config["width"] <= 128
    assert config["layers"] in (2, 4, 6, 8)
    assert isinstance(config["units"], int) and 8 <= config["units"] <= 512
    assert config["batch_size"] in (32, 64, 128)
    assert config["epochs"] == 5 and config["model"]["depth"] == 3
    opt = config["optimizer"]
    if opt == "rmsprop":
        return
    if opt["name"] == "sgd":
        assert set(opt) == {"name", "momentum"} and 0 <= opt["momentum"] <= 0.99
    else:
        assert set(opt) == {"name", "beta1"} and 0.8 <= opt["beta1"] <= 0.999


def test_samples_are_valid_and_round_trip_through_config_and_unit_cube():
    space = parse_space(MIXED)
    rng = np.random.default_rng(1)
    branches = set()
    for _ in range(300):
        flat = space.sample(rng)
        config = space.to_config(flat)
        _valid(space, config)
        branches.add(flat["optimizer"])
        assert space.from_config(config) == space.canonical(flat)
        u = space.encode(flat)
        assert np.all((u[~np.isnan(u)] >= 0) & (u[~np.isnan(u)] <= 1))
        decoded = space.decode(u)
        assert decoded.keys() == flat.keys()
        for key, value in space.canonical(flat).items():
            assert decoded[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert branches == {0, 1, 2}


def test_inactive_conditional_params_are_absent_and_nan_encoded():
    space = parse_space(MIXED)
    flat = space.complete({"optimizer": 1}, fill=lambda p: p.dist.sample(np.random.default_rng(0)))
    assert "optimizer[sgd].momentum" not in flat and "optimizer[adam].beta1" in flat
    u = space.encode(flat)
    keys = space.keys
    assert math.isnan(u[keys.index("optimizer[sgd].momentum")])
    assert not math.isnan(u[keys.index("optimizer[adam].beta1")])
    assert not space.is_active("optimizer[sgd].momentum", flat)


def test_unit_cube_maps_log_and_integer_scales_evenly():
    lr = Float(1e-4, 1e-0, log=True)
    assert lr.from_unit(0.5) == pytest.approx(1e-2)
    assert lr.to_unit(1e-3) == pytest.approx(0.25)
    # Each of the 4 integers gets a quarter of the unit interval.
    n = Int(1, 4)
    assert [n.from_unit(u) for u in (0.01, 0.26, 0.51, 0.99)] == [1, 2, 3, 4]
    q = Float(0.0, 1.0, q=0.25)
    assert q.from_unit(0.6) == 0.5 and q.grid() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert Normal(1.0, 2.0).from_unit(0.5) == pytest.approx(1.0)


def test_quantised_and_stepped_values_stay_in_bounds():
    d = Float(0.1, 0.95, q=0.2)  # multiples of 0.2 inside [0.1, 0.95] are 0.2 .. 0.8
    for u in np.linspace(0, 1, 101):
        v = d.from_unit(u)
        assert 0.1 <= v <= 0.95 and abs(v / 0.2 - round(v / 0.2)) < 1e-9
    s = Int(3, 11, step=4)
    assert s.grid() == [3, 7, 11] and {s.from_unit(u) for u in np.linspace(0, 1, 50)} == {3, 7, 11}


def test_cardinality_counts_branches():
    space = SearchSpace({"a": Categorical((1, 2, 3)), "b": Int(0, 1),
                         "c": Categorical(({"name": "x", "k": Int(1, 3)}, "y"))})
    assert space.cardinality() == 3 * 2 * (3 + 1)
    assert math.isinf(parse_space(MIXED).cardinality())


@pytest.mark.parametrize(
    "definition, message",
    [
        ({"x": {"type": "uniform", "low": 1.0, "high": 0.5}}, "param_space.x: low (1.0) must be < high (0.5)"),
        ({"x": {"type": "uniform", "low": 1.0, "high": 1.0}}, "low (1.0) must be < high (1.0)"),
        ({"x": {"type": "loguniform", "low": 0.0, "high": 1.0}}, "log-scale bounds must be > 0"),
        ({"x": {"type": "loguniform", "low": -1, "high": 1.0}}, "log-scale bounds must be > 0"),
        ({"x": {"type": "choice", "values": []}}, "param_space.x: choice needs at least one value"),
        ({"x": {"type": "gaussian", "low": 0, "high": 1}}, "param_space.x: unknown parameter type 'gaussian'"),
        ({"x": {"type": "randint", "low": 5, "high": 5}}, "low (5) must be < high (5); high is exclusive"),
        ({"x": {"type": "uniform", "low": 0}}, "type 'uniform' needs high"),
        ({"x": {"type": "quniform", "low": 0, "high": 1, "q": 0}}, "q must be > 0"),
        ({"o": {"type": "choice", "values": [{"name": "a", "m": {"type": "uniform", "low": 2, "high": 1}}]}},
         "param_space.o.values[0].m: low (2) must be < high (1)"),
    ],
)
def test_invalid_definitions_name_the_parameter_and_problem(definition, message):
    with pytest.raises(SpaceError) as err:
        parse_space(definition)
    assert message in str(err.value)


def test_ray_round_trip_keeps_types_bounds_and_branches():
    from ray import tune

    ray_space = {
        "a": tune.uniform(-1, 1), "b": tune.loguniform(1e-3, 1), "c": tune.quniform(0, 1, 0.1),
        "d": tune.randint(0, 10), "e": tune.lograndint(1, 100), "f": tune.qrandint(0, 20, 5),
        "g": tune.randn(0, 1), "h": tune.choice(["x", "y"]), "fixed": 3,
        "opt": tune.choice([{"name": "sgd", "m": tune.uniform(0, 1)}, {"name": "adam"}]),
        "nested": {"deep": tune.uniform(0, 2)},
    }
    space = from_ray(ray_space)
    assert space["d"].dist == Int(0, 9)  # Ray's randint excludes its upper bound
    assert space["e"].dist == Int(1, 99, log=True)
    assert space["f"].dist == Int(0, 20, step=5)  # qrandint includes it
    assert space["opt[sgd].m"].parent == ("opt", 0)
    assert from_ray(to_ray(space)).describe() == space.describe()
    rng = np.random.default_rng(0)
    for _ in range(50):
        cfg = space.to_config(space.sample(rng))
        assert cfg["fixed"] == 3 and 0 <= cfg["d"] <= 9 and cfg["f"] % 5 == 0 and 0 <= cfg["nested"]["deep"] <= 2


def test_from_config_rejects_values_outside_the_space():
    space = parse_space({"x": {"type": "uniform", "low": 0, "high": 1}, "c": {"type": "choice", "values": ["a"]}})
    with pytest.raises(SpaceError, match="x"):
        space.from_config({"x": 2.0, "c": "a"})
    with pytest.raises(SpaceError, match="not one of the choices"):
        space.from_config({"x": 0.5, "c": "b"})


# ---------------------------------------------------------------------- one snapping API
def test_contains_checks_the_grid_not_only_the_bounds():
    q = Float(0.0, 1.0, q=0.5)
    assert q.contains(0.5) and q.contains(1.0) and not q.contains(0.1) and not q.contains(1.5)
    assert q.contains(0.1 + 0.2 + 0.2 - 0.0000000000000001 + 0.0)  # float noise of 0.5 is on the grid
    assert Int(2, 20, step=3).contains(5) and not Int(2, 20, step=3).contains(6)
    assert Int(1, 4).contains(3.0) and not Int(1, 4).contains(3.4)  # an integral float is on the grid
    assert Float(1e-3, 1.0, log=True).contains(0.5) and not Float(1e-3, 1.0, log=True).contains(2.0)
    assert not Float(0.0, 1.0).contains(True) and not Float(0.0, 1.0).contains("0.5")


def test_from_config_snaps_on_request_and_refuses_outside_the_bounds():
    space = SearchSpace({"x": Float(0.0, 1.0, q=0.5), "n": Int(1, 9, step=2), "lr": Float(1e-4, 1.0, log=True, q=1e-4)})
    with pytest.raises(SpaceError, match="x"):
        space.from_config({"x": 0.1, "n": 3, "lr": 0.01})  # off-grid: refused unless snapping
    flat = space.from_config({"x": 0.1, "n": 4.2, "lr": 0.01234}, snap=True)
    assert flat == {"x": 0.0, "n": 5, "lr": 0.0123} and isinstance(flat["n"], int)
    with pytest.raises(SpaceError, match="x"):
        space.from_config({"x": 1.2, "n": 3, "lr": 0.01}, snap=True)  # outside the bounds: never snapped


def test_every_conversion_agrees_with_snap_values():
    rng = np.random.default_rng(0)
    dists = [Float(0.1, 0.95, q=0.2), Float(1.0, 1000.0, log=True, q=5.0), Int(3, 11, step=4), Int(1, 1024, log=True),
             Normal(1.0, 2.0, q=0.25), Float(-2.0, 3.0)]
    for d in dists:
        u = rng.random(200)
        values = d.values_from_unit(u)
        assert np.array_equal(values, d.snap_values(values))  # snapped values are fixed points
        assert [d.from_unit(x) for x in u] == pytest.approx(list(values), rel=1e-12)
        # Unit, internal and value scales round-trip through the same grid.
        assert np.allclose(d.values_from_unit(d.snap_unit(u)), values, rtol=1e-12)
        x = d.values_to_internal(values) if not isinstance(d, Normal) else values
        assert np.allclose(d.internal_to_values(d.snap_internal(x)) if not isinstance(d, Normal) else d.snap_internal(x), values)
        assert all(d.contains(d.from_unit(x)) for x in u[:20])


def test_points_lists_a_finite_conditional_space():
    space = SearchSpace({"a": Categorical((1, 2, 3)), "b": Int(0, 1),
                         "c": Categorical(({"name": "x", "k": Int(1, 3)}, "y"))})
    points = list(space.points())
    assert len(points) == space.cardinality() == 24
    assert len({SearchSpace.signature(p) for p in points}) == 24
    assert all(space.canonical(p) == p for p in points)


def test_space_definition_round_trips_through_json():
    import json

    from toolkit.space.space import definition_from_json, definition_to_json

    definition = {"lr": Float(1e-4, 1e-1, log=True), "n": Int(1, 9, step=2), "z": Normal(0.0, 1.0, q=0.5),
                  "opt": Categorical(({"name": "sgd", "m": Float(0.0, 0.99)}, "adam", (1, 2), None)), "fixed": [1, "a"]}
    back = definition_from_json(json.loads(json.dumps(definition_to_json(definition))))
    assert SearchSpace(back).describe() == SearchSpace(definition).describe()
    assert back["opt"].options[2] == (1, 2) and back["fixed"] == [1, "a"]
