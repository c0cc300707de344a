"""Assemble and run a search: Ray Tune + OptunaSearch (define-by-run, the spec's sampler) + the spec's
scheduler + MLflow tracking.

:func:`run_search` starts one; :mod:`hpsearch.resume` continues one. Both hand a :class:`Search` (the
search in progress) to :func:`execute`, which starts Ray, runs the Tuner and writes the results.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch import faults, raysetup, rundir, warmstart
from hpsearch import lock as locks
from hpsearch.ledger import FatalStop, Ledger, TrialRecord
from hpsearch.progress import ProgressPrinter
from hpsearch.redact import redact, strip_password
from hpsearch.searcher import SpaceSearch, optuna_search
from hpsearch.spec import JobSpec
from hpsearch.tracking.store import check_reachable, search_uri
from hpsearch.tracking.tags import BEST_PREFIX, BEST_TRIAL, RUN_DIR, STATUS, WARM_START, WARM_START_TRIALS
from hpsearch.tracking.tracker import MlflowTracker, flatten
from hpsearch.trialsetup import concurrent_trials, first_population, group_callbacks, scheduler_for, trainable_for
from hpsearch.warmstart import WarmStart

if TYPE_CHECKING:
    from ray.tune import Tuner


@dataclass
class SearchResult:
    """What a search did, as its summary shows it."""

    spec_name: str
    status: str  # FINISHED | KILLED (interrupted) | FAILED (the driver failed)
    metric: str
    mode: str
    tracking_uri: str
    experiment_id: str | None
    parent_run_id: str | None
    run_dir: Path
    wall_time_s: float
    counts: dict[str, int]
    best: TrialRecord | None
    records: list[TrialRecord] = field(default_factory=list)
    tracking_errors: list[str] = field(default_factory=list)
    metric_points: int = 0
    stopped_because: str | None = None  # a mistake every trial would make ended the search early
    num_trials: int = 0
    searcher_states: dict[str, int] = field(default_factory=dict)  # Optuna's view: COMPLETE / FAIL / ...
    pending_writes: int = 0  # MLflow writes kept in the run directory's journal (the store was away)
    journal: str | None = None
    warm_start: WarmStart | None = None  # what seeded the study (search.warm_start)
    # The report, when the search was asked to leave it until after its summary (``defer_report``):
    # makes it, ends the tracking, and returns its write errors and the writes then pending.
    report_writer: Callable[[], tuple[list[str], int]] | None = field(default=None, repr=False)

    def write_report(self) -> list[str]:
        """Make the deferred report now (nothing when there is none pending); its write errors (also
        added to ``tracking_errors``; ``pending_writes`` counts a report the store did not take)."""
        if self.report_writer is None:
            return []
        writer, self.report_writer = self.report_writer, None
        errors, self.pending_writes = writer()
        self.tracking_errors.extend(errors)
        return errors


@dataclass
class Search:
    """A search in progress: its spec, where it is recorded, and the Tune-side objects that hold its
    state. A resumed search swaps in the ledger and searcher Tune restored."""

    spec: JobSpec
    tracking_uri: str
    run_dir: str
    tracker: MlflowTracker
    ledger: Ledger
    searcher: SpaceSearch | None = None
    warm_start: WarmStart | None = None
    lock: locks.Lock | None = None  # the run directory's (released when the search's writes are done)


def spec_params(spec: JobSpec) -> dict[str, Any]:
    """The spec, minus the space, flattened: the parent run's params."""
    data = spec.model_dump(exclude={"space"})
    data["space"] = spec.space if isinstance(spec.space, str) else "inline"
    return {k: redact(v) if isinstance(v, str) else v for k, v in flatten(data).items()}


def tracker_for(spec: JobSpec, uri: str) -> MlflowTracker:
    """Child runs named by their key choices, recorded as trained; the report written when it ends."""
    from hpsearch.review.report_output import log_report
    from hpsearch.tracking.labels import run_name, trial_describer

    space = spec.search_space
    return MlflowTracker(
        uri,
        spec.name,
        describe=trial_describer(spec.trainable),
        namer=lambda short, config: run_name(short, config, space),
        report=log_report,
        segments=spec.search.scheduler.population_based,
    )


