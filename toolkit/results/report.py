"""One self-contained HTML report per record: plots as embedded PNGs, no external assets."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toolkit.results.analysis import (best_so_far, best_value, design_matrix, importance, is_numeric,
                                      param_columns, trial_values)
from toolkit.results.objective import sign
from toolkit.results.record import Record
from toolkit.results.tables import CONFIG_PREFIX

PLOTS = ("best-so-far", "learning-curves", "parallel-coordinates", "param-scatter", "importance")
_MAX_CURVES = 400  # drawing 10k curves hides everything; keep the best and a random sample
_STATUS_STYLE = {  # early-stopped trials must stand out from completed ones
    "TERMINATED": dict(color=None, ls="-", lw=1.2, alpha=0.85),
    "EARLY_STOPPED": dict(color="#9a9a9a", ls="--", lw=0.9, alpha=0.7),
    "ERROR": dict(color="#d62728", ls=":", lw=1.0, alpha=0.9),
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless, deterministic raster output
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def axis_scale(rec: Record, col: str) -> str:
    """"log", "linear" or "categorical": how the report draws the parameter in column ``col``."""
    s = rec.trials[col]
    if not is_numeric(s):
        return "categorical"
    return "log" if _log_scale(rec, col, s) else "linear"


def axis_label(rec: Record, col: str) -> str:
    return col[len(CONFIG_PREFIX):] + (" (log)" if axis_scale(rec, col) == "log" else "")


def _log_scale(rec: Record, col: str, s: pd.Series) -> bool:
    """Log axis for parameters the typed space declares log-scaled (every branch that holds
    this config path, when conditional branches share it). Only a record without a space
    description (e.g. from a Tune callback given no param_space) falls back to the data:
    a wide positive range spread like log-uniform samples."""
    rows = rec.meta.params_at(col[len(CONFIG_PREFIX):])
    if rows:
        return all(r.numeric and r.log for r in rows)
    if rec.meta.space is not None:  # the space says this is not a searched parameter
        return False
    v = pd.to_numeric(s, errors="coerce").dropna().to_numpy(float)
    if not len(v) or (v <= 0).any() or v.max() / v.min() < 100:
        return False
    # Log-uniform samples put about half their mass below the geometric midpoint of the range;
    # linearly spread ones put almost none there.
    return bool(np.mean(v < math.sqrt(v.min() * v.max())) >= 0.25)


def _better_cmap(rec: Record):
    # Better trials get the dark end of viridis regardless of mode.
    return "viridis" if sign(rec.mode) > 0 else "viridis_r"


# --------------------------------------------------------------------------- plots
def plot_best_so_far(rec: Record) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, by, xcol, xlabel in ((axes[0], "trials", "n_trials", "trials finished"),
                                 (axes[1], "time", "elapsed_s", "seconds since sweep start")):
        d = best_so_far(rec, by=by)
        ok = d["value"].notna()
        ax.scatter(d.loc[ok, xcol], d.loc[ok, "value"], s=9, color="#9bbad6", label="trial", zorder=2)
        ax.step(d[xcol], d["best_so_far"], where="post", color="#1f4e79", lw=2, label="best so far", zorder=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(rec.metric or "metric")
        vals = d["value"].dropna()
        if len(vals) and (vals > 0).all() and vals.max() / vals.min() > 100:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[0].set_title("best so far by trial count")
    axes[1].set_title("best so far by wall time")
    return _png(fig)


def plot_learning_curves(rec: Record) -> tuple[str, str]:
    plt = _plt()
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    metric = rec.metric
    fig, ax = plt.subplots(figsize=(11, 4.6))
    m = rec.metrics
    note = ""
    if metric not in m.columns or m.empty:
        ax.text(0.5, 0.5, f"no history of {metric!r}", ha="center", transform=ax.transAxes)
        return _png(fig), note
    vals = trial_values(rec)
    t = rec.trials.assign(value=vals)
    ids = list(t["trial_id"])
    if len(ids) > _MAX_CURVES:
        order = t.assign(signed=sign(rec.mode) * t["value"]).sort_values("signed")["trial_id"].tolist()
        rest = np.random.default_rng(0).permutation(order[50:])[: _MAX_CURVES - 50].tolist()
        ids = order[:50] + rest
        note = f" Showing the 50 best and {len(rest)} random others of {len(t)} trials."
    status = dict(zip(t["trial_id"], t.get("status", pd.Series("TERMINATED", index=t.index))))
    groups = {tid: g for tid, g in m.loc[m["trial_id"].isin(ids), ["trial_id", "training_iteration", metric]]
              .dropna().sort_values("training_iteration").groupby("trial_id")}
    finite = vals.dropna()
    norm = plt.Normalize(finite.min(), finite.max()) if len(finite) else plt.Normalize(0, 1)
    cmap = plt.get_cmap(_better_cmap(rec))
    value_of = dict(zip(t["trial_id"], vals))
    by_style: dict[str, list] = {"TERMINATED": [], "EARLY_STOPPED": [], "ERROR": []}
    colors: list = []
    for tid in ids:
        g = groups.get(tid)
        if g is None or g.empty:
            continue
        st = status.get(tid, "TERMINATED")
        st = st if st in by_style else ("ERROR" if st == "ERROR" else "EARLY_STOPPED" if st != "TERMINATED"
                                        else "TERMINATED")
        seg = np.column_stack([g["training_iteration"].to_numpy(float), g[metric].to_numpy(float)])
        by_style[st].append(seg)
        if st == "TERMINATED":
            v = value_of.get(tid)
            colors.append(cmap(norm(v)) if v is not None and not math.isnan(v) else "#444444")
        if st == "EARLY_STOPPED" and len(seg):
            ax.plot(seg[-1, 0], seg[-1, 1], marker="x", color="#7f7f7f", ms=4, zorder=2)
    for st in ("EARLY_STOPPED", "ERROR", "TERMINATED"):
        segs = by_style[st]
        if not segs:
            continue
        sty = _STATUS_STYLE[st]
        lc = LineCollection(segs, linestyles=sty["ls"], linewidths=sty["lw"], alpha=sty["alpha"],
                            colors=colors if st == "TERMINATED" else sty["color"],
                            zorder={"EARLY_STOPPED": 1, "ERROR": 2, "TERMINATED": 3}[st])
        ax.add_collection(lc)
    top = rec.best(1)
    if not top.empty and top["trial_id"].iloc[0] in groups:
        g = groups[top["trial_id"].iloc[0]]
        ax.plot(g["training_iteration"], g[metric], color="#ff7f0e", lw=2.6, zorder=5)
    ax.autoscale()
    y = m[metric].replace([np.inf, -np.inf], np.nan).dropna()
    if len(y):
        lo, hi = np.nanpercentile(y, [0, 99])
        pad = 0.05 * (hi - lo if hi > lo else 1)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("training iteration")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    counts = {k: len(v) for k, v in by_style.items()}
    handles = [Line2D([], [], color=cmap(0.1), lw=1.5, label=f"completed ({counts['TERMINATED']}), colour = final value"),
               Line2D([], [], color="#9a9a9a", ls="--", marker="x", label=f"early-stopped ({counts['EARLY_STOPPED']})"),
               Line2D([], [], color="#d62728", ls=":", label=f"error ({counts['ERROR']})"),
               Line2D([], [], color="#ff7f0e", lw=2.6, label="best trial")]
    # Below the axes: inside, it hides curves of diverged or stuck trials.
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, frameon=False)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, pad=0.01, label=f"final {metric}")
    return _png(fig), note


def _axis_values(rec: Record, col: str) -> tuple[np.ndarray, list[tuple[float, str]], bool]:
    """Values of one parameter scaled to [0, 1] (NaN = inactive) and tick labels."""
    s = rec.trials[col]
    if is_numeric(s):
        v = pd.to_numeric(s, errors="coerce").to_numpy(float)
        log = axis_scale(rec, col) == "log"
        w = np.log10(v) if log else v
        lo, hi = np.nanmin(w), np.nanmax(w)
        span = hi - lo if hi > lo else 1.0
        ticks = [(0.0, f"{np.nanmin(v):.3g}"), (1.0, f"{np.nanmax(v):.3g}")]
        return (w - lo) / span, ticks, log
    codes = design_matrix(rec.trials, [col])[:, 0]
    keyed = s.map(lambda x: x if isinstance(x, str) else json.dumps(x) if x is not None and not
                  (isinstance(x, float) and math.isnan(x)) else None)
    levels = pd.factorize(keyed)[1]
    n = max(len(levels) - 1, 1)
    return codes / n, [(i / n, str(lv)[:14]) for i, lv in enumerate(levels)], False


def plot_parallel(rec: Record, params: list[str]) -> str:
    plt = _plt()
    from matplotlib.collections import LineCollection

    vals = trial_values(rec)
    ok = vals.notna().to_numpy()
    fig, ax = plt.subplots(figsize=(max(8, 1.7 * (len(params) + 1)), 4.8))
    if not params or not ok.any():
        ax.text(0.5, 0.5, "no varying parameters or finished trials", ha="center", transform=ax.transAxes)
        return _png(fig)
    cols, ticks, names = [], [], []
    inactive = False
    for c in params:
        v, tk, log = _axis_values(rec, c)
        inactive |= bool(np.isnan(v[ok]).any())
        cols.append(np.where(np.isnan(v), -0.12, v))  # inactive branch parameters sit below the axis
        ticks.append(tk)
        names.append(axis_label(rec, c))
    y = vals.to_numpy(float)
    lo, hi = np.nanmin(y), np.nanmax(y)
    cols.append((y - lo) / (hi - lo if hi > lo else 1))
    ticks.append([(0.0, f"{lo:.3g}"), (1.0, f"{hi:.3g}")])
    names.append(rec.metric or "metric")
    data = np.column_stack(cols)[ok]
    x = np.arange(data.shape[1])
    cmap = plt.get_cmap(_better_cmap(rec))
    norm = plt.Normalize(lo, hi)
    order = np.argsort(-sign(rec.mode) * y[ok])  # best drawn last, on top
    segs = [np.column_stack([x, data[i]]) for i in order]
    ax.add_collection(LineCollection(segs, colors=[cmap(norm(y[ok][i])) for i in order],
                                     linewidths=1.0, alpha=0.6 if len(segs) < 300 else 0.25))
    for i, tk in enumerate(ticks):
        ax.axvline(i, color="black", lw=0.8)
        for pos, label in tk:
            ax.text(i + 0.04, pos, label, fontsize=7, va="center", ha="left",
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
    if inactive:  # only conditional parameters (of an unchosen branch) need this level
        ax.text(-0.35, -0.12, "inactive", fontsize=7, color="#666666", va="center")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=15, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.4, len(x) - 0.4)
    ax.set_ylim(-0.2 if inactive else -0.06, 1.08)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01, label=rec.metric)
    return _png(fig)


def plot_scatter(rec: Record, params: list[str]) -> str:
    plt = _plt()
    vals = trial_values(rec)
    n = max(len(params), 1)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols, 3.0 * nrows), squeeze=False)
    status = rec.trials.get("status", pd.Series("TERMINATED", index=rec.trials.index)).astype(str)
    early = (status == "EARLY_STOPPED").to_numpy()
    rng = np.random.default_rng(0)
    for k, ax in enumerate(axes.flat):
        if k >= len(params):
            ax.axis("off")
            continue
        c = params[k]
        s = rec.trials[c]
        if is_numeric(s):
            xv = pd.to_numeric(s, errors="coerce").to_numpy(float)
            if axis_scale(rec, c) == "log":
                ax.set_xscale("log")
        else:
            xv = design_matrix(rec.trials, [c])[:, 0]
            levels = pd.factorize(s.map(lambda x: x if isinstance(x, str) else json.dumps(x)
                                        if x is not None and not (isinstance(x, float) and math.isnan(x))
                                        else None))[1]
            ax.set_xticks(range(len(levels)))
            ax.set_xticklabels([str(lv)[:12] for lv in levels], fontsize=7, rotation=15)
            xv = xv + rng.uniform(-0.15, 0.15, len(xv))
            ax.set_xlim(-0.5, len(levels) - 0.5)  # every level's tick in view, however few trials chose it
        yv = vals.to_numpy(float)
        ax.scatter(xv[~early], yv[~early], s=12, color="#1f77b4", alpha=0.75, label="completed")
        ax.scatter(xv[early], yv[early], s=14, marker="x", color="#8c8c8c", alpha=0.8, label="early-stopped")
        ax.set_xlabel(axis_label(rec, c), fontsize=8)
        ax.set_ylabel(rec.metric, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def plot_importance(imp: pd.DataFrame) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * max(len(imp), 2) + 1.2))
    if imp["importance"].isna().all():
        ax.text(0.5, 0.5, imp.attrs.get("note", "not enough trials"), ha="center", transform=ax.transAxes)
        ax.axis("off")
        return _png(fig)
    d = imp.iloc[::-1]
    ax.barh(d["param"], d["importance"], xerr=d["std"], color="#4c72b0", ecolor="#333333", capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("increase in held-out error when permuted (rank-scaled objective)")
    r2 = imp.attrs.get("surrogate_r2", float("nan"))
    at = f" at iteration {imp.attrs['budget']}" if imp.attrs.get("budget") is not None else ""
    ax.set_title(f"permutation importance{at}, RF surrogate on {imp.attrs.get('n_trials')} trials "
                 f"(out-of-fold R\u00b2 = {r2:.2f})", fontsize=10)
    if not r2 > 0.2:  # also catches NaN
        ax.text(0.5, 1.09, "the surrogate does not predict held-out trials: these importances are noise",
                transform=ax.transAxes, ha="center", color="#c0392b", fontsize=10, weight="bold")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


# --------------------------------------------------------------------------- html
def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _provenance_rows(rec: Record) -> list[tuple[str, Any]]:
    m = rec.meta
    env = m.environment
    gpus, ray, versions = env.gpus, env.ray_cluster or {}, env.versions
    rows = [
        ("record", f"{rec.ref} ({rec.path})"), ("status", m.status),
        ("started / ended", f"{m.started_at} / {m.ended_at}"),
        ("trainable", m.trainable), ("metric", f"{m.metric} ({m.mode})"),
        ("seed", m.seed),
        ("searcher", json.dumps(m.searcher, sort_keys=True)),
        ("scheduler", json.dumps(m.scheduler, sort_keys=True)),
        ("data fingerprint", f"{m.data_fingerprint} {(m.data or {}).get('description') or ''}"
         if m.data_fingerprint else "unknown (not recorded)"),
        ("code", env.code_summary(m.code)),
        ("tunekit", env.tunekit_summary()),
        ("python", env.python.get("version")),
        ("os", env.os.get("platform")),
        ("cpu", f"{env.cpu.get('model')} x {env.cpu.get('count')}"),
        ("gpus", ", ".join(d.get("name", "?") for d in gpus.get("devices", [])) +
         (f" (driver {gpus.get('driver')})" if gpus.get("driver") else "") or "none"),
        ("ray cluster", f"{ray.get('nodes')} node(s), " + ", ".join(
            f"{k} {v:g}" for k, v in sorted((ray.get("resources") or {}).items())
            if k in ("CPU", "GPU", "memory") and isinstance(v, (int, float))) if ray else "not recorded"),
        ("hostname", rec.environment.get("hostname")),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
        ("packages", f"{len(env.packages)} frozen in the manifest"),
    ]
    for fname, meta in m.files.items():
        rows.append((f"sha256 {fname}", meta.get("sha256") if isinstance(meta, dict) else None))
    return rows


def _top_table(rec: Record, params: list[str], k: int = 10) -> str:
    top = rec.best(k)
    cols = ["trial_id", "status", "iterations", "value"] + params
    head = "".join(f"<th>{_e(c.replace(CONFIG_PREFIX, ''))}</th>" for c in cols)
    body = []
    for _, r in top.iterrows():
        cells = []
        for c in cols:
            v = r.get(c)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                v = "\u2014"  # inactive conditional parameter
            elif isinstance(v, float):
                v = f"{v:.5g}"
            cells.append(f"<td>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='data'><tr>{head}</tr>{''.join(body)}</table>"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1d1d1f;padding:0 16px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-top:0} .warn{background:#fff3cd;border:1px solid #e0c36a;padding:8px 12px;border-radius:6px}
.cards{display:flex;gap:12px;flex-wrap:wrap} .card{background:#f5f7fa;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:20px} figure{margin:12px 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:13px} table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #e3e3e3;padding:3px 8px;text-align:left;vertical-align:top}
table.prov td:first-child{font-weight:600;white-space:nowrap;background:#fafafa}
table.prov td{word-break:break-all} code{font-size:12px} .scroll{overflow-x:auto;max-width:100%}
"""


