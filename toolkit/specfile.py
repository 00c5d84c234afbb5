"""Reading a spec's YAML as untrusted text.

`yaml.safe_load` never runs code, but it quietly accepts things that are mistakes in an
experiment spec: a key given twice (the last one silently wins), a binary file (a wrong
path), YAML nested hundreds deep (Python's recursion limit, as a traceback), and it reads
`1e-3` (no dot, YAML 1.1) as text. This loader refuses the first three with a message
naming the line, and reads exponent numbers as numbers, as YAML 1.2 and users do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

MAX_SPEC_BYTES = 1 << 20  # a spec is a few hundred bytes; a megabyte is a wrong file
MAX_DEPTH = 64            # nesting deeper than this is generated garbage, not a spec

_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class SpecFileError(ValueError):
    """A spec file that cannot be read as a YAML mapping; the message names file and line."""


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and deep nesting."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise SpecFileError(f"line {mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` then overriding a key is what merge keys are for
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # an unhashable key: SafeLoader reports it below
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise SpecFileError(f"line {line}: key {key!r} is given twice (first on line {seen[key]}); "
                                        "YAML would silently keep only the last")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def parse_yaml(text: str, source: str | None = None) -> Any:
    """YAML text -> Python data, with the checks above; `SpecFileError` on any problem, its
    message starting with ``source`` (a file name) when given."""
    where = source or "the text"
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except SpecFileError as e:
        raise SpecFileError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        raise SpecFileError(f"{where} is not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise SpecFileError(f"{where} is nested too deeply (more than {MAX_DEPTH} levels)") from None


def read_spec_file(path: str | Path) -> Any:
    """The parsed content of a spec file: a text file of at most `MAX_SPEC_BYTES`."""
    p = Path(path)
    try:
        if p.exists() and not p.is_file():
            raise SpecFileError(f"cannot read {p}: not a regular file")
        size = p.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecFileError(f"{p} is {size} bytes: too large for an experiment spec")
        data = p.read_bytes()
    except OSError as e:
        raise SpecFileError(f"cannot read {p}: {e.strerror or e}") from None
    if b"\0" in data:
        raise SpecFileError(f"{p} is a binary file, not a YAML spec")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecFileError(f"{p} is not UTF-8 text (byte {e.start}): a binary file, not a YAML spec") from None
    return parse_yaml(text, str(p))


def wrong_type_problem(error_type: str, value: Any) -> str | None:
    """A clear wording for a value of the wrong type as YAML produces them (None: keep
    pydantic's): `yes`/`true` are booleans, `1e9` is a float, anything quoted is text."""
    expected = {"int_type": "a whole number", "float_type": "a number", "int_from_float": "a whole number",
                "bool_type": "true or false", "string_type": "text"}.get(error_type)
    if expected is None:
        return None
    if isinstance(value, bool):
        got = f"the boolean {str(value).lower()} (YAML reads yes/no/on/off/true/false as booleans)"
    elif isinstance(value, float) and value.is_integer() and expected == "a whole number":
        got = f"{value:g}, a float (write it as {int(value)})" if abs(value) < 1e16 else f"{value:g}, a float"
    elif isinstance(value, str):
        got = f"the text {value!r}"
    else:
        got = repr(value) if not isinstance(value, (dict, list)) else f"a {type(value).__name__}"
    return f"must be {expected}, got {got}"
