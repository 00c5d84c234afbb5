"""`TorchTrainable`: a reusable Ray Tune class Trainable for supervised PyTorch classifiers.

A subclass names its dataset and builds its model; this base does the rest:

    class MyMLP(TorchTrainable):
        DATASET = "wine"
        DEFAULTS = {**TorchTrainable.DEFAULTS, "width": 32}

        def build_model(self, cfg, data):
            return MLP(data.n_features, data.n_classes, width=cfg["width"])

One `step()` is one epoch. Config keys understood by the base (defaults in `DEFAULTS`):

    seed            int; seeds python, numpy and torch, and (offset) the shuffling generator
    lr              learning rate
    batch_size      training mini-batch size
    weight_decay    L2 (sgd, adam) or decoupled (adamw) weight decay
    optimizer       "adam" | "adamw" | "sgd", or a conditional mapping such as
                    {name: sgd, momentum: 0.9, nesterov: true} / {name: adam, beta1: 0.9, beta2: 0.999}
                    (a branch may also carry its own `lr` and `weight_decay`, overriding the top level)
    lr_schedule     "none" | "cosine" | "step", or {name: step, step_size: 5, gamma: 0.1} /
                    {name: cosine, min_lr_ratio: 0.0}; stepped once per epoch over `max_epochs`
    max_epochs      horizon of the LR schedule; when set, the result carries done=True at that epoch
    grad_clip       clip the global gradient norm to this value (None: no clipping)
    amp             mixed precision on CUDA (ignored on CPU); `amp_dtype` float16 (with GradScaler) or bfloat16
    device          "auto" (the GPU Ray assigned, else CPU) | "cpu" | "cuda"
    deterministic   "auto" (on for CPU, off for CUDA) | true | false: torch deterministic algorithms
    num_threads     torch intra-op threads (None: leave as the process has it)
    eval_batch_size batch size for the validation pass

Unknown keys are rejected with a message naming them, so a typo in a search space fails the
trial loudly instead of silently tuning nothing.

Reported every epoch (`METRICS`): train_loss, train_acc, val_loss, val_acc, lr (used during the
epoch), epoch, epoch_time_s (train + validation), samples_per_s (training samples / training
time), grad_norm (mean pre-clip global L2 norm over the epoch's steps), update_ratio
(||w_end - w_start|| / ||w_start|| over the epoch), memory_mb (peak CUDA allocation this epoch on
GPU, process RSS on CPU), device.

Divergence: a non-finite loss is reported as NaN (never raised), so the runner can fail the trial
itself with a clear message. Once parameters are non-finite, later epochs skip training and
report NaN losses at once, which keeps a diverged trial cheap.

Checkpoints hold model, optimizer, LR scheduler, GradScaler, epoch, and the python / numpy /
torch (CPU and CUDA) RNG states plus the shuffling generator, so on CPU a restored trial
continues with metrics identical to one that never stopped (same thread count assumed: CPU
kernels may sum in a different order with a different number of threads).
"""

from __future__ import annotations

import math
import os
import random
import resource
import time
from typing import Any, ClassVar, Mapping

import numpy as np
import ray
import torch
import torch.nn.functional as F
from ray import tune
from torch import nn

from trainables import data as data_mod

CHECKPOINT_FILE = "trainable.pt"
CHECKPOINT_FORMAT = 1
# The shuffling generator gets its own stream so its draws do not depend on how many
# dropout masks were sampled from the global torch RNG (and vice versa).
_LOADER_SEED_OFFSET = 7_919

