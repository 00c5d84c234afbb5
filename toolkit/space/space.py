"""`SearchSpace`: a typed, possibly conditional tree of parameters that searchers model.

A definition is a nested mapping (or list) whose leaves are distributions (`Float`, `Int`,
`Normal`, `Categorical`) or fixed values. A `Categorical` option that is a mapping is a
*conditional branch*: its parameters exist only when that option is chosen, e.g.

    {"lr": Float(1e-4, 1e-1, log=True),
     "optimizer": Categorical(({"name": "sgd", "momentum": Float(0.0, 0.99)},
                               {"name": "adam", "beta1": Float(0.8, 0.999)}))}

Searchers work on a *flat* representation: ``{param key: value}`` over active parameters,
where a categorical holds its option index. `to_config` turns that into the nested config a
trainable receives; `from_config` goes back.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from toolkit.space.params import Categorical, Distribution, Float, Int, Normal, SpaceError

Flat = dict[str, Any]


@dataclass(frozen=True)
class Param:
    """One searchable parameter: where it lives and what activates it."""

    key: str  # unique name, e.g. "lr" or "optimizer[sgd].momentum"
    path: tuple  # location inside the config, e.g. ("optimizer", "momentum")
    dist: Distribution
    parent: tuple[str, int] | None = None  # (categorical key, option index) that activates it
    branches: tuple = field(default=(), compare=False, repr=False)  # compiled option subtrees

    @property
    def is_categorical(self) -> bool:
        return isinstance(self.dist, Categorical)

    @property
    def is_conditional(self) -> bool:
        return self.parent is not None


@dataclass(frozen=True)
class _Fixed:
    value: Any


def _label(option: Mapping, index: int) -> str:
    for k in ("name", "type", "kind"):
        v = option.get(k)
        if isinstance(v, str):
            return v
    return str(index)


class SearchSpace:
    """Typed search space with conditional branches; see the module docstring."""

    def __init__(self, definition: Mapping[str, Any]) -> None:
        if not isinstance(definition, Mapping):
            raise SpaceError("param_space", f"must be a mapping, got {type(definition).__name__}")
        self.definition = definition
        self.params: list[Param] = []
        self._tree = self._compile(definition, (), "", None, "param_space")
        self._by_key = {p.key: p for p in self.params}

    # ------------------------------------------------------------------ building
    def _compile(self, node: Any, path: tuple, key_prefix: str, parent, where: str) -> Any:
        if isinstance(node, Mapping):
            out = {}
            for name, child in node.items():
                if not isinstance(name, (str, int)):
                    raise SpaceError(where, f"keys must be strings, got {name!r}")
                sub_key = f"{key_prefix}.{name}" if key_prefix else str(name)
                out[name] = self._compile(child, path + (name,), sub_key, parent, f"{where}.{name}")
            return out
        if isinstance(node, list):
            return [
                self._compile(c, path + (i,), f"{key_prefix}[{i}]", parent, f"{where}[{i}]")
                for i, c in enumerate(node)
            ]
        if isinstance(node, (Float, Int, Normal)):
            node.check(where)
            param = Param(key_prefix, path, node, parent)
            self.params.append(param)
            return param
        if isinstance(node, Categorical):
            node.check(where)
            # Register the categorical before its branches so parents precede children.
            slot = len(self.params)
            self.params.append(None)  # type: ignore[arg-type]
            branches = []
            for i, option in enumerate(node.options):
                if isinstance(option, Mapping):
                    label = _label(option, i)
                    branches.append(
                        self._compile(option, path, f"{key_prefix}[{label}]", (key_prefix, i), f"{where}[{i}]")
                    )
                else:
                    branches.append(None)
            param = Param(key_prefix, path, node, parent, tuple(branches))
            self.params[slot] = param
            return param
        return _Fixed(node)

    # ------------------------------------------------------------------ lookup
    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __getitem__(self, key: str) -> Param:
        return self._by_key[key]

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    @property
    def is_conditional(self) -> bool:
        return any(p.is_conditional for p in self.params)

    # ------------------------------------------------------------------ walking
    def _walk(self, choose) -> Flat:
        """Visit active params in order; `choose(param)` returns its flat value."""
        flat: Flat = {}

        def visit(node: Any) -> None:
            if isinstance(node, Param):
                flat[node.key] = choose(node, flat)
                if node.is_categorical:
                    branch = node.branches[flat[node.key]]
                    if branch is not None:
                        visit(branch)
            elif isinstance(node, dict):
                for child in node.values():
                    visit(child)
            elif isinstance(node, list):
                for child in node:
                    visit(child)

        visit(self._tree)
        return flat

    def sample(self, rng: np.random.Generator) -> Flat:
        """A uniformly random flat point (each parameter from its own prior)."""
        return self._walk(lambda p, _: p.dist.sample(rng))

    def active_keys(self, flat: Mapping[str, Any]) -> list[str]:
        def choose(p: Param, _):
            if p.key not in flat:
                raise KeyError(f"active parameter {p.key!r} missing from point")
            return flat[p.key]

        return list(self._walk(choose))

    def is_active(self, key: str, flat: Mapping[str, Any]) -> bool:
        p = self._by_key[key]
        while p.parent is not None:
            parent_key, option = p.parent
            if flat.get(parent_key) != option:
                return False
            p = self._by_key[parent_key]
        return True

    def complete(self, flat: Mapping[str, Any], fill) -> Flat:
        """Keep the given active values, fill missing active ones with `fill(param)`, drop inactive."""
        return self._walk(lambda p, _: flat[p.key] if p.key in flat else fill(p))

    # ------------------------------------------------------------------ conversion
    def to_config(self, flat: Mapping[str, Any]) -> dict:
        """The nested config a trainable receives for a flat point (fixed values included)."""
        flat = self.canonical(flat)

        def build(node: Any) -> Any:
            if isinstance(node, Param):
                if node.is_categorical:
                    i = flat[node.key]
                    branch = node.branches[i]
                    return build(branch) if branch is not None else copy.deepcopy(node.dist.options[i])
                return flat[node.key]
            if isinstance(node, _Fixed):
                return copy.deepcopy(node.value)
            if isinstance(node, dict):
                return {k: build(v) for k, v in node.items()}
            if isinstance(node, list):
                return [build(v) for v in node]
            raise TypeError(node)

        return build(self._tree)

    def canonical(self, flat: Mapping[str, Any]) -> Flat:
        """Validate a flat point and snap every value onto its parameter's grid and bounds."""

        def choose(p: Param, _):
            if p.key not in flat:
                raise SpaceError(p.key, "active parameter missing from point")
            v = flat[p.key]
            if p.is_categorical:
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < p.dist.n_options:
                    raise SpaceError(p.key, f"option index {v!r} out of range 0..{p.dist.n_options - 1}")
                return int(v)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
                raise SpaceError(p.key, f"value must be a finite number, got {v!r}")
            return p.dist.snap(v)

        return self._walk(choose)

    def from_config(self, config: Mapping[str, Any], fill=None, snap: bool = False) -> Flat:
        """Flat point for a nested config (e.g. from `points_to_evaluate` or a record).

        Parameters missing from a partial config are filled by `fill(param)` when given
        (Ray's `points_to_evaluate` may be partial), and are an error otherwise. A value
        outside a parameter's bounds is an error; one inside but off its grid (x=0.1 on a
        q=0.5 grid, 3.4 for an integer) is an error too, unless `snap`, which moves it to the
        nearest representable value.
        """
        missing = object()

        def lookup(path: tuple) -> Any:
            node: Any = config
            for part in path:
                try:
                    node = node[part]
                except (KeyError, IndexError, TypeError):
                    return missing
            return node

        def choose(p: Param, _):
            value = lookup(p.path)
            if value is missing:
                if fill is None:
                    raise SpaceError(".".join(map(str, p.path)), "missing from config")
                return fill(p)
            if p.is_categorical:
                return _match_option(p, value)
            if p.dist.contains(value):
                return p.dist.snap(value)  # exact grid value (float noise removed), Python type
            numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            if snap and numeric and math.isfinite(float(value)) and p.dist.in_bounds(value):
                return p.dist.snap(value)
            raise SpaceError(p.key, f"value {value!r} outside {p.dist}")

        return self._walk(choose)

    # ------------------------------------------------------------------ unit cube
    def encode(self, flat: Mapping[str, Any]) -> np.ndarray:
        """Unit-cube vector, one entry per param in `self.params` order; NaN where inactive."""
        u = np.full(len(self.params), np.nan)
        for i, p in enumerate(self.params):
            if p.key in flat and self.is_active(p.key, flat):
                u[i] = p.dist.to_unit(flat[p.key])
        return u

    def decode(self, u: np.ndarray) -> Flat:
        """Flat point for a unit-cube vector; entries of inactive params are ignored."""
        index = {p.key: i for i, p in enumerate(self.params)}
        return self._walk(lambda p, _: p.dist.from_unit(u[index[p.key]]))

    # ------------------------------------------------------------------ finiteness
    def cardinality(self) -> float:
        """Number of distinct points (math.inf if any active continuous parameter)."""

        def count(node: Any) -> float:
            if isinstance(node, Param):
                if node.is_categorical:
                    return sum(1.0 if b is None else count(b) for b in node.branches)
                return float(node.dist.cardinality)
            if isinstance(node, dict):
                return math.prod(count(c) for c in node.values())
            if isinstance(node, list):
                return math.prod(count(c) for c in node)
            return 1.0

        return count(self._tree)

    def points(self) -> Iterator[Flat]:
        """Every point of a finite space, in a fixed order (check `cardinality()` first)."""
        partial: list[Flat] = [{}]
        for p in self.params:  # parents precede their children
            d = p.dist
            if isinstance(d, Categorical):
                values: list = list(range(d.n_options))
            elif math.isfinite(d.cardinality):
                values = d.grid()
            else:
                raise ValueError(f"{p.key} is continuous: the space has no finite list of points")
            grown: list[Flat] = []
            for flat in partial:
                if self.is_active(p.key, flat):
                    grown.extend({**flat, p.key: v} for v in values)
                else:
                    grown.append(flat)
            partial = grown
        return iter(partial)

    @staticmethod
    def signature(flat: Mapping[str, Any]) -> tuple:
        """Hashable identity of a flat point, for duplicate detection."""
        return tuple(sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in flat.items()))

    # ------------------------------------------------------------------ description
    def describe(self) -> list[dict]:
        """One JSON-friendly row per parameter (for dry runs, records, reports)."""
        rows = []
        for p in self.params:
            d = p.dist
            row: dict[str, Any] = {"key": p.key, "path": ".".join(map(str, p.path))}
            if isinstance(d, Float):
                row.update(type="float", low=d.low, high=d.high, log=d.log, q=d.q)
            elif isinstance(d, Int):
                row.update(type="int", low=d.low, high=d.high, log=d.log, step=d.step)
            elif isinstance(d, Normal):
                row.update(type="normal", mean=d.mean, sd=d.sd, q=d.q)
            else:
                row.update(type="categorical", options=[_option_repr(o) for o in d.options])
            if p.parent is not None:
                row["active_when"] = f"{p.parent[0]} == option {p.parent[1]}"
            rows.append(row)
        return rows


