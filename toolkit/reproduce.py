"""Rerun one recorded trial in this process and compare it with the record.

The trial's recorded config (which carries its seed) is fed to the trainable class named in
the manifest, for the recorded number of iterations, without Ray Tune (`trainables.local`
runs it: a Ray ``Trainable`` is a plain class whose ``train()`` runs one iteration), so no
cluster or scheduler is needed and nothing but the trainable's own code can change the numbers.

A record is untrusted input: it names code to run. Before anything is imported the module
is located without executing it (`check_code`), the file and class that would run are
shown, and the file's sha256 must equal the one recorded when the sweep ran; otherwise
`reproduce` refuses unless the caller trusts the code (``--trust``).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from toolkit.results.manifest import Manifest
from toolkit.results.provenance import (collect_environment, diff_environments, file_sha256, locate_module,
                                        split_import_path)
from toolkit.results.record import Record, load


class CodeRefused(ValueError):
    """The record names code that will not be run (changed since the run, unknown, not a Trainable)."""


@dataclass
class ReproduceResult:
    ref: str
    trial_id: str
    metric: str
    mode: str
    iterations: int
    config: dict
    recorded: float | None          # the trial's final metric in the record
    reproduced: float | None        # the rerun's metric at the same iteration
    recorded_history: list = field(default_factory=list)    # metric per iteration
    reproduced_history: list = field(default_factory=list)
    environment_diff: list = field(default_factory=list)    # (field, recorded, now)
    warnings: list = field(default_factory=list)
    threads: int | None = None                              # torch threads used for the rerun
    code: "CodeCheck | None" = None                         # what ran, and whether it matched the record

    @property
    def exact(self) -> bool:
        """Bit-identical metric at every recorded iteration."""
        return (bool(self.recorded_history) and len(self.recorded_history) == len(self.reproduced_history)
                and all(_same(a, b) for a, b in zip(self.recorded_history, self.reproduced_history)))

    @property
    def abs_diff(self) -> float | None:
        if self.recorded is None or self.reproduced is None:
            return None
        return abs(self.reproduced - self.recorded)

    def to_text(self) -> str:
        lines = [f"reproduce {self.ref} trial {self.trial_id} ({self.iterations} iterations"
                 + (f", {self.threads} torch thread(s)" if self.threads else "") + ")"]
        if self.code is not None:
            lines.append(f"  code: {self.code.describe()}")
        lines += [f"  {self.metric}: recorded {_fmt(self.recorded)}   reproduced {_fmt(self.reproduced)}"
                  f"   |diff| {_fmt(self.abs_diff)}",
                  f"  every iteration identical: {'yes' if self.exact else 'no'}"]
        if not self.exact and self.recorded_history and self.reproduced_history:
            first = next((i for i, (a, b) in enumerate(zip(self.recorded_history, self.reproduced_history))
                          if not _same(a, b)), None)
            if first is not None:
                lines.append(f"  first difference at iteration {first + 1}: "
                             f"{_fmt(self.recorded_history[first])} vs {_fmt(self.reproduced_history[first])}")
        if self.environment_diff:
            lines.append(f"  environment differs from the record in {len(self.environment_diff)} field(s):")
            for key, a, b in self.environment_diff[:30]:
                lines.append(f"    {key}: {_fmt(a)} -> {_fmt(b)}")
            if len(self.environment_diff) > 30:
                lines.append(f"    ... {len(self.environment_diff) - 30} more")
        else:
            lines.append("  environment: identical to the record")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.10g}"
    s = repr(v)
    return s if len(s) <= 70 else s[:67] + "..."


# --------------------------------------------------------------------------- the code a record names
@dataclass
class CodeCheck:
    """The trainable a record names, located without importing it, against what was recorded."""

    trainable: str
    module: str
    attr: str
    file: Path | None
    recorded_sha256: str | None
    current_sha256: str | None
    search_paths: tuple[str, ...] = ()

    @property
    def matches(self) -> bool:
        return self.file is not None and self.recorded_sha256 is not None \
            and self.recorded_sha256 == self.current_sha256

    def describe(self) -> str:
        if self.file is None:
            return f"{self.trainable}: module {self.module!r} not found"
        state = ("unchanged since the run (sha256 matches the record)" if self.matches
                 else "NOT verified: the record has no sha256 of it" if self.recorded_sha256 is None
                 else "CHANGED since the run (sha256 differs from the record)")
        return f"class {self.attr} from {self.file}, {state}"

    def refusal(self) -> str | None:
        """Why this code must not run without ``--trust`` (None: it may run)."""
        if self.file is None:
            where = ", ".join([*self.search_paths, "the Python path"])
            return f"trainable: no module named {self.module!r} (looked in {where})"
        if self.recorded_sha256 is None:
            return (f"trainable: {self.file} would run class {self.attr}, but the record has no sha256 "
                    "of the code it ran, so it cannot be checked; pass --trust to run it anyway")
        if not self.matches:
            return (f"trainable: {self.file} differs from the code the record ran (sha256 "
                    f"{self.current_sha256[:12]}... now, {self.recorded_sha256[:12]}... recorded); "
                    "refusing to run it; pass --trust to run it anyway")
        return None


def check_code(meta: Manifest, search_paths: Sequence[str | os.PathLike] = ()) -> CodeCheck:
    """Locate the record's trainable (executing nothing) and compare its file with the record."""
    path = meta.trainable
    if not path:
        raise CodeRefused("trainable: the manifest names no trainable (a function trainable, or none)")
    try:
        module, attr = split_import_path(path)
    except ValueError as e:
        raise CodeRefused(f"trainable: {e}") from None
    paths = tuple(str(Path(p)) for p in search_paths)
    file = locate_module(module, paths)
    recorded = meta.code.file_sha256 if meta.code is not None else None
    return CodeCheck(path, module, attr, file, recorded, file_sha256(file) if file else None, paths)


