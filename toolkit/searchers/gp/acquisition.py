"""Acquisition functions (to MAXIMISE) for minimisation, with gradients in mean and variance.

Default is log expected improvement (Ament et al. 2023, "Unexpected improvements to
expected improvement"): EI = sigma * h(z), z = (best - mu) / sigma, h(z) = phi(z) + z Phi(z).
Far from the incumbent h(z) underflows to 0 and plain EI gives flat, zero-gradient
landscapes; log h is computed in three regimes instead, so the optimiser still sees a slope.
The option "ucb" is the lower confidence bound -(mu - sqrt(beta) sigma) (Srinivas et al. 2010).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfcx, ndtr

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_HALF_LOG_PI_2 = 0.5 * math.log(math.pi / 2)
_SQRT_PI_2 = math.sqrt(math.pi / 2)
_SQRT2 = math.sqrt(2.0)
_ASYMPTOTIC = 1.0 / math.sqrt(np.finfo(float).eps)  # |z| past which h(z) ~ phi(z) / z^2


def log_h(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(phi(z) + z Phi(z)) and its derivative Phi(z) / h(z), stable for very negative z."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    dout = np.empty_like(z)
    upper = z > -1.0
    zu = z[upper]
    h = np.exp(-0.5 * zu * zu - _HALF_LOG_2PI) + zu * ndtr(zu)
    out[upper] = np.log(h)
    dout[upper] = ndtr(zu) / h
    mid = (~upper) & (z > -_ASYMPTOTIC)
    zm = -z[mid]  # > 1
    # h = phi(z) (1 - |z| m), m = Phi(z)/phi(z) = sqrt(pi/2) erfcx(|z|/sqrt2): log1mexp form.
    m = _SQRT_PI_2 * erfcx(zm / _SQRT2)
    a = np.log(zm) + np.log(m)  # < 0
    one_minus = -np.expm1(a)
    out[mid] = -0.5 * zm * zm - _HALF_LOG_2PI + np.log(one_minus)
    dout[mid] = m / one_minus
    far = ~(upper | mid)
    zf = -z[far]
    out[far] = -0.5 * zf * zf - _HALF_LOG_2PI - 2.0 * np.log(zf)
    dout[far] = zf
    return out, dout


def log_ei(mean: np.ndarray, var: np.ndarray, best: float, dmean=None, dvar=None):
    """log EI for minimisation below `best`; gradients too when dmean/dvar (B, D) are given."""
    sd = np.sqrt(var)
    z = (best - mean) / sd
    lh, dlh = log_h(z)
    val = np.log(sd) + lh
    if dmean is None:
        return val
    dval_dmean = -dlh / sd
    dval_dsd = (1.0 - dlh * z) / sd
    grad = dval_dmean[:, None] * dmean + (dval_dsd / (2.0 * sd))[:, None] * dvar
    return val, grad


def ucb(mean: np.ndarray, var: np.ndarray, beta: float, dmean=None, dvar=None):
    """Negated lower confidence bound: -mu + sqrt(beta) sigma (larger is better)."""
    sd = np.sqrt(var)
    rb = math.sqrt(beta)
    val = -mean + rb * sd
    if dmean is None:
        return val
    return val, -dmean + (rb / (2.0 * sd))[:, None] * dvar


class Acquisition:
    """An acquisition bound to a GP posterior: `value(Z)` and `value_and_grad(Z)` over features."""

    def __init__(self, gp, best: float, kind: str = "logei", beta: float = 4.0) -> None:
        if kind not in ("logei", "ucb"):
            raise ValueError(f"acquisition must be 'logei' or 'ucb', got {kind!r}")
        self.gp, self.best, self.kind, self.beta = gp, best, kind, beta

    def value(self, Z: np.ndarray) -> np.ndarray:
        mean, var = self.gp.predict(Z)
        if self.kind == "logei":
            return log_ei(mean, var, self.best)
        return ucb(mean, var, self.beta)

    def value_and_grad(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, var, dmean, dvar = self.gp.predict(Z, grad=True)
        if self.kind == "logei":
            return log_ei(mean, var, self.best, dmean, dvar)
        return ucb(mean, var, self.beta, dmean, dvar)


__all__ = ["Acquisition", "log_ei", "log_h", "ucb"]
