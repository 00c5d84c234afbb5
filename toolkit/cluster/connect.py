"""Connect to a Ray cluster, or start an embedded local Ray, and say what it offers.

Kept apart from the runner so that everything about reaching a cluster (addresses, auth
tokens, where workers find the user's code) lives in one place.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


def use_cluster_token() -> None:
    """Present the cluster's auth token when connecting to an existing Ray cluster.

    Ray clusters use token authentication by default, but a client only sends the token when
    RAY_AUTH_MODE=token, and Ray reads that when it is first imported: call this before.
    """
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if "RAY_AUTH_MODE" not in os.environ and ("RAY_AUTH_TOKEN" in os.environ or token_file.exists()):
        os.environ["RAY_AUTH_MODE"] = "token"


def _job_config(code_paths: Iterable[str | os.PathLike]) -> Any:
    """Let the workers import the user's modules from `code_paths` too.

    Ray puts the driver script's folder and the current folder on its workers' `sys.path`
    (through the job config's `_py_driver_sys_path`); we add the spec's folder the same way.
    Not PYTHONPATH: that would reach Ray's own processes as they start, and a folder that
    happens to hold, say, Ray's session folder `/tmp/ray` would shadow the `ray` package.
    """
    from ray.job_config import JobConfig

    paths = [str(Path(p)) for p in code_paths]
    return JobConfig(_py_driver_sys_path=paths) if paths else None


@dataclass
class Connection:
    """The Ray a run uses: where, what it offers, and whether this run started it."""

    address: str | None
    started: bool
    resources: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        return (f"{self.resources.get('CPU', 0):g} CPU / {self.resources.get('GPU', 0):g} GPU "
                f"({'cluster ' + self.address if self.address else 'local Ray'})")

    def close(self) -> None:
        """Shut Ray down if this run started it (a cluster or the caller's Ray stays up)."""
        if self.started:
            import ray

            ray.shutdown()
            self.started = False


def cluster_resources() -> dict[str, float]:
    import ray

    res = ray.cluster_resources()
    return {"CPU": float(res.get("CPU", 0)), "GPU": float(res.get("GPU", 0)),
            "nodes": float(len([n for n in ray.nodes() if n.get("Alive")]))}


def connect(address: str | None = None, *, num_cpus: int | None = None, num_gpus: float | None = None,
            code_paths: Iterable[str | os.PathLike] = ()) -> Connection:
    """Connect to the cluster at `address`, or start a local Ray with `num_cpus` / `num_gpus`.

    An already initialised Ray (a caller's, a test's) is used as it is. `code_paths` are
    folders the workers of a local Ray should import the user's modules from.
    """
    import ray

    if ray.is_initialized():
        return Connection(address, False, cluster_resources())
    if address:
        from toolkit.preflight import address_problem

        problem = address_problem(address)  # ray.init retries for minutes when nothing listens
        if problem:
            raise ConnectionError(problem)
        use_cluster_token()
        client = address.startswith("ray://")  # a Ray Client ships code with runtime_env, not paths
        ray.init(address=address, logging_level="WARNING", job_config=None if client else _job_config(code_paths))
    else:
        start_local_ray(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, logging_level="WARNING",
                        job_config=_job_config(code_paths))
    return Connection(address, True, cluster_resources())


# Ray waits a fixed 30 s for a new node's raylet to register; a busy workstation (a build, a
# training job, a test suite) can miss that once. Starting again usually succeeds.
LOCAL_START_ATTEMPTS = 3


def start_local_ray(**init_args: object) -> None:
    """`ray.init` of an embedded local Ray, started again when the raylet misses Ray's start-up wait."""
    import ray

    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        before = _descendants()
        try:
            ray.init(**init_args)
            return
        except Exception as e:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(e) or attempt == LOCAL_START_ATTEMPTS:
                raise
            # The half-started node is not Ray's global node yet, so ray.shutdown() would leave its
            # processes running: stop exactly the ones this attempt started.
            for pid in _descendants() - before:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            ray.shutdown()


def _descendants() -> set[int]:
    """Pids of this process's children, grandchildren, ... (Linux /proc; empty elsewhere)."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # the field after the parenthesised command name is the state, then the parent pid
            parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parent_of.items() if ppid in frontier} - found
        found |= frontier
    return found
