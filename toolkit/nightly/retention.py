"""Retention for nightly sweeps: drop what is heavy and replaceable, never what is evidence.

A night's record (manifest and tables) is the evidence and is never touched. What grows
without bound is Ray's working folder per run (trial checkpoints, experiment state); those
are pruned for nights outside the kept set.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.nightly.ledger import Night


@dataclass
class Pruning:
    kept: dict[str, list[str]] = field(default_factory=dict)   # date -> why it is kept
    pruned: list[tuple[str, str]] = field(default_factory=list)  # (date, folder removed)
    freed_bytes: int = 0


def ray_folders(storage: Path, name: str, version: int) -> list[Path]:
    """Ray's working folders of one record version (the runner names them ``<name>-v<N>``)."""
    base = Path(storage) / ".ray"
    return [p for p in (base / f"{name}-v{version}",) if p.is_dir()]


def reasons_to_keep(all_nights: list[Night], keep_last: int, pinned: set[int], mode: str) -> dict[str, list[str]]:
    """Why each night is kept: among the last ``keep_last``, last good, best ever, flagged, pinned."""
    why: dict[str, list[str]] = {}
    dated = sorted(all_nights, key=lambda n: n.date)
    for n in dated[-keep_last:] if keep_last > 0 else []:
        why.setdefault(n.date, []).append(f"one of the last {keep_last}")
    good = [n for n in dated if n.status == "good"]
    if good:
        why.setdefault(good[-1].date, []).append("last good")
    scored = [n for n in dated if n.best is not None and n.status in ("good", "regressed")]
    if scored:
        best = (min if mode == "min" else max)(scored, key=lambda n: n.best)
        why.setdefault(best.date, []).append("best ever")
    for n in dated:
        if n.status == "regressed":
            why.setdefault(n.date, []).append("flagged")
        if n.version is not None and n.version in pinned:
            why.setdefault(n.date, []).append("pinned")
        if n.status == "running":
            why.setdefault(n.date, []).append("still running or resumable")
    return why


def prune(storage: Path, name: str, all_nights: list[Night], keep_last: int, pinned: set[int],
          mode: str, dry_run: bool = False) -> Pruning:
    """Remove Ray's working folders of every night not kept; returns what was kept and why."""
    out = Pruning(kept=reasons_to_keep(all_nights, keep_last, pinned, mode))
    for n in all_nights:
        if n.date in out.kept or n.version is None:
            continue
        for folder in ray_folders(storage, name, n.version):
            out.freed_bytes += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
            out.pruned.append((n.date, str(folder)))
            if not dry_run:
                shutil.rmtree(folder)
    return out
