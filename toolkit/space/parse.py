"""Parse the `param_space` section of a YAML experiment spec into a `SearchSpace`.

Syntax (bounds follow Ray Tune: `randint`/`lograndint` exclude `high`, `qrandint` includes it):

    lr:         {type: loguniform, low: 1.0e-4, high: 1.0e-1}
    dropout:    {type: quniform, low: 0.0, high: 0.5, q: 0.05}
    width:      {type: randint, low: 32, high: 257}
    epochs:     8                                   # a fixed value
    optimizer:                                      # a conditional subspace
      type: choice
      values:
        - {name: sgd, momentum: {type: uniform, low: 0.0, high: 0.99}}
        - {name: adam, beta1: {type: uniform, low: 0.8, high: 0.999}}

A mapping is a parameter definition when it has a string `type` and only definition keys;
any other mapping is a nested section (or, inside `values`, a conditional branch).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from toolkit.space.params import Categorical, Float, Int, Normal, SpaceError
from toolkit.space.space import SearchSpace

DEFINITION_KEYS = {"type", "low", "high", "q", "values", "value", "mean", "sd", "log", "step"}


def _need(where: str, spec: Mapping, *names: str) -> list:
    missing = [n for n in names if n not in spec]
    if missing:
        raise SpaceError(where, f"type {spec['type']!r} needs {', '.join(missing)}")
    return [spec[n] for n in names]


def _int(where: str, name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer():
        raise SpaceError(where, f"{name} must be an integer, got {v!r}")
    return int(v)


def _exclusive_high(where: str, low: Any, high: Any) -> tuple[int, int]:
    low, high = _int(where, "low", low), _int(where, "high", high)
    if not low < high:
        raise SpaceError(where, f"low ({low}) must be < high ({high}); high is exclusive")
    return low, high - 1


def _float(where, s):
    return Float(*_need(where, s, "low", "high"), log=bool(s.get("log", False)), q=s.get("step"))


def _int_def(where, s):
    low, high = _need(where, s, "low", "high")
    return Int(_int(where, "low", low), _int(where, "high", high), log=bool(s.get("log", False)),
               step=_int(where, "step", s.get("step", 1)))


def _choice(where, s):
    (values,) = _need(where, s, "values")
    if not isinstance(values, list):
        raise SpaceError(where, f"values must be a list, got {type(values).__name__}")
    if not values:
        raise SpaceError(where, "choice needs at least one value")
    options = []
    for i, v in enumerate(values):
        if is_definition(v):
            raise SpaceError(f"{where}.values[{i}]", "a choice value cannot be a bare parameter definition; "
                             "put it in a mapping with a name, e.g. {name: a, x: {type: uniform, ...}}")
        options.append(_parse_node(v, f"{where}.values[{i}]"))
    return Categorical(tuple(options))


def _fixed(where, s):
    (value,) = _need(where, s, "value")
    return value


PARSERS: dict[str, Callable[[str, Mapping], Any]] = {
    "uniform": lambda w, s: Float(*_need(w, s, "low", "high")),
    "loguniform": lambda w, s: Float(*_need(w, s, "low", "high"), log=True),
    "quniform": lambda w, s: Float(*_need(w, s, "low", "high"), q=_need(w, s, "q")[0]),
    "qloguniform": lambda w, s: Float(*_need(w, s, "low", "high"), log=True, q=_need(w, s, "q")[0]),
    "randint": lambda w, s: Int(*_exclusive_high(w, *_need(w, s, "low", "high"))),
    "lograndint": lambda w, s: Int(*_exclusive_high(w, *_need(w, s, "low", "high")), log=True),
    "qrandint": lambda w, s: Int(_int(w, "low", _need(w, s, "low")[0]), _int(w, "high", _need(w, s, "high")[0]),
                                 step=_int(w, "q", _need(w, s, "q")[0])),
    "randn": lambda w, s: Normal(s.get("mean", 0.0), s.get("sd", 1.0)),
    "normal": lambda w, s: Normal(*_need(w, s, "mean", "sd")),
    "qnormal": lambda w, s: Normal(*_need(w, s, "mean", "sd"), q=_need(w, s, "q")[0]),
    "float": _float,
    "int": _int_def,
    "choice": _choice,
    "fixed": _fixed,
}


def is_definition(node: Any) -> bool:
    return isinstance(node, Mapping) and isinstance(node.get("type"), str) and set(node) <= DEFINITION_KEYS


def _parse_node(node: Any, where: str) -> Any:
    if is_definition(node):
        kind = node["type"]
        if kind not in PARSERS:
            raise SpaceError(where, f"unknown parameter type {kind!r}; expected one of {', '.join(sorted(PARSERS))}")
        dist = PARSERS[kind](where, node)
        if hasattr(dist, "check"):
            dist.check(where)
        return dist
    if isinstance(node, Mapping):
        if "type" in node and isinstance(node["type"], str) and node["type"] not in PARSERS and (
            set(node) & (DEFINITION_KEYS - {"type"})
        ):
            # Looks like a definition with a misspelt type or an unknown key: say which.
            extra = sorted(set(node) - DEFINITION_KEYS)
            hint = f" (unexpected keys: {', '.join(map(str, extra))})" if extra else ""
            raise SpaceError(where, f"unknown parameter type {node['type']!r}{hint}")
        return {k: _parse_node(v, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_parse_node(v, f"{where}[{i}]") for i, v in enumerate(node)]
    return node


def parse_space(param_space: Mapping[str, Any], where: str = "param_space") -> SearchSpace:
    """Build a `SearchSpace` from a spec's `param_space` mapping; errors name the field."""
    if not isinstance(param_space, Mapping):
        raise SpaceError(where, f"must be a mapping, got {type(param_space).__name__}")
    return SearchSpace(_parse_node(param_space, where))
