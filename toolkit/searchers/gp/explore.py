"""A way out of a stuck region: detect repeated re-measurement, then take a Thompson step.

On a noisy objective EI keeps re-measuring the point whose posterior mean is lowest: the
latent variance there shrinks only as noise / repeats, and when the surrounding mean looks
worse (often because the model has never seen the neighbourhood), every other candidate
scores lower. A noisy Branin run measured one spot 1.5 above the optimum 49 times in a row
(results/gp.md). Repeats average noise, but after a few of them more tell us little.

Rule (deterministic: it reads only the observations, so a restore or a rerun with the same
results sees the same thing):

* an observation is a *repeat* when it lies within `radius` lengthscales of an earlier one
  (at 0.1 lengthscales the Matern-5/2 correlation is 0.99: the same measurement again);
* when the last `patience` observations are all repeats, the next proposal is a Thompson
  step: one joint draw from the posterior over a candidate set (scrambled Sobol points plus
  perturbations of the best points), excluding candidates that would be repeats, and its
  minimiser is proposed. A Thompson draw explores in proportion to the posterior
  probability that a point is the best (Russo & Van Roy 2014), so it probes the
  neighbourhood the model is unsure about rather than jumping to a random corner.

EI resumes at the next proposal; if it returns to the same spot, another `patience` repeats
are needed before the next Thompson step.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import LinAlgError, solve_triangular

from toolkit.searchers.gp.encoding import Encoding
from toolkit.searchers.gp.model import GP, jittered_cholesky, matern52
from toolkit.searchers.gp.optimize import local_perturbations, sobol


def nearest_scaled_distance(Z: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """For each row of `Z`, the distance to the nearest row of `ref` (both already / lengthscales)."""
    if len(ref) == 0:
        return np.full(len(Z), np.inf)
    d2 = (Z * Z).sum(1)[:, None] + (ref * ref).sum(1)[None, :] - 2.0 * Z @ ref.T
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


def repeats_in_a_row(X: np.ndarray, lengthscales: np.ndarray, radius: float, limit: int | None = None) -> int:
    """How many of the last observations (rows of `X`, in completion order) are repeats,
    counting back at most `limit` of them."""
    Z = X / lengthscales
    count = 0
    for i in range(len(Z) - 1, 0, -1):
        if limit is not None and count >= limit:
            break
        if nearest_scaled_distance(Z[i : i + 1], Z[:i])[0] >= radius:
            break
        count += 1
    return count


def thompson_step(
    gp: GP,
    enc: Encoding,
    rng: np.random.Generator,
    anchors: np.ndarray,
    radius: float,
    n_sobol: int = 512,
    n_local: int = 256,
) -> np.ndarray | None:
    """Raw vector minimising one joint posterior draw over non-repeat candidates (None: none left)."""
    U = enc.snap(np.vstack([sobol(enc.n_raw, n_sobol, int(rng.integers(2**62))), local_perturbations(enc, anchors, n_local, rng)]))
    Z = enc.features(U, snapped=True)
    ls = gp.hyper.lengthscales
    far = nearest_scaled_distance(Z / ls, gp.X / ls) >= radius
    U, Z = U[far], Z[far]
    if len(U) == 0:
        return None
    mean, _ = gp.predict(Z)
    Ks = matern52(Z, gp.X, ls, gp.hyper.signal)
    V = solve_triangular(gp.L, Ks.T, lower=True, check_finite=False)
    cov = matern52(Z, Z, ls, gp.hyper.signal) - V.T @ V
    try:
        L = jittered_cholesky(0.5 * (cov + cov.T))
    except LinAlgError:  # pragma: no cover - jitter escalates far enough in practice
        L = np.diag(np.sqrt(np.maximum(np.diag(cov), 0.0)))
    draw = mean + L @ rng.standard_normal(len(U))
    return U[int(np.argmin(draw))]
