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
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable

from toolkit.results.refs import check_name

MANIFEST = "manifest.json"
STAGING = "_incomplete"
JOURNAL = "journal.jsonl"
FORMAT = "tunekit-record"
FORMAT_VERSION = 1
# A manifest holds settings and checksums, never tables: anything larger is not one.
MAX_MANIFEST_BYTES = 64 << 20
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


class IdentityMismatch(IntegrityError):
    """The manifest names another record or version than the folder it was loaded from."""


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


def _kind_of(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def read_record_file(path: Path, folder: Path, *, size: int | None = None,
                     max_bytes: int | None = None) -> bytes:
    """The bytes of a record's file, refusing anything that is not what it claims to be.

    Records travel between people and machines, so a file may have been replaced by a
    symlink (to ``/dev/zero``, to a file outside the record), a FIFO (reading would hang)
    or a device. ``lstat`` decides before anything is opened: only a regular file directly
    inside ``folder`` is read, and only when its size is the one the manifest recorded
    (``size``) or at most ``max_bytes``; the open itself neither follows links nor blocks."""
    path, folder = Path(path), Path(folder)
    if os.path.normpath(path.parent) != os.path.normpath(folder):
        raise IntegrityError(f"{path}: outside the version folder {folder}", path)
    if os.path.islink(folder):  # the folder itself may not lead elsewhere either
        raise IntegrityError(f"{folder}: is a symbolic link (to {os.readlink(folder)}); a record's folders "
                             "must be real folders", folder)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise IntegrityError(f"{path}: file is missing", path) from None
    except OSError as e:
        raise IntegrityError(f"{path}: cannot be read ({e.strerror or e})", path) from None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        raise IntegrityError(f"{path}: is a symbolic link (to {target}); a record's files must be "
                             "regular files inside its version folder", path)
    if not stat.S_ISREG(st.st_mode):
        raise IntegrityError(f"{path}: is {_kind_of(st.st_mode)}, not a regular file", path)
    if size is not None and st.st_size != size:
        raise IntegrityError(
            f"{path}: size {st.st_size} bytes, manifest says {size}: the file is truncated or altered", path)
    if max_bytes is not None and st.st_size > max_bytes:
        raise IntegrityError(f"{path}: {st.st_size} bytes, more than the {max_bytes} such a file can hold", path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise IntegrityError(f"{path}: cannot be opened ({e.strerror or e})", path) from None
    with os.fdopen(fd, "rb") as f:
        now = os.fstat(f.fileno())
        if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev) or not stat.S_ISREG(now.st_mode):
            raise IntegrityError(f"{path}: was replaced while being read", path)
        data = f.read(st.st_size + 1)  # one byte more tells a file that grew meanwhile
    if len(data) != st.st_size:
        raise IntegrityError(f"{path}: changed size while being read", path)
    return data


def check_identity(vdir: Path, manifest: dict, path: Path | None = None) -> None:
    """Refuse a manifest whose name or version is not the folder it was loaded from.

    A manifest's name later names output files (``<name>-v<N>.html``), so a record that
    says ``name: ../../x`` must never get that far; the folder, not the manifest, is what
    the user asked for."""
    vdir = Path(vdir)
    where = path or vdir / MANIFEST
    name, version = manifest.get("name"), manifest.get("version")
    folder_name, folder_version = vdir.parent.name, vdir.name
    if (name != folder_name or isinstance(version, bool) or not isinstance(version, int)
            or f"v{version}" != folder_version):
        raise IdentityMismatch(
            f"{where}: the manifest says {name!r} version {version!r} but it was loaded from "
            f"{folder_name}/{folder_version}: a record's name and version must match its folder", where)


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
    # lexists, not is_file: a manifest replaced by a link or a FIFO is a published version
    # that fails to load, naming the file, rather than one that silently looks incomplete.
    return os.path.lexists(Path(vdir) / MANIFEST)


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


def process_start(pid: int) -> str | None:
    """When process ``pid`` started, as ``<boot id>:<clock ticks since boot>`` (Linux), so a
    later process that got the same pid is told apart; None where /proc cannot say."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            boot = f.read().strip().decode()
        return f"{boot}:{int(fields[19])}"  # field 22 of stat; fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None


def writer_identity() -> dict:
    ident = {"pid": os.getpid(), "host": socket.gethostname()}
    started = process_start(os.getpid())
    if started:
        ident["process_start"] = started
    return ident


def writer_alive(writer: Any) -> bool | None:
    """Whether a staging version's writer process still runs (None: cannot tell, other host).

    A pid alone is not enough: once the writer died its pid may belong to another process,
    so the recorded start time must match too (records written without one fall back to
    the pid)."""
    if not isinstance(writer, dict) or writer.get("host") != socket.gethostname():
        return None
    pid = writer.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    except OSError:
        return None
    recorded = writer.get("process_start")
    if recorded is None:
        return True
    current = process_start(pid)
    if current is None:
        return None
    return current == recorded


def journal_line(payload: str) -> str:
    """``<sha256 of payload> <payload>``: a line whose own checksum says whether it is whole."""
    return f"{sha256_bytes(payload.encode())} {payload}\n"


def _entry_problem(entry: dict, seen: set[str]) -> str | None:
    """What is wrong with a journal entry whose checksum matched (a line can be forged with
    its checksum recomputed), or None. Unknown kinds are left for newer readers."""
    kind = entry.get("kind")
    if kind == "trial":
        trial = entry.get("trial")
        if not isinstance(trial, dict):
            return "'trial' is not an object"
        tid = trial.get("trial_id")
        if not isinstance(tid, str) or not tid:
            return "the trial has no trial_id"
        if tid in seen:
            return f"trial {tid!r} appears twice"
        seen.add(tid)
        if not isinstance(trial.get("config"), (dict, type(None))):
            return f"trial {tid!r}: 'config' is not an object"
        columns = entry.get("columns")
        if columns is None:
            return None
        if not isinstance(columns, dict) or not all(isinstance(v, list) for v in columns.values()):
            return f"trial {tid!r}: 'columns' is not an object of lists"
        if len({len(v) for v in columns.values()}) > 1:
            return f"trial {tid!r}: metric columns of different lengths"
        # Other columns may hold stray non-numbers (they become nulls); iterations may not.
        for v in columns.get("training_iteration") or ():
            if isinstance(v, bool) or not isinstance(v, int):
                return f"trial {tid!r}: training_iteration {v!r} is not an integer"
    elif kind == "suggestions":
        rows = entry.get("rows")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return "'rows' is not a list of objects"
    return None


def read_journal(staging: Path) -> list[dict]:
    """Entries of a staging journal. A damaged LAST line is a write cut short by a crash and
    is dropped; a damaged line before it means the file was altered: `IntegrityError`. A
    line whose checksum matches but whose content is not a journal entry was written by
    something else than a `RecordWriter`: `IntegrityError` wherever it is."""
    staging = Path(staging)
    path = staging / JOURNAL
    if not os.path.lexists(path):
        return []
    lines = read_record_file(path, staging).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    entries: list[dict] = []
    seen: set[str] = set()
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
        problem = _entry_problem(entry, seen)
        if problem:
            raise IntegrityError(f"{path}: line {i + 1} is not a journal entry ({problem}): "
                                 "the journal was altered", path)
        entries.append(entry)
    return entries


def count_journal_trials(staging: Path) -> int:
    """Trials in a journal without parsing it (for listings)."""
    path = Path(staging) / JOURNAL
    if not os.path.lexists(path):
        return 0
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the listing
        raise IntegrityError(f"{path}: is {'a symbolic link' if stat.S_ISLNK(st.st_mode) else _kind_of(st.st_mode)}, "
                             "not a regular file", path)
    marker = b' {"kind": "trial"'
    with open(path, "rb") as f:
        return sum(1 for line in f if line[64:64 + len(marker)] == marker and line.endswith(b"\n"))


def make_read_only(paths: Iterable[Path]) -> None:
    for p in paths:
        try:
            os.chmod(p, 0o444)
        except OSError:
            pass
