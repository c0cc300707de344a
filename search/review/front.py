"""The Pareto front of a search with several objectives (``search.objectives``): its completed trials
that no other completed trial beats in every objective, keeping only those that meet every constraint.
Stopped trials are left out: they were not trained to the end, so their scores are not comparable.

The report stores it as ``pareto_front.csv`` and ``pareto_front.png``, ``hpsearch report`` prints it,
the runs on it carry the tag ``hpsearch.pareto: true`` and ``hpsearch retrain --front`` retrains them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hpsearch.objectives import Constraint, pareto_front
from hpsearch.review.trials import Settings, TrialRow, num

PARETO_TAG = "hpsearch.pareto"


def front_rows(rows: list[TrialRow], settings: Settings) -> list[dict[str, Any]]:
    """The front, ordered by the first objective (best first); [] for a search with one objective."""
    if len(settings.objectives) < 2:
        return []
    metrics = [m for m, _ in settings.objectives]
    modes = [mode for _, mode in settings.objectives]
    constraints = [Constraint.parse(c) for c in settings.constraints]
    candidates = {
        r.run_id: r
        for r in rows
        if r.state == "completed"
        and all(isinstance(r.metrics.get(m), (int, float)) and math.isfinite(r.metrics[m]) for m in metrics)
        and all(c.holds(r.metrics) for c in constraints)
    }
    points = {k: [r.metrics[m] for m in metrics] for k, r in candidates.items()}
    on = [candidates[k] for k in pareto_front(points, modes)]
    sign = 1.0 if modes[0] == "max" else -1.0
    on.sort(key=lambda r: (-sign * r.metrics[metrics[0]], r.index))
    return [
        {
            "rank": i + 1,
            "trial": r.name,
            "run_name": r.run_name,
            "run_id": r.run_id,
            "value": r.metrics[metrics[0]],
            **{m: r.metrics[m] for m in metrics},
            **{c.metric: r.metrics.get(c.metric) for c in constraints if c.metric not in metrics},
            "epochs": r.epochs,
            "state": r.state,
            "config": r.config,
        }
        for i, r in enumerate(on)
    ]


def objective_points(rows: list[TrialRow], settings: Settings) -> list[dict[str, Any]]:
    """Every completed trial's objectives (what the front is picked from)."""
    if len(settings.objectives) < 2:
        return []
    metrics = [m for m, _ in settings.objectives]
    return [
        {"trial": r.name, **{m: r.metrics.get(m) for m in metrics}}
        for r in rows
        if r.state == "completed" and all(m in r.metrics for m in metrics)
    ]


def plot_front(
    rows: list[dict[str, Any]], front: list[dict[str, Any]], objectives: list[tuple[str, str]], path: Path
) -> None:
    """The first two objectives of every completed trial (grey), the front's in colour, joined as a staircase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (mx, _), (my, _) = objectives[0], objectives[1]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = [r[mx] for r in rows if r.get(mx) is not None and r.get(my) is not None]
    ys = [r[my] for r in rows if r.get(mx) is not None and r.get(my) is not None]
    ax.scatter(xs, ys, color="lightgrey", label="completed trials")
    fx, fy = [t[mx] for t in front], [t[my] for t in front]
    ax.step(fx, fy, where="post", color="tab:blue", alpha=0.6)
    ax.scatter(fx, fy, color="tab:blue", label="Pareto front", zorder=3)
    for t in front:
        ax.annotate(t["trial"], (t[mx], t[my]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel=f"{mx} ({objectives[0][1]})", ylabel=f"{my} ({objectives[1][1]})", title="Pareto front")
    if ys and min(ys) > 0 and max(ys) / min(ys) > 100:
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def tag_front(client: Any, runs: list[Any], front: list[dict[str, Any]]) -> None:
    """Tag the trials' runs on the front ``hpsearch.pareto: true``; a run a resumed search pushed off the
    front loses the tag."""
    on = {t["run_id"] for t in front}
    for run in runs:
        tagged = run.data.tags.get(PARETO_TAG) == "true"
        if run.info.run_id in on and not tagged:
            client.set_tag(run.info.run_id, PARETO_TAG, "true")
        elif run.info.run_id not in on and tagged:
            client.delete_tag(run.info.run_id, PARETO_TAG)


def print_front(
    front: list[dict[str, Any]], objectives: list[tuple[str, str]], constraints: list[str], console: Any
) -> None:
    from rich.table import Table

    shown = ", ".join(f"{m} ({mode})" for m, mode in objectives)
    title = f"Pareto front: {len(front)} completed trials no other beats in every objective: {shown}"
    if constraints:
        title += f"; meeting {', '.join(constraints)}"
    table = Table(title=title, title_justify="left")
    extra = [
        k
        for k in (front[0] if front else {})
        if k not in ("rank", "trial", "run_name", "run_id", "value", "epochs", "state", "config")
    ]
    for col in ("#", "run", *extra, "epochs"):
        table.add_column(col)
    for t in front:
        table.add_row(
            str(t["rank"]), t["run_name"], *("-" if t[k] is None else num(t[k]) for k in extra), str(t["epochs"])
        )
    console.print(table)
