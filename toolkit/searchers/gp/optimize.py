"""Maximise an acquisition over a mixed, conditional space.

1. Score many candidates at once: a scrambled Sobol set over the raw unit cube plus
   perturbations of the best observed points (BoTorch's "raw samples" and Optuna's
   local search both start this way: most of the acquisition mass sits near incumbents).
2. From the best few, run one L-BFGS-B over all starts jointly (the starts are independent,
   so the gradient of their sum is their gradients side by side) on the continuous
   parameters and on discrete ones with large grids, which are relaxed while moving.
3. Snap, then hill-climb on the discrete part: every other option of each categorical and
   every other value of each small integer/quantised grid, +-1 step on large grids. Repeat
   2-3 while a discrete move helps.

All scoring after snapping uses the exact values the trainable would receive.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.stats import qmc

from toolkit.searchers.gp.acquisition import Acquisition
from toolkit.searchers.gp.encoding import SMALL_GRID, Encoding

_CHUNK = 2048


def score(acq: Acquisition, enc: Encoding, U: np.ndarray) -> np.ndarray:
    """Acquisition of raw vectors after snapping, evaluated in chunks to bound memory."""
    out = np.empty(len(U))
    for i in range(0, len(U), _CHUNK):
        out[i : i + _CHUNK] = acq.value(enc.features(U[i : i + _CHUNK]))
    return out


def sobol(d: int, n: int, seed: int) -> np.ndarray:
    """First `n` points of a scrambled Sobol sequence.

    Takes an integer seed, not a Generator: scipy would `spawn` a child from a Generator's
    seed sequence, which is not part of its saved state, so restore would not resume exactly.
    """
    m = max(int(np.ceil(np.log2(max(n, 1)))), 0)
    return qmc.Sobol(d, scramble=True, rng=int(seed)).random_base2(m)[:n]


def local_perturbations(enc: Encoding, anchors: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` points near `anchors` (raw vectors): Gaussian steps on numbers, rare option flips."""
    if len(anchors) == 0 or n <= 0:
        return np.zeros((0, enc.n_raw))
    base = anchors[rng.integers(len(anchors), size=n)]
    scale = rng.choice([0.01, 0.05, 0.15], size=(n, 1))
    U = base + scale * rng.standard_normal(base.shape)
    # Each discrete entry is redrawn with probability 1/P so most neighbours keep the branch.
    flip = rng.random(base.shape) < 1.0 / max(enc.n_raw, 1)
    for c in enc.discrete:
        U[:, c.raw] = np.where(flip[:, c.raw], rng.random(n), U[:, c.raw])
    return np.clip(U, 0.0, 1.0)


def _continuous_step(acq: Acquisition, enc: Encoding, U: np.ndarray, maxiter: int) -> np.ndarray:
    idx, fidx = enc.relaxed, enc.relaxed_features
    if len(idx) == 0:
        return U
    S = len(U)
    U = U.copy()

    def f(x: np.ndarray):
        U[:, idx] = x.reshape(S, len(idx))
        Z = enc.features(U, snapped=True)  # relaxed entries stay continuous while moving
        val, grad = acq.value_and_grad(Z)
        g = grad[:, fidx] * enc.active(U)[:, idx]
        return -float(val.sum()), -g.ravel()

    x0 = U[:, idx].ravel()
    res = minimize(f, x0, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * len(x0), options={"maxiter": maxiter})
    U[:, idx] = np.clip(res.x, 0.0, 1.0).reshape(S, len(idx))
    return U


def _neighbours(enc: Encoding, U: np.ndarray) -> np.ndarray:
    """(S, N, P): the discrete moves from each row of `U` (same count N for every row)."""
    moves = []
    for c in enc.discrete:
        if not np.isfinite(c.n_values):
            continue  # a quantised normal: moved by the relaxed L-BFGS-B step only
        n = int(c.n_values)
        k = enc.grid_index(c, U[:, c.raw])
        if n <= SMALL_GRID:
            offsets = [o for o in range(1, n)]  # every other value, cyclically
            targets = [(k + o) % n for o in offsets]
        else:
            targets = [k - 1, k + 1, k - 2, k + 2]
        for t in targets:
            V = U.copy()
            V[:, c.raw] = enc.grid_unit(c, np.clip(t, 0, n - 1))
            moves.append(V)
    if not moves:
        return np.zeros((len(U), 0, U.shape[1]))
    return np.stack(moves, axis=1)


def optimize_acquisition(
    acq: Acquisition,
    enc: Encoding,
    rng: np.random.Generator,
    anchors: np.ndarray,
    n_candidates: int = 1024,
    n_local: int = 512,
    n_starts: int = 8,
    rounds: int = 3,
    maxiter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw candidates ranked best first (snapped) and their acquisition values."""
    U0 = np.vstack([sobol(enc.n_raw, n_candidates, int(rng.integers(2**62))), local_perturbations(enc, anchors, n_local, rng)])
    U0 = enc.snap(U0)
    v0 = score(acq, enc, U0)
    order = np.argsort(-v0, kind="stable")
    starts = U0[order[: min(n_starts, len(order))]]
    vals = v0[order[: len(starts)]]
    for _ in range(rounds):
        moved = _continuous_step(acq, enc, starts, maxiter)
        moved = enc.snap(moved)
        mv = score(acq, enc, moved)
        better = mv > vals
        starts = np.where(better[:, None], moved, starts)
        vals = np.where(better, mv, vals)
        nb = _neighbours(enc, starts)
        if nb.shape[1] == 0:
            break
        S, N, P = nb.shape
        nv = score(acq, enc, nb.reshape(S * N, P)).reshape(S, N)
        j = np.argmax(nv, axis=1)
        gain = nv[np.arange(S), j] > vals + 1e-12
        if not gain.any():
            break
        starts = np.where(gain[:, None], nb[np.arange(S), j], starts)
        vals = np.where(gain, nv[np.arange(S), j], vals)
    allU = np.vstack([starts, U0[order]])
    allv = np.concatenate([vals, v0[order]])
    rank = np.argsort(-allv, kind="stable")
    return allU[rank], allv[rank]
