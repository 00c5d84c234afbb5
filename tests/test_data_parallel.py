"""One trial across several workers: `resources_per_trial.workers` -> a Ray Train run per trial."""

from pathlib import Path

import pytest
import torch

from toolkit.runner import build_components, plan, run_experiment
from toolkit.spec import SpecError, validate_spec
from trainables.batches import TensorBatches
from trainables.data_parallel import ShardedBatches

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"width": 32, "batch_size": 128, "seed": 0}  # the sweep's fixed values (lr is searched)


def _raw(tmp_path, **changes):
    raw = {
        "name": "dp", "trainable": "trainables.digits:DigitsMLP", "metric": "val_loss", "mode": "min",
        "param_space": {"lr": {"type": "loguniform", "low": 3e-3, "high": 3e-2}, "width": 32, "batch_size": 128},
        "searcher": "random", "num_samples": 2, "stop": {"max_iterations": 2}, "seed": 0,
        "resources_per_trial": {"workers": 2}, "local_ray": {"num_cpus": 4}, "storage": str(tmp_path),
    }
    raw.update(changes)
    return raw


# --------------------------------------------------------------------------- spec and plan (no Ray)
@pytest.mark.parametrize("resources, problem", [
    ({"workers": 2, "gpu": 1}, "resources_per_trial: workers together with gpu is ambiguous"),
    ({"workers": 2, "cpu": 2}, "resources_per_trial: workers together with cpu is ambiguous"),
    ({"gpu_per_worker": 1}, "resources_per_trial: gpu_per_worker needs workers >= 2"),
    ({"workers": 2, "gpu_per_worker": 0.5},
     "resources_per_trial: gpu_per_worker 0.5 with 2 workers: the workers of one trial could share a GPU"),
    ({"workers": 2, "gpu_per_worker": 1.5},
     "resources_per_trial.gpu_per_worker: gpu_per_worker above 1 must be a whole"),
    ({"workers": 0}, "resources_per_trial.workers: Input should be greater than or equal to 1"),
    ({"workers": 1.5}, "resources_per_trial.workers: "),
])
def test_bad_worker_resources_are_refused_in_one_line(tmp_path, resources, problem):
    with pytest.raises(SpecError) as e:
        validate_spec(_raw(tmp_path, resources_per_trial=resources), check_trainable=False)
    assert len(e.value.lines()) == 1 and e.value.lines()[0].startswith(problem)


def test_existing_resource_specs_mean_what_they_meant(tmp_path):
    for given, summary in [({"cpu": 1, "gpu": 0.5}, {"cpu": 1.0, "gpu": 0.5}), ({}, {"cpu": 1.0, "gpu": 0.0}),
                           ({"workers": 1, "gpu": 1}, {"cpu": 1.0, "gpu": 1.0})]:
        res = validate_spec(_raw(tmp_path, resources_per_trial=given), check_trainable=False).resources_per_trial
        assert not res.data_parallel and res.summary() == summary


def test_plan_counts_every_worker_of_a_trial(tmp_path):
    spec = validate_spec(_raw(tmp_path, num_samples=8, resources_per_trial={"workers": 2, "gpu_per_worker": 1}),
                         check_trainable=False)
    the_plan = plan(spec, {"CPU": 16, "GPU": 4})
    assert the_plan.concurrency == 2  # 2 workers x 1 GPU on 4 GPUs
    assert the_plan.resources == {"workers": 2, "cpu_per_worker": 1.0, "gpu_per_worker": 1.0, "cpu": 2.0, "gpu": 2.0}
    text = the_plan.render()
    assert "resources per trial: 2 Ray Train workers x {cpu: 1, gpu: 1} = {cpu: 2, gpu: 2}" in text
    assert "expected concurrency: 2 trial(s) at once" in text and "GPUs allow 2" in text
    assert plan(spec, {"CPU": 3, "GPU": 4}).concurrency == 1  # now the CPUs bind: 2 per trial


def test_only_torch_trainables_run_on_workers(tmp_path):
    spec = validate_spec(_raw(tmp_path, trainable="trainables.synthetic:Quadratic", metric="loss",
                              param_space={"x": 0.5}))
    with pytest.raises(SpecError, match=r"resources_per_trial.workers: trainables.synthetic:Quadratic: class "
                                        r"Quadratic is not a trainables.base.TorchTrainable subclass"):
        build_components(spec)
    too_big = validate_spec(_raw(tmp_path, resources_per_trial={"workers": 3, "cpu_per_worker": 2}))
    with pytest.raises(SpecError, match="each trial's 3 workers need 6 CPU"):
        build_components(too_big)


