"""What a command-line record argument names: a ref (``name``, ``name@v3``) or a spec file.

``tunekit results show experiments/digits.yaml`` means the record that
``tunekit run experiments/digits.yaml`` writes: the spec's ``name`` under the spec's
``storage:``. Only those two fields are read (with a safe YAML load), so this works without
validating the spec, and without importing its trainable.

Storage precedence: an explicit ``--storage``, then the spec's ``storage:``, then
``$TUNEKIT_STORAGE``, then ``./tunekit-results``. A relative ``storage:`` is relative to the
current folder, as it is for ``tunekit run``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.results.refs import RefError, check_name

SPEC_SUFFIXES = (".yaml", ".yml")
_MAX_SPEC_BYTES = 1 << 20  # a spec is a few hundred bytes; refuse to parse a huge file by mistake


@dataclass(frozen=True)
class Target:
    ref: str                                  # "name" or "name@vN"
    root: str | None                          # None: $TUNEKIT_STORAGE or the default
    spec_file: Path | None = None             # when the argument was a spec file
    search_paths: tuple[str, ...] = field(default=())  # where the spec's trainable module may live


def _split_version(arg: str) -> tuple[str, str]:
    """``"exp.yaml@v2"`` -> ``("exp.yaml", "@v2")``; anything else -> ``(arg, "")``."""
    head, sep, tail = arg.rpartition("@")
    if sep and head.lower().endswith(SPEC_SUFFIXES):
        return head, "@" + tail
    return arg, ""


def record_target(arg: str, storage: str | os.PathLike | None = None) -> Target:
    """The record ``arg`` names, and the storage root to look in."""
    path_part, version = _split_version(arg)
    path = Path(path_part)
    if not path_part.lower().endswith(SPEC_SUFFIXES) or not path.is_file():
        return Target(arg, None if storage is None else str(storage))
    import yaml

    try:
        if path.stat().st_size > _MAX_SPEC_BYTES:
            raise RefError(f"{path}: {path.stat().st_size} bytes is too large for an experiment spec")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RefError(f"{path}: cannot read the spec's name and storage ({problem})") from None
    except RecursionError:
        raise RefError(f"{path}: nested too deeply to be an experiment spec") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise RefError(f"{path}: name: a spec file needs a 'name' to find its records")
    name = check_name(raw["name"])
    root = storage
    if root is None and isinstance(raw.get("storage"), str) and raw["storage"].strip():
        root = raw["storage"]
    here = str(path.resolve().parent)
    return Target(name + version, None if root is None else str(Path(root).expanduser()), path,
                  (here,))