def _option_repr(option: Any) -> Any:
    if isinstance(option, Mapping):
        return {k: (v if isinstance(v, (str, int, float, bool)) or v is None else "<param>") for k, v in option.items()}
    return option if isinstance(option, (str, int, float, bool)) or option is None else repr(option)


def _match_option(p: Param, value: Any) -> int:
    dist: Categorical = p.dist  # type: ignore[assignment]
    if isinstance(value, Mapping):
        for i, (option, branch) in enumerate(zip(dist.options, p.branches)):
            if branch is None or not isinstance(option, Mapping) or set(option) != set(value):
                continue
            fixed_match = all(
                value[k] == v.value for k, v in branch.items() if isinstance(v, _Fixed)
            )
            if fixed_match:
                return i
    try:
        return dist.index_of(value)
    except KeyError:
        raise SpaceError(p.key, f"value {value!r} is not one of the choices") from None


# ---------------------------------------------------------------------- JSON form
# The definition tree as plain JSON (for searcher state files): every node is a one-key
# object naming its kind, so a tuple option, an int key or a nested branch come back as
# they were. Plain values other than JSON scalars cannot be stored.
_SCALARS = (str, int, float, bool, type(None))


def definition_to_json(node: Any) -> Any:
    """A JSON-compatible form of a space definition; TypeError for values JSON cannot hold."""
    if isinstance(node, Param):  # pragma: no cover - definitions hold distributions, not Params
        raise TypeError("pass the definition, not compiled params")
    if isinstance(node, Float):
        return {"float": [node.low, node.high, node.log, node.q]}
    if isinstance(node, Int):
        return {"int": [node.low, node.high, node.log, node.step]}
    if isinstance(node, Normal):
        return {"normal": [node.mean, node.sd, node.q]}
    if isinstance(node, Categorical):
        return {"choice": [definition_to_json(o) for o in node.options]}
    if isinstance(node, Mapping):
        return {"map": [[k, definition_to_json(v)] for k, v in node.items()]}
    if isinstance(node, list):
        return {"list": [definition_to_json(v) for v in node]}
    if isinstance(node, tuple):
        return {"tuple": [definition_to_json(v) for v in node]}
    if isinstance(node, _SCALARS) and not (isinstance(node, float) and not math.isfinite(node)):
        return {"value": node}
    raise TypeError(f"a {type(node).__name__} value cannot be stored as JSON")


def definition_from_json(node: Any) -> Any:
    (kind, body), = node.items()
    if kind == "float":
        return Float(*body)
    if kind == "int":
        return Int(*body)
    if kind == "normal":
        return Normal(*body)
    if kind == "choice":
        return Categorical(tuple(definition_from_json(o) for o in body))
    if kind == "map":
        return {k: definition_from_json(v) for k, v in body}
    if kind == "list":
        return [definition_from_json(v) for v in body]
    if kind == "tuple":
        return tuple(definition_from_json(v) for v in body)
    if kind == "value":
        return body
    raise ValueError(f"unknown space node kind {kind!r}")
