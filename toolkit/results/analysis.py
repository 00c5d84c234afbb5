"""The analyses people otherwise write by hand on top of a record's tables.

They work on any `Sweep` (trials and metrics tables plus the metric and its mode), so they
know nothing of how records are stored or loaded.
"""

from __future__ import annotations

import json
from typing import Protocol

import numpy as np
import pandas as pd

from toolkit.results.objective import sign
from toolkit.results.tables import CONFIG_PREFIX


class Sweep(Protocol):
    """What the analyses read: a `Record` is one."""

    trials: pd.DataFrame
    metrics: pd.DataFrame

    @property
    def metric(self) -> str | None: ...

    @property
    def mode(self) -> str: ...


SCOPES = {"last": "final_metric", "best": "best_metric"}
_MAX_IMPORTANCE_TRIALS = 2000  # RF cost grows ~n log n; a 2000-trial sample ranks params fine
_MIN_IMPORTANCE_TRIALS = 8


def best_value(values: pd.Series, mode: str) -> float | None:
    """The best of ``values`` by ``mode`` (NaN ignored); None when there is none."""
    v = pd.to_numeric(values, errors="coerce").replace([np.inf, -np.inf], np.nan).dropna()
    return float(sign(mode) * (sign(mode) * v).min()) if len(v) else None


def best_index(values: pd.Series, mode: str):
    """Index label of the best of ``values`` (first on ties); None when all are NaN."""
    v = pd.to_numeric(values, errors="coerce")
    return (sign(mode) * v).idxmin() if v.notna().any() else None


def trial_values(rec: "Sweep", scope: str = "last") -> pd.Series:
    """One objective value per trial (aligned with ``rec.trials``).

    ``scope="last"``: the metric at the trial's last reported iteration (Ray Tune's default);
    ``"best"``: the best value it ever reported. Falls back to the metric history when the
    trial table lacks the column."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {list(SCOPES)}, got {scope!r}")
    col = SCOPES[scope]
    t = rec.trials
    vals = pd.to_numeric(t[col], errors="coerce") if col in t else pd.Series(np.nan, index=t.index)
    metric = rec.metric
    if vals.isna().any() and metric and metric in rec.metrics.columns and len(rec.metrics):
        m = rec.metrics[["trial_id", "training_iteration", metric]].dropna()
        if scope == "last":
            per = m.sort_values("training_iteration").groupby("trial_id")[metric].last()
        else:
            per = (sign(rec.mode) * m[metric]).groupby(m["trial_id"]).min() * sign(rec.mode)
        vals = vals.fillna(t["trial_id"].map(per))
    vals = vals.astype(float).replace([np.inf, -np.inf], np.nan)
    return vals.rename("value")


def best(rec: "Sweep", k: int = 1, scope: str = "last") -> pd.DataFrame:
    """The ``k`` best trials (NaN/failed values excluded), best first."""
    vals = trial_values(rec, scope)
    t = rec.trials.assign(value=vals).dropna(subset=["value"])
    order = (sign(rec.mode) * t["value"]).sort_values(kind="stable").index
    return t.loc[order].head(k).reset_index(drop=True)


def best_so_far(rec: "Sweep", by: str = "trials", scope: str = "last") -> pd.DataFrame:
    """Running best objective as trials finish, by trial count or by wall time (seconds from
    the sweep start to each trial's completion)."""
    if by not in ("trials", "time"):
        raise ValueError(f"by must be 'trials' or 'time', got {by!r}")
    t = rec.trials.assign(value=trial_values(rec, scope))
    if by == "time":
        t = t.assign(elapsed_s=pd.to_numeric(t.get("completed_s"), errors="coerce"))
        t = t.sort_values("elapsed_s", kind="stable")
    signed = sign(rec.mode) * t["value"]
    running = sign(rec.mode) * signed.cummin()  # cummin skips NaN, keeping the previous best
    out = pd.DataFrame({"trial_id": t["trial_id"].to_numpy(), "value": t["value"].to_numpy(),
                        "best_so_far": running.ffill().to_numpy()})
    if by == "time":
        out.insert(0, "elapsed_s", t["elapsed_s"].to_numpy())
    else:
        out.insert(0, "n_trials", np.arange(1, len(t) + 1))
    return out


def _hashable(v):
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


def param_columns(trials: pd.DataFrame) -> list[str]:
    """Flattened config columns that vary across trials. Seeds are excluded: they are the
    noise source, not a hyperparameter to tune."""
    cols = []
    for c in trials.columns:
        if not c.startswith(CONFIG_PREFIX) or c.rsplit(".", 1)[-1] == "seed":
            continue
        if trials[c].dropna().map(_hashable).nunique() > 1:
            cols.append(c)
    return cols


def is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def param_summary(rec: "Sweep", scope: str = "last") -> pd.DataFrame:
    """Per parameter: numeric ones get range, value in the best trial and Spearman rank
    correlation with the objective; categorical ones one row per level with its trial count
    and the mean / median / best objective among trials that chose it."""
    vals = trial_values(rec, scope)
    t = rec.trials
    best_idx = best_index(vals, rec.mode)
    rows = []
    for c in param_columns(t):
        s = t[c]
        name = c[len(CONFIG_PREFIX):]
        if is_numeric(s):
            ok = s.notna() & vals.notna()
            rho = s[ok].rank().corr(vals[ok].rank()) if ok.sum() > 2 else np.nan
            rows.append({"param": name, "kind": "numeric", "level": None, "n": int(s.notna().sum()),
                         "min": s.min(), "max": s.max(),
                         "best_trial_value": s.get(best_idx) if best_idx is not None else None,
                         "spearman": rho})
        else:
            keyed = s.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                          else (v if isinstance(v, str) else json.dumps(v)))
            for level, idx in keyed.groupby(keyed, dropna=True).groups.items():
                v = vals.loc[idx].dropna()
                rows.append({"param": name, "kind": "categorical", "level": level, "n": len(idx),
                             "metric_mean": v.mean() if len(v) else np.nan,
                             "metric_median": v.median() if len(v) else np.nan,
                             "metric_best": best_value(v, rec.mode) if len(v) else np.nan,
                             "best_trial_value": level if best_idx is not None and keyed.get(best_idx) == level
                             else None})
    cols = ["param", "kind", "level", "n", "min", "max", "best_trial_value", "spearman",
            "metric_mean", "metric_median", "metric_best"]
    return pd.DataFrame(rows, columns=cols)


