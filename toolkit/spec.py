"""Experiment spec: load YAML, apply `--set` overrides, validate, resolve.

Every validation error names the field (dotted path) and the problem, e.g.
``param_space.lr: low (0.1) must be < high (0.01)``.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from toolkit.schedulers.options import DEFAULT_SCHEDULER, SCHEDULER_OPTIONS
from toolkit.searchers.options import DEFAULT_SEARCHER, SEARCHER_OPTIONS
from toolkit.imports import TrainableImportError, import_trainable, search_paths_for
from toolkit.space import SearchSpace, SpaceError, parse_space
from toolkit.specfile import SpecFileError, parse_yaml, read_spec_file, wrong_type_problem

DEFAULT_STORAGE = "./tunekit-results"
# The spec sections that are discriminated unions over a registry of typed option models.
SECTIONS: dict[str, tuple[dict[str, type[BaseModel]], str]] = {
    "searcher": (SEARCHER_OPTIONS, DEFAULT_SEARCHER),
    "scheduler": (SCHEDULER_OPTIONS, DEFAULT_SCHEDULER),
}


def _tagged_union(registry: Mapping[str, type[BaseModel]]) -> Any:
    """`registry`'s models as one pydantic union, chosen by their `type` field."""
    return Annotated[Union[tuple(registry.values())], Field(discriminator="type")]  # noqa: UP007


SearcherSection = _tagged_union(SEARCHER_OPTIONS)
SchedulerSection = _tagged_union(SCHEDULER_OPTIONS)


class SpecError(ValueError):
    """The experiment spec is invalid; `problems` lists (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        super().__init__("; ".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per problem: `field: problem`."""
        return [f"{f}: {m}" if f else m for f, m in self.problems]


class _Strict(BaseModel):
    # strict: `num_samples: true` is not 1, nor `seed: "3"` 3 (YAML's yes/no are booleans)
    model_config = ConfigDict(extra="forbid", strict=True)


class Resources(_Strict):
    """One process per trial (`cpu`, `gpu`), or with `workers` >= 2 a data-parallel trial: that
    many Ray Train workers with `cpu_per_worker` / `gpu_per_worker` each (trainables.data_parallel)."""

    cpu: float = Field(1.0, ge=0)
    gpu: float = Field(0.0, ge=0)
    workers: int = Field(1, ge=1)
    cpu_per_worker: float = Field(1.0, ge=0)
    gpu_per_worker: float = Field(0.0, ge=0)

    @field_validator("gpu", "gpu_per_worker")
    @classmethod
    def _whole_or_fraction(cls, v: float, info: Any) -> float:
        # Ray packs fractional GPUs onto one device; above 1 it needs whole devices.
        if v > 1 and not float(v).is_integer():
            raise ValueError(f"{info.field_name} above 1 must be a whole number of devices, got {v}")
        return v

    @model_validator(mode="after")
    def _one_kind_of_trial(self) -> "Resources":
        given = self.model_fields_set
        if self.workers == 1:
            per_worker = sorted(given & {"cpu_per_worker", "gpu_per_worker"})
            if per_worker:
                raise ValueError(f"{' and '.join(per_worker)} {'need' if len(per_worker) > 1 else 'needs'} "
                                 "workers >= 2; a single-process trial takes cpu and gpu")
            return self
        single = sorted(given & {"cpu", "gpu"})
        if single:
            raise ValueError(f"workers together with {' and '.join(single)} is ambiguous (per worker or per "
                             "trial?): give cpu_per_worker / gpu_per_worker instead")
        if 0 < self.gpu_per_worker < 1:
            # Two workers of one trial could land on one device, and NCCL refuses two ranks per GPU.
            raise ValueError(f"gpu_per_worker {self.gpu_per_worker:g} with {self.workers} workers: the workers "
                             "of one trial could share a GPU, which NCCL refuses; give whole GPUs per worker")
        return self

    @property
    def data_parallel(self) -> bool:
        """A trial of several Ray Train workers rather than one process."""
        return self.workers > 1

    def totals(self) -> dict[str, float]:
        """What one trial holds of the cluster at once: {"CPU": .., "GPU": ..}."""
        if self.data_parallel:
            # The Tune trial itself only drives the workers and reserves nothing (see trainables.data_parallel).
            return {"CPU": self.workers * self.cpu_per_worker, "GPU": self.workers * self.gpu_per_worker}
        return {"CPU": self.cpu, "GPU": self.gpu}

    def summary(self) -> dict[str, float]:
        """The resources as the plan and the record show them (totals per trial included)."""
        if not self.data_parallel:
            return {"cpu": self.cpu, "gpu": self.gpu}
        totals = self.totals()
        return {"workers": self.workers, "cpu_per_worker": self.cpu_per_worker,
                "gpu_per_worker": self.gpu_per_worker, "cpu": totals["CPU"], "gpu": totals["GPU"]}


class Stop(_Strict):
    max_iterations: int | None = Field(None, ge=1)
    time_budget_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _some_stop(self) -> "Stop":
        if self.max_iterations is None and self.time_budget_s is None:
            raise ValueError("give max_iterations and/or time_budget_s")
        return self


