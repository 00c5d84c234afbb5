"""Scheduled nightly sweeps: one idempotent run a night, warm-started from the last good night,
judged against it, summarised, and pruned. No Ray code of its own (see night.py)."""

from toolkit.nightly.gate import EXIT_FAILED, EXIT_GOOD, EXIT_INCOMPLETE, EXIT_LOCKED, EXIT_REGRESSED

__all__ = ["EXIT_FAILED", "EXIT_GOOD", "EXIT_INCOMPLETE", "EXIT_LOCKED", "EXIT_REGRESSED"]
