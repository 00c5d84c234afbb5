"""What a run depended on: the user's code, interpreter, machine, cluster and packages.

Captured with the standard library only (no torch import: if torch is already loaded its
CUDA view is added, otherwise ``nvidia-smi`` supplies GPU models and the driver).

The user's code (`describe_code`) is identified by the trainable's source file, found
without importing it, and the git state of the repository holding it; tunekit's own version
is recorded separately in the environment, so one is never mistaken for the other.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.metadata as md
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

KEY_PACKAGES = ("tunekit", "ray", "torch", "numpy", "pandas", "hyperopt", "pyarrow",
                "scipy", "scikit-learn", "optuna")
# Variables that change numerics or parallelism and so belong to the environment (where
# records are stored, e.g. TUNEKIT_STORAGE, does not change a result and is not recorded).
ENV_VARS = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED",
            "CUBLAS_WORKSPACE_CONFIG")


def _run(cmd: list[str], cwd: str | Path | None = None, timeout: float = 10) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode(errors="replace")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> dict[str, Any]:
    info: dict[str, Any] = {"devices": [], "driver": None}
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader"])
    if out:
        for line in out.strip().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3:
                info["devices"].append({"name": parts[0], "memory": parts[2]})
                info["driver"] = parts[1]
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            info["torch_cuda"] = torch.version.cuda
            if torch.cuda.is_available():
                info["torch_devices"] = [torch.cuda.get_device_name(i)
                                         for i in range(torch.cuda.device_count())]
            info["torch_num_threads"] = torch.get_num_threads()
        except Exception:  # a broken CUDA install must not stop the record
            pass
    return info


def _ray() -> dict[str, Any] | None:
    ray = sys.modules.get("ray")
    try:
        if ray is None or not ray.is_initialized():
            return None
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {"nodes": len(nodes), "resources": {k: v for k, v in ray.cluster_resources().items()
                                                    if not k.startswith("node:")}}
    except Exception:
        return None


def git_info(path: str | Path | None = None) -> dict[str, Any] | None:
    """Commit, dirty flag and a hash of the uncommitted diff of the repo holding ``path``."""
    path = Path(path or os.getcwd())
    top = _run(["git", "rev-parse", "--show-toplevel"], cwd=path)
    if not top:
        return None
    top = top.strip()
    commit = (_run(["git", "rev-parse", "HEAD"], cwd=top) or "").strip() or None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=top) or ""
    untracked = _run(["git", "ls-files", "--others", "--exclude-standard"], cwd=top) or ""
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=top, capture_output=True).stdout \
        if commit else b""
    branch = (_run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=top) or "").strip() or None
    return {"root": top, "commit": commit, "branch": branch, "dirty": bool(status.strip()),
            "diff_sha256": hashlib.sha256(diff).hexdigest() if diff else None,
            "untracked_files": len(untracked.split()) if untracked.strip() else 0}


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def frozen_packages() -> list[str]:
    seen = {}
    for d in md.distributions():
        name = d.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={d.version}"
    return sorted(seen.values(), key=str.lower)


def tunekit_version() -> dict[str, Any]:
    """tunekit's own version: the installed distribution and, for a source checkout, its git state."""
    return {"version": _version("tunekit"), "git": git_info(Path(__file__).resolve().parent)}


def collect_environment() -> dict[str, Any]:
    """Everything about the current environment that a record keeps for reproduction."""
    return {
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "os": {"platform": platform.platform(), "system": platform.system(),
               "release": platform.release(), "machine": platform.machine()},
        "cpu": {"model": _cpu_model(), "count": os.cpu_count()},
        "gpus": _gpus(),
        "ray_cluster": _ray(),
        "tunekit": tunekit_version(),
        "versions": {p: _version(p) for p in KEY_PACKAGES},
        "env_vars": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
        "packages": frozen_packages(),
    }


# --------------------------------------------------------------------------- the user's code
def split_import_path(path: str) -> tuple[str, str]:
    """``"pkg.module:Class"`` (or ``"pkg.module.Class"``) -> ``("pkg.module", "Class")``."""
    mod, sep, attr = str(path).partition(":")
    if not sep:
        mod, _, attr = mod.rpartition(".")
    if not mod or not attr:
        raise ValueError(f"trainable {path!r} is not an import path like 'pkg.module:Class'")
    return mod, attr