def test_a_bad_config_fails_the_trial_before_any_worker_starts():
    from trainables.data_parallel import data_parallel
    from trainables.digits import DigitsMLP
    from trainables.local import run_local

    trial_cls = data_parallel(DigitsMLP, workers=2)
    assert trial_cls.__name__ == "DigitsMLP" and "world_size" in trial_cls.METRICS
    assert trial_cls.data_fingerprint() == DigitsMLP.data_fingerprint()
    with pytest.raises(ValueError, match="unknown config key.*'widht'"):
        run_local(trial_cls, {"lr": 0.01, "widht": 32}, iterations=1)


def test_the_shipped_data_parallel_spec_plans_two_trials_at_once():
    from toolkit.spec import load_spec

    spec = load_spec(ROOT / "experiments/digits_data_parallel.yaml")
    assert spec.resources_per_trial.workers == 2 and plan(spec).concurrency == 2


def test_shards_split_each_epoch_evenly_and_pad_by_wrapping():
    x = torch.arange(10.0).reshape(10, 1)
    shards = []
    for rank in range(3):
        gen = torch.Generator().manual_seed(5)  # every rank draws the same permutation
        shards.append(ShardedBatches(TensorBatches(x, torch.arange(10), 2, shuffle=True, generator=gen), rank, 3))
    epochs = [[torch.cat([xb for xb, _ in s]).flatten().tolist() for s in shards] for _ in range(2)]
    for seen in epochs:
        assert [len(s) for s in seen] == [4, 4, 4] and [len(s) for s in shards] == [2, 2, 2]
        flat = [v for s in seen for v in s]
        assert set(flat) == set(range(10)) and len(flat) == 12  # all samples, 2 repeated to even out
    assert epochs[0] != epochs[1]  # a new order every epoch


# --------------------------------------------------------------------------- on a real local Ray
@pytest.fixture(scope="module")
def ray_with_4_cpus():
    import ray

    # Logical CPUs: two 2-worker trials at once on this 2-core machine.
    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def two_trial_sweep(ray_with_4_cpus, tmp_path_factory):
    """Two trials (lr 0.01 and 0.003) of 2 gloo workers each, 2 epochs, run at once: (outcome, record)."""
    from toolkit.results import load

    root = tmp_path_factory.mktemp("dp")
    spec = validate_spec(_raw(root, param_space={"lr": {"type": "choice", "values": [0.01, 0.003]}, **CONFIG},
                              searcher={"type": "random", "exhaustive": True}))
    out = run_experiment(spec, verbose=0, log=lambda _: None)
    return out, load("dp", root=root)


@pytest.mark.slow
def test_a_sweep_of_two_worker_trials_over_gloo(two_trial_sweep):
    out, rec = two_trial_sweep
    assert out.status == "completed" and out.n_trials == 2 and out.n_errors == 0, out
    assert len(rec.trials) == 2 and rec.trials["final_metric"].notna().all()
    assert sorted(rec.trials["config.lr"]) == [0.003, 0.01]
    rows = rec.metrics
    assert sorted(rows.groupby("trial_id")["training_iteration"].max()) == [2, 2]
    assert (rows["world_size"] == 2).all()  # rank 0 saw a process group of 2 workers in every epoch
    assert (rows["val_loss"] > 0).all() and (rows["epoch"] == rows["training_iteration"]).all()
    assert rec.manifest["resources_per_trial"]["workers"] == 2


@pytest.mark.slow
def test_a_restored_trial_continues_exactly_where_it_was_saved(two_trial_sweep, tmp_path):
    """What a pausing scheduler or a restart does: save after epoch 1, restore into a new trial
    (a new Ray Train run), train epoch 2: the same as the sweep's trial that never paused."""
    from trainables.data_parallel import data_parallel
    from trainables.digits import DigitsMLP

    _, rec = two_trial_sweep
    trial_id = rec.trials.loc[rec.trials["config.lr"] == 0.01, "trial_id"].item()
    straight = rec.metrics[rec.metrics["trial_id"] == trial_id].sort_values("epoch")
    trial_cls = data_parallel(DigitsMLP, workers=2)
    config = {"lr": 0.01, **CONFIG}

    first = trial_cls(config=dict(config))
    try:
        first_result = first.train()
        first.save_checkpoint(str(tmp_path))
    finally:
        first.stop()
    second = trial_cls(config=dict(config))
    try:
        second.load_checkpoint(str(tmp_path))
        second_result = second.train()
    finally:
        second.stop()
    assert first_result["val_loss"] == straight["val_loss"].iloc[0]
    assert second_result["epoch"] == 2 and second_result["world_size"] == 2
    assert second_result["val_loss"] == straight["val_loss"].iloc[1]
    assert second_result["train_loss"] == straight["train_loss"].iloc[1]
