"""Optimizers as a registry: one entry per optimizer, each with only its own parameters.

A config names an optimizer and sets that optimizer's parameters, so a search space can make it
a conditional subspace where each branch carries only what it uses:

    optimizer: {name: sgd, momentum: 0.9, nesterov: true}
    optimizer: {name: adamw, beta1: 0.9, beta2: 0.999}      # decoupled weight decay
    optimizer: rmsprop                                       # its defaults

Every branch may also carry its own `lr` and `weight_decay`, overriding the top-level ones.
`weight_decay` is an L2 penalty added to the gradient for sgd, adagrad, rmsprop and adam, and
decoupled from the gradient (Loshchilov & Hutter 2019) for adamw.

A new optimizer is one `register(...)` call: its torch class, its keys with defaults, and a
function turning a resolved branch into the class's keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import torch

from trainables.config import branch, flag, number, unit

BRANCH_OVERRIDES = ("lr", "weight_decay")


@dataclass(frozen=True)
class OptimizerEntry:
    cls: type[torch.optim.Optimizer]
    defaults: dict[str, Any]
    # Resolved branch -> constructor kwargs (lr and weight_decay are added by `build_optimizer`).
    kwargs: Callable[[Mapping[str, Any]], dict[str, Any]]


OPTIMIZERS: dict[str, OptimizerEntry] = {}


def register(name: str, cls: type[torch.optim.Optimizer], defaults: dict[str, Any],
             kwargs: Callable[[Mapping[str, Any]], dict[str, Any]]) -> None:
    OPTIMIZERS[name] = OptimizerEntry(cls, dict(defaults), kwargs)


def _sgd(o: Mapping[str, Any]) -> dict[str, Any]:
    momentum = number("optimizer.momentum", o["momentum"], nonnegative=True)
    nesterov = flag("optimizer.nesterov", o["nesterov"])
    dampening = number("optimizer.dampening", o["dampening"], nonnegative=True)
    if nesterov and (momentum == 0 or dampening != 0):
        raise ValueError("optimizer.nesterov needs momentum > 0 and dampening 0")
    return {"momentum": momentum, "nesterov": nesterov, "dampening": dampening}


def _adam(o: Mapping[str, Any]) -> dict[str, Any]:
    return {"betas": (unit("optimizer.beta1", o["beta1"]), unit("optimizer.beta2", o["beta2"])),
            "eps": number("optimizer.eps", o["eps"], positive=True),
            "amsgrad": flag("optimizer.amsgrad", o["amsgrad"])}


def _adagrad(o: Mapping[str, Any]) -> dict[str, Any]:
    return {"lr_decay": number("optimizer.lr_decay", o["lr_decay"], nonnegative=True),
            "initial_accumulator_value": number("optimizer.initial_accumulator_value",
                                                o["initial_accumulator_value"], nonnegative=True),
            "eps": number("optimizer.eps", o["eps"], positive=True)}


def _rmsprop(o: Mapping[str, Any]) -> dict[str, Any]:
    return {"alpha": unit("optimizer.alpha", o["alpha"]),
            "momentum": number("optimizer.momentum", o["momentum"], nonnegative=True),
            "eps": number("optimizer.eps", o["eps"], positive=True),
            "centered": flag("optimizer.centered", o["centered"])}


# SGD defaults to momentum 0.9, the useful baseline; plain SGD is `momentum: 0`.
register("sgd", torch.optim.SGD, {"momentum": 0.9, "nesterov": False, "dampening": 0.0}, _sgd)
register("adagrad", torch.optim.Adagrad, {"lr_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
         _adagrad)
register("rmsprop", torch.optim.RMSprop, {"alpha": 0.99, "momentum": 0.0, "eps": 1e-8, "centered": False},
         _rmsprop)
register("adam", torch.optim.Adam, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "amsgrad": False}, _adam)
register("adamw", torch.optim.AdamW, {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "amsgrad": False}, _adam)


def resolve_optimizer(value: Any) -> dict[str, Any]:
    """A name or branch mapping -> the full branch with defaults; raises ValueError naming the key."""
    out = branch("optimizer", value, {k: e.defaults for k, e in OPTIMIZERS.items()}, BRANCH_OVERRIDES)
    if "lr" in out:
        out["lr"] = number("optimizer.lr", out["lr"], positive=True)
    if "weight_decay" in out:
        out["weight_decay"] = number("optimizer.weight_decay", out["weight_decay"], nonnegative=True)
    OPTIMIZERS[out["name"]].kwargs(out)  # check the branch's own values now, before any training
    return out


def build_optimizer(params: Iterable, resolved: Mapping[str, Any], lr: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer a resolved branch describes; a branch's own lr / weight_decay win."""
    entry = OPTIMIZERS[resolved["name"]]
    return entry.cls(params, lr=resolved.get("lr", lr), weight_decay=resolved.get("weight_decay", weight_decay),
                     **entry.kwargs(resolved))