def design_matrix(trials: pd.DataFrame, params: list[str]) -> np.ndarray:
    """Numeric params as is, categorical ones as ordinal codes; inactive (conditional) NaN."""
    cols = []
    for c in params:
        s = trials[c]
        if is_numeric(s):
            cols.append(pd.to_numeric(s, errors="coerce").to_numpy(float))
        else:
            keyed = s.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v))
                          else (v if isinstance(v, str) else json.dumps(v, sort_keys=True)))
            codes, _ = pd.factorize(keyed)
            cols.append(np.where(codes < 0, np.nan, codes).astype(float))
    return np.column_stack(cols) if cols else np.empty((len(trials), 0))


def common_budget(rec: "Sweep", min_fraction: float = 0.5) -> int | None:
    """The largest iteration that at least ``min_fraction`` of the trials reached, when
    trials ran for different numbers of iterations (early stopping); else None."""
    m = rec.metrics
    if rec.metric not in m.columns or m.empty:
        return None
    reached = m.dropna(subset=[rec.metric]).groupby("trial_id")["training_iteration"].max()
    if reached.nunique() <= 1:
        return None
    need = max(_MIN_IMPORTANCE_TRIALS, int(np.ceil(min_fraction * len(reached))))
    ok = [b for b in sorted(reached.unique()) if (reached >= b).sum() >= need]
    return int(ok[-1]) if ok else int(reached.min())


def values_at(rec: "Sweep", budget: int) -> pd.Series:
    """Each trial's metric at iteration ``budget`` (NaN for trials stopped before it)."""
    m = rec.metrics
    at = m.loc[m["training_iteration"] == budget].drop_duplicates("trial_id", keep="last")
    v = rec.trials["trial_id"].map(dict(zip(at["trial_id"], at[rec.metric])))
    return pd.to_numeric(v, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan).rename("value")


