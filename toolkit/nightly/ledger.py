"""The nightly ledger: one small JSON file per night beside the spec's records.

Records are immutable once published, so what a night *concluded* (its verdict against the
last good night, what changed) cannot be written into the record afterwards. It lives here,
in ``<storage>/<name>/nightly/``, one file per calendar night plus a lock per night; the
record's manifest carries the night's date in its tags, which is how the two are joined.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, IO

# A night's status. "running" is only ever seen while a run (or a killed run) is in the ledger.
STATUSES = ("running", "good", "regressed", "incomplete", "failed")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FOLDER = "nightly"


class NightLocked(RuntimeError):
    """Another process is running the same night of the same sweep."""


def check_date(text: str) -> str:
    """``YYYY-MM-DD`` and a real calendar date, or ValueError naming the problem."""
    if not isinstance(text, str) or not _DATE.match(text):
        raise ValueError(f"--date must be YYYY-MM-DD, got {text!r}")
    try:
        _dt.date.fromisoformat(text)
    except ValueError as e:
        raise ValueError(f"--date {text!r}: {e}") from None
    return text


def today_utc(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc).date().isoformat()


@dataclass
class Night:
    """What one night did and concluded (plain data; the JSON file holds exactly this)."""

    date: str
    name: str
    status: str = "running"
    version: int | None = None
    best: float | None = None
    best_config: dict | None = None
    baseline: str | None = None          # the last good night's record ref, if any
    delta: float | None = None           # best - baseline best, signed so > 0 is worse
    noise_band: float | None = None
    changed: list[str] = field(default_factory=list)
    warm_start: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def ref(self) -> str | None:
        return None if self.version is None else f"{self.name}@v{self.version}"


def folder(storage: Path, name: str) -> Path:
    return Path(storage) / name / FOLDER


def _atomic_write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True, allow_nan=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write(storage: Path, night: Night) -> Path:
    path = folder(storage, night.name) / f"{night.date}.json"
    _atomic_write_json(path, asdict(night))
    return path


def read(storage: Path, name: str, date: str) -> Night | None:
    path = folder(storage, name) / f"{check_date(date)}.json"
    if not path.is_file():
        return None
    return _parse(path)


def _parse(path: Path) -> Night:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        known = {k: raw[k] for k in Night.__dataclass_fields__ if k in raw}
        night = Night(**known)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"corrupt nightly ledger entry {path}: {e}") from None
    if night.status not in STATUSES:
        raise ValueError(f"corrupt nightly ledger entry {path}: unknown status {night.status!r}")
    return night


def nights(storage: Path, name: str) -> list[Night]:
    """Every night of ``name`` in date order."""
    d = folder(storage, name)
    if not d.is_dir():
        return []
    return [_parse(p) for p in sorted(d.glob("*.json")) if _DATE.match(p.stem)]


def last_good(storage: Path, name: str, before: str) -> Night | None:
    """The latest night before ``before`` whose verdict was good."""
    good = [n for n in nights(storage, name) if n.date < before and n.status == "good" and n.version]
    return good[-1] if good else None


# ---------------------------------------------------------------------- pins
def pins(storage: Path, name: str) -> set[int]:
    from toolkit.results.pins import pins as pinned

    return pinned(storage, name)


def pin(storage: Path, name: str, version: int) -> Path:
    from toolkit.results.pins import pin as pin_version

    return pin_version(storage, name, version)


# ---------------------------------------------------------------------- lock
class NightLock:
    """An exclusive, non-blocking lock on one night of one sweep.

    flock is released by the kernel when the holder dies, so a killed run never leaves a
    stale lock behind (a pid file would)."""

    def __init__(self, storage: Path, name: str, date: str) -> None:
        self.path = folder(storage, name) / f"{date}.lock"
        self._fh: IO[str] | None = None

    def __enter__(self) -> "NightLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise NightLocked(f"night {self.path.stem} of {self.path.parent.parent.name} is already "
                                  f"running ({holder})") from None
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
