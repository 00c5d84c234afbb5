"""Checks made on the client before anything is uploaded to a cluster.

- the package (working directory minus exclusions) fits Ray's 100 MiB upload limit;
- the client's Ray matches the cluster's (a mismatch fails late and obscurely otherwise);
- RAY_API_SERVER_ADDRESS / RAY_ADDRESS would silently replace `--address` in Ray's client;
- the record storage is a path the cluster can use (not relative to the job's scratch folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from toolkit.cluster.auth import ClusterError

# Ray's limit on a working_dir upload over HTTP (the dashboard's client_max_size).
UPLOAD_LIMIT_BYTES = 100 * 1024 * 1024
# Never worth shipping: version control, environments, caches, and local records.
DEFAULT_EXCLUDES = [".git", ".venv", "venv", "__pycache__", "*.pyc", ".pytest_cache", "*.egg-info",
                    "tunekit-results", "ray_results"]


@dataclass
class Package:
    root: Path
    total_bytes: int
    n_files: int
    largest: list[tuple[int, str]]  # (bytes, path relative to root), biggest first


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def scan_package(root: Path, excludes: list[str]) -> Package:
    """Walk `root` the way Ray packs a working_dir (its own traversal: .gitignore, .rayignore
    and `excludes` honoured) and add up what would be uploaded."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    root = root.resolve()
    sizes: list[tuple[int, str]] = []

    def handler(path: Path) -> None:
        if path.is_file():
            sizes.append((path.stat().st_size, str(path.relative_to(root))))

    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    _dir_travel(root, [_get_excludes(root, excludes)], handler, include_gitignore=include_gitignore)
    sizes.sort(reverse=True)
    return Package(root, sum(s for s, _ in sizes), len(sizes), sizes[:5])


def check_package(package: Package, limit: int = UPLOAD_LIMIT_BYTES) -> None:
    """Refuse a package over the upload limit, naming its largest files and how to leave them out.

    Counts bytes before compression: an honest upper bound, checked without zipping anything."""
    if package.total_bytes < limit:
        return
    biggest = ", ".join(f"{p} ({_mib(s)})" for s, p in package.largest)
    raise ClusterError(
        f"working directory {package.root} is {_mib(package.total_bytes)} in {package.n_files} files, over Ray's "
        f"{_mib(limit)} upload limit; largest: {biggest}. Leave them out with a .rayignore (or .gitignore) "
        "line per path, or --exclude PATTERN; put data on shared storage and read it from there")


def check_versions(client: str, cluster: str) -> None:
    if client != cluster:
        raise ClusterError(f"Ray versions differ: this client has {client}, the cluster runs {cluster}; "
                           f"install ray=={cluster} here (or submit from a matching environment)")


def address_overrides(address: str | None) -> list[str]:
    """Warnings for environment variables Ray's client would let override `--address`."""
    out = []
    for var in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(var)
        if value and address and value.rstrip("/") != address.rstrip("/"):
            out.append(f"{var}={value} is set; Ray's client would use it instead of --address {address}. "
                       f"tunekit uses --address (unset {var} to silence this)")
    return out


def resolve_address(address: str | None) -> str:
    """`--address`, else RAY_API_SERVER_ADDRESS, else an http RAY_ADDRESS."""
    if address:
        return address
    for var in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        value = os.environ.get(var, "")
        if value.startswith(("http://", "https://")):
            return value
    raise ClusterError("give the cluster's job server with --address http://HOST:8265 "
                       "(or set RAY_API_SERVER_ADDRESS)")


def check_storage_for_submission(storage: str) -> None:
    """A job's working directory is a scratch copy on the head node: a relative storage path
    would put the record there, where nobody finds it and workers on other nodes cannot write."""
    if "://" in storage:
        return
    if not Path(storage).expanduser().is_absolute():
        raise ClusterError(f"storage: {storage!r} is relative; on the cluster it would resolve inside the job's "
                           "temporary working directory. Give an absolute path that every node reaches "
                           "(a shared filesystem), e.g. --storage /shared/tunekit-results")