def importance(rec: "Sweep", scope: str = "last", seed: int = 0, budget: int | str | None = "auto") -> pd.DataFrame:
    """Hyperparameter importance: permutation importance of a random-forest surrogate,
    measured on held-out folds.

    Why this method: a random forest models the non-linear, interacting, mixed
    (numeric/categorical/conditional) response of a sweep from a few dozen trials with no
    tuning; permuting one parameter on trials the forest did not see measures how much the
    prediction of unseen trials depends on it (Breiman 2001), without the bias of impurity
    importances towards high-cardinality continuous parameters (Strobl et al. 2007). It is
    far cheaper than full fANOVA (Hutter et al. 2014) and answers the same practical question
    of which knobs matter. The objective is rank-transformed first so that a few diverged
    trials do not dominate the squared error. ``attrs["surrogate_r2"]`` is the forest's
    out-of-fold R^2: when it is low, the importances are noise. Inactive conditional values
    are NaN, which scikit-learn's forests route natively.

    With early stopping, a trial's last value after 1 epoch is not comparable with another's
    after 9, so by default (``budget="auto"``) every trial is judged at one common iteration:
    the largest that at least half of the trials reached (as BOHB's analyses judge
    configurations per budget). ``budget=None`` uses each trial's value by ``scope``."""
    from scipy.stats import rankdata
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import KFold

    params = param_columns(rec.trials)
    if budget == "auto":
        budget = common_budget(rec)
    vals = values_at(rec, int(budget)) if budget is not None else trial_values(rec, scope)
    ok = vals.notna().to_numpy()
    t = rec.trials.loc[ok]
    y_raw = sign(rec.mode) * vals[ok].to_numpy(float)
    names = [p[len(CONFIG_PREFIX):] for p in params]
    out = pd.DataFrame({"param": names, "importance": np.nan, "std": np.nan, "share": np.nan})
    out.attrs.update(method="rf-permutation", surrogate_r2=np.nan, n_trials=int(ok.sum()), budget=budget)
    if len(t) < _MIN_IMPORTANCE_TRIALS or not params:
        out.attrs["note"] = f"needs >= {_MIN_IMPORTANCE_TRIALS} finished trials and a varying parameter"
        return out
    rng = np.random.default_rng(seed)
    if len(t) > _MAX_IMPORTANCE_TRIALS:
        keep = np.sort(rng.choice(len(t), _MAX_IMPORTANCE_TRIALS, replace=False))
        t, y_raw = t.iloc[keep], y_raw[keep]
    X = design_matrix(t, params)
    y = (rankdata(y_raw) - 1) / max(len(y_raw) - 1, 1)
    folds = KFold(n_splits=min(5, len(y) // 2), shuffle=True, random_state=seed)
    repeats = 5
    imps, pred = [], np.empty_like(y)
    for train, test in folds.split(X):
        rf = RandomForestRegressor(n_estimators=64, min_samples_leaf=2, random_state=seed, n_jobs=1)
        rf.fit(X[train], y[train])
        Xt, yt = X[test], y[test]
        pred[test] = rf.predict(Xt)
        base = np.mean((pred[test] - yt) ** 2)
        # All permuted copies go through the forest in one predict call: a forest's
        # per-call overhead, not its per-row cost, dominates on small test folds.
        copies = []
        for j in range(X.shape[1]):
            for _ in range(repeats):
                Xp = Xt.copy()
                Xp[:, j] = Xt[rng.permutation(len(Xt)), j]
                copies.append(Xp)
        p = rf.predict(np.concatenate(copies)).reshape(X.shape[1], repeats, len(Xt))
        imps.append(np.mean((p - yt) ** 2, axis=2) - base)  # (n_params, repeats)
    allimp = np.concatenate(imps, axis=1)
    out["importance"] = allimp.mean(axis=1)
    out["std"] = allimp.std(axis=1)
    pos = np.clip(out["importance"].to_numpy(), 0, None)
    out["share"] = pos / pos.sum() if pos.sum() > 0 else 0.0
    out.attrs["surrogate_r2"] = float(1 - np.mean((pred - y) ** 2) / max(np.var(y), 1e-12))
    return out.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
