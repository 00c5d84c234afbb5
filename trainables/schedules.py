"""Learning-rate schedules as a registry of closed forms, each with optional linear warm-up.

    lr_schedule: {name: cosine, min_lr_ratio: 0.01, warmup: 2}          # per epoch (the default)
    lr_schedule: {name: one_cycle, pct_start: 0.3}                      # per optimizer step (its default)
    lr_schedule: {name: step, step_size: 5, gamma: 0.1, interval: step} # override the unit

A schedule is a multiplier `factor(t)` of the configured lr, where `t` counts the schedule's unit
(`interval`: `epoch` or `step`, an optimizer step) from 0. Warm-up (`warmup` units, 0 = none)
rises linearly from `warmup_start_factor` to 1; the named schedule then runs on `t - warmup`
over the remaining `horizon - warmup` units. The horizon is `max_epochs` epochs (times the
optimizer steps per epoch for `interval: step`); schedules that need it refuse a config without
`max_epochs`.

    name         own keys (defaults)                        factor at t (after warm-up), horizon T
    constant     -                                           1
    step         step_size (T // 3), gamma (0.1)             gamma ** (t // step_size)
    multistep    milestones ([]), gamma (0.1)                gamma ** (number of milestones <= t)
    exponential  gamma (0.95)                                gamma ** t
    cosine       min_lr_ratio (0), restart_period (none),    r + (1 - r) (1 + cos(pi t_c / T_c)) / 2, with
                 restart_mult (1)                            t_c, T_c the position in and length of the
                                                             current cycle (SGDR, Loshchilov & Hutter 2017;
                                                             no restarts: one cycle of length T)
    linear       end_factor (0)                              1 + (end_factor - 1) min(t, T) / T
    inverse_sqrt timescale (max(1, warmup))                  sqrt(timescale / (timescale + t))
    one_cycle    pct_start (0.3), div_factor (25),           cosine up from 1/div_factor to 1 over the first
                 final_div_factor (1e4)                      pct_start T - 1 units, then cosine down to
                                                             1/(div_factor final_div_factor) at T - 1
                                                             (Smith 2018; the LR only, momentum not cycled)

The schedules are torch `LambdaLR`s over these closed forms, so a checkpoint holds only the step
count and restores exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from trainables.config import branch, integer, number

COMMON_KEYS = ("warmup", "warmup_start_factor", "interval")
COMMON_DEFAULTS = {"warmup": 0, "warmup_start_factor": 0.1}


@dataclass(frozen=True)
class ScheduleEntry:
    defaults: dict[str, Any]
    interval: str  # the unit it is stepped in unless the config says otherwise
    needs_horizon: Callable[[Mapping[str, Any]], bool]
    # (resolved branch, t, horizon after warm-up or None) -> multiplier of the base lr
    factor: Callable[[Mapping[str, Any], int, int | None], float]
    check: Callable[[Mapping[str, Any]], None]


SCHEDULES: dict[str, ScheduleEntry] = {}


def register(name: str, defaults: dict[str, Any], factor: Callable, check: Callable = lambda s: None,
             interval: str = "epoch", needs_horizon: Callable = lambda s: False) -> None:
    SCHEDULES[name] = ScheduleEntry(dict(defaults), interval, needs_horizon, factor, check)


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def _step(s, t, T):
    size = s["step_size"] if s["step_size"] is not None else max(1, T // 3)
    return s["gamma"] ** (t // size)


def _cosine(s, t, T):
    r, period = s["min_lr_ratio"], s["restart_period"]
    if period is None:
        t_cur, t_len = min(t, T), T
    elif s["restart_mult"] == 1:
        t_cur, t_len = t % period, period
    else:
        m = s["restart_mult"]
        n = int(math.log(t / period * (m - 1) + 1, m))
        t_cur, t_len = t - period * (m ** n - 1) / (m - 1), period * m ** n
    return r + (1 - r) * (1 + math.cos(math.pi * t_cur / t_len)) / 2


def _one_cycle(s, t, T):
    peak, end = s["pct_start"] * T - 1, T - 1
    initial = 1 / s["div_factor"]
    final = initial / s["final_div_factor"]
    t = min(t, end)
    if t <= peak:
        return _cos(initial, 1.0, t / peak)
    return _cos(1.0, final, (t - peak) / (end - peak))


def _timescale(s) -> float:
    return s["timescale"] if s["timescale"] is not None else max(1, s["warmup"])


def _positive(*keys: str) -> Callable[[Mapping[str, Any]], None]:
    def check(s):
        for k in keys:
            number(f"lr_schedule.{k}", s[k], positive=True)
    return check


def _check_step(s):
    _positive("gamma")(s)
    if s["step_size"] is not None:
        integer("lr_schedule.step_size", s["step_size"], low=1)


def _check_multistep(s):
    _positive("gamma")(s)
    ms = s["milestones"]
    if not isinstance(ms, (list, tuple)) or not ms:
        raise ValueError(f"lr_schedule.milestones must be a non-empty list of integers, got {ms!r}")
    ms = [integer("lr_schedule.milestones", m, low=1) for m in ms]
    if ms != sorted(set(ms)):
        raise ValueError(f"lr_schedule.milestones must increase, got {ms}")


def _check_cosine(s):
    if not 0 <= number("lr_schedule.min_lr_ratio", s["min_lr_ratio"], nonnegative=True) <= 1:
        raise ValueError(f"lr_schedule.min_lr_ratio must be in [0, 1], got {s['min_lr_ratio']}")
    if s["restart_period"] is not None:
        integer("lr_schedule.restart_period", s["restart_period"], low=1)
    integer("lr_schedule.restart_mult", s["restart_mult"], low=1)


def _check_linear(s):
    number("lr_schedule.end_factor", s["end_factor"], nonnegative=True)


def _check_inverse_sqrt(s):
    if s["timescale"] is not None:
        number("lr_schedule.timescale", s["timescale"], positive=True)


def _check_one_cycle(s):
    pct = number("lr_schedule.pct_start", s["pct_start"], positive=True)
    if not pct < 1:
        raise ValueError(f"lr_schedule.pct_start must be in (0, 1), got {pct}")
    _positive("div_factor", "final_div_factor")(s)


register("constant", {}, lambda s, t, T: 1.0)
register("step", {"step_size": None, "gamma": 0.1}, _step, _check_step,
         needs_horizon=lambda s: s["step_size"] is None)
register("multistep", {"milestones": [], "gamma": 0.1},
         lambda s, t, T: s["gamma"] ** sum(m <= t for m in s["milestones"]), _check_multistep)
register("exponential", {"gamma": 0.95}, lambda s, t, T: s["gamma"] ** t, _positive("gamma"))
register("cosine", {"min_lr_ratio": 0.0, "restart_period": None, "restart_mult": 1}, _cosine, _check_cosine,
         needs_horizon=lambda s: s["restart_period"] is None)
register("linear", {"end_factor": 0.0}, lambda s, t, T: 1 + (s["end_factor"] - 1) * min(t, T) / T, _check_linear,
         needs_horizon=lambda s: True)
register("inverse_sqrt", {"timescale": None}, lambda s, t, T: math.sqrt(_timescale(s) / (_timescale(s) + t)),
         _check_inverse_sqrt, interval="step")
register("one_cycle", {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4}, _one_cycle,
         _check_one_cycle, interval="step", needs_horizon=lambda s: True)
ALIASES = {"none": "constant"}


def resolve_schedule(value: Any) -> dict[str, Any]:
    """A name or mapping -> the full branch (warm-up and interval filled in); ValueError naming the key."""
    if isinstance(value, str):
        value = {"name": value}
    if isinstance(value, Mapping) and value.get("name") in ALIASES:
        value = {**value, "name": ALIASES[value["name"]]}
    out = branch("lr_schedule", value, {k: e.defaults for k, e in SCHEDULES.items()}, COMMON_KEYS)
    entry = SCHEDULES[out["name"]]
    out = {**COMMON_DEFAULTS, "interval": entry.interval, **out}
    out["warmup"] = integer("lr_schedule.warmup", out["warmup"], low=0)
    start = number("lr_schedule.warmup_start_factor", out["warmup_start_factor"], nonnegative=True)
    if start > 1:
        raise ValueError(f"lr_schedule.warmup_start_factor must be in [0, 1], got {start}")
    if out["interval"] not in ("epoch", "step"):
        raise ValueError(f"lr_schedule.interval must be epoch or step, got {out['interval']!r}")
    entry.check(out)
    return out


def needs_horizon(resolved: Mapping[str, Any]) -> bool:
    return SCHEDULES[resolved["name"]].needs_horizon(resolved)


def schedule_factor(resolved: Mapping[str, Any], t: int, horizon: int | None) -> float:
    """The multiplier of the base lr at unit `t` (warm-up included); `horizon` in the same units."""
    warmup = resolved["warmup"]
    if t < warmup:
        start = resolved["warmup_start_factor"]
        return start + (1 - start) * t / warmup
    rest = None if horizon is None else max(1, horizon - warmup)
    return SCHEDULES[resolved["name"]].factor(resolved, t - warmup, rest)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, resolved: Mapping[str, Any], max_epochs: int | None,
                       steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A LambdaLR over the closed form (None for a constant schedule without warm-up).

    Step it once per epoch or once per optimizer step, as `resolved["interval"]` says.
    """
    if resolved["name"] == "constant" and resolved["warmup"] == 0:
        return None
    if needs_horizon(resolved) and max_epochs is None:
        raise ValueError(f"lr_schedule {resolved['name']!r} needs max_epochs (its horizon)")
    per = steps_per_epoch if resolved["interval"] == "step" else 1
    horizon = None if max_epochs is None else max_epochs * per
    schedule = dict(resolved)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: schedule_factor(schedule, t, horizon))
