"""The regression gate: is tonight's best worse than the last good night's, beyond noise?

Tonight re-evaluates the last good night's champions first, so each champion has two values
of the same configuration a night apart. Their differences are drift plus evaluation noise;
the *spread* of those differences is the noise band, and a best-metric delta outside it is a
regression. A shift common to every champion (the objective or the data changed) is exactly
what the gate must flag, so the band is built from the spread, never from the mean shift.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Sequence

# Exit codes of `tunekit nightly run` (documented in the README).
EXIT_GOOD = 0
EXIT_FAILED = 1
EXIT_REGRESSED = 3
EXIT_INCOMPLETE = 4
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run of this night holds the lock; try later


@dataclass
class Verdict:
    status: str                       # good | regressed | incomplete | failed
    delta: float | None = None        # tonight best - baseline best, signed so > 0 is worse
    noise_band: float | None = None
    champion_shift: float | None = None   # median change of the re-evaluated champions (> 0 worse)
    reasons: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"good": EXIT_GOOD, "regressed": EXIT_REGRESSED, "incomplete": EXIT_INCOMPLETE}.get(
            self.status, EXIT_FAILED)


def worse_by(mode: str, new: float, old: float) -> float:
    """How much worse ``new`` is than ``old`` (negative when better)."""
    return (new - old) if mode == "min" else (old - new)


def noise_band(mode: str, champions: Sequence[tuple[float, float]], tolerance: float, z: float) -> float:
    """``max(tolerance, z * stdev)`` of the champions' night-to-night changes.

    With fewer than two re-evaluated champions there is no spread to measure and the band is
    the tolerance alone."""
    diffs = [worse_by(mode, new, old) for old, new in champions if _finite(old) and _finite(new)]
    spread = statistics.stdev(diffs) if len(diffs) >= 2 else 0.0
    return max(float(tolerance), float(z) * spread)


def judge(mode: str, run_status: str, best: float | None, baseline_best: float | None,
          champions: Sequence[tuple[float, float]] = (), tolerance: float = 0.0, z: float = 3.0) -> Verdict:
    """The night's status from the run's status, its best and the baseline's.

    ``champions`` holds (baseline value, tonight's value) for each re-evaluated champion."""
    if run_status == "interrupted":
        return Verdict("incomplete", reasons=["the sweep was interrupted"])
    if run_status != "completed" or not _finite(best):
        return Verdict("failed", reasons=["no trial produced a finite metric" if run_status == "completed"
                                          else f"the sweep {run_status}"])
    if not _finite(baseline_best):
        return Verdict("good", reasons=["no earlier good night to compare with: this night is the baseline"])
    delta = worse_by(mode, best, baseline_best)
    band = noise_band(mode, champions, tolerance, z)
    diffs = [worse_by(mode, new, old) for old, new in champions if _finite(old) and _finite(new)]
    shift = statistics.median(diffs) if diffs else None
    if delta > band:
        reasons = [f"best is worse by {delta:.6g}, outside the noise band {band:.6g}"]
        if shift is not None and shift > band:
            reasons.append(f"the re-evaluated champions got worse by {shift:.6g} (median): "
                           "the objective, data or code changed, not only the search")
        return Verdict("regressed", delta, band, shift, reasons)
    return Verdict("good", delta, band, shift, [f"best delta {delta:+.6g} within the noise band {band:.6g}"])


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)
