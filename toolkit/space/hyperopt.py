"""Convert between `SearchSpace` definitions and hyperopt `hp` spaces (pyll graphs).

`from_hyperopt` reads the pyll graph hyperopt builds for hp.uniform / loguniform / quniform /
qloguniform / randint / uniformint / choice / pchoice / normal / qnormal, with `hp.choice`
among mappings becoming a conditional branch. `to_hyperopt` builds the hp space that gives
the same configs (labels are our parameter keys), so hyperopt can run on our problems.

Bounds follow hyperopt's meaning: `loguniform(low, high)` takes log-space bounds, randint's
upper bound is exclusive, `uniformint` is inclusive. hyperopt's `quniform` rounds a uniform
draw to the nearest multiple of q, which can fall half a step outside [low, high]; we keep
the multiples of q inside the bounds.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from toolkit.space.params import Categorical, Float, Int, Normal, SpaceError
from toolkit.space.space import Param, SearchSpace


# ---------------------------------------------------------------------- hyperopt -> ours
def _literal(node: Any, where: str) -> Any:
    """Evaluate a constant sub-graph (it contains no hyperparameter)."""
    from hyperopt import pyll

    return pyll.rec_eval(node)


def _arg(node: Any, name: str, where: str) -> Any:
    value = node.arg[name]
    from hyperopt.pyll.base import MissingArgument

    if value is MissingArgument:
        return None
    return _literal(value, where)


def _is_apply(node: Any) -> bool:
    from hyperopt.pyll.base import Apply

    return isinstance(node, Apply)


def _has_param(node: Any) -> bool:
    from hyperopt.pyll import dfs

    return any(n.name == "hyperopt_param" for n in dfs(node))


def _numeric(dist_node: Any, as_int: bool, where: str) -> Any:
    """A distribution for hyperopt_param(label, <dist_node>), cast to int when `as_int`."""
    name = dist_node.name
    if name == "randint":
        low, high = _arg(dist_node, "low", where), _arg(dist_node, "high", where)
        low, high = (0, low) if high is None else (low, high)
        return Int(int(low), int(high) - 1)  # hyperopt's randint excludes the upper bound
    if name == "uniform":
        low, high = _arg(dist_node, "low", where), _arg(dist_node, "high", where)
        if as_int:
            return Int(math.ceil(low), math.floor(high))
        return Float(float(low), float(high))
    if name == "loguniform":
        low, high = math.exp(_arg(dist_node, "low", where)), math.exp(_arg(dist_node, "high", where))
        if as_int:
            return Int(max(1, math.ceil(low - 1e-9)), math.floor(high + 1e-9), log=True)
        return Float(low, high, log=True)
    if name in ("quniform", "qloguniform"):
        low, high, q = (_arg(dist_node, k, where) for k in ("low", "high", "q"))
        if name == "qloguniform":
            low, high = math.exp(low), math.exp(high)
        if as_int or float(q).is_integer():
            q = int(q) if float(q).is_integer() else q
        if as_int:
            if name == "qloguniform":
                if q != 1:
                    raise SpaceError(where, "an integer qloguniform needs q=1")
                return Int(max(1, round(low)), round(high), log=True)
            first = math.ceil(low / q - 1e-9) * q
            last = math.floor(high / q + 1e-9) * q
            return Int(int(first), int(last), step=int(q))
        return Float(float(low), float(high), log=name == "qloguniform", q=float(q))
    if name in ("normal", "qnormal"):
        mu, sigma = _arg(dist_node, "mu", where), _arg(dist_node, "sigma", where)
        q = _arg(dist_node, "q", where) if name == "qnormal" else None
        if as_int:
            raise SpaceError(where, "integer normal parameters are not supported")
        return Normal(float(mu), float(sigma), q=None if q is None else float(q))
    raise SpaceError(where, f"unsupported hyperopt distribution {name!r}")


def _param_of(node: Any, where: str) -> Any | None:
    """If `node` is a (possibly cast) hyperopt parameter, its distribution; else None."""
    as_int = False
    inner = node
    while inner.name in ("float", "int"):
        as_int = as_int or inner.name == "int"
        inner = inner.pos_args[0]
    if inner.name != "hyperopt_param":
        return None
    dist_node = inner.arg["obj"]
    label = _literal(inner.arg["label"], where)
    return _numeric(dist_node, as_int or dist_node.name == "randint", f"{where}({label})")


def _from_node(node: Any, where: str) -> Any:
    if isinstance(node, Mapping):
        return {k: _from_node(v, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_from_node(v, f"{where}[{i}]") for i, v in enumerate(node)]
    if not _is_apply(node):
        return node
    if node.name == "literal":
        return node.obj
    if not _has_param(node):
        return _literal(node, where)
    if node.name == "dict":
        return {k: _from_node(v, f"{where}.{k}") for k, v in node.named_args}
    if node.name == "pos_args":
        return [_from_node(v, f"{where}[{i}]") for i, v in enumerate(node.pos_args)]
    if node.name == "switch":
        index, options = node.pos_args[0], node.pos_args[1:]
        if index.name != "hyperopt_param" or index.arg["obj"].name not in ("randint", "categorical"):
            raise SpaceError(where, "a switch must be indexed by hp.choice / hp.pchoice")
        # pchoice's probabilities are a prior preference; our Categorical is uniform.
        return Categorical(tuple(_from_node(o, f"{where}[{i}]") for i, o in enumerate(options)))
    dist = _param_of(node, where)
    if dist is None:
        raise SpaceError(where, f"unsupported hyperopt expression {node.name!r} around a hyperparameter")
    return dist


def is_hyperopt_space(node: Any) -> bool:
    """Whether a (nested) structure holds hyperopt pyll nodes (hp expressions)."""
    try:
        from hyperopt.pyll.base import Apply
    except ImportError:  # pragma: no cover - hyperopt is a dependency
        return False
    if isinstance(node, Apply):
        return True
    if isinstance(node, Mapping):
        return any(is_hyperopt_space(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(is_hyperopt_space(v) for v in node)
    return False


def from_hyperopt(hp_space: Any) -> SearchSpace:
    """A `SearchSpace` from a hyperopt space (a dict of hp expressions, or an hp dict node)."""
    try:
        import hyperopt  # noqa: F401
    except ImportError as e:  # pragma: no cover - hyperopt is a dependency
        raise TypeError("hyperopt is not installed") from e
    if not isinstance(hp_space, Mapping) and not (_is_apply(hp_space) and hp_space.name == "dict"):
        raise SpaceError("param_space", f"a hyperopt space must be a dict of hp expressions, got {type(hp_space).__name__}")
    return SearchSpace(_from_node(hp_space, "param_space"))


# ---------------------------------------------------------------------- ours -> hyperopt
def _to_hp(p: Param, build) -> Any:
    from hyperopt import hp
    from hyperopt.pyll import scope

    d, label = p.dist, p.key
    if isinstance(d, Categorical):
        return hp.choice(label, [build(o) if isinstance(o, Mapping) else o for o in d.options])
    if isinstance(d, Float):
        if d.q is not None:
            if d.log:
                return hp.qloguniform(label, math.log(d.low), math.log(d.high), d.q)
            grid = d.grid()
            return hp.quniform(label, grid[0], grid[-1], d.q)
        if d.log:
            return hp.loguniform(label, math.log(d.low), math.log(d.high))
        return hp.uniform(label, d.low, d.high)
    if isinstance(d, Int):
        # Draw over [low - step/2, high + step/2) so the end values get a full share, as
        # our internal bounds do (hyperopt's own uniformint halves them).
        eps = 1e-6
        if d.log:
            return scope.int(hp.qloguniform(label, math.log(d.low - 0.5 + eps), math.log(d.high + 0.5 - eps), 1))
        index = scope.int(hp.quniform(label, -0.5 + eps, d.n_values - 0.5 - eps, 1))
        return index * d.step + d.low if (d.step != 1 or d.low != 0) else index
    if isinstance(d, Normal):
        return hp.qnormal(label, d.mean, d.sd, d.q) if d.q is not None else hp.normal(label, d.mean, d.sd)
    raise TypeError(d)  # pragma: no cover


def to_hyperopt(space: SearchSpace) -> dict:
    """The hyperopt space giving the same nested configs as `space` (labels = our keys).

    Integers are drawn as an index into their grid, so `space_eval` returns the value itself.
    """
    params = iter(space.params)

    def build(node: Any) -> Any:
        # Walk the definition in the order SearchSpace compiled it, so params line up.
        if isinstance(node, Mapping):
            return {k: build(v) for k, v in node.items()}
        if isinstance(node, list):
            return [build(v) for v in node]
        if isinstance(node, (Float, Int, Normal, Categorical)):
            p = next(params)
            assert p.dist is node, (p.key, node)
            return _to_hp(p, build)
        return node

    return build(space.definition)
