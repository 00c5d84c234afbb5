"""One trial across several workers: a `TorchTrainable` subclass trained data-parallel by Ray Train.

    from ray import tune
    from trainables.data_parallel import DRIVER_RESOURCES, data_parallel
    from trainables.digits import DigitsMLP

    trial = data_parallel(DigitsMLP, workers=2, gpu_per_worker=1)   # gloo on CPU, nccl on GPUs
    tuner = tune.Tuner(tune.with_resources(trial, DRIVER_RESOURCES), param_space={"lr": ...},
                       # Tune does not see the workers' resources: say how many trials fit (4 GPUs: 2)
                       tune_config=tune.TuneConfig(max_concurrent_trials=2, ...))

(`resources_per_trial: {workers: 2, gpu_per_worker: 1}` in a tunekit spec does all of this.)

How it runs (Ray 2.60, Ray Train V2, the default): the Tune trial is a small driver; on its first
step it starts a `ray.train.torch.TorchTrainer` whose workers each build the subclass from the
trial's config (same data, model, optimizer, seed), wrap the model in DistributedDataParallel
(`ray.train.torch.prepare_model`) and train on their shard of every epoch's shuffled order. Every
epoch each worker reports and rank 0 saves the subclass's own exact checkpoint; the driver hands
rank 0's metrics (plus `world_size`) to Tune as that trial's result. Ray Train places the workers
in a placement group of its own (`workers` x {CPU: cpu_per_worker, GPU: gpu_per_worker}) and picks
the process-group backend (nccl with GPUs, else gloo); the trial reserves only `DRIVER_RESOURCES`,
since resources Tune reserved for the trial could not be used by that second placement group.

What the config means: `batch_size` stays the global batch of one optimizer step (each of N
workers takes ceil(batch_size / N) samples, gradients are averaged), so a config tuned on N
workers means the same on one. Train metrics (train_loss, train_acc, samples_per_s) cover all
workers; validation runs on the whole validation set on every worker (identical weights, so
identical values) and rank 0's is reported.

Checkpoints and restore: Ray's own `ray.tune.integration.ray_train.TuneReportCallback` passes Tune
the metrics and only the checkpoint's path, so Tune can neither pause such a trial nor restore
it where it was (a restarted trial counts its iterations from 1 again). Here the relay is a
`ray.train.UserCallback` that hands the driver each result with its Ray Train checkpoint and
holds Ray Train's controller until Tune asked for the next result, so the checkpoint of the
result Tune acts on still exists: the driver's `save_checkpoint` copies it into Tune's
checkpoint, and a restored trial starts a fresh Ray Train run whose workers load it (Ray Train
V2 dropped `resume_from_checkpoint`; its guide passes the checkpoint in the loop config). A
worker that dies inside a run is Ray Train's business: its `FailureConfig` restarts the worker
group from the run's latest checkpoint (`ray.train.get_checkpoint()`).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import uuid
from typing import Any, ClassVar

import ray
import ray.train
import torch
from ray import tune

from trainables.base import TorchTrainable
from trainables.batches import LoaderBatches, TensorBatches

# What the Tune trial (the driver) reserves: a token, not CPUs. Tune cannot start a placement
# group without any resource, and a CPU held by the driver would be missing from the workers'
# placement group (2 trials x (2 workers + a driver CPU) do not fit 4 CPUs: the second waits).
DRIVER_RESOURCES = {"cpu": 0, "gpu": 0, "memory": 2**20}
RESULT_WAIT_S = 1.0  # how often the driver looks whether Ray Train's run ended while it waits
CLOSE_WAIT_S = 5.0  # for a stopped run to end; whatever is left ends with the trial's process


def data_parallel_problem(trainable: Any) -> str | None:
    """Why `trainable` cannot run data-parallel, or None (a `TorchTrainable` subclass can)."""
    if isinstance(trainable, type) and issubclass(trainable, TorchTrainable):
        return None
    what = (f"class {trainable.__qualname__}" if isinstance(trainable, type)
            else f"function {getattr(trainable, '__qualname__', trainable)!r}")
    return (f"{what} is not a trainables.base.TorchTrainable subclass: only those run on several workers "
            "(they build the same data and model on each)")


def data_parallel(trainable: type[TorchTrainable], workers: int, cpu_per_worker: float = 1.0,
                  gpu_per_worker: float = 0.0, max_worker_failures: int = 0) -> type[tune.Trainable]:
    """A Tune Trainable class that trains `trainable` on `workers` Ray Train workers (see the module doc).

    `max_worker_failures`: how often Ray Train restarts the worker group from the run's latest
    checkpoint after a worker died, before the trial fails (Tune's own retries come on top)."""
    problem = data_parallel_problem(trainable)
    if problem is not None:
        raise TypeError(problem)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    attrs = {
        "TRAINABLE": trainable, "WORKERS": workers, "CPU_PER_WORKER": float(cpu_per_worker),
        "GPU_PER_WORKER": float(gpu_per_worker), "MAX_WORKER_FAILURES": int(max_worker_failures),
        "METRICS": None if trainable.METRICS is None else (*trainable.METRICS, "world_size"),
        "__module__": __name__, "__qualname__": trainable.__name__,
    }
    # The user's name: Ray names trials and the record names the trainable after it.
    return type(trainable.__name__, (DataParallelTrial,), attrs)


# --------------------------------------------------------------------------- the Tune trial (driver)
class DataParallelTrial(tune.Trainable):
    """Drives one Ray Train run per (re)start of the trial; `data_parallel` fills in the class vars."""

    TRAINABLE: ClassVar[type[TorchTrainable]]
    WORKERS: ClassVar[int] = 2
    CPU_PER_WORKER: ClassVar[float] = 1.0
    GPU_PER_WORKER: ClassVar[float] = 0.0
    MAX_WORKER_FAILURES: ClassVar[int] = 0
    METRICS: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def data_fingerprint(cls) -> dict | None:
        return cls.TRAINABLE.data_fingerprint()

    def setup(self, config: dict) -> None:
        self.TRAINABLE.resolve_config(config)  # a bad config fails here, before any worker starts
        self._run: _TrainRun | None = None
        self._resume: dict[str, bytes] | None = None  # files of the checkpoint to start from
        self._checkpoint: Any = None  # the Ray Train checkpoint of the latest result

    def step(self) -> dict:
        if self._run is None:
            self._run = _TrainRun(self, self._resume)
        item = self._run.next_result()
        if item is None:
            raise RuntimeError("the Ray Train run ended without a final result")
        metrics, self._checkpoint = item
        return metrics

    def save_checkpoint(self, checkpoint_dir: str) -> str:
        if self._checkpoint is not None:
            self._checkpoint.to_directory(checkpoint_dir)
        elif self._resume is not None:  # restored and saved again before any new result
            _write_files(self._resume, checkpoint_dir)
        return checkpoint_dir

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        # Tune may delete this folder once we return, and the workers run elsewhere: keep the bytes.
        self._resume = _read_files(checkpoint_dir)
        self._checkpoint = None
        if self._run is not None:  # restored mid-run (e.g. PBT): the next step starts over from it
            self._run.close()
            self._run = None

    def cleanup(self) -> None:
        if self._run is not None:
            self._run.close()
            self._run = None

    def _train_storage(self) -> tuple[str, Any, str]:
        """(storage_path, storage_filesystem, name) of the next Ray Train run: inside the trial's
        folder, a fresh name per start, so Ray Train never resumes a run by name: Tune's checkpoint
        is the one to continue from."""
        storage = getattr(self, "_storage", None)
        if storage is None:  # outside Tune (e.g. trainables.local.run_local)
            return tempfile.mkdtemp(prefix="tunekit-train-"), None, "train"
        return storage.trial_fs_path, storage.storage_filesystem, f"train-{uuid.uuid4().hex[:8]}"


class _Relay:
    """A mailbox between Ray Train's controller and the driver (one small async actor per run):
    one result at a time, and the driver's answer once it is done with it."""

    def __init__(self) -> None:
        import asyncio

        self.results: asyncio.Queue = asyncio.Queue(maxsize=1)
        self.answers: asyncio.Queue = asyncio.Queue(maxsize=1)

    async def put(self, item: Any) -> None:
        await self.results.put(item)

    async def get(self, timeout: float) -> Any:
        import asyncio

        if timeout <= 0:
            return None if self.results.empty() else self.results.get_nowait()
        try:
            return await asyncio.wait_for(self.results.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def answer(self, go_on: bool) -> None:
        if self.answers.empty():
            self.answers.put_nowait(go_on)

    async def wait_answer(self) -> bool:
        return await self.answers.get()


class _RelayToTune(ray.train.UserCallback):
    """Runs in Ray Train's controller: hands each result of rank 0 with its checkpoint to the driver,
    then waits until the driver is done with it (Tune asked for the next result, or the trial ends)."""

    def __init__(self, relay: Any) -> None:
        self.relay = relay

    def after_report(self, run_context: Any, metrics: list, checkpoint: Any) -> None:
        result = dict(metrics[0])
        ray.get(self.relay.put.remote((result, checkpoint)))
        if result.get("done"):
            return  # the workers stop after this result; nothing would overwrite its checkpoint
        if not ray.get(self.relay.wait_answer.remote()):
            # Tune stopped the trial: abort the run as Ctrl-C would (Ray Train's controller stops
            # the workers, frees their placement group and exits).
            ray.get_runtime_context().current_actor.abort.remote()


class _TrainRun:
    """One `TorchTrainer.fit()` in a background thread of the driver, and its result relay."""

    def __init__(self, trial: DataParallelTrial, resume: dict[str, bytes] | None) -> None:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
        self.relay = ray.remote(num_cpus=0)(_Relay).remote()
        storage_path, filesystem, name = trial._train_storage()
        # Removed when the run is closed (Tune keeps its own copy of any checkpoint it wanted): the
        # scratch folder outside Tune, the run's folder on local storage (elsewhere Ray's retention applies).
        if filesystem is None:
            self.folder: str | None = storage_path
        else:
            self.folder = os.path.join(storage_path, name) if filesystem.type_name == "local" else None
        gpu = trial.GPU_PER_WORKER
        self.trainer = TorchTrainer(
            _train_loop,
            train_loop_config={"trainable": trial.TRAINABLE, "config": dict(trial.config), "resume": resume},
            scaling_config=ScalingConfig(num_workers=trial.WORKERS, use_gpu=gpu > 0,
                                         resources_per_worker={"CPU": trial.CPU_PER_WORKER, "GPU": gpu}),
            run_config=RunConfig(
                name=name, storage_path=storage_path, storage_filesystem=filesystem,
                callbacks=[_RelayToTune(self.relay)],
                # The latest is enough: the relay holds the controller while Tune may still save one.
                checkpoint_config=CheckpointConfig(num_to_keep=1),
                failure_config=FailureConfig(max_failures=trial.MAX_WORKER_FAILURES),
            ),
        )
        self.error: BaseException | None = None
        self.waiting_ack = False
        self.closed = False
        self.thread = threading.Thread(target=self._fit, name="tunekit-ray-train", daemon=True)
        self.thread.start()

    def _fit(self) -> None:
        try:
            self.trainer.fit()
        except BaseException as e:  # noqa: BLE001 - re-raised in the trial's step
            self.error = e

    def next_result(self) -> tuple[dict, Any] | None:
        """The next (metrics, checkpoint) of rank 0; None once the run has ended without one more."""
        if self.waiting_ack:
            self.relay.answer.remote(True)  # Tune is done with the previous result: let the run go on
            self.waiting_ack = False
        while True:
            ended = not self.thread.is_alive()  # before looking: a result may arrive just before the end
            item = ray.get(self.relay.get.remote(0.0 if ended else RESULT_WAIT_S))
            if item is None and not ended:
                continue
            if item is None:
                if self.error is not None:
                    raise _cause(self.error) from self.error
                return None
            self.waiting_ack = not item[0].get("done")
            return item

    def close(self) -> None:
        """End the run (if still going): the relay has Ray Train's controller abort it."""
        if self.closed:
            return
        self.closed = True
        if self.thread.is_alive():
            self.relay.answer.remote(False)
            self.thread.join(timeout=CLOSE_WAIT_S)
        if self.folder and os.path.isdir(self.folder):
            shutil.rmtree(self.folder, ignore_errors=True)


def _cause(error: BaseException) -> BaseException:
    """The workers' own error where Ray Train wraps it (a WorkerGroupError names each rank's)."""
    failures = getattr(error, "worker_failures", None)
    if isinstance(failures, dict) and failures:
        rank, first = sorted(failures.items())[0]
        return RuntimeError(f"Ray Train worker {rank} failed: {type(first).__name__}: {first}")
    return error


def _read_files(folder: str) -> dict[str, bytes]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def _write_files(files: dict[str, bytes], folder: str) -> None:
    for rel, data in files.items():
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


# --------------------------------------------------------------------------- on each Ray Train worker
def _train_loop(loop_config: dict) -> None:
    """Ray Train's `train_loop_per_worker`: build the trainable, resume, train epoch by epoch."""
    import ray.train
    import torch.distributed as dist

    from trainables.local import close

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    worker_cls = _worker_class(loop_config["trainable"])
    trainable = worker_cls(config=dict(loop_config["config"]))
    try:
        checkpoint = ray.train.get_checkpoint()  # this run's latest: Ray Train restarted the workers
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                trainable.load_checkpoint(folder)
        elif loop_config["resume"] is not None:  # the trial was restored from Tune's checkpoint
            with tempfile.TemporaryDirectory(prefix="tunekit-resume-") as folder:
                _write_files(loop_config["resume"], folder)
                trainable.load_checkpoint(folder)
        trainable.distribute()
        while True:
            result = trainable.step()
            # Every rank must report the same number of times: all follow rank 0's decision to stop.
            done = torch.tensor([1.0 if result.get("done") else 0.0], device=trainable.device)
            dist.broadcast(done, src=0)
            result["done"] = bool(done.item())
            result["world_size"] = world
            if rank == 0:
                with tempfile.TemporaryDirectory(prefix="tunekit-ckpt-") as folder:
                    trainable.save_checkpoint(folder)
                    ray.train.report(result, checkpoint=ray.train.Checkpoint.from_directory(folder))
            else:
                ray.train.report(result)
            if result["done"]:
                return
    finally:
        close(trainable)


_WORKER_CLASSES: dict[type, type] = {}


def _worker_class(cls: type[TorchTrainable]) -> type[TorchTrainable]:
    """`cls` with its batches sharded over the workers, its device Ray Train's, and DDP."""
    if cls not in _WORKER_CLASSES:
        _WORKER_CLASSES[cls] = type(cls.__name__, (_DataParallelWorker, cls), {"__module__": __name__})
    return _WORKER_CLASSES[cls]


class _DataParallelWorker(TorchTrainable):
    """Mixed in front of the user's subclass on each Ray Train worker."""

    def build_batches(self, cfg: Any, data: Any) -> tuple[Any, Any]:
        import ray.train
        import ray.train.torch

        # Called in setup() before the model is built: the rank's own GPU where Ray Train shares
        # CUDA_VISIBLE_DEVICES among a node's workers (resolve_device would pick device 0 on each).
        if self.device.type == "cuda":
            self.device = ray.train.torch.get_device()
        context = ray.train.get_context()
        rank, world = context.get_world_rank(), context.get_world_size()
        sharded_cfg = {**cfg, "batch_size": -(-cfg["batch_size"] // world)}
        train, val = super().build_batches(sharded_cfg, data)
        if isinstance(train, TensorBatches):
            train = ShardedBatches(train, rank, world)
        elif isinstance(train, LoaderBatches):
            train = _DistributedLoaderBatches(train, self)
        else:
            raise TypeError(f"{type(self).__name__}: cannot shard training batches of type "
                            f"{type(train).__name__} over workers (TensorBatches or a DataLoader can be)")
        return train, val

    def distribute(self) -> None:
        """Wrap the model in DistributedDataParallel for the forward pass (checkpoints keep the
        plain model's state): after a checkpoint was loaded, DDP's start broadcasts rank 0's weights."""
        import ray.train.torch

        ddp = ray.train.torch.prepare_model(self.model, move_to_device=False)
        if self.trainer.forward_model is not self.model:  # torch.compile'd on CUDA: compile the DDP module
            ddp = torch.compile(ddp, mode=None if self.cfg["compile"] is True else self.cfg["compile"])
        self.trainer.forward_model = ddp

    def _train_epoch(self) -> dict:
        # Sum over the workers before the divergence check, so every rank decides alike.
        import torch.distributed as dist

        out = super()._train_epoch()
        keys = [k for k in ("train_loss", "train_acc") if k in out]
        n = float(out["samples"])
        totals = torch.tensor([n, *(out[k] * n for k in keys)], dtype=torch.float64, device=self.device)
        dist.all_reduce(totals)
        out["samples"] = int(totals[0].item())
        for i, k in enumerate(keys, start=1):
            out[k] = totals[i].item() / totals[0].item() if totals[0].item() > 0 else math.nan
        return out


class ShardedBatches:
    """This rank's share of each epoch of a `TensorBatches`: every rank draws the same permutation
    (same seeded generator), pads it to a multiple of the world size by wrapping around, and takes
    every world-th index from its rank, so all ranks run the same number of steps."""

    def __init__(self, batches: TensorBatches, rank: int, world: int) -> None:
        self.inner, self.rank, self.world = batches, rank, world
        self.n_samples = -(-batches.n_samples // world)

    def __len__(self) -> int:
        return -(-self.n_samples // self.inner.batch_size)

    def __iter__(self) -> Any:
        b = self.inner
        n = b.n_samples
        order = torch.randperm(n, generator=b.generator) if b.shuffle else torch.arange(n)
        padded = self.n_samples * self.world
        if padded > n:
            order = torch.cat([order, order[: padded - n]])
        mine = order[self.rank::self.world].to(b.x.device)
        for i in range(0, len(mine), b.batch_size):
            idx = mine[i:i + b.batch_size]
            yield b.x[idx], b.y[idx]


class _DistributedLoaderBatches:
    """A DataLoader given a DistributedSampler by `ray.train.torch.prepare_data_loader`, told the
    epoch before each pass so the shuffle differs per epoch (and matches across ranks)."""

    def __init__(self, batches: LoaderBatches, trainable: TorchTrainable) -> None:
        import ray.train.torch

        loader = ray.train.torch.prepare_data_loader(batches.loader, move_to_device=False)
        self.inner, self.trainable = LoaderBatches(loader, batches.device), trainable

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Any:
        sampler = getattr(self.inner.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.trainable.epoch)
        return iter(self.inner)
