"""The compact end-of-search summary printed by ``hpsearch run``."""

from __future__ import annotations

from urllib.parse import urlparse

from rich.console import Console
from rich.table import Table

from hpsearch.redact import redact, strip_password
from hpsearch.review.ui import runs_url
from hpsearch.run import SearchResult
from hpsearch.tracking.records import STATES
from hpsearch.tracking.store import default_tracking_uri, is_server
from hpsearch.tracking.tracker import RUN_STATUS


def _uri_flag(tracking_uri: str) -> str:
    return "" if tracking_uri == default_tracking_uri() else f" --tracking-uri {strip_password(tracking_uri)}"


def ui_command(tracking_uri: str) -> str:
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("http", "https"):
        return f"open {tracking_uri}"
    return f"hpsearch ui{_uri_flag(tracking_uri)}"


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
    if result.warm_start is not None:
        table.add_row("warm start", result.warm_start.line())
    table.add_row("wall time", f"{result.wall_time_s:.1f} s")
    table.add_row("tracking", redact(result.tracking_uri))
    if result.parent_run_id:
        table.add_row("parent run", f"{result.parent_run_id} (experiment {result.experiment_id})")
    table.add_row("tune state", str(result.run_dir))
    console.print(table)
    if result.pending_writes:
        console.print(
            f"[yellow]{result.pending_writes} MLflow write(s) pending[/yellow]: the tracking store did not answer; "
            f"they are kept in {result.journal}. When it is back: hpsearch sync {result.run_dir}",
            soft_wrap=True,
        )
    if result.tracking_errors:
        console.print(f"[red]{len(result.tracking_errors)} MLflow write(s) failed[/red]: {result.tracking_errors[0]}")
    failed = [r for r in result.records if r.state in ("failed", "diverged")]
    for rec in failed[:5]:
        console.print(f"[yellow]{rec.name} {rec.state}[/yellow]: {(rec.error or '')[:200]}")
    remote = is_server(result.tracking_uri)
    if result.experiment_id:
        base = result.tracking_uri.rstrip("/") if remote else "http://127.0.0.1:5000"
        url = runs_url(base, result.experiment_id, result.metric, result.mode)
        if not remote:
            console.print(f"Review in MLflow: {ui_command(result.tracking_uri)}, then open")
        console.print(f"  {url}" if not remote else f"Review in MLflow: {url}", soft_wrap=True)
        console.print(
            f"Report: hpsearch report {result.spec_name}{'' if remote else _uri_flag(result.tracking_uri)}",
            soft_wrap=True,
        )
    console.print(f"(run status per trial state: {', '.join(f'{k}={v}' for k, v in RUN_STATUS.items())})", style="dim")


def print_report_written(
    result: SearchResult, errors: list[str], pending_before: int, console: Console | None = None
) -> None:
    """The line after the summary, once the deferred report (plots, importances) is made."""
    console = console or Console()
    if errors:
        console.print(f"[red]the search's report was not written[/red]: {redact(errors[0])}", soft_wrap=True)
    elif result.pending_writes > pending_before:
        console.print(
            f"[yellow]the search's report waits in {result.journal}[/yellow] (the tracking store did not answer): "
            f"hpsearch sync {result.run_dir}",
            soft_wrap=True,
        )
    elif result.parent_run_id:
        console.print(f"report written: report/ of parent run {result.parent_run_id}", style="dim", soft_wrap=True)
