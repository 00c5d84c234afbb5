"""Write and load a large experiment record; prints a markdown table of timings.

    nice -n 10 python experiments/benchmarks/bench_records.py --trials 10000 --iters 100 --flush-every 1 100

Each row: add every trial (RecordWriter.add_trial, plus flush every k trials as the runner
does after each trial), publish (finish: final Parquet tables, sha256, manifest), load with
full checksum verification, and the analyses people run first on a loaded record.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import os
import time
from pathlib import Path

from toolkit.results import RecordWriter, load, synthetic


def _size(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


class _Clock:
    """Wall and CPU seconds of a phase: on a shared machine CPU time is the stable figure."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c

    def __format__(self, spec):
        return f"{self.wall:.1f} ({self.cpu:.1f})"


def bench(n_trials: int, n_iters: int, flush_every: int, root: Path) -> dict:
    data = list(synthetic.sweep(n_trials, n_iters, seed=0, early_stop_fraction=0.0))
    t_add = _Clock().__enter__()
    w = RecordWriter(root, "bench", synthetic.manifest("bench"))
    for i, (trial, history) in enumerate(data):
        w.add_trial(trial, history)
        if (i + 1) % flush_every == 0:
            w.flush()
    t_add.__exit__()
    with _Clock() as t_finish:
        path = w.finish("completed", None)
    with _Clock() as t_load:
        rec = load("bench", root=root)
    assert len(rec.trials) == n_trials and len(rec.metrics) == n_trials * n_iters
    with _Clock() as t_summ:
        rec.best(10)
        rec.best_so_far()
        rec.best_so_far(by="time")
        rec.param_summary()
    with _Clock() as t_imp:
        rec.importance()
    return {"trials": n_trials, "iters": n_iters, "rows": len(rec.metrics), "flush_every": flush_every,
            "add": t_add, "finish": t_finish, "load": t_load, "summaries": t_summ, "importance": t_imp,
            "mb": _size(path)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--flush-every", type=int, nargs="+", default=[1, 100])
    args = ap.parse_args()
    print(f"Seconds as wall (CPU). Load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.\n")
    print("| trials | iterations | metric rows | flush every | add + flush | finish (publish) | load + verify "
          "| best/best-so-far/summary | importance | size (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in args.flush_every:
        root = Path(tempfile.mkdtemp(prefix="bench-records-"))
        try:
            r = bench(args.trials, args.iters, k, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(f"| {r['trials']} | {r['iters']} | {r['rows']} | {r['flush_every']} | {r['add']} | "
              f"{r['finish']} | {r['load']} | {r['summaries']} | {r['importance']} | {r['mb']:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
