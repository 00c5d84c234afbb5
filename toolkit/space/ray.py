"""Convert between `SearchSpace` definitions and Ray Tune search-space domains."""

from __future__ import annotations

from typing import Any, Mapping

from ray import tune
from ray.tune.search import sample

from toolkit.space.params import Categorical, Float, Int, Normal, SpaceError
from toolkit.space.space import SearchSpace


def _from_domain(domain: Any, where: str) -> Any:
    if isinstance(domain, sample.Categorical):
        return Categorical(tuple(_from_node(c, f"{where}[{i}]") for i, c in enumerate(domain.categories)))
    if isinstance(domain, sample.Function):
        raise SpaceError(where, "tune.sample_from is opaque to model-based searchers; use a typed domain")
    sampler = domain.get_sampler()
    q = None
    if isinstance(sampler, sample.Quantized):
        q, sampler = sampler.q, sampler.get_sampler()
    if isinstance(domain, sample.Float):
        if isinstance(sampler, sample.Normal):
            return Normal(sampler.mean, sampler.sd, q=q)
        return Float(domain.lower, domain.upper, log=isinstance(sampler, sample.LogUniform), q=q)
    if isinstance(domain, sample.Integer):
        log = isinstance(sampler, sample.LogUniform)
        if q is None or q == 1:
            # Ray's randint / lograndint exclude the upper bound.
            return Int(int(domain.lower), int(domain.upper) - 1, log=log)
        if log:
            raise SpaceError(where, "tune.qlograndint is not supported; use lograndint or a choice")
        # qrandint: multiples of q between lower and upper, both inclusive.
        q = int(q)
        low = -(-int(domain.lower) // q) * q
        return Int(low, (int(domain.upper) // q) * q, step=q)
    raise SpaceError(where, f"unsupported Ray domain {type(domain).__name__}")


def _from_node(node: Any, where: str) -> Any:
    if isinstance(node, sample.Domain):
        return _from_domain(node, where)
    if isinstance(node, Mapping):
        if set(node) == {"grid_search"}:
            raise SpaceError(where, "grid_search is not a searchable domain; use tune.choice")
        return {k: _from_node(v, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_from_node(v, f"{where}[{i}]") for i, v in enumerate(node)]
    return node


def from_ray(param_space: Mapping[str, Any]) -> SearchSpace:
    """A `SearchSpace` from a Ray Tune `param_space` (nested dicts/lists of domains)."""
    return SearchSpace(_from_node(param_space, "param_space"))


def has_domains(node: Any) -> bool:
    """Whether a (nested) config still contains Ray domains to be searched."""
    if isinstance(node, sample.Domain):
        return True
    if isinstance(node, Mapping):
        return any(has_domains(v) for v in node.values())
    if isinstance(node, list):
        return any(has_domains(v) for v in node)
    return False


def _to_node(node: Any) -> Any:
    if isinstance(node, Float):
        if node.q is not None:
            return tune.qloguniform(node.low, node.high, node.q) if node.log else tune.quniform(node.low, node.high, node.q)
        return tune.loguniform(node.low, node.high) if node.log else tune.uniform(node.low, node.high)
    if isinstance(node, Int):
        if node.step == 1:
            return tune.lograndint(node.low, node.high + 1) if node.log else tune.randint(node.low, node.high + 1)
        if node.low % node.step == 0:
            return tune.qrandint(node.low, node.high, node.step)
        return tune.choice(node.grid())
    if isinstance(node, Normal):
        return tune.qrandn(node.mean, node.sd, node.q) if node.q is not None else tune.randn(node.mean, node.sd)
    if isinstance(node, Categorical):
        return tune.choice([_to_node(o) for o in node.options])
    if isinstance(node, Mapping):
        return {k: _to_node(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_to_node(v) for v in node]
    return node


def to_ray(space: SearchSpace) -> dict:
    """The equivalent Ray Tune `param_space` (conditional branches become choices of dicts)."""
    return _to_node(space.definition)
