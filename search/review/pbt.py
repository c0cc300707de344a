"""What population-based training did (``search.scheduler.type: pbt``), read from the segment runs under
each trial's run: each trial's parameters over the epochs (its *schedule*: the config it started with,
then the one of each exploit) and the *lineage* (at which epoch which trial took whose weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hpsearch.review.trials import TrialRow, num, text
from hpsearch.tracking.reader import parse_param, segment_runs
from hpsearch.tracking.tags import CHANGED, DONOR, FROM_EPOCH, PARENT, SEGMENT


def pbt_history(
    client: Any, experiment_id: str, rows: list[TrialRow]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(schedule, lineage)``: one schedule row per trial and segment (``from_epoch``: the first epoch it
    trained with these values; the mutated keys' values), one lineage row per exploit. Both empty for a
    search without segments."""
    segments: dict[str, list[Any]] = {}
    for run in segment_runs(client, experiment_id, [r.run_id for r in rows]):
        segments.setdefault(run.data.tags[PARENT], []).append(run)
    if not segments:
        return [], []
    keys: list[str] = []
    for found in segments.values():
        for run in found:
            for key in json.loads(run.data.tags.get(CHANGED, "{}")):
                if key not in keys:
                    keys.append(key)
    schedule, lineage = [], []
    for row in sorted(rows, key=lambda r: r.index):
        schedule.append(
            {"trial": row.name, "segment": 1, "from_epoch": 1, "donor": "", **{k: row.config.get(k) for k in keys}}
        )
        for run in sorted(segments.get(row.run_id, []), key=lambda r: int(r.data.tags.get(SEGMENT, "0"))):
            epoch = int(run.data.tags.get(FROM_EPOCH, "0"))
            donor = run.data.tags.get(DONOR, "")
            params = run.data.params
            schedule.append(
                {
                    "trial": row.name,
                    "segment": int(run.data.tags.get(SEGMENT, "0")),
                    "from_epoch": epoch + 1,
                    "donor": donor,
                    **{k: parse_param(params[k]) if k in params else None for k in keys},
                }
            )
            lineage.append({"epoch": epoch, "trial": row.name, "donor": donor})
    lineage.sort(key=lambda e: (e["epoch"], e["trial"]))
    return schedule, lineage


def mutated_keys(schedule: list[dict[str, Any]]) -> list[str]:
    return [k for k in (schedule[0] if schedule else {}) if k not in ("trial", "segment", "from_epoch", "donor")]


def plot_schedule(schedule: list[dict[str, Any]], max_epochs: int, path: Path) -> None:
    """Each mutated numeric parameter over the epochs, one step line per trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in mutated_keys(schedule) if all(isinstance(r[k], (int, float)) or r[k] is None for r in schedule)]
    fig, axes = plt.subplots(len(keys) or 1, 1, figsize=(7, 2.6 * max(1, len(keys))), squeeze=False)
    trials = list(dict.fromkeys(r["trial"] for r in schedule))
    for ax, key in zip(axes[:, 0], keys, strict=False):
        for trial in trials:
            steps = [r for r in schedule if r["trial"] == trial and r[key] is not None]
            if steps:  # each value from its epoch on, the last one to the end
                xs = [r["from_epoch"] for r in steps] + [max_epochs]
                ax.step(xs, [r[key] for r in steps] + [steps[-1][key]], where="post", label=trial)
        ax.set(ylabel=key, xlabel="epoch")
        values = [r[key] for r in schedule if r[key] is not None]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
    axes[0, 0].set_title("PBT: each trial's parameters over the epochs")
    if len(trials) <= 12:
        axes[0, 0].legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_pbt(schedule: list[dict[str, Any]], lineage: list[dict[str, Any]], best: str | None, console: Any) -> None:
    from rich.table import Table

    table = Table(
        title=f"PBT lineage: {len(lineage)} exploits (the trial took the donor's weights after the epoch)",
        title_justify="left",
    )
    for col in ("epoch", "trial", "donor"):
        table.add_column(col)
    for e in lineage:
        table.add_row(str(e["epoch"]), e["trial"], e["donor"])
    console.print(table)
    keys = mutated_keys(schedule)
    rows = [r for r in schedule if r["trial"] == best]
    if rows:
        table = Table(title=f"PBT schedule of {best} (the best trial)", title_justify="left")
        for col in ("from epoch", "donor", *keys):
            table.add_column(col)
        for r in rows:
            table.add_row(
                str(r["from_epoch"]),
                r["donor"] or "-",
                *(num(r[k]) if isinstance(r[k], float) else text(r[k]) for k in keys),
            )
        console.print(table)
