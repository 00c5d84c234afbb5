"""`Generic`: your own model and data in a tunekit sweep, no subclass.

Name a model builder and a data builder in the spec's `param_space` as fixed values; the trial
loop, seeding, devices, checkpoints, optimizers, schedules and metrics are `TorchTrainable`'s:

    trainable: trainables.generic:Generic
    metric: val_loss
    mode: min
    param_space:
      model: mymodels:build          # config -> torch.nn.Module
      data: mymodels:load            # config -> (train, val)
      lr: {type: loguniform, low: 1.0e-4, high: 1.0e-1}
      width: {type: choice, values: [32, 64]}    # your own keys reach your builders

`mymodels.py` beside the spec:

    def build(config):
        return torch.nn.Sequential(torch.nn.Linear(30, config["width"]), torch.nn.ReLU(),
                                   torch.nn.Linear(config["width"], 2))

    def load(config):
        x, y = sklearn.datasets.load_breast_cancer(return_X_y=True)
        x = (x - x.mean(0)) / x.std(0)
        return (x[:450], y[:450]), (x[450:], y[450:])

Config keys on top of `TorchTrainable`'s:

    model     "module:function", called with the trial's config, returning a torch.nn.Module
    data      "module:function", called with the config, returning (train, val) or
              {"train": ..., "val": ...}; each split is (inputs, targets) as arrays or tensors
              (kept on the device: the fast path), a torch Dataset of (x, y) items, or a DataLoader
              (used as given: its own batch size and shuffling)
    task      auto (integer targets: classification, floating: regression) | classification | regression
    loss      None (cross-entropy for classification, mean squared error for regression), one of
              cross_entropy, mse, l1, smooth_l1, bce_with_logits, or "module:function"
              (outputs, targets) -> mean loss tensor; also used for val_loss
    metrics   None, a list of "module:function" (reported as val_<function name>) or a mapping
              {name: "module:function"}; each is called with all validation outputs and targets
              (CPU tensors) and returns a float
    num_workers  DataLoader workers for a Dataset split (0: load in the trial's process)

Any other key is yours and passes to the builders untouched, so a typo of one of ours close
enough to be one (`learning_rate` is not; `weight_decy` is) is refused by name.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables.base import TorchTrainable
from trainables.batches import LoaderBatches, TensorBatches
from trainables.config import integer

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cross_entropy": lambda out, y: F.cross_entropy(out, y),
    "mse": lambda out, y: F.mse_loss(out.reshape(y.shape), y.float()),
    "l1": lambda out, y: F.l1_loss(out.reshape(y.shape), y.float()),
    "smooth_l1": lambda out, y: F.smooth_l1_loss(out.reshape(y.shape), y.float()),
    "bce_with_logits": lambda out, y: F.binary_cross_entropy_with_logits(out.reshape(y.shape), y.float()),
}


def import_object(field: str, path: Any) -> Any:
    """The object an import path "module:name" (or "module.name") names; ValueError naming the field."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{field} must be an import path like 'mypkg.models:build', got {path!r}")
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    if not module or not name:
        raise ValueError(f"{field} must be an import path like 'mypkg.models:build', got {path!r}")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"{field}: cannot import module {module!r} ({e})") from None
    obj = mod
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{field}: module {module!r} has no {name!r}") from None
    return obj