OPTIMIZER_KEYS: dict[str, dict[str, Any]] = {
    # name: allowed branch keys with defaults. SGD defaults to momentum 0.9 because the issue's
    # "SGD with momentum" is the useful baseline; plain SGD is momentum: 0.
    "sgd": {"momentum": 0.9, "nesterov": False},
    "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "adamw": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}
_BRANCH_OVERRIDES = ("lr", "weight_decay")
SCHEDULE_KEYS: dict[str, dict[str, Any]] = {
    "none": {},
    "cosine": {"min_lr_ratio": 0.0},
    "step": {"step_size": None, "gamma": 0.1},  # step_size None: a third of max_epochs
}


class TorchTrainable(tune.Trainable):
    """Base class; subclasses set `DATASET`, extend `DEFAULTS` and implement `build_model`."""

    DATASET: ClassVar[str | None] = None
    METRICS: ClassVar[tuple[str, ...]] = (
        "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch", "epoch_time_s",
        "samples_per_s", "grad_norm", "update_ratio", "memory_mb", "device",
    )
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "seed": 0,
        "lr": 1e-3,
        "batch_size": 64,
        "weight_decay": 0.0,
        "optimizer": {"name": "adam"},
        "lr_schedule": "none",
        "max_epochs": None,
        "grad_clip": None,
        "amp": False,
        "amp_dtype": "float16",
        "device": "auto",
        "deterministic": "auto",
        "num_threads": None,
        "eval_batch_size": 2048,
    }

    # ---- subclass hooks -------------------------------------------------------------------

    def build_model(self, cfg: Mapping[str, Any], data: data_mod.Dataset) -> nn.Module:
        raise NotImplementedError

    def build_data(self, cfg: Mapping[str, Any]) -> data_mod.Dataset:
        if self.DATASET is None:
            raise NotImplementedError(f"{type(self).__name__} sets no DATASET and does not override build_data")
        return data_mod.load(self.DATASET)

    @classmethod
    def data_fingerprint(cls) -> dict | None:
        """{"fingerprint", "description", "name"} of the data every trial of this class sees."""
        return None if cls.DATASET is None else data_mod.load(cls.DATASET).info()

    # ---- config ----------------------------------------------------------------------------

    @classmethod
    def resolve_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in and every value checked; raises ValueError naming the bad key."""
        unknown = sorted(k for k in config if k not in cls.DEFAULTS)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config key(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(sorted(cls.DEFAULTS))}")
        cfg = {**cls.DEFAULTS, **config}
        cfg["seed"] = _integer("seed", cfg["seed"])
        cfg["batch_size"] = _integer("batch_size", cfg["batch_size"], low=1)
        cfg["eval_batch_size"] = _integer("eval_batch_size", cfg["eval_batch_size"], low=1)
        cfg["lr"] = _number("lr", cfg["lr"], positive=True)
        cfg["weight_decay"] = _number("weight_decay", cfg["weight_decay"], nonnegative=True)
        if cfg["max_epochs"] is not None:
            cfg["max_epochs"] = _integer("max_epochs", cfg["max_epochs"], low=1)
        if cfg["grad_clip"] is not None:
            cfg["grad_clip"] = _number("grad_clip", cfg["grad_clip"], positive=True)
        if cfg["num_threads"] is not None:
            cfg["num_threads"] = _integer("num_threads", cfg["num_threads"], low=1)
        cfg["optimizer"] = _branch("optimizer", cfg["optimizer"], OPTIMIZER_KEYS, _BRANCH_OVERRIDES)
        cfg["lr_schedule"] = _branch("lr_schedule", cfg["lr_schedule"], SCHEDULE_KEYS)
        if cfg["lr_schedule"]["name"] != "none" and cfg["max_epochs"] is None:
            raise ValueError(f"lr_schedule {cfg['lr_schedule']['name']!r} needs max_epochs (its horizon)")
        if cfg["device"] not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {cfg['device']!r}")
        if cfg["amp_dtype"] not in ("float16", "bfloat16"):
            raise ValueError(f"amp_dtype must be float16 or bfloat16, got {cfg['amp_dtype']!r}")
        if cfg["deterministic"] not in ("auto", True, False):
            raise ValueError(f"deterministic must be auto, true or false, got {cfg['deterministic']!r}")
        cfg["amp"] = bool(cfg["amp"])
        return cfg

    # ---- Ray Tune Trainable API ------------------------------------------------------------

    def setup(self, config: dict) -> None:
        cfg = self.cfg = self.resolve_config(config)
        if cfg["num_threads"] is not None:
            torch.set_num_threads(cfg["num_threads"])
        self.device = resolve_device(cfg["device"])
        on_cuda = self.device.type == "cuda"
        deterministic = (not on_cuda) if cfg["deterministic"] == "auto" else cfg["deterministic"]
        if deterministic and on_cuda:
            # cuBLAS needs a fixed workspace for reproducible GEMMs; must precede its first use.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # Process-wide switches, so set both ways: a reused actor may switch trial kinds.
        # warn_only: an op without a deterministic kernel warns instead of failing the trial.
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        if on_cuda:
            torch.backends.cudnn.benchmark = not deterministic

        seed = cfg["seed"]
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)  # also seeds every CUDA device
        self.loader_gen = torch.Generator(device="cpu")
        self.loader_gen.manual_seed(seed + _LOADER_SEED_OFFSET)

        self.data = self.build_data(cfg)
        self.x_train, self.y_train, self.x_val, self.y_val = data_mod.as_tensors(self.data, self.device)
        self.model = self.build_model(cfg, self.data).to(self.device)

        opt = cfg["optimizer"]
        self.optimizer = build_optimizer(self.model.parameters(), opt, lr=opt.get("lr", cfg["lr"]),
                                         weight_decay=opt.get("weight_decay", cfg["weight_decay"]))
        self.lr_scheduler = build_lr_scheduler(self.optimizer, cfg["lr_schedule"], cfg["max_epochs"])
        self.amp = cfg["amp"] and on_cuda
        self.amp_dtype = getattr(torch, cfg["amp_dtype"])
        # bfloat16 has float32's exponent range, so only float16 needs loss scaling.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.epoch = 0
        self.diverged = False

    def step(self) -> dict:
        t0 = time.perf_counter()
        on_cuda = self.device.type == "cuda"
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        lr = float(self.optimizer.param_groups[0]["lr"])
        n = len(self.y_train)

        if self.diverged:
            train = {"train_loss": math.nan, "train_acc": math.nan, "grad_norm": math.nan, "update_ratio": math.nan}
            train_time = 0.0
        else:
            train = self._train_epoch()
            train_time = time.perf_counter() - t0
            # A NaN loss under AMP may be a skipped fp16 step; only non-finite weights are fatal.
            self.diverged = not all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        val = self._evaluate()
        self.epoch += 1
        if on_cuda:
            torch.cuda.synchronize(self.device)
            memory_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            memory_mb = _rss_mb()
        result = {
            **train, **val,
            "lr": lr,
            "epoch": self.epoch,
            "epoch_time_s": time.perf_counter() - t0,
            "samples_per_s": n / train_time if train_time > 0 else math.nan,
            "memory_mb": memory_mb,
            "device": str(self.device),
        }
        if self.cfg["max_epochs"] is not None and self.epoch >= self.cfg["max_epochs"]:
            result["done"] = True
        return result

    def _train_epoch(self) -> dict:
        model, opt, scaler = self.model, self.optimizer, self.scaler
        params = [p for p in model.parameters() if p.requires_grad]
        bs, clip = self.cfg["batch_size"], self.cfg["grad_clip"]
        w0 = _flat(params)
        model.train()
        n = len(self.y_train)
        perm = torch.randperm(n, generator=self.loader_gen).to(self.device)
        # Accumulate on the device and read back once per epoch: a per-batch .item() would
        # synchronise the GPU every step.
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        gn_sum = torch.zeros((), device=self.device)
        gn_count = torch.zeros((), device=self.device)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb, yb = self.x_train[idx], self.y_train[idx]
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                logits = model(xb)
                loss = F.cross_entropy(logits.float(), yb)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)  # no-op when disabled; makes the norm below the true gradient norm
            grads = [p.grad for p in params if p.grad is not None]
            gn = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
            finite = torch.isfinite(gn)
            # Steps GradScaler skips (inf/NaN gradients) are left out of the mean norm.
            gn_sum += torch.where(finite, gn, torch.zeros_like(gn))
            gn_count += finite.float()
            if clip is not None:
                torch.nn.utils.clip_grads_with_norm_(params, clip, gn)
            scaler.step(opt)
            scaler.update()
            loss_sum += loss.detach().float() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
        w_norm = torch.linalg.vector_norm(w0)
        update = torch.linalg.vector_norm(_flat(params) - w0)
        count = gn_count.item()
        return {
            "train_loss": loss_sum.item() / n,
            "train_acc": correct.item() / n,
            "grad_norm": gn_sum.item() / count if count else math.nan,
            "update_ratio": (update / w_norm).item() if w_norm.item() > 0 else math.nan,
        }

    @torch.no_grad()
    def _evaluate(self) -> dict:
        self.model.eval()
        n = len(self.y_val)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        bs = self.cfg["eval_batch_size"]
        for i in range(0, n, bs):
            xb, yb = self.x_val[i:i + bs], self.y_val[i:i + bs]
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                logits = self.model(xb).float()
            loss_sum += F.cross_entropy(logits, yb, reduction="sum")
            correct += (logits.argmax(1) == yb).sum()
        return {"val_loss": loss_sum.item() / n, "val_acc": correct.item() / n}

    def save_checkpoint(self, checkpoint_dir: str) -> str:
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "diverged": self.diverged,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": None if self.lr_scheduler is None else self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                "loader": self.loader_gen.get_state(),
            },
        }
        torch.save(state, os.path.join(checkpoint_dir, CHECKPOINT_FILE))
        return checkpoint_dir

    def load_checkpoint(self, checkpoint: str | dict) -> None:
        if isinstance(checkpoint, dict):
            state = checkpoint
        else:
            # Our own file (it holds numpy/python RNG tuples, hence weights_only=False). CPU first:
            # RNG states must be CPU tensors, and load_state_dict moves weights to our device.
            state = torch.load(os.path.join(checkpoint, CHECKPOINT_FILE), map_location="cpu", weights_only=False)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unsupported checkpoint format {state.get('format')!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_scheduler is not None and state["lr_scheduler"] is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.scaler.is_enabled() and state["scaler"]:
            # A disabled scaler (CPU, bf16) saves {}; a trial moved from CPU to a GPU with fp16
            # AMP then starts loss scaling afresh instead of failing.
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = state["epoch"]
        self.diverged = state["diverged"]
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.loader_gen.set_state(rng["loader"])

    def reset_config(self, new_config: dict) -> bool:
        # Lets Tune reuse this actor for a new trial (reuse_actors=True): setup() rebuilds
        # everything from the new config and re-seeds, so the trial matches a fresh actor.
        self.setup(new_config)
        return True

    def cleanup(self) -> None:
        for name in ("model", "optimizer", "x_train", "y_train", "x_val", "y_val"):
            self.__dict__.pop(name, None)
        if getattr(self, "device", None) is not None and self.device.type == "cuda":
            torch.cuda.empty_cache()


# ---- helpers ---------------------------------------------------------------------------------

def resolve_device(requested: str = "auto") -> torch.device:
    """The device a trial should train on.

    Inside a Ray actor, Ray exports CUDA_VISIBLE_DEVICES as the GPUs it assigned (one shared GPU
    for fractional requests), so `cuda:0` is the first assigned GPU and an actor with no GPU sees
    none. Outside Ray (local runs) any visible GPU is used. "cuda" without a usable GPU raises,
    rather than silently running a GPU experiment on the CPU.
    """
    if requested == "cpu":
        return torch.device("cpu")
    # Check is_initialized() first: ray.get_runtime_context() would start a Ray instance.
    in_actor = ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
    index = 0
    gpu_ids = ray.get_gpu_ids() if in_actor else None
    usable = torch.cuda.is_available() and (gpu_ids is None or bool(gpu_ids))
    if usable and gpu_ids and os.environ.get("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"):
        index = int(gpu_ids[0])  # Ray left the mask alone: address the GPU by its real id
    if usable:
        return torch.device("cuda", index)
    if requested == "cuda":
        if gpu_ids == []:
            why = "Ray assigned this trial no GPU (set resources_per_trial.gpu)"
        else:
            why = f"torch {torch.__version__} sees no CUDA device (CPU-only build, or no driver)"
        raise RuntimeError(f"device 'cuda' requested but {why}")
    return torch.device("cpu")


def build_optimizer(params, spec: Mapping[str, Any], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """An optimizer from a resolved branch mapping, e.g. {"name": "sgd", "momentum": 0.9}."""
    name = spec["name"]
    if name == "sgd":
        momentum = _number("optimizer.momentum", spec["momentum"], nonnegative=True)
        nesterov = bool(spec["nesterov"])
        if nesterov and momentum == 0:
            raise ValueError("optimizer.nesterov needs momentum > 0")
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    betas = (_unit("optimizer.beta1", spec["beta1"]), _unit("optimizer.beta2", spec["beta2"]))
    eps = _number("optimizer.eps", spec["eps"], positive=True)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, spec: Mapping[str, Any],
                       max_epochs: int | None) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch schedule: cosine annealing to min_lr_ratio*lr (SGDR without restarts,
    Loshchilov & Hutter 2017) or step decay by `gamma` every `step_size` epochs."""
    name = spec["name"]
    if name == "none":
        return None
    if name == "cosine":
        ratio = _number("lr_schedule.min_lr_ratio", spec["min_lr_ratio"], nonnegative=True)
        eta_min = ratio * optimizer.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs, eta_min=eta_min)
    step = spec["step_size"]
    step = max(1, max_epochs // 3) if step is None else _integer("lr_schedule.step_size", step, low=1)
    gamma = _number("lr_schedule.gamma", spec["gamma"], positive=True)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=gamma)


