"""`tunekit lr-find SPEC` and `tunekit sanity SPEC`: the trainables' pre-sweep tools from a spec.

Both build ONE configuration from the spec and run in this process (no Ray):
- fixed values of `param_space` as given;
- a searched parameter takes the trainable's own default when it has one (`DEFAULTS`), else a
  draw from the space seeded by the spec's `seed`;
- `--param KEY=VALUE` (YAML value, repeatable) overrides either.
The configuration used is printed, so the result can be reproduced. They need a PyTorch
trainable of `trainables.base.TorchTrainable`'s family (bundled ones, or `trainables.generic:Generic`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from toolkit.spec import SpecError


def register(sub: argparse._SubParsersAction) -> None:
    lr = sub.add_parser("lr-find", help="LR range test from one configuration of a spec: a plot and a suggested lr range")
    _common(lr)
    lr.add_argument("--min-lr", type=float, default=1e-6, help="first learning rate of the sweep (default 1e-6)")
    lr.add_argument("--max-lr", type=float, default=1.0, help="last learning rate of the sweep (default 1)")
    lr.add_argument("--steps", type=int, default=200, help="optimizer steps in the sweep (default 200)")
    lr.add_argument("--out", help="PNG plot of loss against lr (default <name>-lr-find.png here)")
    lr.set_defaults(handler=_lr_find)

    sanity = sub.add_parser("sanity", help="check initial loss, gradients and overfitting a few batches "
                                           "for one configuration of a spec")
    _common(sanity)
    sanity.add_argument("--steps", type=int, default=150, help="optimizer steps when overfitting (default 150)")
    sanity.set_defaults(handler=_sanity)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="YAML experiment spec")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="set a config value for this check, e.g. --param optimizer=sgd (repeatable)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a spec field, as in `run`")


def one_config(spec: Any, cls: type, params: list[str] | None) -> dict[str, Any]:
    """The configuration the tools use (see the module docstring)."""
    import numpy as np

    space = spec.search_space()
    sampled = space.to_config(space.sample(np.random.default_rng(spec.seed)))
    defaults = getattr(cls, "DEFAULTS", {})
    config = {}
    for key, value in sampled.items():
        given = spec.param_space.get(key)
        searched = isinstance(given, dict) and "type" in given and given.get("type") != "fixed"
        config[key] = defaults[key] if searched and defaults.get(key) is not None else value
    for item in params or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError([("--param", f"expected KEY=VALUE, got {item!r}")])
        try:
            config[key] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise SpecError([(f"--param {key}", f"not a YAML value: {e}")]) from None
    return config


def _build(args: argparse.Namespace) -> tuple[Any, Any, dict]:
    from toolkit.imports import add_to_sys_path
    from toolkit.spec import load_spec

    spec = load_spec(args.spec, list(args.set or []))
    cls = spec.trainable_class()
    from trainables.base import TorchTrainable

    if not (isinstance(cls, type) and issubclass(cls, TorchTrainable)):
        raise SpecError([("trainable", f"{spec.trainable} is not a trainables.base.TorchTrainable; lr-find and "
                                       "sanity need one (a bundled trainable or trainables.generic:Generic)")])
    add_to_sys_path(spec.trainable_search_paths())  # a Generic's builders may live beside the spec
    config = one_config(spec, cls, args.param)
    print("configuration: " + json.dumps(config, sort_keys=True, default=str))
    try:
        trainable = cls(config=dict(config))
    except (ValueError, TypeError) as e:
        raise SpecError([("config", str(e).splitlines()[0])]) from None
    return spec, trainable, config


def _lr_find(args: argparse.Namespace) -> int:
    from trainables.local import close
    from trainables.lr_find import lr_range_test

    spec, trainable, _ = _build(args)
    try:
        try:
            found = lr_range_test(trainable, min_lr=args.min_lr, max_lr=args.max_lr, num_steps=args.steps)
        except ValueError as e:
            raise SpecError([("lr-find", str(e))]) from None
    finally:
        close(trainable)
    out = Path(args.out or f"{spec.name}-lr-find.png")
    found.plot(str(out))
    low, high = found.suggestion
    print(f"swept {len(found.lrs)} steps from {found.lrs[0]:.1e} to {found.lrs[-1]:.1e}"
          f"{' (stopped: the loss diverged)' if found.stopped_early else ''}")
    print(f"smoothed loss lowest at lr {found.min_loss_lr:.2e}; steepest descent at {found.steepest_lr:.2e}")
    for note in found.notes:
        print(f"note: {note}")
    print(f"plot: {out}")
    print("suggested search range, for param_space:")
    print(f"  {found.snippet()}")
    return 0


def _sanity(args: argparse.Namespace) -> int:
    from trainables.local import close
    from trainables.sanity import sanity_check

    _, trainable, _ = _build(args)
    try:
        report = sanity_check(trainable, steps=args.steps)
    finally:
        close(trainable)
    print(report.render())
    if report.ok:
        print("sanity: all checks passed")
        return 0
    print(f"sanity: failed: {', '.join(report.failed)}", file=sys.stderr)
    return 1
