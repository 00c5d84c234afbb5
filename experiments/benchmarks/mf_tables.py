"""Tabulate learning curves of a torch MLP on scikit-learn's bundled digits, once, for `mf_sim`.

A grid of configurations (learning rate x width x batch size), each trained for
`--epochs` epochs with one seed; the validation loss after every epoch and the median
seconds per epoch (normalised to a mean of 1 over the table: the simulator's unit of time)
are written to results/mf_digits_table.json.gz.

    nice -n 10 python -m experiments.benchmarks.mf_tables --epochs 27

The issue asks for 512 configurations x 81 epochs x 2 seeds (about 45 minutes on 2 idle
cores); the machine this ran on was 2 cores shared by 8 people (a niced job got about a
tenth of a core), so the committed table is 64 configurations x 27 epochs x 1 seed.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import time

import numpy as np

from experiments.benchmarks.mf_tasks import DIGITS_TABLE

GRID = {
    "lr": [float(v) for v in np.round(np.logspace(-3, -0.3, 8), 5)],  # SGD, momentum 0.9
    "width": [16, 32, 64, 128],
    "batch_size": [64, 256],
    "dropout": [0.1],
}
TABLE_SEED = 0


def curve(config: dict, epochs: int, seed: int = TABLE_SEED) -> tuple[list[float], list[float]]:
    """Validation loss after each epoch, and seconds per epoch."""
    import torch
    from torch import nn

    from trainables.data import as_tensors, load

    torch.manual_seed(seed)
    x_tr, y_tr, x_va, y_va = as_tensors(load("digits"))
    model = nn.Sequential(nn.Linear(x_tr.shape[1], config["width"]), nn.ReLU(), nn.Dropout(config["dropout"]),
                          nn.Linear(config["width"], config["width"]), nn.ReLU(), nn.Dropout(config["dropout"]),
                          nn.Linear(config["width"], 10))
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    losses, seconds = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(order), config["batch_size"]):
            idx = order[i:i + config["batch_size"]]
            opt.zero_grad()
            loss_fn(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = float(loss_fn(model(x_va), y_va))
        seconds.append(time.perf_counter() - start)
        losses.append(val if np.isfinite(val) else 10.0)  # a diverged run: a large, finite loss
    return losses, seconds


def main() -> None:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=27)
    args = parser.parse_args()
    started = time.time()
    curves, costs = [], []
    configs = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    for i, config in enumerate(configs):
        losses, seconds = curve(config, args.epochs)
        curves.append([round(v, 6) for v in losses])
        costs.append(float(np.median(seconds)))
        if i % 16 == 0:
            print(f"{i}/{len(configs)} configs, {time.time() - started:.0f} s", flush=True)
    costs_arr = np.array(costs)
    table = {
        "grid": GRID, "val_loss": curves,
        "epoch_cost": [round(c, 4) for c in (costs_arr / costs_arr.mean())],
        "meta": {"epochs": args.epochs, "seed": TABLE_SEED, "configs": len(configs),
                 "mean_epoch_s": float(costs_arr.mean()), "wall_s": round(time.time() - started, 1),
                 "command": f"nice -n 10 python -m experiments.benchmarks.mf_tables --epochs {args.epochs}"},
    }
    DIGITS_TABLE.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(DIGITS_TABLE, "wt") as f:
        json.dump(table, f)
    print(f"wrote {DIGITS_TABLE} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