def _branch(field: str, value: Any, allowed: Mapping[str, Mapping[str, Any]],
            overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """Normalise "name" or {name: ..., params...} into a full mapping with defaults filled in."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping) or "name" not in value:
        raise ValueError(f"{field} must be a name or a mapping with 'name', got {value!r}")
    name = value["name"]
    if name not in allowed:
        raise ValueError(f"{field}: unknown name {name!r}; choose one of {', '.join(allowed)}")
    keys = allowed[name]
    extra = sorted(k for k in value if k != "name" and k not in keys and k not in overrides)
    if extra:
        raise ValueError(f"{field} {name!r}: unknown key(s) {', '.join(extra)}; "
                         f"allowed: {', '.join([*keys, *overrides]) or 'none'}")
    out = {"name": name, **keys, **{k: v for k, v in value.items() if k != "name"}}
    if "lr" in out:
        out["lr"] = _number(f"{field}.lr", out["lr"], positive=True)
    if "weight_decay" in out:
        out["weight_decay"] = _number(f"{field}.weight_decay", out["weight_decay"], nonnegative=True)
    return out


def _number(field: str, v: Any, positive: bool = False, nonnegative: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
        raise ValueError(f"{field} must be a number, got {v!r}")
    v = float(v)
    if positive and not v > 0:
        raise ValueError(f"{field} must be > 0, got {v}")
    if nonnegative and not v >= 0:
        raise ValueError(f"{field} must be >= 0, got {v}")
    return v


def _unit(field: str, v: Any) -> float:
    v = _number(field, v, nonnegative=True)
    if not v < 1:
        raise ValueError(f"{field} must be in [0, 1), got {v}")
    return v


def _integer(field: str, v: Any, low: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not float(v).is_integer():
        raise ValueError(f"{field} must be an integer, got {v!r}")
    v = int(v)
    if low is not None and v < low:
        raise ValueError(f"{field} must be >= {low}, got {v}")
    return v


def _flat(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in params]) if params else torch.zeros(1)


def _rss_mb() -> float:
    """Current resident set size of this process (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
