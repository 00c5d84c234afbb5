"""Pinned record versions: kept by every retention pass (`tunekit results pin REF`).

A record version is immutable, so a pin is not written into it: ``<root>/<name>/pins.json``
lists the pinned version numbers of ``name``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from toolkit.results.refs import check_name

PINS = "pins.json"


def pins(root: str | os.PathLike, name: str) -> set[int]:
    path = Path(root) / check_name(name) / PINS
    if not path.is_file():
        return set()
    try:
        return {int(v) for v in json.loads(path.read_text(encoding="utf-8"))}
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"corrupt pin list {path}: {e}") from None


def pin(root: str | os.PathLike, name: str, version: int) -> Path:
    """Pin ``name@v<version>`` (idempotent); returns the pin list's path."""
    path = Path(root) / check_name(name) / PINS
    data = json.dumps(sorted(pins(root, name) | {int(version)})).encode()
    tmp = path.with_name(f".{PINS}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
