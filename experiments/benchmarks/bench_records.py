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
import time
from pathlib import Path

from toolkit.results import RecordWriter, load, synthetic


def _size(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def bench(n_trials: int, n_iters: int, flush_every: int, root: Path) -> dict:
    data = list(synthetic.sweep(n_trials, n_iters, seed=0, early_stop_fraction=0.0))
    t0 = time.perf_counter()
    w = RecordWriter(root, "bench", synthetic.manifest("bench"))
    for i, (trial, history) in enumerate(data):
        w.add_trial(trial, history)
        if (i + 1) % flush_every == 0:
            w.flush()
    t_add = time.perf_counter() - t0
    t0 = time.perf_counter()
    path = w.finish("completed", None)
    t_finish = time.perf_counter() - t0
    t0 = time.perf_counter()
    rec = load("bench", root=root)
    t_load = time.perf_counter() - t0
    assert len(rec.trials) == n_trials and len(rec.metrics) == n_trials * n_iters
    t0 = time.perf_counter()
    rec.best(10)
    rec.best_so_far()
    rec.best_so_far(by="time")
    rec.param_summary()
    t_summ = time.perf_counter() - t0
    t0 = time.perf_counter()
    rec.importance()
    t_imp = time.perf_counter() - t0
    return {"trials": n_trials, "iters": n_iters, "rows": len(rec.metrics), "flush_every": flush_every,
            "add": t_add, "finish": t_finish, "load": t_load, "summaries": t_summ, "importance": t_imp,
            "mb": _size(path)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--flush-every", type=int, nargs="+", default=[1, 100])
    args = ap.parse_args()
    print("| trials | iterations | metric rows | flush every | add + flush (s) | finish (s) | load + verify (s) "
          "| best/best-so-far/summary (s) | importance (s) | size (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in args.flush_every:
        root = Path(tempfile.mkdtemp(prefix="bench-records-"))
        try:
            r = bench(args.trials, args.iters, k, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print(f"| {r['trials']} | {r['iters']} | {r['rows']} | {r['flush_every']} | {r['add']:.1f} | "
              f"{r['finish']:.1f} | {r['load']:.1f} | {r['summaries']:.2f} | {r['importance']:.1f} | {r['mb']:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
