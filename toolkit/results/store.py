"""On-disk layout of records and the primitives that keep them safe.

Layout::

    <root>/<name>/v<N>/manifest.json        published (complete) version: the commit point
    <root>/<name>/v<N>/trials.parquet
    <root>/<name>/v<N>/metrics.parquet
    <root>/<name>/v<N>/suggestions.parquet  (when the searcher's suggestions were given)
    <root>/<name>/v<N>/_incomplete/         staging area while the sweep runs:
        manifest.json                        the manifest as the run started (+ writer pid/host)
        journal.jsonl                        append-only: one checksummed JSON line per finished
                                             trial (row + history) or batch of suggestions

Safety model (the same idea as git objects and DVC's content hashes):
* A version number is reserved by ``mkdir`` of ``v<N>``, which is atomic and exclusive on
  POSIX filesystems, so concurrent processes can never get the same number; a number is
  never reused, even when its run dies.
* Every file is written to a temporary name, fsynced and renamed into place, so a crash
  never leaves a half-written file under a real name.
* ``manifest.json`` is published last and with ``os.link`` (fails if the name exists), so a
  version is complete exactly when its manifest exists, and a published manifest is never
  replaced. The manifest lists the sha256 of every data file and of itself (minus that field).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterable

from toolkit.results.refs import check_name

MANIFEST = "manifest.json"
STAGING = "_incomplete"
JOURNAL = "journal.jsonl"
FORMAT = "tunekit-record"
FORMAT_VERSION = 1
_VDIR = re.compile(r"^v(\d+)$")


class RecordError(Exception):
    """Base class for record problems; ``path`` names the offending file or folder."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class RecordNotFound(RecordError):
    pass


class IntegrityError(RecordError):
    """A file does not match its checksum, is truncated, missing or malformed."""


class IncompleteRecordError(RecordError):
    """The version was never published (still running, or its writer died)."""


# --------------------------------------------------------------------------- JSON helpers
def jsonable(value: Any) -> Any:
    """Strict-JSON copy of ``value``: NaN/inf become None, tuples lists, numpy scalars
    Python numbers, unknown objects their ``str``. Records never hold pickles."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    item = getattr(value, "item", None)  # numpy scalar
    if callable(item) and getattr(value, "shape", None) == ():
        return jsonable(item())
    tolist = getattr(value, "tolist", None)  # numpy array
    if callable(tolist):
        return jsonable(tolist())
    return str(value)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without its own ``manifest_sha256`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


# --------------------------------------------------------------------------- files
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(directory: Path, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def atomic_write(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one.

    ``exclusive`` publishes with a hard link, which fails if ``path`` exists: used for
    manifests so that nothing published is ever overwritten."""
    path = Path(path)
    tmp = _write_temp(path.parent, data)
    try:
        if exclusive:
            os.link(tmp, path)  # raises FileExistsError rather than overwrite
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


# --------------------------------------------------------------------------- layout
def record_dir(root: Path, name: str) -> Path:
    return Path(root) / check_name(name)


def version_dir(root: Path, name: str, version: int) -> Path:
    return record_dir(root, name) / f"v{int(version)}"


def versions(root: Path, name: str) -> list[int]:
    """All reserved version numbers of ``name``, ascending (complete or not)."""
    d = record_dir(root, name)
    if not d.is_dir():
        return []
    out = []
    for entry in d.iterdir():
        m = _VDIR.match(entry.name)
        if m and entry.is_dir():
            out.append(int(m.group(1)))
    return sorted(out)


def names(root: Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        return []
    # Other tools share the root (the runner keeps Ray's files in ".ray"): skip what is not a record.
    return sorted(e.name for e in root.iterdir() if e.is_dir() and _is_record_name(e.name) and versions(root, e.name))


def _is_record_name(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True


def is_published(vdir: Path) -> bool:
    return (Path(vdir) / MANIFEST).is_file()


def reserve_version(root: Path, name: str) -> tuple[int, Path]:
    """Atomically claim the next free version number of ``name``.

    ``mkdir`` either creates the folder or fails because another process did; on failure we
    move on to the next number, so N concurrent writers always end up with N versions."""
    d = record_dir(root, name)
    d.mkdir(parents=True, exist_ok=True)
    n = (versions(root, name) or [0])[-1] + 1
    while True:
        vdir = d / f"v{n}"
        try:
            os.mkdir(vdir)
        except FileExistsError:
            n += 1
            continue
        (vdir / STAGING).mkdir()
        _fsync_dir(d)
        return n, vdir


def writer_identity() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def writer_alive(writer: dict | None) -> bool | None:
    """Whether a staging version's writer process still runs (None: cannot tell, other host)."""
    if not writer or writer.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(writer["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, KeyError):
        return None
    return True


def journal_line(payload: str) -> str:
    """``<sha256 of payload> <payload>``: a line whose own checksum says whether it is whole."""
    return f"{sha256_bytes(payload.encode())} {payload}\n"


def read_journal(staging: Path) -> list[dict]:
    """Entries of a staging journal. A damaged LAST line is a write cut short by a crash and
    is dropped; a damaged line before it means the file was altered: `IntegrityError`."""
    path = Path(staging) / JOURNAL
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    entries = []
    for i, raw in enumerate(lines):
        digest, _, payload = raw.partition(b" ")
        ok = len(digest) == 64 and sha256_bytes(payload) == digest.decode(errors="replace")
        entry = None
        if ok:
            try:
                entry = json.loads(payload)
            except (json.JSONDecodeError, UnicodeDecodeError):
                ok = False
        if not ok or not isinstance(entry, dict):
            if i == len(lines) - 1:
                break  # torn tail: the flush that wrote it never completed
            raise IntegrityError(f"{path}: line {i + 1} does not match its checksum: the journal was altered", path)
        entries.append(entry)
    return entries


def count_journal_trials(staging: Path) -> int:
    """Trials in a journal without parsing it (for listings)."""
    path = Path(staging) / JOURNAL
    if not path.exists():
        return 0
    marker = b' {"kind": "trial"'
    with open(path, "rb") as f:
        return sum(1 for line in f if line[64:64 + len(marker)] == marker and line.endswith(b"\n"))


def make_read_only(paths: Iterable[Path]) -> None:
    for p in paths:
        try:
            os.chmod(p, 0o444)
        except OSError:
            pass
