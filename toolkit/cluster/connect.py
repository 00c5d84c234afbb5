"""Connect to a Ray cluster, or start an embedded local Ray, and say what it offers.

Kept apart from the runner so that everything about reaching a cluster (addresses, auth
tokens, where workers find the user's code) lives in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable


def use_cluster_token() -> None:
    """Present the cluster's auth token when connecting to an existing Ray cluster.

    Ray clusters use token authentication by default, but a client only sends the token when
    RAY_AUTH_MODE=token, and Ray reads that when it is first imported: call this before.
    """
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if "RAY_AUTH_MODE" not in os.environ and ("RAY_AUTH_TOKEN" in os.environ or token_file.exists()):
        os.environ["RAY_AUTH_MODE"] = "token"


def _workers_find_code_in(paths: Iterable[str | os.PathLike]) -> None:
    """Let the worker processes of a local Ray we start import modules from `paths`.

    Ray adds only the driver script's folder and the current folder to its workers'
    `sys.path`; workers inherit PYTHONPATH from the raylet, which inherits it from us.
    """
    wanted = [str(Path(p)) for p in paths]
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    merged = list(dict.fromkeys(wanted + current))
    if merged:
        os.environ["PYTHONPATH"] = os.pathsep.join(merged)


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
        use_cluster_token()
        ray.init(address=address, logging_level="WARNING")
    else:
        _workers_find_code_in(code_paths)
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, logging_level="WARNING")
    return Connection(address, True, cluster_resources())
