"""`TorchTrainable`: a reusable Ray Tune class Trainable for supervised PyTorch models.

A subclass names its dataset and builds its model; this base does the rest:

    class MyMLP(TorchTrainable):
        DATASET = "wine"
        DEFAULTS = {**TorchTrainable.DEFAULTS, "width": 32}

        def build_model(self, cfg, data):
            return MLP(data.n_features, data.n_classes, width=cfg["width"])

(No subclass at all: `trainables.generic:Generic` takes the model and data builders from the
config.) One `step()` is one epoch. Config keys understood by the base (defaults in `DEFAULTS`):

    seed             int; seeds python, numpy and torch, and (offset) the shuffling generator
    lr               learning rate
    batch_size       training mini-batch size (per optimizer step: batch_size x accumulate)
    accumulate       micro-batches whose gradients are summed into one optimizer step (1: none)
    weight_decay     L2 (sgd, adagrad, rmsprop, adam) or decoupled (adamw) weight decay
    optimizer        a name or a branch of `trainables.optim.OPTIMIZERS`, e.g.
                     {name: sgd, momentum: 0.9, nesterov: true}; a branch may carry its own lr / weight_decay
    lr_schedule      a name or a branch of `trainables.schedules.SCHEDULES`, e.g.
                     {name: cosine, warmup: 2}, {name: one_cycle} (stepped per epoch or per optimizer step)
    max_epochs       horizon of the LR schedule; the result carries done=True at that epoch
    grad_clip        clip the global gradient norm to this value (None: no clipping)
    label_smoothing  classification only: cross-entropy label smoothing in training (validation
                     loss is plain cross-entropy, so it stays comparable across values)
    early_stopping   None, or {metric: val_loss, mode: min, patience: 5, min_delta: 0.0}: end the
                     trial when the metric has not improved by more than min_delta for `patience` epochs
    amp              mixed precision on CUDA (ignored on CPU); `amp_dtype` auto (bfloat16 where the
                     GPU supports it, else float16 with loss scaling) | float16 | bfloat16
    compile          CUDA only: false | true | a torch.compile mode ("reduce-overhead", "max-autotune")
    channels_last    CUDA only: channels-last memory format for 4-d inputs (convolutional models)
    device           "auto" (the GPU Ray assigned, else CPU) | "cpu" | "cuda"
    deterministic    "auto" (on for CPU, off for CUDA) | true | false: torch deterministic algorithms
    num_threads      torch intra-op threads (None: leave as the process has it)
    eval_batch_size  batch size for the validation pass

Unknown keys are rejected with a message naming them, so a typo in a search space fails the
trial loudly instead of silently tuning nothing.

Reported every epoch (`METRICS`; regression tasks report val_rmse and val_r2 instead of the
accuracies): train_loss, train_acc, val_loss, val_acc, lr (used at the start of the epoch),
epoch, epoch_time_s (train + validation), samples_per_s, grad_norm (mean pre-clip global L2
norm over the epoch's optimizer steps), update_ratio (||w_end - w_start|| / ||w_start|| over the
epoch), step_update_ratio (the same for the epoch's first optimizer step, parameter group 0;
`step_update_ratio_g1`, ... for further groups), memory_mb (peak CUDA allocation this epoch on
GPU, process RSS on CPU), device. Also, when they apply: `warning` (the step update ratio has sat
outside UPDATE_RATIO_BAND, [1e-5, 1e-1], for UPDATE_RATIO_EPOCHS epochs; about 1e-3 is healthy) and, on the last
result, `stop_reason` (max_epochs, early_stopping: ..., diverged: ...).

Divergence: a non-finite training loss (or non-finite weights) ends the trial at that epoch with
done=True, `stop_reason: diverged: ...` and every loss and quality metric NaN, so the runner's
metric guard fails the trial whatever metric is tuned, and searchers never learn from it.

Checkpoints hold model, optimizer, LR scheduler, GradScaler, epoch, early-stopping and warning
state, and the python / numpy / torch (CPU and CUDA) RNG states plus the shuffling generator, all
as tensors and plain values so they load with `torch.load(weights_only=True)`. On CPU a restored
trial continues with metrics identical to one that never stopped (same thread count assumed: CPU
kernels may sum in a different order with a different number of threads). A checkpoint from an
older format is refused by name rather than guessed at. What loading a checkpoint still trusts:
nothing executable is unpickled from our files, but Ray Tune's own experiment and trial state
under the storage's `.ray` folder is Ray's pickle format (not ours to change), so a storage root
shared with people you do not trust should not be resumed from.
"""