def run_search(
    spec: JobSpec,
    tracking_uri: str | None = None,
    storage: str | Path | None = None,
    address: str | None = None,
    quiet: bool = False,
    ray_logs: bool = False,
    run_name: str | None = None,
    defer_report: bool = False,
) -> SearchResult:
    """Run a whole search and return its summary.

    Args:
        spec: a validated job spec (:func:`hpsearch.spec.load_spec`).
        tracking_uri: the MLflow store; default the spec's ``tracking.uri``, else ``sqlite:///./mlruns.db``.
        storage: where Tune keeps its state (a folder or a storage URI); default ``./hpsearch_results``.
        address: a Ray cluster to join; default a fresh local Ray.
        quiet: no progress line per trial.
        ray_logs: also show Ray's own logs and trial tracebacks (hpsearch summarises trial errors;
            they are kept in MLflow and the Tune folder either way).
        run_name: the run directory's name under ``storage``; default ``NAME-TIMESTAMP``.
        defer_report: return as soon as the results are written; the end-of-search report (plots,
            importances) is made by the result's ``write_report()`` (``hpsearch run`` prints the
            summary first). Default: the report is written before this returns.

    Returns:
        The search's :class:`SearchResult`; ``status`` is ``FINISHED`` when every trial ran.

    Raises:
        TrackingError: the MLflow store cannot be used.
        HpsearchError: Ray cannot be joined, or the cluster can never run a trial.
        KeyboardInterrupt: the search was interrupted (its results so far are written first).
    """
    raysetup.configure_tune()  # before Ray is imported (some of its settings are read then)
    uri = search_uri(tracking_uri, spec.tracking.uri)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    storage_path = str(storage or rundir.DEFAULT_STORAGE)
    if not rundir.is_uri(storage_path):
        storage_path = rundir.normalise(storage_path)

    check_reachable(uri)
    # What the cluster can never run is refused before anything is written (a local Ray: this machine).
    raysetup.init_ray(address, log_to_driver=ray_logs)
    raysetup.check_cluster(spec, storage_path)
    run_dir, lock = locks.new_run_dir(storage_path, run_name or f"{spec.name}-{stamp}", fixed=run_name is not None)
    try:
        return _run_in(spec, uri, run_dir, lock, stamp, storage_path, address, quiet, ray_logs, defer_report)
    except BaseException:
        lock.release()
        raise


def _run_in(
    spec: JobSpec,
    uri: str,
    run_dir: str,
    lock: locks.Lock,
    stamp: str,
    storage_path: str,
    address: str | None,
    quiet: bool,
    ray_logs: bool,
    defer_report: bool,
) -> SearchResult:
    from ray import tune

    run_name = run_dir.rsplit("/", 1)[1]
    warm: WarmStart | None = None
    searcher: SpaceSearch | None
    if spec.search.scheduler.population_based:  # PBT evolves its population itself: no Optuna searcher
        searcher = None
    elif spec.search.warm_start:
        prior, warm = warmstart.read(uri, spec.search.warm_start, spec)
        # the best earlier configs first, then the spec's own enqueued ones (a preset's defaults: not again)
        searcher = optuna_search(spec, first=warm.rerun + (spec.search.enqueue or []))
        searcher.add_prior(prior)
    else:
        searcher = optuna_search(spec)
    tracker = tracker_for(spec, uri)
    tracker.use_journal(run_dir)  # what the store does not take while it is away waits there
    spec_text = redact(spec.source_text or json.dumps(spec.model_dump(), indent=2))
    # The run directory records the store without its password: resume takes it from the environment.
    meta = lambda: rundir.RunMeta(spec_text, strip_password(uri), tracker.experiment_id, tracker.parent_run_id)  # noqa: E731
    tags = {RUN_DIR: run_dir}
    artifacts = {"spec.yaml": spec_text, "space.json": json.dumps(spec.search_space.to_data(), indent=2)}
    if warm is not None:  # where the prior trials came from
        tags.update({WARM_START: warm.experiment, WARM_START_TRIALS: str(warm.trials)})
        artifacts["warm_start.json"] = json.dumps(warm.to_data(), indent=2)
    tracker.start(
        run_name=f"search {stamp}",
        params=spec_params(spec),
        tags=tags,
        artifacts=artifacts,
        on_ready=lambda: rundir.write_meta(run_dir, meta()),  # what `hpsearch resume` reads
    )
    ledger = Ledger(spec.epochs, spec.search.metric, spec.search.mode, listeners=[])
    search = Search(spec, uri, run_dir, tracker, ledger, searcher, warm, lock)

    def make_tuner(search: Search) -> Tuner:
        return tune.Tuner(
            trainable_for(spec),
            tune_config=tune.TuneConfig(
                metric=spec.search.metric,
                mode=spec.search.mode,
                search_alg=searcher if searcher is not None else first_population(spec),
                scheduler=scheduler_for(spec, ledger),
                num_samples=spec.search.num_trials,
                max_concurrent_trials=concurrent_trials(spec, raysetup.total_resources()),
                time_budget_s=spec.search.time_budget_s,
                # Reusing trial actors avoids a new Python worker (and torch import) per trial (BENCHMARKS.md).
                # A group trial's process must end with it: its Train run ends with its owner.
                reuse_actors=spec.resources.workers == 1,
            ),
            run_config=tune.RunConfig(
                name=run_name,
                storage_path=storage_path,
                callbacks=[ledger, *group_callbacks(spec)],
                stop=FatalStop(ledger),
                failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
                # Every checkpoint stays until the search ends: Tune's experiment snapshot may point at
                # an older one than a trial's newest, and resume needs exactly that one.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                verbose=0,
            ),
        )

    return execute(search, make_tuner, address, quiet, ray_logs, defer_report)