def render_html(rec: Record) -> str:
    params = param_columns(rec.trials)
    imp = importance(rec)
    curves, curve_note = plot_learning_curves(rec)
    inactive_note = (" Conditional parameters of an unchosen branch sit at 'inactive'."
                     if any(rec.trials[c].isna().any() for c in params) else "")
    figs = {
        "best-so-far": (plot_best_so_far(rec), "Best value so far as trials finish (dots: each trial's final value)."),
        "learning-curves": (curves, "Every trial's metric per iteration. Solid, coloured by final value: completed; "
                            "grey dashed ending in x: stopped early by the scheduler; red dotted: failed; "
                            "orange: best trial." + curve_note),
        "parallel-coordinates": (plot_parallel(rec, params), "One line per trial across all varying parameters and "
                                 "the metric; darker is better." + inactive_note),
        "param-scatter": (plot_scatter(rec, params), "Metric against each parameter (categorical values jittered)."),
        "importance": (plot_importance(imp), "Permutation importance of a random-forest surrogate on held-out "
                       "trials; bars are mean \u00b1 sd over folds and repeats. With early stopping every trial is "
                       "judged at one common iteration. Trust it only when R\u00b2 is well above 0."),
    }
    best_val = best_value(trial_values(rec), rec.mode)
    counts = rec.trials["status"].value_counts().to_dict() if "status" in rec.trials else {}
    top = rec.best(1)
    best_cfg = rec.config(top["trial_id"].iloc[0]) if not top.empty else None
    cards = [("status", rec.status), ("trials", len(rec.trials)),
             (f"best {rec.metric}", f"{best_val:.5g}" if best_val is not None else "n/a")]
    cards += [(str(k).lower().replace("_", " "), v) for k, v in sorted(counts.items())]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>tunekit report {_e(rec.ref)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(rec.ref)}</h1><p class='sub'>{_e(rec.meta.trainable)} \u2014 "
        f"{_e(rec.metric)} ({_e(rec.mode)})</p>",
    ]
    if not rec.complete:
        parts.append(f"<p class='warn'>This version is INCOMPLETE: {_e('; '.join(rec.notes))}</p>")
    parts.append("<div class='cards'>" + "".join(f"<div class='card'>{_e(k)}<b>{_e(v)}</b></div>"
                                                  for k, v in cards) + "</div>")
    if best_cfg is not None:
        parts.append(f"<h2>Best trial: {_e(top['trial_id'].iloc[0])}</h2><pre>"
                     f"{_e(json.dumps(best_cfg, indent=1, sort_keys=True))}</pre>")
    parts.append("<h2>Top trials</h2><div class='scroll'>" + _top_table(rec, params) + "</div>")
    titles = {"best-so-far": "Best so far", "learning-curves": "Learning curves",
              "parallel-coordinates": "Parallel coordinates", "param-scatter": "Parameters vs metric",
              "importance": "Hyperparameter importance"}
    for key in PLOTS:
        png, caption = figs[key]
        parts.append(f"<h2>{titles[key]}</h2><figure class='plot' id='plot-{key}'>"
                     f"<img alt='{_e(titles[key])}' src='data:image/png;base64,{png}'>"
                     f"<figcaption>{_e(caption)}</figcaption></figure>")
    parts.append("<h2>Provenance</h2><table class='prov' id='provenance'>" + "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in _provenance_rows(rec)) + "</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(rec: Record, out: str | os.PathLike | None = None) -> Path:
    """Write the report (default ``<name>-v<N>.html`` in the current folder)."""
    path = Path(out or f"{rec.name}-v{rec.version}.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(rec), encoding="utf-8")
    return path
