"""Import a user's trainable from `"module:Name"`, looking where users expect it.

A spec names its trainable as an import path; the module usually sits next to the spec or
in the folder the user runs from, neither of which Python searches when tunekit runs as an
installed command. `import_trainable` puts the given folders on `sys.path` first and, when
the import fails, says in one line which module it could not find and where it looked.

Light on purpose: imports neither ray nor torch (the user's module may import them).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence


class TrainableImportError(ImportError):
    """The trainable could not be imported; the message is one line for the user."""


def search_paths_for(spec_file: str | os.PathLike | None) -> list[Path]:
    """Where a spec's trainable module is looked for: the spec file's folder, then the current folder."""
    paths = [Path(spec_file).expanduser().resolve().parent] if spec_file else []
    paths.append(Path.cwd().resolve())
    return list(dict.fromkeys(paths))


def add_to_sys_path(paths: Iterable[str | os.PathLike]) -> None:
    """Put `paths` at the front of `sys.path` (once each), in the order given."""
    for p in reversed([str(Path(p)) for p in paths]):
        if p not in sys.path:
            sys.path.insert(0, p)


def split_import_path(path: str) -> tuple[str, str]:
    """`"pkg.module:Name"` (or `"pkg.module.Name"`) -> (`"pkg.module"`, `"Name"`)."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise TrainableImportError(f"{path!r} is not an import path like 'package.module:Class'")
    return module, attr


def _not_found(err: ModuleNotFoundError, module: str) -> bool:
    """True when `module` itself (or a package above it) is missing, not something it imports."""
    missing = err.name or ""
    return missing == module or module.startswith(missing + ".")


def import_trainable(path: str, search_paths: Sequence[str | os.PathLike] = ()) -> Any:
    """The object `path` names (`"module:Name"`), importing its module with `search_paths` first.

    Raises `TrainableImportError` with a one-line message naming the module and where it was
    looked for (or what went wrong inside it).
    """
    module_name, attr = split_import_path(path)
    add_to_sys_path(search_paths)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if _not_found(e, module_name):
            where = ", ".join(str(p) for p in search_paths) or "the Python path"
            extra = " and the Python path" if search_paths else ""
            raise TrainableImportError(f"no module named {module_name!r} (looked in {where}{extra})") from e
        raise TrainableImportError(f"importing module {module_name!r} failed: {type(e).__name__}: {e}") from e
    except Exception as e:  # noqa: BLE001 - the user's module raised while importing: report it in one line
        raise TrainableImportError(f"importing module {module_name!r} failed: {type(e).__name__}: {e}") from e
    except SystemExit as e:  # a script-like module: it must not end tunekit, silently, with its code
        raise TrainableImportError(f"importing module {module_name!r} failed: it called sys.exit({e.code!r}) "
                                   "while being imported") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TrainableImportError(f"module {module_name!r} has no attribute {attr!r} "
                                       f"(it is {getattr(module, '__file__', module_name)})") from None
    return obj