from __future__ import annotations

import math
import os
import resource
import time
from typing import Any, Callable, ClassVar, Mapping

import ray
import torch
import torch.nn.functional as F
from ray import tune
from torch import nn

from trainables import data as data_mod
from trainables.batches import TensorBatches
from trainables.config import integer, number
from trainables.optim import build_optimizer, resolve_optimizer
from trainables.rng import rng_state, seed_everything, set_rng_state
from trainables.schedules import build_lr_scheduler, needs_horizon, resolve_schedule
from trainables.step import TrainStep

CHECKPOINT_FILE = "trainable.pt"
CHECKPOINT_FORMAT = 2
# The shuffling generator gets its own stream so its draws do not depend on how many
# dropout masks were sampled from the global torch RNG (and vice versa).
_LOADER_SEED_OFFSET = 7_919
# A healthy update/weight ratio per step is about 1e-3. Two decades either side are tolerated:
# small models train well with Adam at ratios of 1e-2..3e-2 (digits MLP, lr 1e-2 is its best).
UPDATE_RATIO_BAND = (1e-5, 1e-1)
UPDATE_RATIO_EPOCHS = 3

CLASSIFICATION_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")
REGRESSION_METRICS = ("train_loss", "val_loss", "val_rmse", "val_r2")
COMMON_METRICS = ("lr", "epoch", "epoch_time_s", "samples_per_s", "grad_norm", "update_ratio",
                  "step_update_ratio", "memory_mb", "device")
