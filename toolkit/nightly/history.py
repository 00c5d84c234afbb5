"""`tunekit nightly history`: one line a night, and the best metric over nights as a plot."""

from __future__ import annotations

import base64
import html
import io

from toolkit.nightly.ledger import Night


def lines(nights: list[Night], metric: str) -> list[str]:
    head = f"{'date':<10}  {'record':<16}  {'status':<10}  {'best ' + metric:>14}  {'delta':>10}  what changed"
    out = [head]
    for n in nights:
        best = "n/a" if n.best is None else f"{n.best:.6g}"
        delta = "" if n.delta is None else f"{n.delta:+.4g}"
        changed = "; ".join(n.changed) if n.changed else ("-" if n.baseline else "baseline")
        out.append(f"{n.date:<10}  {(n.ref or '-'):<16}  {n.status:<10}  {best:>14}  {delta:>10}  {changed}")
    return out


def plot_png(nights: list[Night], metric: str) -> bytes:
    """Best metric per night, regressed nights marked; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [n for n in nights if n.best is not None]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.plot([n.date for n in scored], [n.best for n in scored], marker="o", color="#1f77b4", label="best")
    bad = [n for n in scored if n.status == "regressed"]
    if bad:
        ax.scatter([n.date for n in bad], [n.best for n in bad], color="#d62728", zorder=3, s=60,
                   label="regressed")
    ax.set_xlabel("night (UTC)")
    ax.set_ylabel(f"best {metric}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def html_page(name: str, nights: list[Night], metric: str) -> str:
    png = base64.b64encode(plot_png(nights, metric)).decode()
    rows = "".join(
        f"<tr><td>{html.escape(n.date)}</td><td>{html.escape(n.ref or '-')}</td><td>{html.escape(n.status)}</td>"
        f"<td>{'' if n.best is None else f'{n.best:.6g}'}</td><td>{'' if n.delta is None else f'{n.delta:+.4g}'}</td>"
        f"<td>{html.escape('; '.join(n.changed))}</td></tr>" for n in nights)
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(name)} nightly history</title>"
            f"<h1>{html.escape(name)}: nightly history</h1><img alt='best {html.escape(metric)} over nights' "
            f"src='data:image/png;base64,{png}'><table border='1' cellpadding='4'><tr><th>night</th><th>record</th>"
            f"<th>status</th><th>best</th><th>delta</th><th>what changed</th></tr>{rows}</table>")
