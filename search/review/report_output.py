"""The report's outputs: files (JSON, CSV, PNG plots) stored under a search's parent run, and the
terminal tables of ``hpsearch report``. The numbers come from :mod:`search.report`."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from hpsearch.review.front import plot_front, print_front, tag_front
from hpsearch.review.pbt import plot_schedule, print_pbt
from hpsearch.review.report import report_for
from hpsearch.review.trials import TOP_K, SearchReport, config_columns, text


# Writing -------------------------------------------------------------------------------------------
def write_report(report: SearchReport, folder: Path) -> list[Path]:
    """``report.json`` + CSV tables + PNG plots into ``folder``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "report.json"]
    files[0].write_text(json.dumps(report.to_json(), indent=2, default=str))
    tables = {
        "top_trials.csv": config_columns(report.top),
        "optimization_history.csv": report.history,
        "param_importance.csv": [{"param": k, "importance": v} for k, v in report.importance.get("params", {}).items()],
        "marginals.csv": [{"param": k, **row} for k, table in report.marginals.items() for row in table],
        "marginals_by_rung.csv": [{"param": k, **row} for k, table in report.by_rung.items() for row in table],
        "asha_rungs.csv": report.rungs,
        "learning_curves.csv": [
            {"trial": t, "epoch": s, report.metric: v} for t, pts in report.curves.items() for s, v in pts
        ],
    }
    if report.pbt_schedule:
        tables["pbt_schedule.csv"], tables["pbt_lineage.csv"] = report.pbt_schedule, report.pbt_lineage
        plot_schedule(report.pbt_schedule, report.max_epochs, folder / "pbt_schedule.png")
        files.append(folder / "pbt_schedule.png")
    if report.front:
        tables["pareto_front.csv"] = config_columns(report.front)
        plot_front(report.objective_points, report.front, report.objectives, folder / "pareto_front.png")
        files.append(folder / "pareto_front.png")
    for name, table in tables.items():
        path = folder / name
        path.write_text(to_csv(table))
        files.append(path)
    files += plot_report(report, folder)
    return files


