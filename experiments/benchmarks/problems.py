"""Benchmark problems shared by the searcher benchmarks (TPE, GP).

Each problem is a typed `SearchSpace` plus an objective mapping the nested config a trainable
would receive to a value to MINIMISE. Synthetic functions follow the usual definitions
(Surjanovic & Bingham's Virtual Library of Simulation Experiments); the mixed, conditional and
noisy problems are built here to exercise integer / categorical / log-scale, conditional and
noisy cases with a known optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from toolkit.space import Categorical, Float, Int, Normal, SearchSpace


@dataclass(frozen=True)
class Problem:
    name: str
    space: SearchSpace
    objective: Callable[[dict], float]  # nested config -> value to minimise
    optimum: float | None  # known minimum; None = use the best value any run found
    threshold: float  # simple regret at or below which a run counts as "solved"
    continuous: bool  # every parameter a plain float (Ray's BayesOptSearch etc. usable)
    # For noisy problems: the noise-free value the regret is measured on. The optimiser only
    # ever sees `objective`; the harness records `true_objective` of each evaluated point.
    true_objective: Callable[[dict], float] | None = None
    # Reseed the problem's own randomness (noise) at the start of a run, so runs are repeatable.
    reseed: Callable[[int], None] | None = field(default=None, compare=False)


def _box(names: list[str], low: float, high: float) -> SearchSpace:
    return SearchSpace({n: Float(low, high) for n in names})


def _vec(config: dict, d: int) -> np.ndarray:
    return np.array([config[f"x{i}"] for i in range(d)], dtype=float)


# ---------------------------------------------------------------------- classic functions
def branin_fn(x1: float, x2: float) -> float:
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann_fn(x: np.ndarray) -> float:
    a, p = (_H3_A, _H3_P) if len(x) == 3 else (_H6_A, _H6_P)
    return float(-np.sum(_H_ALPHA * np.exp(-np.sum(a * (x - p) ** 2, axis=1))))


def ackley_fn(x: np.ndarray) -> float:
    d = len(x)
    return float(
        -20 * math.exp(-0.2 * math.sqrt(np.sum(x**2) / d)) - math.exp(np.sum(np.cos(2 * math.pi * x)) / d) + 20 + math.e
    )


def rosenbrock_fn(x: np.ndarray) -> float:
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def levy_fn(x: np.ndarray) -> float:
    w = 1 + (x - 1) / 4
    head = math.sin(math.pi * w[0]) ** 2
    mid = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2))
    tail = (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
    return float(head + mid + tail)


def branin() -> Problem:
    space = SearchSpace({"x1": Float(-5.0, 10.0), "x2": Float(0.0, 15.0)})
    return Problem("branin", space, lambda c: branin_fn(c["x1"], c["x2"]), 0.397887357729739, 0.05, True)


def hartmann3() -> Problem:
    names = [f"x{i}" for i in range(3)]
    return Problem("hartmann3", _box(names, 0.0, 1.0), lambda c: hartmann_fn(_vec(c, 3)), -3.86278214782076, 0.05, True)


def hartmann6() -> Problem:
    names = [f"x{i}" for i in range(6)]
    return Problem("hartmann6", _box(names, 0.0, 1.0), lambda c: hartmann_fn(_vec(c, 6)), -3.32236801141551, 0.3, True)


def ackley5() -> Problem:
    names = [f"x{i}" for i in range(5)]
    return Problem("ackley5", _box(names, -32.768, 32.768), lambda c: ackley_fn(_vec(c, 5)), 0.0, 5.0, True)


def rosenbrock4() -> Problem:
    names = [f"x{i}" for i in range(4)]
    return Problem("rosenbrock4", _box(names, -5.0, 10.0), lambda c: rosenbrock_fn(_vec(c, 4)), 0.0, 50.0, True)


def levy4() -> Problem:
    names = [f"x{i}" for i in range(4)]
    return Problem("levy4", _box(names, -10.0, 10.0), lambda c: levy_fn(_vec(c, 4)), 0.0, 1.0, True)


# ---------------------------------------------------------------------- built for tunekit
def mixed() -> Problem:
    """Integer, log-integer, categorical, log-float and quantised-float parameters; optimum 0.

    The learning-rate optimum moves with depth (deeper nets want smaller steps), so the
    problem is not fully separable: a univariate model has something to miss.
    """
    space = SearchSpace(
        {
            "lr": Float(1e-5, 1.0, log=True),
            "units": Int(8, 512, log=True),
            "layers": Int(1, 8),
            "activation": Categorical(("relu", "tanh", "sigmoid", "elu")),
            "dropout": Float(0.0, 0.8, q=0.05),
        }
    )
    penalty = {"relu": 0.0, "tanh": 0.3, "sigmoid": 0.8, "elu": 0.1}

    def f(c: dict) -> float:
        best_lr = -2.5 - 0.25 * (c["layers"] - 1)  # log10 of the best lr at this depth
        return (
            (math.log10(c["lr"]) - best_lr) ** 2 / 2
            + (math.log2(c["units"]) - 7) ** 2 / 4
            + (c["layers"] - 3) ** 2 / 4
            + penalty[c["activation"]]
            + ((c["dropout"] - 0.25) / 0.2) ** 2 / 2
        )

    return Problem("mixed", space, f, 0.0, 0.2, False)


def conditional() -> Problem:
    """Two branches with different parameters; the better branch's optimum is narrower.

    Branch "sgd" (lr, momentum, nesterov) bottoms out at 0.3; branch "adam" (lr, beta1, eps)
    reaches 0. A shared weight-decay parameter sits outside the choice.
    """
    space = SearchSpace(
        {
            "weight_decay": Float(1e-6, 1e-1, log=True),
            "optimizer": Categorical(
                (
                    {"name": "sgd", "lr": Float(1e-4, 1.0, log=True), "momentum": Float(0.0, 0.99), "nesterov": Categorical((False, True))},
                    {"name": "adam", "lr": Float(1e-5, 1e-1, log=True), "beta1": Float(0.5, 0.999), "eps": Float(1e-10, 1e-4, log=True)},
                )
            ),
        }
    )

    def f(c: dict) -> float:
        wd = (math.log10(c["weight_decay"]) + 4) ** 2 / 8
        o = c["optimizer"]
        if o["name"] == "sgd":
            return 0.3 + wd + (math.log10(o["lr"]) + 1.5) ** 2 / 2 + ((o["momentum"] - 0.9) / 0.3) ** 2 + (0.0 if o["nesterov"] else 0.1)
        return wd + (math.log10(o["lr"]) + 3.2) ** 2 + ((o["beta1"] - 0.9) / 0.1) ** 2 + (math.log10(o["eps"]) + 8) ** 2 / 16

    return Problem("conditional", space, f, 0.0, 0.1, False)


def noisy() -> Problem:
    """Hartmann6 observed with Gaussian noise (sd 0.1); regret is on the noise-free value."""
    base = hartmann6()
    rng = [np.random.default_rng(0)]

    def reseed(seed: int) -> None:
        rng[0] = np.random.default_rng(10_000 + seed)

    def f(c: dict) -> float:
        return base.objective(c) + 0.1 * float(rng[0].standard_normal())

    return Problem("noisy", base.space, f, base.optimum, 0.3, True, true_objective=base.objective, reseed=reseed)


def noisy_branin() -> Problem:
    """Branin observed with Gaussian noise of sd 1 (about 1% of its range); regret noise-free."""
    base = branin()
    rng = [np.random.default_rng(0)]

    def reseed(seed: int) -> None:
        rng[0] = np.random.default_rng(20_000 + seed)

    def f(c: dict) -> float:
        return base.objective(c) + float(rng[0].standard_normal())

    return Problem("noisy_branin", base.space, f, base.optimum, 0.5, True, true_objective=base.objective, reseed=reseed)


def tiny() -> Problem:
    """A 24-point space (6 integers x 4 choices), noisy (sd 0.15): few points, repeats matter.

    Values 0 .. ~1.4; the best point (width 3, "b") is 0.1 better than the runner-up, so a
    noisy single evaluation often ranks them wrongly.
    """
    space = SearchSpace({"width": Int(1, 6), "kind": Categorical(("a", "b", "c", "d"))})
    offset = {"a": 0.1, "b": 0.0, "c": 0.35, "d": 0.8}
    rng = [np.random.default_rng(0)]

    def reseed(seed: int) -> None:
        rng[0] = np.random.default_rng(30_000 + seed)

    def truth(c: dict) -> float:
        return 0.1 * abs(c["width"] - 3) ** 1.5 + offset[c["kind"]]

    def f(c: dict) -> float:
        return truth(c) + 0.15 * float(rng[0].standard_normal())

    return Problem("tiny", space, f, 0.0, 0.01, False, true_objective=truth, reseed=reseed)


def far() -> Problem:
    """A narrow optimum far from the centre of wide ranges: lr near 2e-6 on [1e-7, 10] (log)
    and x near 93 on [-100, 100]; a gentle slope leads there, a narrow dip rewards precision."""
    space = SearchSpace({"lr": Float(1e-7, 10.0, log=True), "x": Float(-100.0, 100.0), "y": Float(0.0, 1.0)})

    def f(c: dict) -> float:
        a = (math.log10(c["lr"]) - math.log10(2e-6)) / 0.3
        b = (c["x"] - 93.0) / 4.0
        slope = 0.1 * abs(math.log10(c["lr"]) - math.log10(2e-6)) / 8 + 0.1 * abs(c["x"] - 93.0) / 200
        return slope + (c["y"] - 0.7) ** 2 + 1.0 - math.exp(-0.5 * (a * a + b * b))

    return Problem("far", space, f, 0.0, 0.1, True)


def normals() -> Problem:
    """Three unbounded normal parameters (N(0, 1) priors) with the optimum 1.5-2.5 sd out."""
    space = SearchSpace({"a": Normal(0.0, 1.0), "b": Normal(0.0, 1.0), "c": Normal(0.0, 1.0)})
    target = {"a": 2.5, "b": -2.0, "c": 1.5}

    def f(c: dict) -> float:
        return float(sum((c[k] - t) ** 2 for k, t in target.items()))

    return Problem("normals", space, f, 0.0, 0.1, False)


DIGITS_EPOCHS = 3


def digits() -> Problem:
    """Validation loss of the digits MLP (scikit-learn's 8x8 digits) after 3 epochs.

    A real training run per evaluation (about a second on one CPU thread). Diverged runs
    (NaN loss) are failed trials. The optimum is unknown: regret is against the best value
    any run found.
    """
    from trainables.digits import evaluate  # torch is imported only when this problem is used

    space = SearchSpace(
        {
            "lr": Float(1e-4, 0.3, log=True),
            "weight_decay": Float(1e-6, 1e-2, log=True),
            "width": Int(16, 256, log=True),
            "depth": Int(1, 3),
            "dropout": Float(0.0, 0.5),
            "batch_size": Categorical((32, 64, 128)),
            "optimizer": Categorical(({"name": "adam", "beta1": Float(0.8, 0.99)}, {"name": "sgd", "momentum": Float(0.0, 0.99)})),
        }
    )

    def f(config: dict) -> float:
        return float(evaluate(config, epochs=DIGITS_EPOCHS)["val_loss"])

    return Problem("digits", space, f, None, 0.02, False)


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "branin": branin,
    "hartmann3": hartmann3,
    "hartmann6": hartmann6,
    "ackley5": ackley5,
    "rosenbrock4": rosenbrock4,
    "levy4": levy4,
    "mixed": mixed,
    "conditional": conditional,
    "noisy": noisy,
    "noisy_branin": noisy_branin,
    "tiny": tiny,
    "far": far,
    "normals": normals,
    "digits": digits,
}