_EARLY_STOPPING_DEFAULTS = {"metric": "val_loss", "mode": None, "patience": 5, "min_delta": 0.0}
_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class TorchTrainable(tune.Trainable):
    """Base class; subclasses set `DATASET`, extend `DEFAULTS` and implement `build_model`."""

    DATASET: ClassVar[str | None] = None
    METRICS: ClassVar[tuple[str, ...] | None] = CLASSIFICATION_METRICS + COMMON_METRICS
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "seed": 0,
        "lr": 1e-3,
        "batch_size": 64,
        "accumulate": 1,
        "weight_decay": 0.0,
        "optimizer": {"name": "adam"},
        "lr_schedule": "constant",
        "max_epochs": None,
        "grad_clip": None,
        "label_smoothing": 0.0,
        "early_stopping": None,
        "amp": False,
        "amp_dtype": "auto",
        "compile": False,
        "channels_last": False,
        "device": "auto",
        "deterministic": "auto",
        "num_threads": None,
        "eval_batch_size": 2048,
    }

    # ---- subclass hooks -------------------------------------------------------------------

    def build_model(self, cfg: Mapping[str, Any], data: Any) -> nn.Module:
        raise NotImplementedError

    def build_data(self, cfg: Mapping[str, Any]) -> data_mod.Dataset:
        if self.DATASET is None:
            raise NotImplementedError(f"{type(self).__name__} sets no DATASET and does not override build_data")
        return data_mod.load(self.DATASET)

    def build_batches(self, cfg: Mapping[str, Any], data: Any) -> tuple[Any, Any]:
        """(train batches, validation batches) for what `build_data` returned."""
        x_tr, y_tr, x_va, y_va = data_mod.as_tensors(data, self.device)
        return (TensorBatches(x_tr, y_tr, cfg["batch_size"], shuffle=True, generator=self.loader_gen),
                TensorBatches(x_va, y_va, cfg["eval_batch_size"], shuffle=False))

    def task(self, data: Any) -> str:
        """"classification" or "regression": picks the default loss and the reported metrics."""
        return getattr(data, "task", "classification")

    def build_loss(self, cfg: Mapping[str, Any], task: str, training: bool) -> Callable:
        """loss(outputs, targets) -> mean loss; `training` False gives the validation loss."""
        if task == "regression":
            return _mse
        smoothing = cfg["label_smoothing"] if training else 0.0
        return lambda out, y: F.cross_entropy(out, y, label_smoothing=smoothing)

    def extra_metrics(self) -> dict[str, Callable]:
        """name -> fn(outputs, targets) -> float, reported as val_<name> (the generic trainable's hook)."""
        return {}

    @classmethod
    def data_fingerprint(cls) -> dict | None:
        """{"fingerprint", "description", "name"} of the data every trial of this class sees."""
        return None if cls.DATASET is None else data_mod.load(cls.DATASET).info()

    # ---- config ----------------------------------------------------------------------------

    @classmethod
    def check_keys(cls, config: Mapping[str, Any]) -> None:
        unknown = sorted(k for k in config if k not in cls.DEFAULTS)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config key(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(sorted(cls.DEFAULTS))}")

    @classmethod
    def resolve_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in and every value checked; raises ValueError naming the bad key."""
        cls.check_keys(config)
        cfg = {**cls.DEFAULTS, **config}
        cfg["seed"] = integer("seed", cfg["seed"])
        cfg["batch_size"] = integer("batch_size", cfg["batch_size"], low=1)
        cfg["accumulate"] = integer("accumulate", cfg["accumulate"], low=1)
        cfg["eval_batch_size"] = integer("eval_batch_size", cfg["eval_batch_size"], low=1)
        cfg["lr"] = number("lr", cfg["lr"], positive=True)
        cfg["weight_decay"] = number("weight_decay", cfg["weight_decay"], nonnegative=True)
        if cfg["max_epochs"] is not None:
            cfg["max_epochs"] = integer("max_epochs", cfg["max_epochs"], low=1)
        if cfg["grad_clip"] is not None:
            cfg["grad_clip"] = number("grad_clip", cfg["grad_clip"], positive=True)
        ls = number("label_smoothing", cfg["label_smoothing"], nonnegative=True)
        if not ls < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {ls}")
        cfg["label_smoothing"] = ls
        if cfg["num_threads"] is not None:
            cfg["num_threads"] = integer("num_threads", cfg["num_threads"], low=1)
        cfg["optimizer"] = resolve_optimizer(cfg["optimizer"])
        cfg["lr_schedule"] = resolve_schedule(cfg["lr_schedule"])
        if needs_horizon(cfg["lr_schedule"]) and cfg["max_epochs"] is None:
            raise ValueError(f"lr_schedule {cfg['lr_schedule']['name']!r} needs max_epochs (its horizon)")
        cfg["early_stopping"] = _early_stopping(cfg["early_stopping"])
        if cfg["device"] not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {cfg['device']!r}")
        if cfg["amp_dtype"] not in ("auto", "float16", "bfloat16"):
            raise ValueError(f"amp_dtype must be auto, float16 or bfloat16, got {cfg['amp_dtype']!r}")
        if cfg["deterministic"] not in ("auto", True, False):
            raise ValueError(f"deterministic must be auto, true or false, got {cfg['deterministic']!r}")
        if cfg["compile"] not in (True, False, *_COMPILE_MODES):
            raise ValueError(f"compile must be true, false or one of {', '.join(_COMPILE_MODES)}, "
                             f"got {cfg['compile']!r}")
        cfg["amp"] = bool(cfg["amp"])
        cfg["channels_last"] = bool(cfg["channels_last"])
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
        seed_everything(seed)
        self.loader_gen = torch.Generator(device="cpu")
        self.loader_gen.manual_seed(seed + _LOADER_SEED_OFFSET)

        self.data = self.build_data(cfg)
        self.task_kind = self.task(self.data)
        self.train_batches, self.val_batches = self.build_batches(cfg, self.data)
        model = self.build_model(cfg, self.data)
        if not isinstance(model, nn.Module):
            raise TypeError(f"the model builder returned {type(model).__name__}, not a torch.nn.Module")
        self.model = model.to(self.device)
        channels_last = cfg["channels_last"] and on_cuda
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        forward_model = None
        if cfg["compile"] and on_cuda:
            forward_model = torch.compile(self.model, mode=None if cfg["compile"] is True else cfg["compile"])

        opt = cfg["optimizer"]
        self.optimizer = build_optimizer(self.model.parameters(), opt, lr=cfg["lr"],
                                         weight_decay=cfg["weight_decay"])
        try:
            n_batches = len(self.train_batches)
        except TypeError:
            n_batches = None  # an iterable dataset of unknown length
        self.n_batches = n_batches
        sched = cfg["lr_schedule"]
        if sched["interval"] == "step" and n_batches is None:
            raise ValueError("lr_schedule.interval step needs training data whose length is known")
        steps_per_epoch = -(-n_batches // cfg["accumulate"]) if n_batches else 1
        self.lr_scheduler = build_lr_scheduler(self.optimizer, sched, cfg["max_epochs"], steps_per_epoch)
        self.step_schedule_per_batch = self.lr_scheduler is not None and sched["interval"] == "step"
        amp = cfg["amp"] and on_cuda
        amp_dtype = cfg["amp_dtype"]
        if amp_dtype == "auto":
            amp_dtype = "bfloat16" if on_cuda and torch.cuda.is_bf16_supported() else "float16"
        self.trainer = TrainStep(self.model, self.optimizer, self.build_loss(cfg, self.task_kind, training=True),
                                 self.device, grad_clip=cfg["grad_clip"], amp=amp,
                                 amp_dtype=getattr(torch, amp_dtype), forward_model=forward_model,
                                 channels_last=channels_last)
        self.val_loss_fn = self.build_loss(cfg, self.task_kind, training=False)
        self.epoch = 0
        self.diverged = False
        self.es_best: float | None = None
        self.es_bad = 0
        self.ratio_off = 0

    @property
    def scaler(self) -> torch.amp.GradScaler:
        return self.trainer.scaler

    def step(self) -> dict:
        t0 = time.perf_counter()
        on_cuda = self.device.type == "cuda"
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        lr = float(self.optimizer.param_groups[0]["lr"])
        train_time = 0.0
        if self.diverged:
            train = {}
        else:
            train = self._train_epoch()
            train_time = time.perf_counter() - t0
            weights_finite = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
            # Under fp16 AMP a non-finite loss may be an overflow the scaler skips; weights tell.
            loss_finite = math.isfinite(train["train_loss"]) or self.scaler.is_enabled()
            if not (weights_finite and loss_finite):
                self.diverged = True
                why = "non-finite training loss" if not loss_finite else "non-finite weights"
                self.diverged_reason = f"diverged: {why} in epoch {self.epoch + 1} (lr {lr:.3g})"
        if self.lr_scheduler is not None and not self.step_schedule_per_batch:
            self.lr_scheduler.step()
        val = {} if self.diverged else self._evaluate()
        self.epoch += 1
        if on_cuda:
            torch.cuda.synchronize(self.device)
            memory_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            memory_mb = _rss_mb()
        quality = CLASSIFICATION_METRICS if self.task_kind == "classification" else REGRESSION_METRICS
        quality = [*quality, *(f"val_{name}" for name in self.extra_metrics())]
        result = {
            **{m: math.nan for m in quality}, "grad_norm": math.nan, "update_ratio": math.nan,
            "step_update_ratio": math.nan,
            **train, **val,
            "lr": lr,
            "epoch": self.epoch,
            "epoch_time_s": time.perf_counter() - t0,
            "samples_per_s": train.get("samples", 0) / train_time if train_time > 0 else math.nan,
            "memory_mb": memory_mb,
            "device": str(self.device),
        }
        result.pop("samples", None)
        if self.diverged:
            # Every loss and quality metric NaN: the trial fails whichever metric is tuned.
            for k in list(result):
                if k.startswith(("train_", "val_")):
                    result[k] = math.nan
            result.update(done=True, stop_reason=getattr(self, "diverged_reason", "diverged"))
            return result
        warning = self._update_ratio_warning(result)
        if warning:
            result["warning"] = warning
        stop = self._early_stopping_reason(result)
        if stop:
            result.update(done=True, stop_reason=stop)
        elif self.cfg["max_epochs"] is not None and self.epoch >= self.cfg["max_epochs"]:
            result.update(done=True, stop_reason="max_epochs")
        return result

    def _train_epoch(self) -> dict:
        trainer, model = self.trainer, self.model
        k, n_batches = self.cfg["accumulate"], self.n_batches
        params = trainer.params
        classify = self.task_kind == "classification"
        w0 = _flat(params)
        model.train()
        # Accumulate on the device and read back once per epoch: a per-batch .item() would
        # synchronise the GPU every step.
        zero = torch.zeros((), device=self.device)
        loss_sum, gn_sum, gn_count = zero.clone(), zero.clone(), zero.clone()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        samples, ratios, b = 0, None, -1
        for b, (xb, yb) in enumerate(self.train_batches):
            start = b - b % k
            group = k if n_batches is None else min(k, n_batches - start)
            outputs, loss = trainer.forward(xb, yb)
            trainer.backward(loss / group if group > 1 else loss)
            loss_sum += loss.detach() * len(yb)
            samples += len(yb)
            if classify:
                correct += (outputs.detach().argmax(1) == yb).sum()
            if b - start == group - 1:  # the group's last micro-batch: one optimizer step
                probe, gn = self._apply(ratios is None)
                ratios = ratios or probe
                gn_sum, gn_count = self._add_norm(gn, gn_sum, gn_count)
        if n_batches is None and b >= 0 and b % k != k - 1:  # a partial last group of unknown size
            probe, gn = self._apply(ratios is None)
            ratios = ratios or probe
            gn_sum, gn_count = self._add_norm(gn, gn_sum, gn_count)
        w_norm = torch.linalg.vector_norm(w0)
        update = torch.linalg.vector_norm(_flat(params) - w0)
        count = gn_count.item()
        out = {
            "train_loss": loss_sum.item() / max(samples, 1),
            "grad_norm": gn_sum.item() / count if count else math.nan,
            "update_ratio": (update / w_norm).item() if w_norm.item() > 0 else math.nan,
            "samples": samples,
        }
        if classify:
            out["train_acc"] = correct.item() / max(samples, 1)
        for g, r in enumerate(ratios or []):
            out["step_update_ratio" if g == 0 else f"step_update_ratio_g{g}"] = r.item()
        return out

    def _apply(self, probe: bool) -> tuple[list[torch.Tensor] | None, torch.Tensor]:
        """One optimizer step (then the per-step schedule); with `probe`, also each parameter
        group's update/weight ratio for this step."""
        before = None
        if probe:
            before = [[p.detach().clone() for p in g["params"]] for g in self.optimizer.param_groups]
        gn = self.trainer.apply()
        if self.step_schedule_per_batch:
            self.lr_scheduler.step()
        ratios = None
        if probe:
            ratios = []
            for g, old in zip(self.optimizer.param_groups, before):
                w = torch.linalg.vector_norm(_flat(old))
                d = torch.linalg.vector_norm(_flat(g["params"]) - _flat(old))
                ratios.append(torch.where(w > 0, d / w, torch.full_like(w, math.nan)))
        return ratios, gn

    @staticmethod
    def _add_norm(gn: torch.Tensor, total: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Steps GradScaler skips (inf/NaN gradients) are left out of the mean norm.
        finite = torch.isfinite(gn)
        return total + torch.where(finite, gn, torch.zeros_like(gn)), count + finite.float()

    @torch.no_grad()
    def _evaluate(self) -> dict:
        self.model.eval()
        classify = self.task_kind == "classification"
        extra = self.extra_metrics()
        zero = torch.zeros((), device=self.device)
        loss_sum, sq_sum, y_sum, y2_sum = zero.clone(), zero.clone(), zero.clone(), zero.clone()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        n, outs, targets = 0, [], []
        for xb, yb in self.val_batches:
            outputs, loss = self.trainer.forward(xb, yb)
            if self.val_loss_fn is not self.trainer.loss_fn:
                loss = self.val_loss_fn(outputs, yb)
            loss_sum += loss * len(yb)
            n += len(yb)
            if classify:
                correct += (outputs.argmax(1) == yb).sum()
            else:
                yf = yb.float()
                sq_sum += ((outputs.reshape(yf.shape) - yf) ** 2).sum()
                y_sum += yf.sum()
                y2_sum += (yf ** 2).sum()
            if extra:
                outs.append(outputs.cpu())
                targets.append(yb.cpu())
        n = max(n, 1)
        result = {"val_loss": loss_sum.item() / n}
        if classify:
            result["val_acc"] = correct.item() / n
        else:
            mse = sq_sum.item() / n
            var = y2_sum.item() / n - (y_sum.item() / n) ** 2
            result["val_rmse"] = math.sqrt(mse) if math.isfinite(mse) else math.nan
            result["val_r2"] = 1 - mse / var if var > 0 else math.nan
        if extra:
            all_out, all_y = torch.cat(outs), torch.cat(targets)
            for name, fn in extra.items():
                result[f"val_{name}"] = float(fn(all_out, all_y))
        return result

    def save_checkpoint(self, checkpoint_dir: str) -> str:
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "diverged": self.diverged,
            "early_stopping": {"best": self.es_best, "bad": self.es_bad},
            "ratio_off": self.ratio_off,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": None if self.lr_scheduler is None else self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            # Tensors and plain values only, so the file loads with weights_only=True.
            "rng": {**rng_state(cuda=self.device.type == "cuda"), "loader": self.loader_gen.get_state()},
        }
        torch.save(state, os.path.join(checkpoint_dir, CHECKPOINT_FILE))
        return checkpoint_dir

    def load_checkpoint(self, checkpoint: str | dict) -> None:
        if isinstance(checkpoint, dict):
            state = checkpoint
        else:
            # CPU first: RNG states must be CPU tensors, and load_state_dict moves weights to our device.
            state = torch.load(os.path.join(checkpoint, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unsupported checkpoint format {state.get('format')!r} (this version reads "
                             f"{CHECKPOINT_FORMAT})")
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
        self.es_best, self.es_bad = state["early_stopping"]["best"], state["early_stopping"]["bad"]
        self.ratio_off = state["ratio_off"]
        rng = state["rng"]
        set_rng_state({**rng, "cuda": rng["cuda"] if self.device.type == "cuda" else None})
        self.loader_gen.set_state(rng["loader"])

    def reset_config(self, new_config: dict) -> bool:
        # Lets Tune reuse this actor for a new trial (reuse_actors=True): setup() rebuilds
        # everything from the new config and re-seeds, so the trial matches a fresh actor.
        self.setup(new_config)
        return True

    def cleanup(self) -> None:
        for name in ("model", "optimizer", "trainer", "train_batches", "val_batches", "data"):
            self.__dict__.pop(name, None)
        if getattr(self, "device", None) is not None and self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ---- signals ---------------------------------------------------------------------------

    def _update_ratio_warning(self, result: Mapping[str, Any]) -> str | None:
        low, high = UPDATE_RATIO_BAND
        off = [(k, r) for k, r in result.items() if k.startswith("step_update_ratio")
               and math.isfinite(r) and not low <= r <= high]
        self.ratio_off = self.ratio_off + 1 if off else 0
        if self.ratio_off < UPDATE_RATIO_EPOCHS:
            return None
        key, r = off[0]
        group = "group 0" if key == "step_update_ratio" else "group " + key.rsplit("_g", 1)[1]
        return (f"update/weight ratio {r:.1e} ({group}) outside [{low:g}, {high:g}] for {self.ratio_off} "
                f"epochs (about 1e-3 is healthy): lr likely too {'high' if r > high else 'low'}")

    def _early_stopping_reason(self, result: Mapping[str, Any]) -> str | None:
        es = self.cfg["early_stopping"]
        if es is None:
            return None
        metric = es["metric"]
        if metric not in result:
            raise ValueError(f"early_stopping.metric {metric!r} is not reported; reported: "
                             f"{', '.join(k for k in result if isinstance(result[k], float))}")
        value = float(result[metric])
        sign = 1.0 if es["mode"] == "min" else -1.0
        if self.es_best is None or sign * value < sign * self.es_best - es["min_delta"]:
            self.es_best, self.es_bad = value, 0
            return None
        self.es_bad += 1
        if self.es_bad < es["patience"]:
            return None
        return (f"early_stopping: {metric} has not improved on {self.es_best:.6g} by more than "
                f"{es['min_delta']:g} for {self.es_bad} epochs")


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


def _early_stopping(value: Any) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"early_stopping must be a mapping such as {{metric: val_loss, patience: 5}}, got {value!r}")
    extra = sorted(set(value) - set(_EARLY_STOPPING_DEFAULTS))
    if extra:
        raise ValueError(f"early_stopping: unknown key(s) {', '.join(extra)}; "
                         f"allowed: {', '.join(_EARLY_STOPPING_DEFAULTS)}")
    es = {**_EARLY_STOPPING_DEFAULTS, **value}
    if not isinstance(es["metric"], str):
        raise ValueError(f"early_stopping.metric must be a metric name, got {es['metric']!r}")
    if es["mode"] is None:
        es["mode"] = "max" if es["metric"].endswith(("acc", "r2")) else "min"
    if es["mode"] not in ("min", "max"):
        raise ValueError(f"early_stopping.mode must be min or max, got {es['mode']!r}")
    es["patience"] = integer("early_stopping.patience", es["patience"], low=1)
    es["min_delta"] = number("early_stopping.min_delta", es["min_delta"], nonnegative=True)
    return es


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    targets = targets.float()
    return F.mse_loss(outputs.reshape(targets.shape), targets)


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
