"""Worker utilisation of the schedulers in real Ray: a local Ray advertising 8 logical GPUs.

    nice -n 10 python -m experiments.benchmarks.mf_real_ray [--samples 64] [--sleep 0.4] [--repeats 2]
    nice -n 10 python -m experiments.benchmarks.mf_real_ray --time-budget 120 [--sleep 1.5]

Each sweep runs `trainables.synthetic:Quadratic` (every iteration sleeps `--sleep` seconds, like
a GPU epoch that leaves the CPU idle) with 1 GPU per trial, so 8 trials fit at once; random
search proposes the same configurations to every scheduler (same seed). Utilisation is the
issue's definition, busy trial-seconds / (GPUs x wall seconds): busy is the sum of every
reported iteration's `time_this_iter_s`, wall runs from the first trial's start to the last
result. What is not busy is Ray starting, pausing and restoring actors, and GPUs left idle
while the sweep waits (the tail, or a scheduler holding trials back). Also reported: epochs
trained and the best final loss (so a scheduler that is busy doing nothing useful shows).
The first row is a control: FIFO through a plain `ray.tune.Tuner`, without tunekit's runner.
The table is written to `results/multifidelity_real_ray.md`.

Two ways a sweep ends, two tables:
- ``--samples K``: a fixed set of K configurations run to the end, so the idle tail (the last
  few promoted trials training alone) counts against utilisation.
- ``--time-budget S``: random search keeps proposing (``--samples`` is raised to a number the
  budget never reaches) and Ray ends the sweep after S seconds (`stop.time_budget_s`), which is
  how an asynchronous scheduler is run on a cluster; what is not busy is then Ray's own cost of
  starting, pausing and resuming trials and a scheduler holding GPUs idle. Written to
  `results/multifidelity_real_ray_budget.md`. An iteration still running when the budget ends
  is not counted as busy; wall ends at the last result, so this undercounts by at most half an
  iteration per GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

RESULTS = Path(__file__).resolve().parent / "results"
GPUS = 8

PLAIN = "FIFO, plain ray.tune.Tuner (control)"
SCHEDULERS: dict[str, dict[str, Any]] = {
    # The same trainable and configurations through Ray's own Tuner, without tunekit's runner:
    # what is lost here is Ray's per-trial and per-iteration cost on this machine, not ours.
    PLAIN: {"type": "plain"},
    "FIFO (no early stopping)": {"type": "fifo"},
    "Ray ASHAScheduler": {"type": "ray_asha", "grace_period": 1, "reduction_factor": 3},
    "our ASHA, stop": {"type": "asha", "mode": "stop", "grace_period": 1, "reduction_factor": 3},
    "our ASHA, promote": {"type": "asha", "mode": "promote", "grace_period": 1, "reduction_factor": 3},
    "our ASHA, promote, deterministic": {"type": "asha", "mode": "promote", "grace_period": 1,
                                         "reduction_factor": 3, "deterministic": True},
    "our Hyperband": {"type": "hyperband", "reduction_factor": 3},
}


class BusyClock(Callback):
    """Driver-side timestamps: when the first trial started, when the last result arrived, and
    the training seconds every result reports."""

    def __init__(self) -> None:
        self.first_start: float | None = None
        self.last_result = 0.0
        self.busy_s = 0.0
        self.epochs = 0

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.first_start is None:
            self.first_start = time.time()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.last_result = time.time()
        self.busy_s += float(result.get("time_this_iter_s", 0.0))
        self.epochs += 1


def spec_for(scheduler: dict, samples: int, sleep_s: float, storage: str, seed: int,
             time_budget_s: float | None = None) -> dict:
    stop: dict[str, Any] = {"max_iterations": 9}
    if time_budget_s is not None:
        stop["time_budget_s"] = time_budget_s
    return {
        "name": "util", "trainable": "trainables.synthetic:Quadratic", "metric": "loss", "mode": "min",
        "param_space": {"x": {"type": "uniform", "low": -2.0, "high": 2.0},
                        "y": {"type": "uniform", "low": -2.0, "high": 2.0},
                        "sleep_s": sleep_s, "noise_sd": 0.05},
        "searcher": "random", "scheduler": scheduler, "num_samples": samples,
        "resources_per_trial": {"cpu": 0, "gpu": 1}, "stop": stop, "seed": seed,
        "storage": storage,
    }


def run_plain(samples: int, sleep_s: float, seed: int, time_budget_s: float | None,
              clock: "BusyClock", storage: str) -> tuple[int, float | None]:
    """FIFO through `tune.Tuner` directly: Ray's default searcher, reused actors, no callbacks
    but the clock. Returns (trials, best final loss)."""
    from ray import tune

    from trainables.synthetic import Quadratic

    space = {"x": tune.uniform(-2.0, 2.0), "y": tune.uniform(-2.0, 2.0), "sleep_s": sleep_s, "noise_sd": 0.05,
             "seed": seed}
    tuner = tune.Tuner(
        tune.with_resources(Quadratic, {"cpu": 0, "gpu": 1}), param_space=space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=samples, time_budget_s=time_budget_s,
                                    reuse_actors=True, search_alg=tune.search.BasicVariantGenerator(random_state=seed)),
        run_config=tune.RunConfig(stop={"training_iteration": 9}, callbacks=[clock], storage_path=storage,
                                  verbose=0))
    grid = tuner.fit()
    finals = [r.metrics["loss"] for r in grid if r.metrics and r.metrics.get("training_iteration") == 9]
    return len(grid), (min(finals) if finals else None)


def run_one(name: str, scheduler: dict, samples: int, sleep_s: float, seed: int,
            time_budget_s: float | None = None) -> dict:
    from toolkit.runner import run_experiment
    from toolkit.spec import validate_spec

    clock = BusyClock()
    with tempfile.TemporaryDirectory() as storage:
        if scheduler["type"] == "plain":
            status = "completed"
            n_trials, best = run_plain(samples, sleep_s, seed, time_budget_s, clock, storage)
        else:
            spec = validate_spec(spec_for(scheduler, samples, sleep_s, storage, seed, time_budget_s))
            outcome = run_experiment(spec, verbose=0, log=lambda line: None, callbacks=[clock])
            status, n_trials, best = outcome.status, outcome.n_trials, (outcome.best or {}).get("value")
    wall = clock.last_result - (clock.first_start or clock.last_result)
    return {"scheduler": name, "seed": seed, "status": status, "trials": n_trials, "wall_s": wall,
            "busy_s": clock.busy_s, "utilisation": clock.busy_s / (GPUS * wall) if wall else 0.0,
            "epochs": clock.epochs, "best": best}


def table(rows: list[dict], time_budget_s: float | None = None) -> str:
    how = (f", a {time_budget_s:g} s time budget (random search proposes until it ends)" if time_budget_s
           else "")
    out = [f"# Schedulers in real Ray: utilisation of {GPUS} logical GPUs{how}", "",
           "Produced by " + " and ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", "?") for r in rows)) +
           " (module docstring: what is measured). Median over the repeats "
           "(seeds listed); utilisation = busy trial-seconds / (GPUs x wall seconds).", "",
           "| scheduler | utilisation | wall (s) | epochs trained | best final loss | trials | seeds |",
           "|---|---|---|---|---|---|---|"]
    for name in SCHEDULERS:
        mine = [r for r in rows if r["scheduler"] == name]
        if not mine:
            continue
        med = {k: statistics.median(r[k] for r in mine if r[k] is not None) for k in ("utilisation", "wall_s", "epochs")}
        bests = [r["best"] for r in mine if r["best"] is not None]
        med["best"] = statistics.median(bests) if bests else float("nan")
        out.append(f"| {name} | {med['utilisation']:.3f} | {med['wall_s']:.1f} | {med['epochs']:.0f} | "
                   f"{med['best']:.4f} | {statistics.median(r['trials'] for r in mine):.0f} | {', '.join(str(r['seed']) for r in mine)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--sleep", type=float, default=0.4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="scheduler names (substring match)")
    ap.add_argument("--time-budget", type=float, default=None, metavar="S",
                    help="end each sweep after S seconds instead of after --samples configurations")
    args = ap.parse_args(argv)
    samples = 100_000 if args.time_budget else args.samples  # never reached within the budget

    import ray

    ray.init(num_cpus=GPUS, num_gpus=GPUS, include_dashboard=False, logging_level="ERROR")
    command = "python -m experiments.benchmarks.mf_real_ray " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = []
    try:
        for seed in range(args.repeats):  # interleaved, so machine load drifts evenly across schedulers
            for name, sched in SCHEDULERS.items():
                if args.only and not any(o in name for o in args.only):
                    continue
                row = run_one(name, sched, samples, args.sleep, seed, args.time_budget) | {"command": command}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        ray.shutdown()
    stem = "multifidelity_real_ray_budget" if args.time_budget else "multifidelity_real_ray"
    earlier = RESULTS / f"{stem}.json"
    if args.only and earlier.exists():  # keep the other schedulers' rows of the last full run
        ran = {r["scheduler"] for r in rows}
        rows = [r for r in json.loads(earlier.read_text()) if r["scheduler"] not in ran] + rows
    text = table(rows, args.time_budget)
    notes = RESULTS / f"{stem}_notes.md"  # the reading of the table, by hand, kept across reruns
    if notes.exists():
        text += "\n" + notes.read_text()
    (RESULTS / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
