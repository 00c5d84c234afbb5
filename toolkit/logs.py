"""Ray's own output goes to a log file; tunekit's lines go to the user's terminal.

Ray writes from many places: Python loggers ("ray", "ray.tune", ...) whose handlers hold the
process's stderr, Tune's progress tables on stdout, worker stdout/stderr that the driver's log
monitor re-prints (`log_to_driver`), `warnings`, and C++ code writing to file descriptor 2.
Pointing descriptors 1 and 2 at the log file catches all of them without filtering anything;
tunekit's own display writes to a duplicate of the original stdout taken beforehand.

    with ray_output_to(Path("/tmp/run.log")) as out:
        print("to the log")                 # as would be any of Ray's output
        out.terminal.write("to the user\\n")
        out.move_into(record_folder)        # the same file, now <record_folder>/ray.log

`live=True` (`tunekit run --verbose`) copies everything to the terminal as well.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, TextIO

LOG_NAME = "ray.log"


def _fd_of(stream: object) -> int | None:
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


class RayOutput:
    """Where Ray's output goes while `ray_output_to` is active; see the module docstring."""

    def __init__(self, path: Path, terminal: TextIO, live: bool) -> None:
        self.path = path
        self.terminal = terminal
        self.live = live
        self._log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._pipe_w: int | None = None
        self.aliases: list[int] = []  # other descriptors that point at the log file itself
        self._tee: threading.Thread | None = None
        if live:
            # The terminal must see lines as they come, so a thread copies a pipe to both.
            read_fd, self._pipe_w = os.pipe()
            term_fd = _fd_of(terminal)
            self._tee = threading.Thread(target=self._copy, args=(read_fd, term_fd), name="tunekit-log-tee",
                                         daemon=True)
            self._tee.start()

    @property
    def target_fd(self) -> int:
        return self._pipe_w if self._pipe_w is not None else self._log_fd

    def _copy(self, read_fd: int, term_fd: int | None) -> None:
        while True:
            try:
                chunk = os.read(read_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            os.write(self._log_fd, chunk)
            try:
                if term_fd is not None:
                    os.write(term_fd, chunk)
                else:
                    self.terminal.write(chunk.decode(errors="replace"))
                    self.terminal.flush()
            except (OSError, ValueError):
                pass
        os.close(read_fd)

    def move_into(self, folder: str | os.PathLike) -> Path:
        """Move the log (with what it holds so far) into `folder` as `ray.log`; output keeps flowing.

        A folder that has one already (a resumed run) gets `ray.1.log`, `ray.2.log`, ...
        """
        new = Path(folder) / LOG_NAME
        if new == self.path:
            return new
        n = 0
        while new.exists():
            n += 1
            new = Path(folder) / f"{Path(LOG_NAME).stem}.{n}{Path(LOG_NAME).suffix}"
        _flush_std()
        try:
            os.rename(self.path, new)  # same file system: the open descriptors follow the file
        except OSError:
            shutil.copyfile(self.path, new)
            fd = os.open(new, os.O_WRONLY | os.O_APPEND)
            for target in (*self.aliases, self._log_fd):
                os.dup2(fd, target)
            os.close(fd)
            self.path.unlink(missing_ok=True)
        self.path = new
        return new

    def close(self) -> None:
        if self._pipe_w is not None:
            os.close(self._pipe_w)
            self._pipe_w = None
            if self._tee is not None:
                # A child process that inherited the pipe could keep it open: do not wait forever.
                self._tee.join(timeout=5)
        os.close(self._log_fd)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def default_log_path(prefix: str = "tunekit") -> Path:
    """A fresh log file for a run whose record folder does not exist yet."""
    fd, name = tempfile.mkstemp(prefix=f"{prefix}-", suffix=".log")
    os.close(fd)
    return Path(name)


@contextmanager
def ray_output_to(path: str | os.PathLike | None = None, live: bool = False,
                  terminal: TextIO | None = None) -> Iterator[RayOutput]:
    """Send this process's stdout/stderr (and so Ray's output) to `path` for the block.

    `terminal` is where tunekit's own lines should go: by default a duplicate of the current
    stdout. A stdout that is not a real file (pytest's capture) is used as it is.
    """
    path = Path(path) if path is not None else default_log_path()
    _flush_std()
    own_terminal = terminal is None
    if terminal is None:
        fd = _fd_of(sys.stdout)
        if fd is None:
            terminal = sys.stdout
            own_terminal = False
        else:
            terminal = open(os.dup(fd), "w", buffering=1, encoding=getattr(sys.stdout, "encoding", None) or "utf-8",
                            errors="replace")
    out = RayOutput(path, terminal, live)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    saved_streams = (sys.stdout, sys.stderr)
    for fd in (1, 2):
        os.dup2(out.target_fd, fd)
    # Python-level writers that do not sit on descriptors 1/2 (e.g. under pytest) also go to the log.
    log_stream: IO[str] = open(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    sys.stdout = sys.stderr = log_stream
    if not live:
        out.aliases = [1, 2, log_stream.fileno()]
    try:
        yield out
    finally:
        _flush_std()
        sys.stdout, sys.stderr = saved_streams
        log_stream.close()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        out.close()
        if own_terminal:
            terminal.close()
