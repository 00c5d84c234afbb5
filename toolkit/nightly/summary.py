"""A night's summary: what changed since the last good night, as Markdown, JSON and a webhook."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from toolkit.results.compare import Comparison, diff_tree

# Differences that say nothing about why a result moved.
_IGNORED_SPEC = ("tags.",)


def what_changed(c: Comparison) -> list[str]:
    """One short line per kind of change between the baseline night (a) and tonight (b)."""
    out = []
    spec = [d for d in c.spec_as_given if not d[0].startswith(_IGNORED_SPEC)]
    for kind, diffs in (("spec", spec), ("code", c.code), ("data", c.data)):
        if diffs:
            shown = "; ".join(f"{path}: {_short(a)} -> {_short(b)}" for path, a, b in diffs[:4])
            more = f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else ""
            out.append(f"{kind}: {shown}{more}")
    packages = [d for d in c.environment if str(d[0]).startswith("packages.")]
    if packages:
        out.append("packages: " + "; ".join(f"{p.removeprefix('packages.')} {_short(a)} -> {_short(b)}"
                                          for p, a, b in packages[:6]))
    return out


def config_drift(old: dict | None, new: dict | None) -> list[tuple[str, Any, Any]]:
    """Parameters whose value differs between two best configurations (seed excluded)."""
    if not old or not new:
        return []
    return [d for d in diff_tree(old, new) if d[0].rsplit(".", 1)[-1] != "seed"]


def _short(v: Any, width: int = 40) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def markdown(s: dict) -> str:
    """The summary dict as a short Markdown page."""
    lines = [f"# {s['name']} nightly {s['date']}: {s['status']}", ""]
    lines.append(f"- record: `{s.get('record') or 'none'}`; baseline (last good night): "
                 f"`{s.get('baseline') or 'none'}`")
    best, base = s.get("best"), s.get("baseline_best")
    lines.append(f"- best {s['metric']} ({s['mode']}): {_num(best)}; baseline {_num(base)}; "
                 f"delta {_num(s.get('delta'), signed=True)} (> 0 is worse); noise band {_num(s.get('noise_band'))}")
    ws = s.get("warm_start") or {}
    if ws:
        lines.append(f"- warm start {ws.get('mode')}: {ws.get('champions', 0)} champions re-evaluated, "
                     f"{ws.get('observations', 0)} observations, {ws.get('dropped', 0)} points dropped "
                     "(no longer in the space)")
    for old, new in s.get("champions") or []:
        lines.append(f"  - champion: {_num(old)} then, {_num(new)} tonight")
    for r in s.get("reasons") or []:
        lines.append(f"- {r}")
    lines += ["", "## What changed", ""]
    lines += [f"- {c}" for c in s.get("changed") or []] or ["- nothing recorded"]
    drift = s.get("config_drift") or []
    lines += ["", "## Best configuration drift", ""]
    lines += [f"- `{p}`: {_short(a)} -> {_short(b)}" for p, a, b in drift] or ["- same best configuration"]
    return "\n".join(lines) + "\n"


def _num(x: Any, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.6g}" if signed else f"{x:.6g}"


def post_webhook(url: str, payload: dict, timeout_s: float = 10.0) -> str | None:
    """POST the summary as JSON; returns None on success, else a one-line reason."""
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "tunekit-nightly"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - the user's own URL
            if not 200 <= resp.status < 300:
                return f"webhook {url} answered HTTP {resp.status}"
    except urllib.error.HTTPError as e:
        return f"webhook {url} answered HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return f"webhook {url} failed: {getattr(e, 'reason', e)}"
    return None