def load_trainable(check: CodeCheck, trust: bool = False) -> type:
    """Import the checked trainable class; refuses (`CodeRefused`, one line) a module that was
    not found, code that differs from the record (unless ``trust``), an import that fails or
    exits, an import that resolves to another file, and anything that is not a Trainable."""
    from toolkit.imports import TrainableImportError, import_trainable

    why = check.refusal()
    if why and (check.file is None or not trust):
        raise CodeRefused(why)
    try:
        obj = import_trainable(f"{check.module}:{check.attr}", check.search_paths)
    except TrainableImportError as e:
        raise CodeRefused(f"trainable: {e}") from None
    except SystemExit as e:  # the module called sys.exit() while being imported
        raise CodeRefused(f"trainable: importing module {check.module!r} ({check.file}) "
                          f"called sys.exit({e.code!r})") from None
    loaded = getattr(sys.modules.get(check.module), "__file__", None)
    if not trust and loaded and check.file is not None and Path(loaded).resolve() != check.file:
        raise CodeRefused(f"trainable: module {check.module!r} was imported from {loaded}, "
                          f"not the checked {check.file}; pass --trust to run it anyway")
    from ray.tune import Trainable

    if not (isinstance(obj, type) and issubclass(obj, Trainable)):
        raise CodeRefused(f"trainable: {check.trainable} is a {type(obj).__name__}, not a ray.tune.Trainable "
                          "subclass; only class trainables can be rerun outside Ray Tune")
    return obj


# --------------------------------------------------------------------------- rerun
def reproduce(record: Record | str, trial: str = "best", *, root: str | os.PathLike | None = None,
              iterations: int | None = None, scope: str = "last",
              threads: int | str | None = "auto", trust: bool = False,
              search_paths: Sequence[str | os.PathLike] = (),
              announce: Callable[[str], None] | None = None) -> ReproduceResult:
    """Rerun ``trial`` ("best" or a trial id) of ``record`` and compare with the record.

    ``threads``: torch intra-op threads for the rerun; "auto" uses the CPUs the record says
    each trial reserved (what Ray gave its worker), None leaves the process setting.
    ``trust``: run the trainable even when its file differs from the recorded sha256.
    ``search_paths``: folders searched first for the trainable's module (default: the
    current folder). ``announce`` is told which file and class will run before the import."""
    from trainables.local import run_local

    rec = record if isinstance(record, Record) else load(record, root)
    meta = rec.meta
    metric = meta.metric
    if not metric:
        raise ValueError(f"{rec.ref}: the manifest names no metric")
    if trial == "best":
        top = rec.best(1, scope=scope)
        if top.empty:
            raise ValueError(f"{rec.ref}: no trial has a finite {metric!r} to call best")
        trial_id = str(top["trial_id"].iloc[0])
    else:
        trial_id = str(trial)
    config = rec.config(trial_id)
    row = rec.trials.loc[rec.trials["trial_id"] == trial_id].iloc[0]
    hist = rec.metrics.loc[rec.metrics["trial_id"] == trial_id].sort_values("training_iteration")
    recorded_hist = [float(v) for v in hist[metric]] if metric in hist else []
    n_iter = int(iterations or row.get("iterations") or len(recorded_hist) or 0)
    if n_iter < 1:
        raise ValueError(f"{rec.ref} trial {trial_id}: no recorded iterations to reproduce")
    warnings = list(rec.notes)
    if "seed" not in config:
        warnings.append("the recorded config has no 'seed': the rerun may not be deterministic")

    check = check_code(meta, list(search_paths) or [os.getcwd()])
    if announce is not None:
        announce(f"will run {check.describe()}")
    cls = load_trainable(check, trust)
    if not check.matches:
        warnings.append(f"ran code the record cannot vouch for (--trust): {check.describe()}")

    # Ray starts a trial's worker with as many intra-op threads as CPUs it reserved
    # (OMP_NUM_THREADS), and float reductions can depend on the thread count, so rerun
    # with the same count as the recorded trial had.
    threads = _trial_threads(meta) if threads == "auto" else threads
    torch = sys.modules.get("torch")  # already imported by a PyTorch trainable, if any
    old_threads = torch.get_num_threads() if torch is not None else None
    if torch is not None and threads:
        torch.set_num_threads(int(threads))
    try:
        history = run_local(cls, copy.deepcopy(config), n_iter)
    finally:
        if old_threads:
            torch.set_num_threads(old_threads)
    reproduced_hist = [float(r[metric]) if r.get(metric) is not None else float("nan") for r in history]

    k = min(len(recorded_hist), len(reproduced_hist)) if recorded_hist else len(reproduced_hist)
    recorded = row.get("final_metric")
    recorded = float(recorded) if recorded is not None and not _isnan(recorded) else (
        recorded_hist[-1] if recorded_hist else None)
    reproduced = reproduced_hist[k - 1] if k else None
    if len(reproduced_hist) != n_iter:
        warnings.append(f"the rerun stopped after {len(reproduced_hist)} of {n_iter} iterations")
    env = meta.environment.as_dict()
    return ReproduceResult(rec.ref, trial_id, metric, meta.mode, n_iter, config, recorded, reproduced,
                           recorded_hist, reproduced_hist,
                           # The rerun uses no Ray cluster, so the cluster section is not compared.
                           diff_environments(env, collect_environment(), ignore=("ray_cluster",))
                           if env else [("environment", None, "not recorded")], warnings,
                           threads if torch is not None else None, check)


