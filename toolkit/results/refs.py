"""Record references: ``"name"`` (latest complete version) or ``"name@v3"`` (one version),
or the path of a record's folder (``runs/digits``) or version folder (``runs/digits/v3``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# Names become directory names, so keep them to a portable, unambiguous alphabet.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_VERSION = re.compile(r"v?(\d+)")
DEFAULT_STORAGE = "./tunekit-results"
# A folder name holds at most 255 bytes; Ray also builds longer names from the experiment's
# (trial folders, temporary files), so names stay well below that.
MAX_NAME_LENGTH = 200


class RefError(ValueError):
    """A record reference or name that cannot be parsed."""


@dataclass(frozen=True)
class Ref:
    name: str
    version: int | None  # None = latest complete version

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@v{self.version}"


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:40] + "..." + text[-12:])


def check_name(name: str) -> str:
    if not isinstance(name, str):
        raise RefError(f"invalid record name {name!r}: not a string")
    if name != name.strip():
        raise RefError(f"invalid record name {_shown(name)}: it has leading or trailing whitespace")
    if len(name) > MAX_NAME_LENGTH:
        raise RefError(f"invalid record name {_shown(name)}: {len(name)} characters, at most {MAX_NAME_LENGTH}")
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise RefError(
            f"invalid record name {_shown(name)}: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)"
        )
    return name


def parse_ref(ref: str) -> Ref:
    """Parse ``name``, ``name@v3``, ``name@3`` or ``name@latest``."""
    if not isinstance(ref, str) or not ref:
        raise RefError(f"empty record reference {ref!r}")
    if ref != ref.strip():
        raise RefError(f"invalid record reference {_shown(ref)}: it has leading or trailing whitespace")
    name, sep, ver = ref.partition("@")
    check_name(name)
    if not sep or ver == "latest":
        return Ref(name, None)
    m = _VERSION.fullmatch(ver)
    if not m or int(m.group(1)) < 1:
        raise RefError(f"invalid version {ver!r} in {_shown(ref)}: expected e.g. {name}@v3")
    return Ref(name, int(m.group(1)))


def is_path_ref(ref: str) -> bool:
    """A reference containing a path separator names a folder (names never contain one)."""
    return isinstance(ref, str) and ("/" in ref or os.sep in ref)


def locate(ref: str, root: str | os.PathLike | None = None) -> tuple[Path, Ref]:
    """``(storage root, Ref)`` for a reference given by name or as a folder path.

    ``runs/digits/v3`` becomes root ``runs`` and ``digits@v3``; ``runs/digits`` becomes
    root ``runs`` and ``digits`` (its latest complete version). The folder names are checked
    like any name, so a path ref reaches only what a name ref could."""
    if not is_path_ref(ref):
        return default_root(root), parse_ref(ref)
    if ref != ref.strip():
        raise RefError(f"invalid record folder {_shown(ref)}: it has leading or trailing whitespace")
    path = Path(ref)
    try:
        found = path.is_dir()
    except OSError as e:  # e.g. a folder name longer than the filesystem allows
        raise RefError(f"{_shown(ref)}: not a record folder ({e.strerror or e})") from None
    if not found:
        raise RefError(f"{_shown(ref)}: no such record folder")
    path = Path(os.path.abspath(path))
    m = re.fullmatch(r"v(\d+)", path.name)
    if m:
        name, version, root_dir = path.parent.name, int(m.group(1)), path.parent.parent
    else:
        name, version, root_dir = path.name, None, path.parent
    try:
        check_name(name)
    except RefError:
        raise RefError(f"{ref}: not a record folder (expected <storage>/<name> or <storage>/<name>/v<N>)") from None
    return root_dir, Ref(name, version)


def default_root(root: str | os.PathLike | None = None) -> Path:
    """The storage root: explicit argument, else $TUNEKIT_STORAGE, else ./tunekit-results."""
    if root is None:
        root = os.environ.get("TUNEKIT_STORAGE") or DEFAULT_STORAGE
    return Path(root)
