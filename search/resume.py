"""Continue an interrupted search from its run directory (``hpsearch resume RUN_DIR``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hpsearch import lock as locks
from hpsearch import raysetup, rundir
from hpsearch.errors import HpsearchError, TrackingError
from hpsearch.ledger import Ledger
from hpsearch.redact import connectable
from hpsearch.run import Search, SearchResult, execute, tracker_for
from hpsearch.searcher import SpaceSearch
from hpsearch.spec import load_spec_text
from hpsearch.sync import rejected_note, sync
from hpsearch.tracking.store import check_reachable
from hpsearch.trialsetup import trainable_for

if TYPE_CHECKING:
    from ray.tune import Tuner


def resume_search(
    run_dir: str | Path,
    address: str | None = None,
    quiet: bool = False,
    ray_logs: bool = False,
    defer_report: bool = False,
) -> SearchResult:
    """Continue an interrupted search: Tune's state (trials, their checkpoints, the Optuna searcher)
    and the same MLflow parent run, without duplicate trial runs.

    Args:
        run_dir: the search's run directory (a folder or a storage URI such as ``s3://...``).
        address: a Ray cluster to join; default a fresh local Ray.
        quiet: no progress line per trial.
        ray_logs: also show Ray's own logs.
        defer_report: the report is made by the result's ``write_report()`` (as in :func:`run_search`).

    Raises:
        SpecError: ``run_dir`` is not a search's run directory.
        HpsearchError: the run directory cannot be read, or Tune has no state to restore there.
        TrackingError: the search's MLflow store cannot be used.
        SearchLocked: another command (the search itself, another resume, a sync) holds the run directory.
    """
    raysetup.configure_tune()  # before Ray is imported (some of its settings are read then)
    location = rundir.normalise(run_dir)
    meta = rundir.read_meta(location)
    lock = locks.acquire(location, "resume")  # before anything is written: a second resume deletes nothing
    try:
        return _resume(location, meta, lock, address, quiet, ray_logs, defer_report)
    except BaseException:
        lock.release()
        raise


def _resume(
    location: str,
    meta: rundir.RunMeta,
    lock: locks.Lock,
    address: str | None,
    quiet: bool,
    ray_logs: bool,
    defer_report: bool,
) -> SearchResult:
    from ray import tune

    spec = load_spec_text(meta.spec, source=f"{location}/{rundir.META_FILE}")
    uri = connectable(meta.tracking_uri)  # the password, if any, from this machine's environment
    check_reachable(uri)
    raysetup.init_ray(address, log_to_driver=ray_logs)
    raysetup.check_cluster(spec, location)  # this cluster may be another than the first run's: before any write
    synced = sync(location)  # what an MLflow outage left in the journal lands first, as `hpsearch sync`
    note = rejected_note(synced, location)
    if note is not None:
        print(note, file=sys.stderr)
    if synced.error is not None:
        raise TrackingError(f"cannot write the MLflow journal of {location} ({synced.error}); resume again later")
    tracker = tracker_for(spec, uri)
    if meta.experiment_id is None or meta.parent_run_id is None:
        raise HpsearchError(f"{location}/{rundir.META_FILE} names no MLflow run to continue")
    tracker.use_journal(location)  # for an outage from now on
    tracker.reopen(meta.experiment_id, meta.parent_run_id)
    ledger = Ledger(spec.epochs, spec.search.metric, spec.search.mode, listeners=[])
    search = Search(spec, uri, location, tracker, ledger, lock=lock)

    def make_tuner(search: Search) -> Tuner:
        if not tune.Tuner.can_restore(location):
            raise HpsearchError(f"Ray Tune has no restorable state in {location}")
        Ledger.restored = SpaceSearch.restored = None
        population_based = spec.search.scheduler.population_based  # PBT: no searcher; its scheduler records
        if population_based:
            from hpsearch.schedulers.recorded_pbt import RecordedPBT

            RecordedPBT.restored = None
        tuner = tune.Tuner.restore(
            location,
            trainable=trainable_for(spec),
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
        # The restored Tuner carries our ledger and searcher, unpickled from its state: their records
        # and Optuna study come back with them, so the search continues with those objects.
        if Ledger.restored is None or (SpaceSearch.restored is None and not population_based):
            raise HpsearchError(f"the Tune state in {location} was not written by hpsearch (no ledger or searcher)")
        search.ledger, search.searcher = Ledger.restored, SpaceSearch.restored
        if search.searcher is not None:
            search.searcher.__dict__.setdefault("_max_epochs", spec.epochs)  # saved before it kept max_epochs
        if population_based:
            if RecordedPBT.restored is None:
                raise HpsearchError(f"the Tune state in {location} has no PBT scheduler written by hpsearch")
            RecordedPBT.restored.recorder = search.ledger.trial_exploited
        return tuner

    return execute(search, make_tuner, address, quiet, ray_logs, defer_report)
