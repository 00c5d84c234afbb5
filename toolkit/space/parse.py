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

A mapping with a string `type` is a parameter definition, and every other key must be one
its type takes: a misspelt key is an error, never a silent constant. Any other mapping is a
nested section; inside `values`, a mapping is a conditional branch and needs a `name`
(there, `type` is an ordinary fixed value). A fixed mapping that itself has a `type` key is
written `{type: fixed, value: {...}}`.

Mistakes that would run but not as meant are refused too: a choice listing a value twice
(drawn twice as often), branches without or with repeated names, a `q` or step that leaves
a single value, booleans or text where numbers belong, and names that collide once the
record flattens them (`a.b` next to `a: {b: ...}`).
"""

from __future__ import annotations

import difflib
import json
from typing import Any, Callable, Mapping

from toolkit.space.params import Categorical, Float, Int, Normal, SpaceError
from toolkit.space.space import SearchSpace

# The keys each parameter type takes besides `type`.
TYPE_KEYS: dict[str, frozenset[str]] = {
    "uniform": frozenset({"low", "high"}),
    "loguniform": frozenset({"low", "high"}),
    "quniform": frozenset({"low", "high", "q"}),
    "qloguniform": frozenset({"low", "high", "q"}),
    "randint": frozenset({"low", "high"}),
    "lograndint": frozenset({"low", "high"}),
    "qrandint": frozenset({"low", "high", "q"}),
    "randn": frozenset({"mean", "sd"}),
    "normal": frozenset({"mean", "sd"}),
    "qnormal": frozenset({"mean", "sd", "q"}),
    "float": frozenset({"low", "high", "log", "step"}),
    "int": frozenset({"low", "high", "log", "step"}),
    "choice": frozenset({"values"}),
    "fixed": frozenset({"value"}),
}
DEFINITION_KEYS = frozenset({"type"}).union(*TYPE_KEYS.values())
_NUMBER_KEYS = ("low", "high", "q", "mean", "sd", "step")


def _did_you_mean(word: str, candidates) -> str:
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _need(where: str, spec: Mapping, *names: str) -> list:
    missing = [n for n in names if n not in spec]
    if missing:
        raise SpaceError(where, f"type {spec['type']!r} needs {', '.join(missing)}")
    return [spec[n] for n in names]


def _number(where: str, name: str, v: Any) -> Any:
    """A number as written; YAML 1.1 reads `1e-3` (no dot) as text, so numeric text counts."""
    if isinstance(v, bool) or v is None:
        raise SpaceError(where, f"{name} must be a number, got {v!r}")
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise SpaceError(where, f"{name} must be a number, got {v!r}")


def _int(where: str, name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer():
        raise SpaceError(where, f"{name} must be an integer, got {v!r}")
    return int(v)


def _log(where: str, s: Mapping) -> bool:
    v = s.get("log", False)
    if not isinstance(v, bool):
        raise SpaceError(where, f"log must be true or false, got {v!r}")
    return v


def _exclusive_high(where: str, low: Any, high: Any) -> tuple[int, int]:
    low, high = _int(where, "low", low), _int(where, "high", high)
    if not low < high:
        raise SpaceError(where, f"low ({low}) must be < high ({high}); high is exclusive")
    return low, high - 1


def _float(where, s):
    return Float(*_need(where, s, "low", "high"), log=_log(where, s), q=s.get("step"))


def _int_def(where, s):
    low, high = _need(where, s, "low", "high")
    return Int(_int(where, "low", low), _int(where, "high", high), log=_log(where, s),
               step=_int(where, "step", s.get("step", 1)))


def _value_key(v: Any) -> str:
    """Identity of a plain choice value: 1 and 1.0 are the same number, True is not 1."""
    if isinstance(v, bool):
        return f"bool:{v}"
    if isinstance(v, (int, float)):
        return f"num:{float(v)!r}"
    try:
        return f"{type(v).__name__}:{json.dumps(v, sort_keys=True)}"
    except (TypeError, ValueError):
        return f"{type(v).__name__}:{v!r}"


def _choice(where, s, parse_branch):
    (values,) = _need(where, s, "values")
    if not isinstance(values, list):
        raise SpaceError(where, f"values must be a list, got {type(values).__name__}")
    if not values:
        raise SpaceError(where, "choice needs at least one value")
    options = []
    first_seen: dict[str, int] = {}
    for i, v in enumerate(values):
        at = f"{where}.values[{i}]"
        if isinstance(v, Mapping):
            if "name" not in v:
                if is_definition(v):
                    raise SpaceError(at, "a choice value cannot be a bare parameter definition; "
                                     "put it in a mapping with a name, e.g. {name: a, x: {type: uniform, ...}}")
                raise SpaceError(at, "a conditional branch needs a `name` (e.g. {name: sgd, momentum: ...})")
            name = v["name"]
            if not isinstance(name, str) or not name:
                raise SpaceError(at, f"a branch's name must be a non-empty string, got {name!r}")
            key = f"branch:{name}"
            if key in first_seen:
                raise SpaceError(at, f"branch name {name!r} is already used by values[{first_seen[key]}]")
            options.append(parse_branch(v, at))
        else:
            key = _value_key(v)
            if key in first_seen:
                raise SpaceError(at, f"{v!r} is listed twice (values[{first_seen[key]}] and values[{i}]); "
                                     "it would be drawn twice as often")
            options.append(parse_branch(v, at))
        first_seen[key] = i
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
    "fixed": _fixed,
}


def is_definition(node: Any) -> bool:
    """A mapping with a string `type` is a parameter definition (whatever else it holds)."""
    return isinstance(node, Mapping) and isinstance(node.get("type"), str)


def _check_keys(where: str, node: Mapping) -> None:
    kind = node["type"]
    if kind not in TYPE_KEYS:
        hint = _did_you_mean(kind, TYPE_KEYS)
        if not hint:
            hint = ("; a mapping with a string `type` is a parameter definition: write a fixed "
                    "mapping that has a `type` key as {type: fixed, value: {...}}")
        raise SpaceError(where, f"unknown parameter type {kind!r}{hint}; expected one of {', '.join(sorted(TYPE_KEYS))}")
    allowed = TYPE_KEYS[kind]
    for key in node:
        if key == "type" or key in allowed:
            continue
        if not isinstance(key, str):
            raise SpaceError(where, f"unknown key {key!r} for a {kind} parameter")
        owners = sorted(t for t, keys in TYPE_KEYS.items() if key in keys)
        if owners:
            raise SpaceError(where, f"{key!r} is not an option of {kind} (it takes {', '.join(sorted(allowed))}; "
                                    f"{key!r} belongs to {', '.join(owners)})")
        raise SpaceError(where, f"unknown key {key!r} for a {kind} parameter{_did_you_mean(key, allowed)}; "
                                f"it takes {', '.join(sorted(allowed))}")


def _few_values(where: str, dist: Any) -> None:
    """A `q`/step so coarse that every sample is the same value is a mistake, not a constant."""
    if isinstance(dist, Float) and dist.q is not None and dist.cardinality < 2:
        raise SpaceError(where, f"q={dist.q} leaves {int(dist.cardinality)} value(s) in [{dist.low}, {dist.high}]; "
                                "use a smaller q or a fixed value")
    if isinstance(dist, Int) and dist.step > 1 and dist.n_values < 2:
        raise SpaceError(where, f"step {dist.step} is larger than the range [{dist.low}, {dist.high}]: "
                                "every sample would be the same value")


def _shape(path: tuple[str, ...]) -> str:
    """How a key path is written in the spec: ('a', 'b') -> "a: {b: ...}"."""
    text = repr(path[-1])
    for k in reversed(path[:-1]):
        text = f"{k!r}: {{{text}: ...}}" if text.startswith("'") and ": " not in text else f"{k!r}: {{{text}}}"
    return text


class _Parser:
    """One pass over the definition; remembers every flattened column name it hands out."""

    def __init__(self) -> None:
        # dotted column name -> (key path, where it was defined)
        self.columns: dict[str, tuple[tuple[str, ...], str]] = {}

    def column(self, path: tuple[str, ...], where: str) -> None:
        dotted = ".".join(path)
        seen = self.columns.setdefault(dotted, (path, where))
        if seen[0] != path:  # the same key path in two branches is one column, by design
            raise SpaceError(where, f"{_shape(seen[0])} and {_shape(path)} would both be stored as the record "
                                    f"column 'config.{dotted}'; rename one")

    def key(self, where: str, k: Any) -> str:
        if not isinstance(k, str):
            raise SpaceError(f"{where}.{k}", f"parameter names must be text, got {k!r} "
                             "(YAML reads unquoted yes/no/on/off/true/false as booleans and digits as numbers: quote it)")
        return k

    def definition(self, node: Mapping, where: str, path: tuple[str, ...]) -> Any:
        _check_keys(where, node)
        kind = node["type"]
        for k in _NUMBER_KEYS:
            if k in node:
                node = {**node, k: _number(where, k, node[k])}
        if kind == "choice":
            self.column(path, where)
            return _choice(where, node, lambda v, at: self.option(v, at, path))
        dist = PARSERS[kind](where, node)
        if hasattr(dist, "check"):
            dist.check(where)
        _few_values(where, dist)
        self.column(path, where)
        return dist

    def option(self, value: Any, where: str, path: tuple[str, ...]) -> Any:
        if isinstance(value, Mapping):  # a conditional branch: its keys sit under the choice's path
            return {self.key(where, k): self.node(v, f"{where}.{k}", path + (k,)) for k, v in value.items()}
        return self.node(value, where, path, register=False)

    def node(self, node: Any, where: str, path: tuple[str, ...], register: bool = True) -> Any:
        if is_definition(node):
            return self.definition(node, where, path)
        if isinstance(node, Mapping) and node:
            return {self.key(where, k): self.node(v, f"{where}.{k}", path + (k,)) for k, v in node.items()}
        if register:
            self.column(path, where)
        if isinstance(node, list):
            # A list is one column: its items (definitions are still parsed and sampled) are
            # not columns of their own, so they get a column map of their own.
            return [_Parser().node(v, f"{where}[{i}]", (str(i),), register=False) for i, v in enumerate(node)]
        return node


def parse_space(param_space: Mapping[str, Any], where: str = "param_space") -> SearchSpace:
    """Build a `SearchSpace` from a spec's `param_space` mapping; errors name the field."""
    if not isinstance(param_space, Mapping):
        raise SpaceError(where, f"must be a mapping, got {type(param_space).__name__}")
    parser = _Parser()
    tree = {parser.key(where, k): parser.node(v, f"{where}.{k}", (k,)) for k, v in param_space.items()}
    return SearchSpace(tree)