def execute(
    search: Search,
    make_tuner: Callable[[Search], Tuner],
    address: str | None,
    quiet: bool,
    ray_logs: bool,
    defer_report: bool = False,
) -> SearchResult:
    """Start Ray, run the Tuner ``make_tuner`` builds (it may swap in restored state), write the results
    (the report too, unless ``defer_report``: see :func:`run_search`)."""
    spec = search.spec
    started = time.time()
    # The report's imports wait until every trial has started: then a finished trial leaves a core idle.
    search.tracker.report_job.warm_up_when = lambda: len(search.ledger.records) >= spec.search.num_trials
    returned = False
    listeners: list[Any] = [search.tracker]
    if not quiet:
        listeners.append(ProgressPrinter(lambda: search.ledger, spec.search.num_trials, spec.epochs))
    if not ray_logs:
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    status = "FAILED"
    try:
        raysetup.init_ray(address, log_to_driver=ray_logs)  # up already: run and resume check the cluster first
        faults.install(spec.search.max_node_restarts)
        search.tracker.check()  # fails fast if opening the store already failed; otherwise it opens meanwhile
        tuner = make_tuner(search)
        search.ledger.listeners = listeners  # the new ledger, or the one Tune restored
        tuner.fit()
        # Tune's objects (actor handles, object refs) must go while Ray is up: freed while the background
        # shutdown below runs, they make Ray end the process (exit 1, "core worker has already been shutdown").
        # Dropped here; what is left in reference cycles release_early collects before it shuts down.
        del tuner
        raysetup.release_early()  # a command's own local Ray stops while the results are written
        search.tracker.wait_ready()  # a store that failed after the last trial started
        finished = sum(1 for r in search.ledger.records.values() if r.state != "running")
        budget = spec.search.time_budget_s
        out_of_time = budget is not None and time.time() - started >= budget
        status = "FINISHED" if finished == spec.search.num_trials or out_of_time else "KILLED"
        if search.ledger.fatal is not None:
            status = "FAILED"
        returned = True
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        faults.sweep()  # fault files of this node's trial processes that are gone
        # On the way out with an error the report is written now: nobody would ask for it later.
        result = finish(search, status, time.time() - started, defer_report and returned)
        if status == "FINISHED":
            rundir.prune_checkpoints(search.run_dir)
        try:  # what `hpsearch run --continue` (a restarted job driver) goes by
            rundir.mark_ended(search.run_dir, status)
        except OSError as exc:
            result.tracking_errors.append(f"cannot record the search's end in {search.run_dir}: {exc}")
        if result.report_writer is None and search.lock is not None:
            search.lock.release()  # the search's writes are done (a deferred report releases it after)
        result.searcher_states = search.searcher.trial_states() if search.searcher is not None else {}
        result.stopped_because = search.ledger.fatal
    return result


def _then_release(search: Search, write: Callable[[], tuple[list[str], int]]) -> tuple[list[str], int]:
    try:
        return write()
    finally:
        if search.lock is not None:
            search.lock.release()


def finish(search: Search, status: str, wall: float, defer_report: bool = False) -> SearchResult:
    """End the trials still running, write the search's results to its parent run and close it (its
    report too, unless ``defer_report``: then the result's ``write_report()`` makes it)."""
    spec, ledger = search.spec, search.ledger
    metric = spec.search.metric
    ledger.interrupt_running()
    counts = ledger.counts()
    best = ledger.best()
    metrics = {f"trials_{state}": float(n) for state, n in counts.items() if state != "running"}
    metrics["wall_time_s"] = wall
    tags = {STATUS: status}
    trials = [
        {
            "trial": r.name,
            "trial_id": r.trial_id,
            "state": r.state,
            "epochs": r.epochs,
            **r.metrics,
            "config": r.config,
            **({"error": r.error} if r.error else {}),
        }
        for r in ledger.records.values()
    ]
    artifacts = {"trials.json": json.dumps(trials, indent=2, default=str)}
    if best is not None:
        metrics[f"best_{metric}"] = best.metrics[metric]
        # tags, not params: a resumed search may find a better trial, and params cannot change
        tags.update({f"{BEST_PREFIX}{k}": str(v) for k, v in best.config.items()})
        tags[BEST_TRIAL] = best.name
        artifacts["best_config.json"] = json.dumps(
            {"trial": best.name, "metric": metric, "value": best.metrics[metric], "config": best.config}, indent=2
        )
    errors = search.tracker.finish(status, metrics, {}, tags, artifacts, defer_report=defer_report)
    return SearchResult(
        spec_name=spec.name,
        status=status,
        metric=metric,
        mode=spec.search.mode,
        tracking_uri=search.tracking_uri,
        experiment_id=search.tracker.experiment_id,
        parent_run_id=search.tracker.parent_run_id,
        run_dir=Path(search.run_dir),
        wall_time_s=wall,
        counts=counts,
        best=best,
        records=list(ledger.records.values()),
        tracking_errors=errors,
        metric_points=search.tracker.points_reported,
        num_trials=spec.search.num_trials,
        pending_writes=search.tracker.pending_writes,
        journal=search.tracker.journal.path if search.tracker.journal is not None else None,
        warm_start=search.warm_start,
        report_writer=(
            lambda: _then_release(search, lambda: (search.tracker.write_report(), search.tracker.pending_writes))
        )
        if defer_report
        else None,
    )


__all__ = ["Search", "SearchResult", "execute", "run_search", "trainable_for"]