class Generic(TorchTrainable):
    """A `TorchTrainable` whose model, data, loss and extra metrics come from import paths in the config."""

    METRICS: ClassVar[tuple[str, ...] | None] = None  # depends on the task and the user's metrics
    DEFAULTS: ClassVar[dict[str, Any]] = {
        **TorchTrainable.DEFAULTS,
        "model": None,
        "data": None,
        "task": "auto",
        "loss": None,
        "metrics": None,
        "num_workers": 0,
    }

    @classmethod
    def check_keys(cls, config: Mapping[str, Any]) -> None:
        for key in config:
            if key in cls.DEFAULTS:
                continue
            close = difflib.get_close_matches(key, list(cls.DEFAULTS), n=1, cutoff=0.85)
            if close:
                raise ValueError(f"{cls.__name__}: unknown config key {key!r}; did you mean {close[0]!r}? "
                                 "(keys that are not tunekit's pass to your builders, so a near miss is refused)")

    @classmethod
    def resolve_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        cfg = super().resolve_config(config)
        for field in ("model", "data"):
            if cfg[field] is None:
                raise ValueError(f"{field}: Generic needs an import path such as 'mypkg.models:build' "
                                 f"(a fixed value in param_space)")
            if not callable(import_object(field, cfg[field])):
                raise ValueError(f"{field}: {cfg[field]!r} is not callable")
        if cfg["task"] not in ("auto", "classification", "regression"):
            raise ValueError(f"task must be auto, classification or regression, got {cfg['task']!r}")
        if cfg["loss"] is not None and cfg["loss"] not in LOSSES:
            import_object("loss", cfg["loss"])
        cls._metric_paths(cfg["metrics"])
        cfg["num_workers"] = integer("num_workers", cfg["num_workers"], low=0)
        return cfg

    @staticmethod
    def _metric_paths(value: Any) -> dict[str, Callable]:
        if value is None:
            return {}
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)):
            fns = [import_object("metrics", p) for p in value]
            return {getattr(fn, "__name__", str(i)): fn for i, fn in enumerate(fns)}
        if isinstance(value, Mapping):
            return {str(k): import_object(f"metrics.{k}", p) for k, p in value.items()}
        raise ValueError(f"metrics must be a list of import paths or a mapping name -> import path, got {value!r}")

    # ---- hooks -----------------------------------------------------------------------------

    def build_data(self, cfg: Mapping[str, Any]) -> tuple[Any, Any]:
        out = _call("data", cfg)
        if isinstance(out, Mapping) and {"train", "val"} <= set(out):
            return out["train"], out["val"]
        if isinstance(out, (tuple, list)) and len(out) == 2:
            return out[0], out[1]
        raise ValueError(f"data: {cfg['data']} must return (train, val) or {{'train': ..., 'val': ...}}, "
                         f"got {type(out).__name__}")

    def build_batches(self, cfg: Mapping[str, Any], data: tuple[Any, Any]) -> tuple[Any, Any]:
        return (self._batches("train", data[0], cfg["batch_size"], shuffle=True),
                self._batches("val", data[1], cfg["eval_batch_size"], shuffle=False))

    def _batches(self, split: str, obj: Any, batch_size: int, shuffle: bool) -> Any:
        if isinstance(obj, torch.utils.data.DataLoader):
            return LoaderBatches(obj, self.device)
        if isinstance(obj, torch.utils.data.TensorDataset):
            obj = obj.tensors[:2]
        if isinstance(obj, torch.utils.data.Dataset):
            loader = torch.utils.data.DataLoader(
                obj, batch_size=batch_size, shuffle=shuffle, generator=self.loader_gen if shuffle else None,
                num_workers=self.cfg["num_workers"], pin_memory=self.device.type == "cuda")
            return LoaderBatches(loader, self.device)
        if isinstance(obj, (tuple, list)) and len(obj) == 2:
            x, y = (_tensor(a).to(self.device) for a in obj)
            return TensorBatches(x, y, batch_size, shuffle=shuffle, generator=self.loader_gen)
        raise ValueError(f"data: the {split} split must be (inputs, targets), a torch Dataset or a DataLoader, "
                         f"got {type(obj).__name__}")

    def build_model(self, cfg: Mapping[str, Any], data: Any) -> nn.Module:
        return _call("model", cfg)

    def task(self, data: Any) -> str:
        if self.cfg["task"] != "auto":
            return self.cfg["task"]
        y = _sample_targets(data[0])
        if y is None:
            raise ValueError("task: cannot tell classification from regression for this data; set task")
        return "regression" if torch.is_floating_point(y) else "classification"

    def build_loss(self, cfg: Mapping[str, Any], task: str, training: bool) -> Callable:
        loss = cfg["loss"]
        if loss is None:
            return super().build_loss(cfg, task, training)
        if loss in LOSSES:
            return LOSSES[loss]
        return import_object("loss", loss)

    def extra_metrics(self) -> dict[str, Callable]:
        return self._metric_paths(self.cfg["metrics"])


def _call(field: str, cfg: Mapping[str, Any]) -> Any:
    """The user's builder called with the config; its failure is named (the cause stays chained)."""
    try:
        return import_object(field, cfg[field])(dict(cfg))
    except Exception as e:
        raise ValueError(f"{field}: {cfg[field]}(config) raised {type(e).__name__}: {e}") from e


def _tensor(a: Any) -> torch.Tensor:
    # A copy of numpy data: arrays may be read-only (cached datasets) and the trial owns its tensors.
    t = a if isinstance(a, torch.Tensor) else torch.tensor(np.array(a))
    return t.float() if t.dtype == torch.float64 else t


def _sample_targets(split: Any) -> torch.Tensor | None:
    if isinstance(split, (tuple, list)) and len(split) == 2:
        return _tensor(split[1])
    dataset = split.dataset if isinstance(split, torch.utils.data.DataLoader) else split
    if isinstance(dataset, torch.utils.data.TensorDataset):
        return dataset.tensors[1]
    try:
        item = dataset[0]
    except Exception:  # an iterable dataset: no random access
        return None
    y = item["y"] if isinstance(item, Mapping) else item[1]
    return _tensor(y)