class LocalRay(_Strict):
    """Resources the embedded local Ray advertises (logical GPUs allowed for packing tests)."""

    num_cpus: int | None = Field(None, ge=1)
    num_gpus: float | None = Field(None, ge=0)


class Failure(_Strict):
    """`failure: {max_failures: N, checkpoint_frequency: K}`: restarts of a trial (from its last
    checkpoint) after its worker died or it raised. None: 3 on a cluster, 0 on a local Ray (the
    runner decides). A Trainable class is checkpointed every K iterations so a restart continues
    where it was; None: every iteration when restarts are allowed, else never mid-trial."""

    max_failures: int | None = Field(None, ge=0)
    checkpoint_frequency: int | None = Field(None, ge=0)


class ExperimentSpec(_Strict):
    name: str
    trainable: str
    metric: str
    mode: Literal["min", "max"]
    param_space: dict[str, Any]
    searcher: SearcherSection = Field(default_factory=SEARCHER_OPTIONS[DEFAULT_SEARCHER])
    scheduler: SchedulerSection = Field(default_factory=SCHEDULER_OPTIONS[DEFAULT_SCHEDULER])
    num_samples: int = Field(8, ge=1)
    max_concurrent: int | None = Field(None, ge=1)
    resources_per_trial: Resources = Resources()
    stop: Stop
    seed: int = 0
    # $TUNEKIT_STORAGE when the spec names none, as for `tunekit results` (--storage sets it)
    storage: str = Field(default_factory=lambda: os.environ.get("TUNEKIT_STORAGE") or DEFAULT_STORAGE)
    local_ray: LocalRay = LocalRay()
    fail_fast: int = Field(3, ge=0)  # stop when the first N trials all fail with one error; 0: never
    failure: Failure = Failure()
    description: str = ""
    # Free-form labels kept in the record (e.g. `nightly: 2026-12-01`, set by `tunekit nightly run`).
    tags: dict[str, str] = {}
    _given: dict = PrivateAttr(default_factory=dict)
    _source: Path | None = PrivateAttr(default=None)

    @property
    def given(self) -> dict:
        """The spec as written (after `--set` overrides), before defaults were filled in."""
        return copy.deepcopy(self._given)

    @field_validator("name")
    @classmethod
    def _name_is_a_path_segment(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("must start with a letter or digit and use only letters, digits, '_', '.', '-'")
        return v

    @field_validator("trainable")
    @classmethod
    def _import_path(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            raise ValueError(f"must be an import path like 'trainables.digits:DigitsCNN', got {v!r}")
        return v

    @field_validator("searcher", "scheduler", mode="before")
    @classmethod
    def _shorthand(cls, v: Any, info: Any) -> Any:
        """`searcher: tpe` is `{type: tpe}`; a section without `type` is the default type."""
        if isinstance(v, str):
            return {"type": v}
        if isinstance(v, Mapping) and "type" not in v:
            return {"type": SECTIONS[info.field_name][1], **v}
        return v

    @model_validator(mode="after")
    def _scheduler_horizon(self) -> "ExperimentSpec":
        if self.scheduler.needs_max_iterations and self.stop.max_iterations is None:
            raise ValueError(f"scheduler {self.scheduler.type} needs stop.max_iterations (its max_t)")
        problem = self.scheduler.pairing_problem(self.searcher)  # e.g. bohb with a non-TPE searcher
        if problem:
            raise ValueError(problem)
        return self

    # ------------------------------------------------------------------ resolution
    def search_space(self) -> SearchSpace:
        """The typed space; the experiment seed is passed to every trial as `config['seed']`."""
        definition = dict(self.param_space)
        definition.setdefault("seed", self.seed)
        return parse_space(definition)

    @property
    def source(self) -> Path | None:
        """The spec file it was loaded from, if any."""
        return self._source

    def trainable_search_paths(self) -> list[Path]:
        """Where the trainable's module is looked for first: the spec file's folder, the current folder."""
        return search_paths_for(self._source)

    def trainable_class(self) -> Any:
        """The trainable the spec names: a `ray.tune.Trainable` subclass or a function of `config`."""
        try:
            return import_trainable(self.trainable, self.trainable_search_paths())
        except TrainableImportError as e:
            raise SpecError([("trainable", str(e))]) from None

    def resolved(self) -> dict[str, Any]:
        """The spec with every default filled in (what actually runs)."""
        return self.model_dump(mode="json")


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part in ("searcher", "scheduler"):
            child = {"type": child}  # allow --set scheduler.grace_period=2 on a shorthand
        if child is None:
            child = {}
        if not isinstance(child, dict):
            raise SpecError([(dotted, f"cannot set a field inside {part!r}, which is {child!r}")])
        node[part] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(raw: Mapping[str, Any], overrides: list[str] | None) -> dict:
    """Apply `FIELD=VALUE` overrides (dotted paths; VALUE parsed as YAML) to a raw spec."""
    out = copy.deepcopy(dict(raw))
    for item in overrides or []:
        field, eq, text = item.partition("=")
        if not eq or not field.strip():
            raise SpecError([("--set", f"expected FIELD=VALUE, got {item!r}")])
        try:
            value = parse_yaml(text) if text.strip() else ""
        except SpecFileError as e:
            raise SpecError([(field, f"cannot parse value {text!r}: {e}")]) from None
        _set_dotted(out, field.strip(), value)
    return out


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _option_hint(word: str, kind: str, registry: Mapping[str, type[BaseModel]]) -> str:
    fields = [f for f in registry[kind].model_fields if f != "type"]
    prefixed = [f for f in fields if f.startswith(word) or word.startswith(f)]
    if len(prefixed) == 1:
        return f" (did you mean {prefixed[0]}?)"
    others = {f: other for other, model in reversed(list(registry.items())) if other != kind
              for f in model.model_fields if f not in fields}
    close = difflib.get_close_matches(word, fields + list(others), n=1)
    if close and close[0] in others:  # e.g. `searcher: {n_startup: 5}` without `type: tpe`
        if close[0] == word:
            return f" ({word} is an option of {others[word]}: set the type)"
        return f" (did you mean {close[0]}, an option of {others[close[0]]}? set the type)"
    if close:
        return f" (did you mean {close[0]}?)"
    return f" (options: {', '.join(fields)})"


def _section_problem(e: Any) -> tuple[str, str] | None:
    """A problem inside `searcher:` / `scheduler:`, worded for that section's type."""
    loc = list(e["loc"])
    name = loc[0]
    registry, _ = SECTIONS[name]
    if e["type"] == "union_tag_invalid":
        tag = e.get("ctx", {}).get("tag", e.get("input"))
        return (f"{name}.type", f"unknown {name} {tag!r}{_did_you_mean(tag, registry)}; "
                                f"choose from: {', '.join(registry)}")
    if len(loc) < 2 or loc[1] not in registry:
        return None
    kind = loc.pop(1)  # pydantic puts the union member's tag in the path: drop it
    where = ".".join(str(p) for p in loc)
    if e["type"] == "extra_forbidden" and len(loc) == 2:
        return where, f"unknown option for {kind}{_option_hint(str(loc[1]), kind, registry)}"
    return where, wrong_type_problem(e["type"], e.get("input")) or e["msg"].removeprefix("Value error, ")


def _pydantic_problems(err: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for e in err.errors():
        if e["loc"] and e["loc"][0] in SECTIONS:
            problem = _section_problem(e)
            if problem is not None:
                problems.append(problem)
                continue
        loc = ".".join(str(p) for p in e["loc"])
        msg = wrong_type_problem(e["type"], e.get("input")) or e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            known = ExperimentSpec.model_fields if len(e["loc"]) == 1 else ()
            msg = "unknown field" + _did_you_mean(e["loc"][-1], known)
        elif e["type"] == "missing":
            msg = "required field is missing"
        problems.append((loc, msg))
    return problems


def validate_spec(raw: Any, source: str | os.PathLike | None = None, check_trainable: bool = True) -> ExperimentSpec:
    """Validate a raw spec mapping; raises `SpecError` listing every problem found.

    `source` is the spec file: its folder is where the trainable's module is looked for first.
    """
    if not isinstance(raw, Mapping):
        raise SpecError([("", f"spec must be a mapping, got {type(raw).__name__}")], source)
    try:
        spec = ExperimentSpec.model_validate(dict(raw))
    except ValidationError as e:
        raise SpecError(_pydantic_problems(e), source) from None
    spec._given = copy.deepcopy(dict(raw))
    spec._source = Path(source) if source else None
    problems: list[tuple[str, str]] = []
    try:
        spec.search_space()
    except SpaceError as e:
        problems.append((e.where, e.problem))
    if check_trainable:
        try:
            trainable = spec.trainable_class()
        except SpecError as e:
            problems.extend(e.problems)
        else:
            from toolkit.guard import trainable_problem  # imports ray.tune: only when checking

            problem = trainable_problem(trainable)
            declared = getattr(trainable, "METRICS", None)
            if problem is not None:
                problems.append(("trainable", f"{spec.trainable}: {problem}"))
            elif declared is not None and spec.metric not in declared:
                problems.append(("metric", f"{spec.trainable} never reports {spec.metric!r}; it reports: "
                                           f"{', '.join(declared)}"))
    if problems:
        raise SpecError(problems, source)
    return spec


def load_raw(path: str | Path) -> dict:
    p = Path(path)
    try:
        raw = read_spec_file(p)  # no duplicate keys, no binary files, bounded nesting
    except SpecFileError as e:
        raise SpecError([("", str(e))]) from None
    if not isinstance(raw, dict):
        raise SpecError([("", f"{p} must hold a mapping of spec fields")])
    return raw


def load_spec(path: str | Path, overrides: list[str] | None = None, check_trainable: bool = True) -> ExperimentSpec:
    """Read a YAML spec, apply `--set` overrides, and validate it."""
    raw = apply_overrides(load_raw(path), overrides)
    return validate_spec(raw, source=str(path), check_trainable=check_trainable)