def to_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    fields = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def plot_report(report: SearchReport, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    metric = report.metric

    def panels(keys: list[str]) -> tuple[Any, Any]:
        """One panel per parameter, three to a row; the panels left over are hidden."""
        fig, axes = plt.subplots(
            math.ceil(len(keys) / 3), 3, figsize=(12, 2.8 * math.ceil(len(keys) / 3)), squeeze=False
        )
        for ax in list(axes.flat)[len(keys) :]:
            ax.set_axis_off()
        return fig, axes

    def save(fig: Any, name: str) -> None:
        path = folder / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)

    # Optimization history
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = {"completed": "tab:green", "stopped_early": "tab:orange"}
    for state, color in colors.items():
        pts = [(h["index"], h["value"]) for h in report.history if h["state"] == state and h["value"] is not None]
        if pts:
            ax.scatter([x for x, _ in pts], [y for _, y in pts], s=18, color=color, label=state.replace("_", " "))
    bad = [h["index"] for h in report.history if h["state"] in ("diverged", "failed")]
    best = [(h["index"], h["best_so_far"]) for h in report.history if h["best_so_far"] is not None]
    if best:
        ax.step(*zip(*best, strict=True), where="post", color="tab:blue", label="best so far")
        if bad:
            low = min(v for _, v in best) if report.mode == "max" else max(v for _, v in best)
            ax.scatter(bad, [low] * len(bad), marker="x", color="tab:red", label="diverged / failed")
    ax.set(xlabel="trial (start order)", ylabel=metric, title=f"{report.experiment}: optimization history")
    if ax.get_legend_handles_labels()[0]:  # no finished trial: nothing to label (only failures)
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished trial", transform=ax.transAxes, ha="center", va="center")
    save(fig, "optimization_history.png")

    # Parameter importance
    scores = report.importance.get("params", {})
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(scores) + 1)))
    if scores:
        names = list(scores)[::-1]
        ax.barh(names, [scores[n] for n in names], color="tab:blue")
        ax.set(xlabel="importance (fANOVA, sums to 1)")
    else:
        ax.text(0.5, 0.5, report.importance.get("note", "not available"), ha="center", va="center", wrap=True)
        ax.set_axis_off()
    ax.set_title(f"parameter importance for {metric}")
    save(fig, "param_importance.png")

    # Marginals: one panel per parameter, median bars with the best marked
    keys = list(report.marginals)
    if keys:
        fig, axes = panels(keys)
        for ax, key in zip(axes.flat, keys, strict=False):
            table = report.marginals[key]
            labels = [f"{r['value']}\n(n={r['trials']})" for r in table]
            med = [r["median"] if r["median"] is not None else math.nan for r in table]
            bst = [r["best"] if r["best"] is not None else math.nan for r in table]
            x = range(len(table))
            ax.bar(x, med, color="tab:blue", alpha=0.7, label="median")
            ax.scatter(x, bst, color="black", marker="_", s=200, label="best")
            finite = [v for v in med + bst if not math.isnan(v)]
            if finite:
                lo, hi = min(finite), max(finite)
                pad = (hi - lo) * 0.15 or 0.01
                ax.set_ylim(lo - pad, hi + pad)
            crowded = len(table) > 4 or any(len(str(r["value"])) > 10 for r in table)
            ax.set_xticks(
                list(x), labels, fontsize=7, rotation=25 if crowded else 0, ha="right" if crowded else "center"
            )
            ax.set_title(key, fontsize=9)
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(f"{metric} per value (finished trials)")
        save(fig, "marginals.png")

    # At equal epochs: each value's median at each rung (the trials that reached it), n in the legend
    keys = [k for k, table in report.by_rung.items() if len({row["value"] for row in table}) > 1]
    if keys:
        fig, axes = panels(keys)
        for ax, key in zip(axes.flat, keys, strict=False):
            table = report.by_rung[key]
            for value in dict.fromkeys(row["value"] for row in table):
                line = [(row["rung"], row["median"], row["trials"]) for row in table if row["value"] == value]
                ax.plot([p[0] for p in line], [p[1] for p in line], marker="o", ms=3, label=f"{value} (n={line[0][2]})")
            ax.set_xscale("log" if len({row["rung"] for row in table}) > 2 else "linear")
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("rung (epochs)", fontsize=7)
            ax.legend(fontsize=6)
        fig.suptitle(f"median {metric} per value at each ASHA rung (the trials that reached it)")
        save(fig, "marginals_by_rung.png")

    # Learning curves of the top trials
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for trial, curve in report.curves.items():
        if curve:
            ax.plot([p[0] for p in curve], [p[1] for p in curve], marker="o", ms=3, label=trial)
    ax.set(xlabel="epoch", ylabel=metric, title=f"learning curves of the top {len(report.curves)} trials")
    if report.curves:
        ax.legend(fontsize=8)
    save(fig, "learning_curves.png")

    # ASHA rungs
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if report.rungs:
        ax.bar([str(r["rung"]) for r in report.rungs], [r["reached"] for r in report.rungs], color="tab:purple")
        for i, r in enumerate(report.rungs):
            ax.text(i, r["reached"], str(r["reached"]), ha="center", va="bottom")
    ax.set(xlabel="rung (epochs)", ylabel="trials that reached it", title="ASHA: trials per rung")
    save(fig, "asha_rungs.png")
    return files


def log_report(client: Any, parent_run_id: str, top_k: int = TOP_K) -> SearchReport:
    """Compute the report of a search from MLflow and store it under the parent run's ``report/``."""
    import tempfile

    parent = client.get_run(parent_run_id)
    report = report_for(client, parent, top_k=top_k)
    if report.objectives:
        from hpsearch.tracking import reader

        tag_front(client, reader.search_trials(client, parent.info.experiment_id, parent_run_id), report.front)
    with tempfile.TemporaryDirectory() as folder:
        write_report(report, Path(folder))
        client.log_artifacts(parent_run_id, folder, "report")
    return report


