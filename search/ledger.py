"""The search's trial records (:mod:`hpsearch.tracking.records`), kept by Ray Tune's callbacks and
classified into the states users see; listeners (MLflow tracking, the progress printer) are told of each
change."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ray import cloudpickle
from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS
from ray.tune.stopper import Stopper

from hpsearch.faults import NODE_LOST, PROCESS_DIED, failure_of
from hpsearch.protocol import EARLIER, MetricNotReported, TrialDiverged
from hpsearch.tracking.records import STATES, Listener, TrialRecord

_NOT_METRICS = set(AUTO_RESULT_KEYS) | {
    "done",
    "trial_id",
    "experiment_tag",
    "should_checkpoint",
    "epoch",
    "node_id",
    "device",
    "runtime",
    EARLIER,
}


def reported_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numeric values the trainable reported (Tune's own bookkeeping keys removed)."""
    return {
        k: float(v)
        for k, v in result.items()
        if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


class Ledger(Callback):
    """The search's trial records, kept by Tune's callbacks and saved with Tune's experiment state."""

    restored: ClassVar[Ledger | None] = None
    """The ledger Tune unpickled last (``Tuner.restore``): how a resumed search gets hold of it."""

    def __init__(self, max_epochs: int, metric: str, mode: str, listeners: list[Listener]):
        self.max_epochs, self.metric, self.mode = max_epochs, metric, mode
        self.listeners = listeners
        self.records: dict[str, TrialRecord] = {}
        self.fatal: str | None = None  # why the search stopped starting trials (MetricNotReported)

    # Tune saves callback state with the experiment and restores it on `Tuner.restore`.
    def get_state(self) -> dict[str, Any]:
        # What a resumed search believes was recorded must be recorded: listeners that write elsewhere
        # (MLflow) finish the epochs they were handed first (a driver killed after this snapshot loses none).
        for listener in self.listeners:
            before = getattr(listener, "before_snapshot", None)
            if before is not None:
                before()
        return {"records": [asdict(r) for r in self.records.values()]}

    def set_state(self, state: dict[str, Any]) -> None:
        self.records = {r["trial_id"]: TrialRecord(**r) for r in state["records"]}
        for listener in self.listeners:
            listener.search_restored(list(self.records.values()))

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; listeners hold threads and
        # streams and are re-attached by whoever restores the search.
        return {**self.__dict__, "listeners": []}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"fatal": None, **state})
        Ledger.restored = self

    # Tune callbacks -------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if trial.trial_id in self.records:  # a restart of the same trial (e.g. after a failure)
            return
        rec = TrialRecord(len(self.records) + 1, trial.trial_id, dict(trial.config))
        self.records[trial.trial_id] = rec
        for listener in self.listeners:
            listener.trial_started(rec)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        """One Tune result may carry several epochs (``earlier_epochs``, then its own): each is one step."""
        rec = self.records[trial.trial_id]
        rec.node_id, rec.device = result.get("node_id", rec.node_id), result.get("device", rec.device)
        if isinstance(result.get("runtime"), dict):
            rec.runtime = {str(k): str(v) for k, v in result["runtime"].items()}
        for epoch in [*result.get(EARLIER, ()), result]:
            step = int(epoch.get("epoch", epoch.get("training_iteration", rec.epochs + 1)))
            if step <= rec.epochs:  # a restarted trial redoes the epochs after its checkpoint: kept once
                continue
            metrics = reported_metrics(epoch)
            rec.epochs, rec.metrics = step, metrics
            for listener in self.listeners:
                listener.trial_result(rec, step, metrics)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        rec = self.records[trial.trial_id]
        self._end(rec, "completed" if rec.epochs >= self.max_epochs else "stopped_early")

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Tune restarts the trial from its last checkpoint: the same record (and MLflow run) continues."""
        rec = self.records.get(trial.trial_id)
        if rec is None:
            return
        failure = failure_of(trial)
        rec.restarts += 1
        rec.restart_cause = failure.text if failure is not None and failure.text else trial_error(trial).text
        for listener in self.listeners:
            listener.trial_restarted(rec)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        rec = self.records[trial.trial_id]
        failure = failure_of(trial)
        if failure is not None and failure.kind in (NODE_LOST, PROCESS_DIED):  # its process or its node died: say how
            rec.error = f"{'NodeLost' if failure.kind == NODE_LOST else 'ProcessDied'}: {failure.text}"
            self._end(rec, "failed")
            return
        cause = trial_error(trial)
        rec.error = cause.text
        if cause.fatal and self.fatal is None:
            self.fatal = f"trial {rec.name}: {cause.text}"  # the search stops starting trials
        self._end(rec, "diverged" if cause.diverged else "failed")

    def trial_exploited(self, exploit: Any) -> None:
        """PBT: trial ``exploit.trial_id`` continues from its donor's checkpoint with a new config (a
        :class:`~hpsearch.schedulers.recorded_pbt.Exploit`): a new segment of its record."""
        rec, donor = self.records.get(exploit.trial_id), self.records.get(exploit.donor_id)
        if rec is None or donor is None:
            return
        before = rec.segments[-1]["config"] if rec.segments else rec.config
        segment = {
            "segment": len(rec.segments) + 2,  # the first segment is the config it started with
            "epoch": exploit.epoch,
            "donor": donor.name,
            "config": dict(exploit.config),
            "changed": {k: v for k, v in exploit.config.items() if before.get(k) != v},
        }
        rec.segments.append(segment)
        for listener in self.listeners:
            told = getattr(listener, "trial_exploited", None)
            if told is not None:
                told(rec, segment)

    def interrupt_running(self) -> None:
        """End the trials still in flight when the search itself stops (Ctrl-C, a driver error)."""
        for rec in self.records.values():
            if rec.state == "running":
                rec.error = "interrupted: the search stopped before this trial finished"
                self._end(rec, "failed")

    # Queries --------------------------------------------------------------------------
    def _end(self, rec: TrialRecord, state: str) -> None:
        rec.state, rec.ended = state, time.time()
        for listener in self.listeners:
            listener.trial_ended(rec)

    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in ("running",) + STATES}
        for rec in self.records.values():
            counts[rec.state] += 1
        return counts

    def best(self, records: list[TrialRecord] | None = None) -> TrialRecord | None:
        """The finished trial whose last reported metric is best (diverged and failed trials excluded), of
        ``records`` (default: this ledger's)."""
        sign = 1.0 if self.mode == "max" else -1.0
        candidates = [
            r
            for r in (self.records.values() if records is None else records)
            if r.state in ("completed", "stopped_early") and math.isfinite(r.metrics.get(self.metric, math.nan))
        ]
        return max(candidates, key=lambda r: sign * r.metrics[self.metric], default=None)


class FatalStop(Stopper):
    """Tune's stopper that ends the search once the ledger saw a mistake every trial would make.

    It is pickled with Tune's experiment state without its ledger (a copy of the ledger unpickled with it
    would take the place of the one Tune calls back): a restored stopper asks :attr:`Ledger.restored`."""

    def __init__(self, ledger: Ledger | None = None):
        self.ledger = ledger

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        ledger = self.ledger or Ledger.restored
        return ledger is not None and ledger.fatal is not None

    def __getstate__(self) -> dict[str, Any]:
        return {"ledger": None}


@dataclass(frozen=True)
class TrialError:
    """Why a trial ended with an error: ``Type: message`` of the exception, and whether the trainable
    said its config diverged (it raised :class:`~hpsearch.protocol.TrialDiverged`)."""

    text: str
    diverged: bool = False
    fatal: bool = False  # a mistake every trial would make (the metric is never reported): stop the search


def trial_error(trial: Any) -> TrialError:
    """The exception that ended ``trial`` (a Tune ``Trial``).

    Tune writes it to the trial's local folder before calling back (the copy in the storage
    path appears only after the next sync), so read it from there.
    """
    try:
        path = trial.pickled_error_file
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                err = cloudpickle.load(f)
            cause = getattr(err, "cause", None) or err  # a RayTaskError carries the trainable's exception
            return TrialError(
                f"{type(cause).__name__}: {cause}",
                isinstance(cause, TrialDiverged),
                isinstance(cause, MetricNotReported),
            )
        if trial.error_file and os.path.exists(trial.error_file):
            with open(trial.error_file) as f:
                return TrialError(f.read()[-5000:])
        return TrialError("unknown error (Tune recorded no error file)")
    except Exception as exc:  # reading the error must not break the search; say what happened
        return TrialError(f"error details unavailable ({type(exc).__name__}: {exc})")


__all__ = ["STATES", "FatalStop", "Ledger", "Listener", "TrialError", "TrialRecord", "reported_metrics", "trial_error"]