def locate_module(module: str, extra_paths: list[str] | tuple[str, ...] = ()) -> Path | None:
    """The source file of ``module``, found WITHOUT executing it or its parent packages.

    An already imported module answers with its own ``__file__``. Otherwise each dotted
    level is looked up with the path finder alone (no ``__init__`` runs), searching
    ``extra_paths`` first, then ``sys.path`` (the order `toolkit.imports` imports in). None
    when there is no source file to find (a built-in, a missing module)."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        f = getattr(loaded, "__file__", None)
        return Path(f).resolve() if f else None
    search: list[str] = [*map(str, extra_paths), *sys.path]
    spec = None
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        parent = sys.modules.get(name)
        if parent is not None and i < len(parts) - 1:
            search = list(getattr(parent, "__path__", None) or [])
            continue
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, search)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    origin = getattr(spec, "origin", None)
    return Path(origin).resolve() if origin and os.path.isfile(origin) else None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe_code(trainable: str | None, extra_paths: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Provenance of the user's trainable: its source file and that file's sha256, and the
    git state of the repository holding it, or "not under version control"."""
    out: dict[str, Any] = {"trainable": trainable, "module": None, "file": None, "file_sha256": None,
                           "status": "not found", "git": None}
    if not trainable:
        out["note"] = "no trainable named (a function trainable, or none given)"
        return out
    try:
        module, _ = split_import_path(trainable)
    except ValueError as e:
        out["note"] = str(e)
        return out
    out["module"] = module
    path = locate_module(module, extra_paths)
    if path is None:
        out["note"] = f"no source file found for module {module!r}"
        return out
    out.update(file=str(path), file_sha256=file_sha256(path))
    git = git_info(path.parent)
    if git is None:
        out["status"] = "not under version control"
        return out
    if _run(["git", "ls-files", "--error-unmatch", str(path)], cwd=path.parent) is None:
        out["status"] = "not under version control"
        out["note"] = f"inside the git repository {git['root']}, but the file is not tracked"
        return out
    out.update(status="git", git=git)
    return out


# --------------------------------------------------------------------------- differences
_INFORMATIONAL = {"captured_at"}
# Recorded by older versions, but they do not affect a result (where records are stored).
_IRRELEVANT = {"env_vars.TUNEKIT_STORAGE"}
# Ray sizes these from the memory free at start-up: they differ run to run on the same machine.
_VOLATILE_SUFFIXES = ("memory",)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def diff_environments(a: dict | None, b: dict | None, ignore: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """``(field, a value, b value)`` for every environment field that differs; the package
    list is compared by name so that the report says which packages changed. ``ignore``
    drops top-level sections (e.g. "ray_cluster" when rerunning without Ray)."""
    a, b = a or {}, b or {}
    out: list[tuple[str, Any, Any]] = []
    skip = _INFORMATIONAL | {"packages"} | set(ignore)
    fa = _flatten({k: v for k, v in a.items() if k not in skip})
    fb = _flatten({k: v for k, v in b.items() if k not in skip})
    for key in sorted(set(fa) | set(fb)):
        if key in _IRRELEVANT or (key.startswith("ray_cluster.resources.") and key.endswith(_VOLATILE_SUFFIXES)):
            continue
        if key.startswith("gpus.torch_") and (fa.get(key) is None or fb.get(key) is None):
            continue  # torch's view is captured only when torch happened to be imported already
        if fa.get(key) != fb.get(key):
            out.append((key, fa.get(key), fb.get(key)))
    pa_ = dict(p.split("==", 1) for p in a.get("packages") or [] if "==" in p)
    pb_ = dict(p.split("==", 1) for p in b.get("packages") or [] if "==" in p)
    for name in sorted(set(pa_) | set(pb_), key=str.lower):
        if pa_.get(name) != pb_.get(name):
            out.append((f"packages.{name}", pa_.get(name), pb_.get(name)))
    return out