def _trial_threads(meta: Manifest) -> int | None:
    cpu = meta.cpus_per_trial
    return max(1, int(cpu)) if cpu is not None else None


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


# --------------------------------------------------------------------------- command line
def cmd_reproduce(args: argparse.Namespace) -> int:
    """`tunekit reproduce REF|SPEC`: one line on stderr for every problem, never a traceback."""
    from toolkit.results.refs import RefError, locate
    from toolkit.results.store import IncompleteRecordError, RecordError
    from toolkit.results.targets import record_target

    def fail(message: str, code: int) -> int:
        print(f"tunekit: {message}", file=sys.stderr)
        return code

    try:
        target = record_target(args.ref, args.storage)  # a spec file names its record and storage
        root, ref = locate(target.ref, target.root)   # a name, name@vN, or a version folder
        rec = load(ref, root, allow_incomplete=args.incomplete)
    except IncompleteRecordError:
        return fail(f"{args.ref}: no complete version (never published: still running, or its writer "
                    "died); add --incomplete to rerun one of the trials it flushed", 1)
    except RefError as e:
        return fail(str(e.args[0] if e.args else e), 2)
    except RecordError as e:
        return fail(str(e.args[0] if e.args else e), 1)
    paths = [*target.search_paths, os.getcwd()]
    try:
        result = reproduce(rec, args.trial, iterations=args.iterations, trust=args.trust,
                           search_paths=list(dict.fromkeys(paths)),
                           announce=lambda line: print(f"{rec.ref}: {line}", flush=True))
    except CodeRefused as e:
        return fail(str(e), 2)
    except KeyError as e:
        return fail(str(e.args[0] if e.args else e), 2)
    except ValueError as e:
        return fail(str(e), 1)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - the trainable itself failed: say so in one line
        first = str(e).splitlines()[0] if str(e) else ""
        return fail(f"reproduce: the trial raised {type(e).__name__}: {first}", 1)
    print(result.to_text())
    return 0 if result.exact or not args.strict else 3


def register(subparsers: Any) -> None:
    """Add ``reproduce`` to a ``tunekit`` subparsers object."""
    from toolkit.results.refs import DEFAULT_STORAGE

    p = subparsers.add_parser("reproduce", help="rerun a recorded trial here and compare its metric")
    p.add_argument("ref", help="NAME, NAME@vN, or the experiment's spec file (its name and storage)")
    p.add_argument("--trial", default="best", help="'best' (default) or a trial id")
    p.add_argument("--iterations", type=int, default=None, help="default: as many as recorded")
    p.add_argument("--strict", action="store_true", help="exit 3 unless every iteration matches exactly")
    p.add_argument("--trust", action="store_true",
                   help="run the trainable even if its source file differs from the one the record ran")
    p.add_argument("--incomplete", action="store_true", help="allow a version that was never published")
    p.add_argument("--storage", metavar="DIR", default=None,
                   help=f"records root (default: the spec's storage, $TUNEKIT_STORAGE or {DEFAULT_STORAGE})")
    p.set_defaults(handler=cmd_reproduce)