# Printing ------------------------------------------------------------------------------------------
def print_report(report: SearchReport, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items() if v)
    console.print(
        f"[bold]{report.experiment}[/bold]: {report.search_run_name} ({report.search_run_id}), {report.status}; "
        f"trials: {counts}"
    )
    table = Table(title=f"top {len(report.top)} by {report.metric} ({report.mode})", title_justify="left")
    for col in ("#", "run", report.metric, "epochs", "state"):
        table.add_column(col)
    for t in report.top:
        table.add_row(str(t["rank"]), t["run_name"], fmt(t["value"]), str(t["epochs"]), t["state"])
    console.print(table)
    if report.top:
        best = report.top[0]
        console.print("best config: " + ", ".join(f"{k}={text(v)}" for k, v in best["config"].items()))
    imp = report.importance
    if imp.get("params"):
        table = Table(title=f"parameter importance ({imp['method']})", title_justify="left")
        table.add_column("parameter")
        table.add_column("importance", justify="right")
        table.add_column("")
        for k, v in imp["params"].items():
            table.add_row(k, f"{v:.3f}", "█" * max(1, round(v * 40)) if v > 0 else "")
        console.print(table)
    else:
        console.print(f"parameter importance: {imp.get('note', 'not available')}")
    order = list(imp.get("params", {})) + [k for k in report.marginals if k not in imp.get("params", {})]
    for key in order:
        if key not in report.marginals:
            continue
        # Each value at equal epochs (every ASHA rung, on the trials that reached it): a trial's last value
        # would weigh epoch-1 values of trials ASHA stopped against full runs.
        at = report.by_rung.get(key, [])
        rungs = sorted({r["rung"] for r in at})
        table = Table(
            title=f"{key}: median {report.metric} at each ASHA rung (trials that reached it)",
            title_justify="left",
        )
        table.add_column("value")
        table.add_column("failed", justify="right")
        for rung in rungs:
            table.add_column(f"epoch {rung}", justify="right")
        if rungs:
            table.add_column(f"beats rest @{rungs[0]}", justify="right")
        for r in report.marginals[key]:
            if not r["trials"]:
                continue
            cells = {c["rung"]: c for c in at if c["value"] == r["value"]}
            first = cells.get(rungs[0]) if rungs else None
            beat = (
                f"{first['beats_others']:.0%} ({first['certainty']})"
                if first is not None and first["beats_others"] is not None
                else "-"
            )
            table.add_row(
                r["value"],
                f"{r['failed']}/{r['trials']}",
                *(f"{fmt(cells[g]['median'])} ({cells[g]['trials']})" if g in cells else "-" for g in rungs),
                *([beat] if rungs else []),
            )
        console.print(table)
    if report.pbt_schedule:
        print_pbt(report.pbt_schedule, report.pbt_lineage, report.top[0]["trial"] if report.top else None, console)
    if report.objectives:
        print_front(report.front, report.objectives, report.constraints, console)
    if report.questions:
        console.print("[bold]The lecture's questions, with this search's evidence[/bold]")
        for q in report.questions:
            console.print(f"- {q['question']}", soft_wrap=True)
            console.print(f"  {q['answer']}", soft_wrap=True)
            if "agreement" in q:
                console.print(f"  {q['agreement']}", soft_wrap=True)
    table = Table(title="ASHA rungs", title_justify="left")
    for col in ("rung (epochs)", "reached", "went on", "median", "best"):
        table.add_column(col, justify="right")
    for r in report.rungs:
        table.add_row(
            str(r["rung"]), f"{r['reached']} ({r['fraction']:.0%})", str(r["went_on"]), fmt(r["median"]), fmt(r["best"])
        )
    console.print(table)
