"""``hpsearch sync RUN_DIR``: write what a search kept in its journal while MLflow was away."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpsearch import lock as locks
from hpsearch import rundir
from hpsearch.errors import HpsearchError
from hpsearch.redact import connectable, redact
from hpsearch.tracking.journal import REJECTED_FILE, Journal
from hpsearch.tracking.store import check_reachable


@dataclass
class SyncResult:
    applied: int
    pending: int  # still journaled (the store failed again)
    tracking_uri: str
    error: str | None = None
    rejected: int = 0  # journal lines that were not writes (torn, damaged): set aside, see Journal.load


def sync(run_dir: str | Path) -> SyncResult:
    """Replay the run directory's MLflow journal into its store, in order; idempotent.

    Raises:
        SpecError: ``run_dir`` is not a search's run directory.
        TrackingError: the store does not answer (nothing is written; the journal is kept).
        HpsearchError: the run directory names no MLflow run.
        SearchLocked: another command (a live search, another sync) holds the run directory.
    """
    location = rundir.normalise(run_dir)
    meta = rundir.read_meta(location)
    lock = locks.acquire(location, "sync")  # not while a search (or another sync) writes it
    try:
        return _sync(location, meta)
    finally:
        lock.release()


def _sync(location: str, meta: rundir.RunMeta) -> SyncResult:
    from hpsearch.review.report_output import log_report
    from hpsearch.tracking.tracker import MlflowTracker

    journal = Journal.load(location)
    uri = connectable(meta.tracking_uri)
    rejected = journal.rejected
    if not len(journal):
        return SyncResult(0, 0, uri, rejected=rejected)
    if meta.experiment_id is None or meta.parent_run_id is None:
        raise HpsearchError(f"{location}/{rundir.META_FILE} names no MLflow run to write to")
    check_reachable(uri)
    tracker = MlflowTracker(uri, "", report=log_report)
    before = len(journal)
    try:
        applied = tracker.sync(journal, meta.experiment_id, meta.parent_run_id)
    except Exception as exc:
        applied = before - len(journal)
        error = redact(f"{type(exc).__name__}: {exc}").splitlines()[0]
        return SyncResult(applied, len(journal), uri, error, rejected=rejected)
    return SyncResult(applied, len(journal), uri, rejected=rejected)


def rejected_note(result: SyncResult, location: str) -> str | None:
    """What ``sync`` and ``resume`` say of journal lines set aside, or None."""
    if not result.rejected:
        return None
    return (
        f"hpsearch: {result.rejected} journal line(s) of {location} were not MLflow writes (torn or damaged): "
        f"skipped, set aside in {location.rstrip('/')}/{REJECTED_FILE}"
    )


__all__ = ["SyncResult", "rejected_note", "sync"]
