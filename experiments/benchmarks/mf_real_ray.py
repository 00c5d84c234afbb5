"""Worker utilisation of the schedulers in real Ray: a local Ray advertising 8 logical GPUs.

    nice -n 10 python -m experiments.benchmarks.mf_real_ray [--samples 64] [--sleep 0.4] [--repeats 2]

Each sweep runs `trainables.synthetic:Quadratic` (every iteration sleeps `--sleep` seconds, like
a GPU epoch that leaves the CPU idle) with 1 GPU per trial, so 8 trials fit at once; random
search proposes the same configurations to every scheduler (same seed). Utilisation is the
issue's definition, busy trial-seconds / (GPUs x wall seconds): busy is the sum of every
reported iteration's `time_this_iter_s`, wall runs from the first trial's start to the last
result. What is not busy is Ray starting, pausing and restoring actors, and GPUs left idle
while the sweep waits (the tail, or a scheduler holding trials back). Also reported: epochs
trained and the best final loss (so a scheduler that is busy doing nothing useful shows).
The table is written to `results/multifidelity_real_ray.md`.
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

SCHEDULERS: dict[str, dict[str, Any]] = {
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


def spec_for(scheduler: dict, samples: int, sleep_s: float, storage: str, seed: int) -> dict:
    return {
        "name": "util", "trainable": "trainables.synthetic:Quadratic", "metric": "loss", "mode": "min",
        "param_space": {"x": {"type": "uniform", "low": -2.0, "high": 2.0},
                        "y": {"type": "uniform", "low": -2.0, "high": 2.0},
                        "sleep_s": sleep_s, "noise_sd": 0.05},
        "searcher": "random", "scheduler": scheduler, "num_samples": samples,
        "resources_per_trial": {"cpu": 0, "gpu": 1}, "stop": {"max_iterations": 9}, "seed": seed,
        "storage": storage,
    }


def run_one(name: str, scheduler: dict, samples: int, sleep_s: float, seed: int) -> dict:
    from toolkit.runner import run_experiment
    from toolkit.spec import validate_spec

    with tempfile.TemporaryDirectory() as storage:
        spec = validate_spec(spec_for(scheduler, samples, sleep_s, storage, seed))
        clock = BusyClock()
        outcome = run_experiment(spec, verbose=0, log=lambda line: None, callbacks=[clock])
    wall = clock.last_result - (clock.first_start or clock.last_result)
    return {"scheduler": name, "seed": seed, "status": outcome.status, "trials": outcome.n_trials,
            "wall_s": wall, "busy_s": clock.busy_s, "utilisation": clock.busy_s / (GPUS * wall) if wall else 0.0,
            "epochs": clock.epochs, "best": (outcome.best or {}).get("value")}


def table(rows: list[dict], command: str) -> str:
    out = [f"# Schedulers in real Ray: utilisation of {GPUS} logical GPUs", "",
           f"Produced by `{command}` (module docstring: what is measured). Median over the repeats "
           "(seeds listed); utilisation = busy trial-seconds / (GPUs x wall seconds).", "",
           "| scheduler | utilisation | wall (s) | epochs trained | best final loss | trials | seeds |",
           "|---|---|---|---|---|---|---|"]
    for name in SCHEDULERS:
        mine = [r for r in rows if r["scheduler"] == name]
        if not mine:
            continue
        med = {k: statistics.median(r[k] for r in mine) for k in ("utilisation", "wall_s", "epochs", "best")}
        out.append(f"| {name} | {med['utilisation']:.3f} | {med['wall_s']:.1f} | {med['epochs']:.0f} | "
                   f"{med['best']:.4f} | {mine[0]['trials']} | {', '.join(str(r['seed']) for r in mine)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--sleep", type=float, default=0.4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="scheduler names (substring match)")
    args = ap.parse_args(argv)

    import ray

    ray.init(num_cpus=GPUS, num_gpus=GPUS, include_dashboard=False, logging_level="ERROR")
    rows = []
    try:
        for seed in range(args.repeats):  # interleaved, so machine load drifts evenly across schedulers
            for name, sched in SCHEDULERS.items():
                if args.only and not any(o in name for o in args.only):
                    continue
                row = run_one(name, sched, args.samples, args.sleep, seed)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        ray.shutdown()
    command = "python -m experiments.benchmarks.mf_real_ray " + " ".join(sys.argv[1:] if argv is None else argv)
    (RESULTS / "multifidelity_real_ray.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "multifidelity_real_ray.md").write_text(table(rows, command.strip()))
    print(table(rows, command.strip()))


if __name__ == "__main__":
    main()
