"""The search mirrored into MLflow: one parent run per search, one child run per trial (README, "MLflow
layout"). :class:`MlflowTracker` is the ledger's listener; its jobs are apart: every MLflow call runs on the
tracking thread (:class:`~hpsearch.tracking.writer.Writer`), writes land through
:class:`~hpsearch.tracking.writes.StoreWriter`, go to the journal while the store is away
(:class:`~hpsearch.tracking.offline.Offline`), and the end-of-search report is prepared and made by
:class:`ReportJob`."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hpsearch.errors import TrackingError
from hpsearch.redact import redact
from hpsearch.tracking import reader
from hpsearch.tracking.journal import PARENT as PARENT_REF
from hpsearch.tracking.journal import Journal, Op
from hpsearch.tracking.offline import Offline
from hpsearch.tracking.records import TrialRecord
from hpsearch.tracking.store import quiet_mlflow
from hpsearch.tracking.tags import (
    CHANGED,
    CONFIG,
    DEVICE,
    DONOR,
    EPOCHS,
    ERROR,
    FROM_EPOCH,
    NODE_ID,
    RESTART_CAUSE,
    RESTARTS,
    RUNTIME_PREFIX,
    SEGMENT,
    SEGMENT_ID,
    STATE,
    TRIAL,
)
from hpsearch.tracking.writer import Writer
from hpsearch.tracking.writes import MAX_TAG, RUN_STATUS, StoreWriter, config_tag, flatten, param_value

if TYPE_CHECKING:
    from mlflow import MlflowClient

# While the store answers, MLflow's HTTP client retries a failed request 7 times over minutes; with the
# journal behind it, a write that fails is kept and replayed instead (unless the user set these).
HTTP_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


class ReportJob:
    """The end-of-search report: its imports, made while the last trials run (not at start-up, and not
    while every core trains: there the import's CPU would come out of the trials), on a thread of their
    own, so that no write (and not the summary) waits behind them; the report, if it comes first, waits
    for them on Python's import lock."""

    def __init__(self, report: Callable[[MlflowClient, str], object] | None):
        self.report = report
        # When the imports may start: by default after the first trial ends; the search sets it to "every
        # trial has started", so they use the core a finished trial leaves idle.
        self.warm_up_when: Callable[[], bool] = lambda: True
        self.thread: threading.Thread | None = None
        self.pending = False  # finish(defer_report=True) left it for write_report()

    def trial_ended(self) -> None:
        if self.thread is None and self.report is not None and self.warm_up_when():
            self.thread = threading.Thread(target=self.warm_up, name="hpsearch-report-imports", daemon=True)
            self.thread.start()

    def warm_up(self) -> None:
        """Import what the report needs, so the report does not pay for it after the last trial."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
        import optuna.importance  # noqa: F401
        import sklearn.ensemble  # noqa: F401


class MlflowTracker:
    """A ledger listener that mirrors the search into MLflow."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        describe: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, str]]] | None = None,
        namer: Callable[[str, dict[str, Any]], str] | None = None,
        report: Callable[[MlflowClient, str], object] | None = None,
        segments: bool = False,
    ):
        """``describe(config) -> (params, tags)`` turns a trial's config into what its run records
        (by default the config itself); ``namer(short_name, config)`` names its run (default: the
        short name, ``t017``); ``report(client, parent_run_id)`` writes the search's report artifacts
        when the search ends; ``segments``: its trials have PBT segment runs (a resume tidies them)."""
        quiet_mlflow()
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.describe = describe or (lambda config: (config, {}))
        self.namer = namer or (lambda short, config: short)
        self.segments = segments
        self.store = StoreWriter(tracking_uri, report)
        self.offline = Offline(self.store)
        self.report_job = ReportJob(report)
        self._ready = threading.Event()
        self._init_error: BaseException | None = None
        self.points_reported = 0
        self._writer = Writer()
        self._writer.log_points = lambda trial_id, points: self.offline.run(Op("metrics", trial_id, {"points": points}))
        self._writer.heartbeat = self.offline.heartbeat
        for name, value in HTTP_CLIENT_ENV.items():
            os.environ.setdefault(name, value)

    @property
    def experiment_id(self) -> str | None:
        return self.store.experiment_id

    @property
    def parent_run_id(self) -> str | None:
        return self.store.parent_run_id

    @property
    def journal(self) -> Journal | None:
        return self.offline.journal

    @property
    def pending_writes(self) -> int:
        return len(self.journal) if self.journal is not None else 0

    def use_journal(self, run_dir: str) -> None:
        """Keep writes the store does not take in ``run_dir``'s journal (``hpsearch resume`` syncs what
        an earlier outage left there before it continues)."""
        self.offline.journal = Journal.load(run_dir)

    def sync(self, journal: Journal, experiment_id: str, parent_run_id: str) -> int:
        """Replay ``journal`` into the search's runs now, on this thread (``hpsearch sync``); return how many
        writes were applied. Raises on the first write that fails (the rest stays journaled)."""
        self.store.connect()
        self.store.experiment_id, self.store.parent_run_id = experiment_id, parent_run_id
        return journal.replay(lambda op: self.store.apply(op, replaying=True))

    # Lifecycle (driver thread) ---------------------------------------------------------
    def start(
        self,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        artifacts: dict[str, str],
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Open the experiment and the parent run in the background: the search does not wait for it
        (a new SQLite store takes seconds to create, as long as Ray's first trial workers take to start).
        ``on_ready()`` runs on the tracking thread once the parent run exists."""
        self._writer.start()
        self._writer.call(
            lambda: self._opening(lambda: self.store.open(self.experiment, run_name, params, tags, artifacts))
        )
        if on_ready is not None:
            self._writer.call(lambda: self._init_error is None and on_ready())

    def reopen(self, experiment_id: str, parent_run_id: str) -> None:
        """Continue an existing search's parent run (``hpsearch resume``) instead of starting one."""
        self._writer.start()
        self._writer.call(lambda: self._opening(lambda: self.store.reopen(experiment_id, parent_run_id)))

    def _opening(self, open_store: Callable[[], None]) -> None:
        try:
            open_store()
        except BaseException as exc:
            self._init_error = exc
            raise
        finally:
            self._ready.set()

    def check(self) -> None:
        """Raise if the tracking store could not be opened (without waiting for it to open)."""
        if self._ready.is_set():
            self.wait_ready()

    def wait_ready(self) -> None:
        self._ready.wait()
        if self._init_error is not None:
            import traceback

            frame = traceback.extract_tb(self._init_error.__traceback__)[-1]
            raise TrackingError(
                f"cannot use MLflow tracking store {redact(self.tracking_uri)}: {type(self._init_error).__name__}: "
                f"{redact(str(self._init_error))} (at {frame.filename}:{frame.lineno} in {frame.name})"
            ) from self._init_error

    def finish(
        self,
        status: str,
        metrics: dict[str, float],
        params: dict[str, Any],
        tags: dict[str, str],
        artifacts: dict[str, str],
        defer_report: bool = False,
    ) -> list[str]:
        """Write the search's results to the parent run, close it, and return any write errors.

        ``defer_report``: return once the results are written (or journaled), before the report is made;
        :meth:`write_report` then makes it and ends the tracking thread (the CLI prints the summary in
        between: the report's plots and importances are not on the path to it)."""
        report = self.report_job.report is not None
        defer = defer_report and self.parent_run_id is not None and report
        if self.parent_run_id is not None:
            self._op(Op("parent_results", PARENT_REF, self._results(metrics, params, tags, artifacts)), flush=None)
            if report and not defer:  # after every trial's writes; a failure is reported
                self._op(Op("report", PARENT_REF))
            self._op(Op("terminate", PARENT_REF, {"status": status}))
            self._writer.call(self.offline.last_chance)
        if not defer:
            return self._close()
        self._writer.flush()
        self._save_journal()  # what the store did not take is on disk before the summary
        self.report_job.pending = True
        return list(self._writer.errors)

    def write_report(self) -> list[str]:
        """After ``finish(defer_report=True)``: make the report (into the journal if the store is away),
        end the tracking thread, and return the write errors since ``finish``."""
        if not self.report_job.pending:
            return []
        self.report_job.pending = False
        before = len(self._writer.errors)
        self._op(Op("report", PARENT_REF))
        self._writer.call(self.offline.last_chance)
        return self._close()[before:]

    def _close(self) -> list[str]:
        """End the tracking thread once its queue is done, keep what the store did not take; all write errors."""
        self._writer.stop()
        self._save_journal()
        return list(self._writer.errors)

    @staticmethod
    def _results(
        metrics: dict[str, float], params: dict[str, Any], tags: dict[str, str], artifacts: dict[str, str]
    ) -> dict[str, Any]:
        now = int(time.time() * 1000)
        return {
            "metrics": [[k, v, now, 0] for k, v in metrics.items()],
            "params": {k: param_value(v) for k, v in params.items()},
            "tags": {k: redact(v) for k, v in tags.items()},
            "artifacts": {name: redact(text) for name, text in artifacts.items()},
        }

    def _save_journal(self) -> None:
        if self.journal is not None and len(self.journal):
            try:
                self.journal.save()
            except Exception as exc:  # reported with the other write failures; the search's results stand
                self._writer.errors.append(f"cannot save the MLflow journal {self.journal.path}: {exc}")

    # Listener (driver thread: enqueue only) ------------------------------------------
    def trial_started(self, rec: TrialRecord) -> None:
        self.check()  # a store that cannot be used stops the search at its first trial
        config = dict(rec.config)
        params, tags = self.describe(config)
        tags = {TRIAL: rec.name, CONFIG: config_tag(config), **tags}
        name = self.namer(rec.name, config)
        self._op(Op("create_trial", rec.trial_id, {"name": name, "params": flatten(params), "tags": tags}))

    def trial_result(self, rec: TrialRecord, step: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.points_reported += len(metrics)
        self._writer.metrics(rec.trial_id, [[k, v, now, step] for k, v in metrics.items()])

    def trial_ended(self, rec: TrialRecord) -> None:
        trial_id, state, error, epochs = rec.trial_id, rec.state, rec.error, rec.epochs
        where = {k: v for k, v in ((NODE_ID, rec.node_id), (DEVICE, rec.device)) if v}
        where.update({f"{RUNTIME_PREFIX}{k}": v[:MAX_TAG] for k, v in rec.runtime.items() if k != "device"})

        tags = {STATE: state, EPOCHS: str(epochs), **where}
        if error:
            tags[ERROR] = redact(error)[:5000]
        interrupted = error is not None and error.startswith("interrupted")
        status = "KILLED" if interrupted else RUN_STATUS[state]

        def end(points: list[list[Any]]) -> None:
            self.offline.run(Op("end_trial", trial_id, {"points": points, "tags": tags, "status": status}))

        self._writer.take(trial_id, end)
        if self._init_error is None:
            self.report_job.trial_ended()

    def trial_restarted(self, rec: TrialRecord) -> None:
        """Tune restarts the trial from its checkpoint: its run continues (the ledger drops redone epochs)."""
        tags = {RESTARTS: str(rec.restarts), RESTART_CAUSE: redact(rec.restart_cause or "")[:MAX_TAG]}
        self._op(Op("tags", rec.trial_id, {"tags": tags}), flush=rec.trial_id)

    def trial_exploited(self, rec: TrialRecord, segment: dict[str, Any]) -> None:
        """PBT: the trial continues from ``segment["donor"]``'s checkpoint with a new config. Its run's params
        stay (MLflow params never change): a segment run under it records the config, the donor and the epoch."""
        n = segment["segment"]
        params, _ = self.describe(dict(segment["config"]))
        tags = {
            SEGMENT: str(n),
            DONOR: segment["donor"],
            FROM_EPOCH: str(segment["epoch"]),
            CHANGED: json.dumps(segment["changed"], default=str)[:MAX_TAG],
            TRIAL: rec.name,
        }
        name = f"{rec.name} segment {n} (from {segment['donor']} @ epoch {segment['epoch']})"
        data = {"trial": rec.trial_id, "name": name, "params": flatten(params), "tags": tags, "segments": n}
        self._op(Op("create_segment", f"{rec.trial_id}#{n}", data), flush=rec.trial_id)

    def before_snapshot(self, timeout_s: float = 5.0) -> None:
        """Before Tune snapshots the search: the epochs handed over so far are written (or journaled), so
        a resume from that snapshot finds them in the run. Waits at most ``timeout_s``."""
        done = threading.Event()
        self._writer.call(done.set, flush=None)
        done.wait(timeout_s)

    def search_restored(self, records: list[TrialRecord]) -> None:
        """After ``Tuner.restore``: trials Tune continues are running again; runs of trials the restored
        experiment does not know (started after its last snapshot, then lost) are deleted: Tune runs
        other trials in their place, so keeping them would count those trials twice. So are PBT segment
        runs the restored records do not know: the trial redoes that exploit (or another) from its checkpoint."""
        known = {r.trial_id for r in records}
        segments = {f"{r.trial_id}#{s['segment']}" for r in records for s in r.segments}
        running = {r.trial_id: r for r in records if r.state == "running"}
        store = self.store
        logged: dict[str, int] = {}  # per running trial: the last epoch its run holds
        done = threading.Event()

        def restore() -> None:
            try:
                trial_runs = list(store.run_ids.values())
                for trial_id, run_id in list(store.run_ids.items()):
                    if trial_id not in known:
                        store.client.delete_run(run_id)
                        del store.run_ids[trial_id]
                if self.segments:  # PBT: one query for the segment runs under this search's trials
                    for run in reader.segment_runs(store.client, store.experiment_id, trial_runs):
                        if run.data.tags.get(SEGMENT_ID) not in segments:
                            store.client.delete_run(run.info.run_id)
                for trial_id in running:
                    if trial_id in store.run_ids:
                        run_id = store.run_ids[trial_id]
                        store.client.update_run(run_id, status="RUNNING")
                        store.client.set_tag(run_id, STATE, "running")
                        run = store.client.get_run(run_id)
                        if ERROR in run.data.tags:  # "interrupted" no longer holds
                            store.client.delete_tag(run_id, ERROR)
                        # Every metric the run holds, not only those of the snapshot's record: a trial with
                        # no epoch at the snapshot may have logged some after it (and redoes them now).
                        steps = [
                            m.step for key in run.data.metrics for m in store.client.get_metric_history(run_id, key)
                        ]
                        logged[trial_id] = max(steps, default=0)
            finally:
                done.set()

        self._writer.call(restore)
        # Epochs a trial reported after the snapshot Tune restores were written to its run before the search
        # stopped: the trial redoes them from its checkpoint, and the ledger must keep them once.
        if done.wait(timeout=60):
            for trial_id, step in logged.items():
                running[trial_id].epochs = max(running[trial_id].epochs, step)

    # Writes as journaled ops -------------------------------------------------------------
    def _op(self, op: Op, flush: str | None = "") -> None:
        """Enqueue ``op`` (after the pending points of trial ``flush``; None: of every trial)."""
        self._writer.call(lambda: self.offline.run(op), flush=flush)


__all__ = ["HTTP_CLIENT_ENV", "RUN_STATUS", "MlflowTracker", "ReportJob", "flatten"]
