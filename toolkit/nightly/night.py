"""One night of a nightly sweep: lock, warm start, run (or resume), judge, summarise, prune.

This module has no Ray code of its own: the sweep is `toolkit.runner.run_experiment`, the
evidence is `toolkit.results`, and the verdict lives in the nightly ledger (`ledger.py`).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from toolkit.nightly import gate, ledger, retention, summary, warm
from toolkit.nightly.ledger import Night, NightLocked


@dataclass
class NightOptions:
    date: str
    address: str | None = None
    warm_start: str = "topk"       # off | topk | full
    top_k: int = 3
    decay: float = 0.5             # full mode: share of trials kept per night of age
    tolerance: float = 0.0         # the noise band's floor (absolute, in metric units)
    z: float = 3.0                 # the band is max(tolerance, z * stdev of champion changes)
    keep: int | None = None        # retention: keep the last N nights (plus the protected ones)
    webhook: str | None = None
    webhook_on: str = "problem"    # problem (regressed or failed) | always
    overrides: list[str] = field(default_factory=list)


@dataclass
class NightResult:
    night: Night
    exit_code: int
    message: str


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _canonical(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


# sweep(spec, on_record=..., evaluate_first=..., warm_points=...) -> toolkit.runner.RunOutcome
Sweep = Callable[..., Any]


def run_night(spec_path: str | Path, opts: NightOptions, log: Callable[[str], None] = print,
              sweep: Sweep | None = None) -> NightResult:
    """Run (or resume, or skip) one night; see the module docstring.

    ``sweep`` runs the spec (the CLI passes one with its progress display); by default
    `toolkit.runner.run_experiment`, resuming this night's incomplete version if there is one
    (the spec carries the night in its tags, so `resume="auto"` finds exactly that version)."""
    from toolkit.results import load
    from toolkit.spec import load_spec

    if sweep is None:
        from toolkit.runner import run_experiment

        def sweep(spec, **kw):  # noqa: ANN001, ANN202
            return run_experiment(spec, address=opts.address, log=log, resume="auto", **kw)

    date = ledger.check_date(opts.date)
    spec = load_spec(spec_path, list(opts.overrides) + [f"tags.nightly='{date}'"])
    storage = Path(spec.storage).expanduser().resolve()
    name = spec.name
    try:
        lock = ledger.NightLock(storage, name, date).__enter__()
    except NightLocked as e:
        return NightResult(Night(date, name), gate.EXIT_LOCKED, str(e))
    try:
        done = ledger.read(storage, name, date)
        if done is not None and done.status in ("good", "regressed", "failed"):
            code = {"good": gate.EXIT_GOOD, "regressed": gate.EXIT_REGRESSED}.get(done.status, gate.EXIT_FAILED)
            return NightResult(done, code, f"night {date} of {name} already ran: {done.status} "
                                           f"({done.ref or 'no record'}); nothing to do")
        base_night = ledger.last_good(storage, name, before=date)
        earlier = [n for n in reversed(ledger.nights(storage, name))
                   if n.date < date and n.status == "good" and n.version]
        records = [(n.ref, load(n.ref, root=storage)) for n in earlier]
        plan = warm.plan_warm_start(spec.search_space(), spec.mode, opts.warm_start, opts.top_k, opts.decay,
                                    [(ref, rec.trials) for ref, rec in records], seed=spec.seed)
        if plan.sources:
            log(f"[nightly] warm start ({plan.mode}) from {', '.join(plan.sources)}: "
                f"{len(plan.champions)} champion(s) first, {len(plan.observations)} observation(s)"
                + (f"; {plan.dropped} point(s) no longer fit the space, dropped" if plan.dropped else ""))

        night = done or Night(date, name, started_at=_now())
        night.status, night.baseline, night.warm_start = "running", base_night.ref if base_night else None, plan.describe()
        ledger.write(storage, night)

        def reserved(version: int) -> None:  # the version is known as soon as the runner claims it
            night.version = version
            ledger.write(storage, night)

        outcome = sweep(spec, evaluate_first=plan.champions, warm_points=plan.observations,
                        on_record=lambda path: reserved(int(Path(path).name.lstrip("v"))))
        night.version = outcome.version
        tonight = load(f"{name}@v{outcome.version}", root=storage, allow_incomplete=True)
        baseline = records[0][1] if records else None
        champions = _champion_pairs(baseline, tonight, plan.champions) if baseline is not None else []
        best_tonight = outcome.best["value"] if outcome.best else None
        base_best = base_night.best if base_night else None
        verdict = gate.judge(spec.mode, outcome.status, best_tonight, base_best, champions, opts.tolerance, opts.z)

        changed, drift = [], []
        if baseline is not None:
            from toolkit.results import compare

            changed = summary.what_changed(compare(baseline, tonight))
            drift = summary.config_drift(base_night.best_config, outcome.best["config"] if outcome.best else None)
        night.status, night.best, night.delta, night.noise_band = (verdict.status, best_tonight, verdict.delta,
                                                                  verdict.noise_band)
        night.best_config = outcome.best["config"] if outcome.best else None
        night.changed, night.finished_at = changed, _now()
        night.summary = {
            "name": name, "date": date, "status": verdict.status, "record": night.ref, "metric": spec.metric,
            "mode": spec.mode, "best": best_tonight, "baseline": night.baseline, "baseline_best": base_best,
            "delta": verdict.delta, "noise_band": verdict.noise_band, "champion_shift": verdict.champion_shift,
            "champions": champions, "reasons": verdict.reasons, "changed": changed, "config_drift": drift,
            "warm_start": plan.describe(), "exit_code": verdict.exit_code,
        }
        folder = ledger.folder(storage, name)
        (folder / f"{date}.summary.json").write_text(json.dumps(night.summary, indent=1, sort_keys=True,
                                                                default=str) + "\n", encoding="utf-8")
        (folder / f"{date}.summary.md").write_text(summary.markdown(night.summary), encoding="utf-8")
        ledger.write(storage, night)
        message = f"night {date} of {name}: {verdict.status} ({night.ref}); " + "; ".join(verdict.reasons)
        if opts.webhook and (verdict.status in ("regressed", "failed") or
                             (opts.webhook_on == "always" and verdict.status != "incomplete")):
            problem = summary.post_webhook(opts.webhook, night.summary)
            if problem:
                log(f"[nightly] warning: {problem}")
        if opts.keep is not None:
            pruned = retention.prune(storage, name, ledger.nights(storage, name), opts.keep,
                                     ledger.pins(storage, name), spec.mode)
            if pruned.pruned:
                log(f"[nightly] retention: pruned Ray working files of {len(pruned.pruned)} night(s), "
                    f"{pruned.freed_bytes / 2**20:.1f} MiB freed")
        return NightResult(night, verdict.exit_code, message)
    finally:
        lock.__exit__(None, None, None)


def _champion_pairs(baseline, tonight, champions: list[dict]) -> list[tuple[float, float]]:
    """(baseline value, tonight's value) for each champion configuration run both nights."""
    def values(rec) -> dict[str, float]:
        out: dict[str, float] = {}
        for _, row in rec.trials.iterrows():
            v = row.get("final_metric")
            if row.get("status") != "ERROR" and v is not None and v == v:
                out.setdefault(_canonical(json.loads(row["config_json"])), float(v))
        return out

    then, now = values(baseline), values(tonight)
    pairs = []
    for c in champions:
        key = _canonical(c)
        if key in then and key in now:
            pairs.append((then[key], now[key]))
    return pairs
