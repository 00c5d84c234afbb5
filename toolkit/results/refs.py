"""Record references: ``"name"`` (latest complete version) or ``"name@v3"`` (one version)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# Names become directory names, so keep them to a portable, unambiguous alphabet.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_VERSION = re.compile(r"^v?(\d+)$")
DEFAULT_STORAGE = "./tunekit-results"


class RefError(ValueError):
    """A record reference or name that cannot be parsed."""


@dataclass(frozen=True)
class Ref:
    name: str
    version: int | None  # None = latest complete version

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@v{self.version}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise RefError(
            f"invalid record name {name!r}: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)"
        )
    return name


def parse_ref(ref: str) -> Ref:
    """Parse ``name``, ``name@v3``, ``name@3`` or ``name@latest``."""
    if not isinstance(ref, str) or not ref:
        raise RefError(f"empty record reference {ref!r}")
    name, sep, ver = ref.partition("@")
    check_name(name)
    if not sep or ver == "latest":
        return Ref(name, None)
    m = _VERSION.match(ver)
    if not m or int(m.group(1)) < 1:
        raise RefError(f"invalid version {ver!r} in {ref!r}: expected e.g. {name}@v3")
    return Ref(name, int(m.group(1)))


def default_root(root: str | os.PathLike | None = None) -> Path:
    """The storage root: explicit argument, else $TUNEKIT_STORAGE, else ./tunekit-results."""
    if root is None:
        root = os.environ.get("TUNEKIT_STORAGE") or DEFAULT_STORAGE
    return Path(root)
