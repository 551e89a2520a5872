"""The demo's HTML report: per-round figures as tables and plots (matplotlib, embedded PNG)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

SESSION = (("acceptance", "accepted / shown"), ("parse", "parse (accepted)"),
           ("compile", "compile (accepted)"))
EVALUATION = (("held_out", "compile@1", "held-out compile@1"),
              ("humaneval", "compile@1", "HumanEval compile@1"),
              ("humaneval", "exec@1", "HumanEval exec@1"),
              ("humaneval", "pass@1", "HumanEval pass@1"))


def value(evaluation: dict[str, Any], suite: str, metric: str, mode: str) -> float | None:
    """``metric`` of ``suite`` in ``mode`` ("server" or "raw") from an Evaluation dict."""
    if mode == "raw":
        return (evaluation.get("raw") or {}).get(suite, {}).get(metric)
    return (evaluation.get(suite) or {}).get(metric)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(rounds: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, base64 PNG) of the evaluation figures and the session rates per round."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    xs = [r["round"] for r in rounds]
    labels = [f"{r['round']}\n{r['model']}"[:28] for r in rounds]
    out = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, mode in zip(axes, ("raw", "server"), strict=True):
        for suite, metric, title in EVALUATION:
            ys = [value(r.get("evaluation") or {}, suite, metric, mode) for r in rounds]
            ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", label=title)
        ax.set_title(f"{'model output (raw)' if mode == 'raw' else 'what the server shows'}")
        ax.set_xticks(xs, labels, fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("rate")
    axes[1].legend(fontsize=8, loc="best")
    out.append(("Held-out figures of each round's model", _png(fig)))
    plt.close(fig)

    session = [r for r in rounds if r.get("session")]
    if session:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for key, title in SESSION:
            ax.plot([r["round"] for r in session],
                    [float("nan") if r["session"].get(key) is None else r["session"][key]
                     for r in session], marker="o", label=title)
        ax.set_xticks([r["round"] for r in session])
        ax.set_xlabel("round (completions served by the previous round's model)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        out.append(("The editor session of each round", _png(fig)))
        plt.close(fig)
    return out


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def evaluation_rows(rounds: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """The evaluation table's rows: round, model, status, then raw and shown per figure."""
    rows = []
    for r in rounds:
        ev = r.get("evaluation") or {}
        rows.append([r["round"], r["model"], r.get("status", "")] + [
            value(ev, suite, metric, mode) for suite, metric, _ in EVALUATION
            for mode in ("raw", "server")])
    return rows


EVALUATION_HEAD = ["round", "model", "status"] + [
    f"{title} ({mode})" for _, _, title in EVALUATION for mode in ("raw", "server")]
SESSION_HEAD = ["round", "served by", "requests", "shown", "accepted", "acceptance",
                "parse (accepted)", "compile (accepted)", "revisions", "fixed (broken)",
                "method", "examples",
                "train s", "verdict"]


def session_rows(rounds: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """The editor-session table's rows, one per round that had a session."""
    rows = []
    for r in rounds:
        s, t = r.get("session"), r.get("training") or {}
        if not s:
            continue
        rows.append([r["round"], s["served_by"], s["requests"], s["shown"], s["accepted"],
                     s["acceptance"], s["parse"], s["compile"], s["revisions"],
                     f"{s.get('fix_offered', 0)} ({s.get('broken', 0)})", t.get("method"),
                     t.get("examples"), t.get("train_s"), r.get("verdict")])
    return rows


def render(summary: dict[str, Any]) -> str:
    """The whole report as one self-contained HTML page."""
    rounds = summary["rounds"]
    images = "".join(f"<h3>{html.escape(title)}</h3><img src='data:image/png;base64,{data}'>"
                     for title, data in plots(rounds))
    settings = html.escape(", ".join(f"{k}={v}" for k, v in summary["setup"].items()))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>compilot demo {html.escape(summary['started'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 80em; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>compilot demo — {html.escape(summary['started'])}</h1>
<p>{html.escape(summary['model'])}; {summary['rounds_run']} round(s); {settings}.
Held-out prompts are functions from standard-library files that no round trains on;
HumanEval problems are never trained on either. "raw" is the model's own output, "server" what
the server shows after cutting and ranking.</p>
<h2>Held-out evaluation per round</h2>
{_table(EVALUATION_HEAD, evaluation_rows(rounds))}
<h2>The editor sessions</h2>
{_table(SESSION_HEAD, session_rows(rounds))}
{images}
<p>Total time {summary['seconds']:.0f} s. Data dir of this run: {html.escape(summary['root'])}.</p>
</body></html>
"""
