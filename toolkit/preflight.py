"""Checks a spec must pass before anything starts: things the spec's own validation cannot
see (the filesystem, existing records, the local Ray's size) or that only show together.

`preflight(spec, cluster)` runs before `--dry-run` prints its plan and before a run reserves
a record version or starts Ray, so each of these is a one-line error naming the field,
never a run that hangs or fails after Ray has started:

* a name too long to be a record folder (Ray builds longer names from it);
* storage that is a file, not writable, on a read-only filesystem, or under /proc, /sys, /dev;
* a warm-start record that does not exist (or has no complete version);
* resources per trial that the local Ray can never offer (the run would wait forever);
* an ASHA `grace_period` beyond the horizon `stop.max_iterations` (its max_t).

This module imports neither Ray nor torch.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Mapping

from toolkit.results.refs import RefError, check_name
from toolkit.spec import ExperimentSpec, SpecError

# Virtual filesystems: writing records there fails or, worse, pokes the kernel.
_VIRTUAL_ROOTS = ("/proc", "/sys", "/dev")


def storage_problem(storage: str | os.PathLike) -> str | None:
    """Why records cannot be written under ``storage`` (None: they can). Writes nothing."""
    path = Path(os.path.abspath(Path(storage).expanduser()))
    real = os.path.realpath(path)
    for root in _VIRTUAL_ROOTS:
        if real == root or real.startswith(root + "/"):
            return f"{storage} is under {root}, a virtual filesystem: records cannot be kept there"
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        if existing == path:
            return f"{storage} is a file, not a folder"
        return f"{existing} is a file, so {storage} cannot be created"
    try:
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return f"{existing} is on a read-only filesystem"
    except OSError:
        pass
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user" + ("" if existing == path else f" (to create {storage})")
    return None


def resource_problems(spec: ExperimentSpec, cluster: Mapping[str, float]) -> list[tuple[str, str]]:
    """Per-trial resources more than the whole (local) cluster has: no trial could ever start."""
    problems = []
    res = spec.resources_per_trial
    for field, need, kind in (("cpu", res.cpu, "CPU"), ("gpu", res.gpu, "GPU")):
        have = float(cluster.get(kind, 0) or 0)
        if need > have + 1e-9:
            where = "local_ray.num_cpus" if kind == "CPU" else "local_ray.num_gpus"
            problems.append((f"resources_per_trial.{field}",
                             f"each trial needs {need:g} {kind}(s) but the local Ray has {have:g} "
                             f"(this machine, or {where}): no trial could ever start"))
    return problems


def warm_start_problems(spec: ExperimentSpec) -> list[tuple[str, str]]:
    from toolkit.results import RecordError, resolve

    problems = []
    for i, ref in enumerate(getattr(spec.searcher, "warm_start", None) or ()):
        try:
            resolve(ref, spec.storage)
        except (RecordError, RefError) as e:
            problems.append((f"searcher.warm_start[{i}]", str(e.args[0] if e.args else e)))
    return problems


def horizon_problems(spec: ExperimentSpec) -> list[tuple[str, str]]:
    grace = getattr(spec.scheduler, "grace_period", None)
    max_t = spec.stop.max_iterations
    if isinstance(grace, int) and max_t is not None and grace > max_t:
        return [("scheduler.grace_period", f"{grace} is larger than stop.max_iterations ({max_t}), the "
                                           "scheduler's max_t: no trial would run long enough to be compared")]
    return []


def preflight_problems(spec: ExperimentSpec, cluster: Mapping[str, float] | None = None) -> list[tuple[str, str]]:
    """Every problem found; ``cluster`` (CPU/GPU totals) only for a local Ray we start ourselves,
    whose size is fixed (a remote cluster may grow)."""
    problems: list[tuple[str, str]] = []
    try:
        check_name(spec.name)
    except RefError as e:
        problems.append(("name", str(e)))
    why = storage_problem(spec.storage)
    if why:
        problems.append(("storage", why))
    problems += horizon_problems(spec)
    if cluster is not None:
        problems += resource_problems(spec, cluster)
    if not why:
        problems += warm_start_problems(spec)
    return problems


def preflight(spec: ExperimentSpec, cluster: Mapping[str, float] | None = None, source: Any = None) -> None:
    """Raise `SpecError` listing every problem `preflight_problems` finds."""
    problems = preflight_problems(spec, cluster)
    if problems:
        raise SpecError(problems, None if source is None else str(source))


def address_problem(address: str, timeout_s: float = 5.0) -> str | None:
    """Whether a ``host:port`` (or ``ray://host:port``) Ray address accepts connections within
    ``timeout_s``: ``ray.init`` itself keeps retrying for minutes when nothing listens.
    Addresses without a port (``auto``, ``local``) are left to Ray."""
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return None
    except OSError as e:
        reason = e.strerror or (type(e).__name__ if not str(e) else str(e))
        if isinstance(e, TimeoutError) or isinstance(e, socket.timeout):
            reason = f"no answer within {timeout_s:g} s"
        return f"cannot reach a Ray cluster at {address}: {reason}"
