"""Loading records: `load` verifies every byte against the manifest before trusting it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from toolkit.results import analysis, store
from toolkit.results.manifest import Manifest, ManifestError, parse_manifest
from toolkit.results.refs import Ref, default_root, parse_ref
from toolkit.results.store import IncompleteRecordError, IntegrityError, RecordError, RecordNotFound
from toolkit.results.tables import read_table_bytes, to_frame

_REQUIRED = {"format": str, "name": str, "version": int, "status": str, "files": dict,
             "tables": dict, "manifest_sha256": str}


@dataclass
class Record:
    """One loaded version: manifest (``manifest``: the JSON document as stored; ``meta``: its
    typed view), trials (one row per trial, flattened ``config.*`` columns plus
    ``config_json``) and metrics (long: trial_id, training_iteration, metrics)."""

    path: Path
    manifest: dict
    trials: pd.DataFrame
    metrics: pd.DataFrame
    suggestions: pd.DataFrame | None = None
    complete: bool = True
    notes: list[str] = field(default_factory=list)
    meta: Manifest = None  # type: ignore[assignment]  # parsed from `manifest` when not given

    def __post_init__(self) -> None:
        if self.meta is None:
            self.meta = parse_manifest(self.manifest)

    @property
    def name(self) -> str:
        return self.meta.name or self.path.parent.name

    @property
    def version(self) -> int:
        return int(self.meta.version or self.path.name.lstrip("v"))

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def status(self) -> str:
        return str(self.meta.status)

    @property
    def metric(self) -> str | None:
        return self.meta.metric

    @property
    def mode(self) -> str:
        return self.meta.mode

    @property
    def environment(self) -> dict:
        return self.meta.environment.as_dict()

    def config(self, trial_id: str) -> dict:
        """The nested config the trial ran with."""
        row = self.trials.loc[self.trials["trial_id"] == str(trial_id)]
        if row.empty:
            raise KeyError(f"no trial {trial_id!r} in {self.ref}")
        return json.loads(row["config_json"].iloc[0])

    # The analyses live in analysis.py, which works on any object with trials, metrics,
    # metric and mode and knows nothing of records; these are thin conveniences.
    def best(self, k: int = 1, scope: str = "last") -> pd.DataFrame:
        return analysis.best(self, k=k, scope=scope)

    def best_so_far(self, by: str = "trials", scope: str = "last") -> pd.DataFrame:
        return analysis.best_so_far(self, by=by, scope=scope)

    def param_columns(self) -> list[str]:
        return analysis.param_columns(self.trials)

    def param_summary(self, scope: str = "last") -> pd.DataFrame:
        return analysis.param_summary(self, scope=scope)

    def importance(self, scope: str = "last", seed: int = 0, budget: int | str | None = "auto") -> pd.DataFrame:
        return analysis.importance(self, scope=scope, seed=seed, budget=budget)

    def __repr__(self) -> str:
        flag = "" if self.complete else " INCOMPLETE"
        return f"<Record {self.ref} status={self.status}{flag} trials={len(self.trials)} at {self.path}>"


class RecordInfo(NamedTuple):
    name: str
    version: int
    status: str
    n_trials: int | None
    best: float | None
    created: str | None


# --------------------------------------------------------------------------- reading
def _read_json(path: Path) -> dict:
    data = store.read_record_file(path, path.parent, max_bytes=store.MAX_MANIFEST_BYTES)
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{path}: malformed JSON ({e}); the file is truncated or corrupt", path) from None
    if not isinstance(obj, dict):
        raise IntegrityError(f"{path}: expected a JSON object", path)
    return obj


def _read_verified(path: Path, sha256: str | None, size: int | None = None) -> bytes:
    data = store.read_record_file(path, path.parent, size=size)
    if sha256 is not None and store.sha256_bytes(data) != sha256:
        raise IntegrityError(f"{path}: sha256 does not match the manifest: the file was altered", path)
    return data


def _frame(path: Path, data: bytes, json_columns) -> pd.DataFrame:
    try:
        return to_frame(read_table_bytes(data), json_columns or ())
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise IntegrityError(f"{path}: not a readable Parquet file ({e})", path) from None


def _typed(path: Path, m: dict) -> Manifest:
    try:
        return parse_manifest(m)
    except ManifestError as e:
        raise IntegrityError(f"{path}: malformed manifest, {e}", path) from None


def _check_manifest(path: Path, m: dict, verify: bool) -> Manifest:
    for key, typ in _REQUIRED.items():
        if not isinstance(m.get(key), typ):
            raise IntegrityError(f"{path}: malformed manifest, '{key}' missing or not a {typ.__name__}", path)
    if m["format"] != store.FORMAT:
        raise IntegrityError(f"{path}: not a tunekit record (format={m['format']!r})", path)
    if isinstance(m.get("format_version", 0), bool) or not isinstance(m.get("format_version", 0), int):
        raise IntegrityError(f"{path}: malformed manifest, 'format_version' is not an integer", path)
    if m.get("format_version", 0) > store.FORMAT_VERSION:
        raise RecordError(f"{path}: written by a newer tunekit (format_version {m['format_version']})", path)
    for fname, meta in m["files"].items():
        if (not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str)
                or "/" in fname or fname.startswith(".")):
            raise IntegrityError(f"{path}: malformed manifest entry for {fname!r}", path)
    if verify and store.manifest_digest(m) != m["manifest_sha256"]:
        raise IntegrityError(f"{path}: the manifest's own checksum does not match: it was edited", path)
    return _typed(path, m)


def _load_published(vdir: Path, verify: bool) -> Record:
    mpath = vdir / store.MANIFEST
    m = _read_json(mpath)
    typed = _check_manifest(mpath, m, verify)
    store.check_identity(vdir, m, mpath)
    frames: dict[str, pd.DataFrame] = {}
    for kind, info in m["tables"].items():
        fname = info.get("file") if isinstance(info, dict) else None
        if fname not in m["files"]:
            raise IntegrityError(f"{mpath}: table {kind!r} names a file without a checksum", mpath)
    for fname, meta in m["files"].items():
        p = vdir / fname
        data = _read_verified(p, meta["sha256"] if verify else None, meta.get("bytes") if verify else None)
        kind = fname.split(".")[0]
        if fname.endswith(".parquet"):
            frames[kind] = _frame(p, data, (m["tables"].get(kind) or {}).get("json_columns"))
    for kind in ("trials", "metrics"):
        if kind not in frames:
            raise IntegrityError(f"{mpath}: manifest lists no {kind}.parquet", mpath)
    return Record(vdir, m, frames["trials"], frames["metrics"], frames.get("suggestions"), complete=True,
                  meta=typed)


def _load_staging(vdir: Path, verify: bool) -> Record:
    from toolkit.results.builder import TableBuilder

    staging = vdir / store.STAGING
    mpath = staging / store.MANIFEST
    if not mpath.exists():
        raise IntegrityError(f"{vdir}: neither a published manifest nor a staging manifest "
                             "(the writer died while reserving the version)", vdir)
    m = _read_json(mpath)
    store.check_identity(vdir, m, mpath)
    alive = store.writer_alive(m.get("writer"))
    m["status"] = "running" if alive else "incomplete"
    meta = _typed(mpath, m)
    b = TableBuilder()
    for entry in store.read_journal(staging):
        if entry.get("kind") == "trial":
            b.add_trial(entry["trial"], columns=entry.get("columns") or {})
        elif entry.get("kind") == "suggestions":
            b.add_suggestions(entry.get("rows") or [])
    tt, tj = b.trials_table()
    trials = to_frame(tt, tj)
    if "trial_id" not in trials:
        trials = pd.DataFrame({"trial_id": pd.Series(dtype=str), "status": pd.Series(dtype=str)})
    st = b.suggestions_table()
    note = (f"{m.get('name')}@v{m.get('version')} is INCOMPLETE: "
            + ("its writer is still running" if alive else "its writer stopped before publishing")
            + f"; {len(trials)} flushed trial(s) shown")
    return Record(vdir, m, trials, to_frame(b.metrics_table()), to_frame(*st) if st else None,
                  complete=False, notes=[note], meta=meta)


def resolve(ref: str | Ref, root: str | os.PathLike | None = None, *,
            allow_incomplete: bool = False) -> Path:
    """The version folder a reference points to."""
    root = default_root(root)
    r = parse_ref(ref) if isinstance(ref, str) else ref
    avail = store.versions(root, r.name)
    if not avail:
        raise RecordNotFound(f"no record named {r.name!r} under {root}", store.record_dir(root, r.name))
    if r.version is None:
        for v in reversed(avail):
            vdir = store.version_dir(root, r.name, v)
            if allow_incomplete or store.is_published(vdir):
                return vdir
        raise IncompleteRecordError(
            f"{r.name!r} under {root} has no complete version (v{', v'.join(map(str, avail))} "
            "are incomplete); load one explicitly with allow_incomplete=True", store.record_dir(root, r.name))
    vdir = store.version_dir(root, r.name, r.version)
    if r.version not in avail:
        raise RecordNotFound(f"{r} not found under {root} (versions: {avail})", vdir)
    if not store.is_published(vdir) and not allow_incomplete:
        raise IncompleteRecordError(
            f"{r} at {vdir} is incomplete (never published: still running or its writer died); "
            "pass allow_incomplete=True to read the trials it flushed", vdir)
    return vdir


def load(ref: str | os.PathLike, root: str | os.PathLike | None = None, *,
         allow_incomplete: bool = False, verify: bool = True) -> Record:
    """Load ``"name"`` (latest complete version) or ``"name@vN"`` from ``root``.

    Every file is checked against the sha256 in the manifest; a mismatch, truncation or
    malformed manifest raises `IntegrityError` naming the file. Incomplete versions are
    refused unless ``allow_incomplete`` (the Record then has ``complete=False``).
    ``ref`` may also be a version folder path."""
    if isinstance(ref, os.PathLike) or (isinstance(ref, str) and os.sep in ref and Path(ref).is_dir()):
        vdir = Path(ref)
        if not store.is_published(vdir) and not allow_incomplete:
            raise IncompleteRecordError(f"{vdir} is not a published record version", vdir)
    else:
        vdir = resolve(ref, root, allow_incomplete=allow_incomplete)
    if store.is_published(vdir):
        return _load_published(vdir, verify)
    return _load_staging(vdir, verify)


def list_records(root: str | os.PathLike | None = None) -> list[RecordInfo]:
    """Every version under ``root`` (complete or not), reading manifests only."""
    root = default_root(root)
    rows = []
    for name in store.names(root):
        for v in store.versions(root, name):
            vdir = store.version_dir(root, name, v)
            try:
                if store.is_published(vdir):
                    m = _read_json(vdir / store.MANIFEST)
                    _check_manifest(vdir / store.MANIFEST, m, verify=True)
                    store.check_identity(vdir, m)
                    summ = m.get("summary") or {}
                    rows.append(RecordInfo(name, v, str(m.get("status")), m.get("n_trials"),
                                           summ.get("best_final_metric"), m.get("started_at")))
                else:
                    staging = vdir / store.STAGING
                    m = _read_json(staging / store.MANIFEST) if (staging / store.MANIFEST).exists() else {}
                    if m:
                        store.check_identity(vdir, m, staging / store.MANIFEST)
                    alive = store.writer_alive(m.get("writer"))
                    rows.append(RecordInfo(name, v, "running" if alive else "incomplete",
                                           store.count_journal_trials(staging), None, m.get("started_at")))
            except store.IdentityMismatch:
                rows.append(RecordInfo(name, v, "mismatch", None, None, None))
            except RecordError:
                rows.append(RecordInfo(name, v, "corrupt", None, None, None))
    return rows
