"""The typed manifest: what a record says about its run, validated once when it is loaded.

`Record.manifest` stays the JSON document exactly as stored (its checksum covers those
bytes); `Record.meta` is this typed view of it, and every reader uses the typed view, so no
reader guesses where a field lives. Records written before a field existed are mapped onto
the current shape in one place, `_upgrade`, instead of in every reader.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

__all__ = ["CodeInfo", "Environment", "GitState", "Manifest", "ManifestError", "ParamInfo", "parse_manifest"]


class _Open(BaseModel):
    # Unknown keys are kept (a newer writer may add some); known keys must have their type.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class ParamInfo(_Open):
    """One row of the typed search space's description (`SearchSpace.describe()`)."""

    key: str
    path: str
    type: Literal["float", "int", "normal", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    q: float | None = None
    step: int | None = None
    mean: float | None = None
    sd: float | None = None
    options: list | None = None
    active_when: str | None = None

    @property
    def numeric(self) -> bool:
        return self.type != "categorical"

    @property
    def conditional(self) -> bool:
        return self.active_when is not None


class GitState(_Open):
    root: str | None = None
    commit: str | None = None
    branch: str | None = None
    dirty: bool = False
    diff_sha256: str | None = None
    untracked_files: int = 0


class CodeInfo(_Open):
    """The user's code a run depended on: the trainable's source file and its version control.

    ``status`` is "git" (see ``git``), "not under version control" (``file_sha256`` is then
    the only identity of the code), or "not found" (the module could not be located)."""

    trainable: str | None = None          # "pkg.module:Class"
    module: str | None = None
    file: str | None = None
    file_sha256: str | None = None
    status: str = "not found"
    git: GitState | None = None
    note: str | None = None

    def summary(self) -> str:
        """One line saying what identifies the code."""
        if self.status == "git" and self.git is not None:
            g = self.git
            state = f"dirty, diff sha256 {g.diff_sha256}" if g.dirty else "clean"
            return f"{self.file}: git {g.commit} ({g.branch}), {state}"
        if self.status == "not under version control":
            return f"{self.file}: not under version control, file sha256 {self.file_sha256}"
        return f"{self.trainable}: {self.note or 'source file not found'}"


class Environment(_Open):
    """Interpreter, machine, cluster, packages; tunekit's own version is ``tunekit``."""

    python: dict = {}
    os: dict = {}
    cpu: dict = {}
    gpus: dict = {}
    ray_cluster: dict | None = None
    versions: dict = {}
    env_vars: dict = {}
    packages: list = []
    tunekit: dict | None = None
    git: GitState | None = None  # only in records written before `code` existed

    def code_summary(self, code: "CodeInfo | None") -> str:
        """The user's code in one line; for older records, the git state they recorded."""
        if code is not None:
            return code.summary()
        if self.git is not None:
            return f"git {self.git.commit} ({self.git.branch}) of the working folder (recorded before code provenance)"
        return "not recorded"

    def tunekit_summary(self) -> str:
        if not self.tunekit:
            return "not recorded"
        git = self.tunekit.get("git") if isinstance(self.tunekit.get("git"), dict) else None
        return f"{self.tunekit.get('version')}" + (
            f", {git.get('commit')}{' (dirty)' if git.get('dirty') else ''}" if git else "")

    def as_dict(self) -> dict:
        """The environment as recorded (fields the record did not have are left out)."""
        return self.model_dump(exclude_unset=True)


class Manifest(_Open):
    format: str | None = None
    format_version: int = 1
    name: str | None = None
    version: int | None = None
    status: str | None = None
    trainable: str | None = None
    metric: str | None = None
    mode: Literal["min", "max"] = "min"
    seed: int | None = None
    searcher: dict | None = None
    scheduler: dict | None = None
    spec: dict | None = None
    resolved_spec: dict | None = None
    space: list[ParamInfo] | None = None
    code: CodeInfo | None = None
    data: dict | None = None
    environment: Environment = Environment()
    resources_per_trial: dict | None = None
    started_at: str | None = None
    ended_at: str | None = None
    n_trials: int | None = None
    summary: dict | None = None
    best: dict | None = None
    extra: dict | None = None
    tables: dict = {}
    files: dict = {}
    manifest_sha256: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, raw: Any) -> Any:
        return _upgrade(raw)

    @property
    def data_fingerprint(self) -> str | None:
        fp = (self.data or {}).get("fingerprint")
        return fp if isinstance(fp, str) and fp else None

    @property
    def cpus_per_trial(self) -> float | None:
        cpu = (self.resources_per_trial or {}).get("cpu")
        return float(cpu) if isinstance(cpu, (int, float)) and not isinstance(cpu, bool) else None

    def params_at(self, path: str) -> list[ParamInfo]:
        """Space rows of the parameter(s) stored at config path ``path`` (several when
        conditional branches share a name)."""
        return [p for p in self.space or () if p.path == path]

    @property
    def conditional(self) -> bool | None:
        """Whether the space has conditional parameters (None: the space was not recorded)."""
        return None if self.space is None else any(p.conditional for p in self.space)


class ManifestError(ValueError):
    """A manifest field has the wrong type; the message names the field."""


def _upgrade(raw: Any) -> Any:
    """Map fields of older records onto the current shape (the only place that does)."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    resolved = out.get("resolved_spec") if isinstance(out.get("resolved_spec"), dict) else {}
    for key in ("trainable", "resources_per_trial", "metric", "mode", "seed"):
        if out.get(key) is None and resolved.get(key) is not None:
            out[key] = resolved[key]
    return out


def parse_manifest(raw: dict) -> Manifest:
    """The typed manifest, or `ManifestError` naming the first malformed field."""
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        got = err.get("input")
        got_s = type(got).__name__ if isinstance(got, (dict, list)) else repr(got)[:60]
        raise ManifestError(f"{where}: {err['msg'].lower()} (got {got_s})") from None
