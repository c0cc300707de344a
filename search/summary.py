"""The compact end-of-search summary printed by ``hpsearch run``."""

from __future__ import annotations

from urllib.parse import urlparse

from rich.console import Console
from rich.table import Table

from search.ledger import STATES
from search.tracking import RUN_STATUS
from search.tuner import SearchResult


def ui_command(tracking_uri: str) -> str:
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("http", "https"):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000"


def print_summary(result: SearchResult, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"hpsearch: {result.spec_name}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    if result.best is not None:
        table.add_row(
            f"best {result.metric}",
            f"{result.best.metrics[result.metric]:.4f}  ({result.best.name}, {result.best.epochs} epochs)",
        )
        for key, value in result.best.config.items():
            table.add_row(f"  {key}", f"{value:.4g}" if isinstance(value, float) else str(value))
    else:
        table.add_row(f"best {result.metric}", "no trial reported a result")
    states = ", ".join(f"{state} {result.counts.get(state, 0)}" for state in STATES)
    table.add_row("trials", f"{sum(result.counts.values())}: {states}")
    table.add_row("wall time", f"{result.wall_time_s:.1f} s")
    table.add_row("tracking", result.tracking_uri)
    if result.parent_run_id:
        table.add_row("parent run", f"{result.parent_run_id} (experiment {result.experiment_id})")
    table.add_row("tune state", str(result.run_dir))
    console.print(table)
    if result.tracking_errors:
        console.print(f"[red]{len(result.tracking_errors)} MLflow write(s) failed[/red]: {result.tracking_errors[0]}")
    failed = [r for r in result.records if r.state in ("failed", "diverged")]
    for rec in failed[:5]:
        console.print(f"[yellow]{rec.name} {rec.state}[/yellow]: {(rec.error or '')[:200]}")
    console.print(f"Review in MLflow: {ui_command(result.tracking_uri)}")
    if result.experiment_id and not result.tracking_uri.startswith(("http://", "https://")):
        console.print(f"  then open http://127.0.0.1:5000/#/experiments/{result.experiment_id}/runs")
    console.print(f"(run status per trial state: {', '.join(f'{k}={v}' for k, v in RUN_STATUS.items())})", style="dim")
