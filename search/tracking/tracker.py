"""The search mirrored into MLflow: one parent run per search, one child run per trial (README,
"MLflow layout"). Every MLflow call runs on the tracking thread (:class:`~hpsearch.tracking.writer.Writer`)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hpsearch.errors import TrackingError
from hpsearch.ledger import TrialRecord
from hpsearch.redact import redact
from hpsearch.tracking.journal import PARENT as PARENT_REF
from hpsearch.tracking.journal import Journal, Op
from hpsearch.tracking.store import artifact_location, is_server, new_sqlite_store, quiet_mlflow
from hpsearch.tracking.tags import (
    CONFIG,
    DEVICE,
    EPOCHS,
    ERROR,
    NODE_ID,
    PARENT,
    RESTART_CAUSE,
    RESTARTS,
    ROLE,
    RUNTIME_PREFIX,
    STATE,
    STATUS,
    TRIAL,
    TRIAL_ID,
)
from hpsearch.tracking.writer import Writer

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Run

# MLflow run status per trial state. Stopped early is a normal outcome of the search (ASHA did its
# job), not a failure: MLflow's UI draws KILLED runs with the red failure icon, so it is FINISHED and
# the tag ``hpsearch.trial_state`` tells it from a completed run. KILLED means interrupted.
RUN_STATUS = {"completed": "FINISHED", "stopped_early": "FINISHED", "diverged": "FAILED", "failed": "FAILED"}
# While the store answers, MLflow's HTTP client retries a failed request 7 times over minutes; with the
# journal behind it, a write that fails is kept and replayed instead (unless the user set these).
HTTP_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
PROBE_S = 5.0  # how often an absent store is checked
PROBE_TIMEOUT_S = 3.0
_MAX_PARAM = 6000  # MLflow's limit on a param value's length
_MAX_TAG = 8000  # ... and on a tag value's


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class MlflowTracker:
    """A ledger listener that mirrors the search into MLflow."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        describe: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, str]]] | None = None,
        namer: Callable[[str, dict[str, Any]], str] | None = None,
        report: Callable[[MlflowClient, str], object] | None = None,
    ):
        """``describe(config) -> (params, tags)`` turns a trial's config into what its run records
        (by default the config itself); ``namer(short_name, config)`` names its run (default: the
        short name, ``t017``); ``report(client, parent_run_id)`` writes the search's report artifacts
        when the search ends."""
        quiet_mlflow()
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.describe = describe or (lambda config: (config, {}))
        self.namer = namer or (lambda short, config: short)
        self.report = report
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._run_ids: dict[str, str] = {}  # trial_id -> child run id (written only by the writer)
        self._ready = threading.Event()
        self._init_error: BaseException | None = None
        self.points_reported = 0
        self._warm_thread: threading.Thread | None = None
        # When the report's imports may start: by default after the first trial ends; the search sets
        # it to "every trial has started", so they use the core a finished trial leaves idle.
        self.warm_up_when: Callable[[], bool] = lambda: True
        self._report_pending = False
        self._writer = Writer()
        self._writer.log_points = self._log_points
        self._writer.heartbeat = self._heartbeat
        self.client: MlflowClient  # opened on the tracking thread
        # When the store stops answering: writes go to the journal until it is back (tracking.journal).
        self.journal: Journal | None = None
        self._offline_since: float | None = None
        self._next_probe = 0.0
        self.replayed = 0  # journaled writes replayed during the search
        for name, value in HTTP_CLIENT_ENV.items():
            os.environ.setdefault(name, value)

    def use_journal(self, run_dir: str) -> None:
        """Keep writes the store does not take in ``run_dir``'s journal (``hpsearch resume`` syncs what
        an earlier outage left there before it continues)."""
        self.journal = Journal.load(run_dir)

    def sync(self, journal: Journal, experiment_id: str, parent_run_id: str) -> int:
        """Replay ``journal`` into the search's runs now, on this thread (``hpsearch sync``); return how many
        writes were applied. Raises on the first write that fails (the rest stays journaled)."""
        from mlflow import MlflowClient

        self.client = MlflowClient(self.tracking_uri)
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        return journal.replay(lambda op: self._apply(op, replaying=True))

    @property
    def pending_writes(self) -> int:
        return len(self.journal) if self.journal is not None else 0

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
        self._writer.call(lambda: self._open(run_name, params, tags, artifacts))
        if on_ready is not None:
            self._writer.call(lambda: self._init_error is None and on_ready())

    def reopen(self, experiment_id: str, parent_run_id: str) -> None:
        """Continue an existing search's parent run (``hpsearch resume``) instead of starting one."""
        self._writer.start()

        def reopen() -> None:
            try:
                from mlflow import MlflowClient

                self.client = MlflowClient(self.tracking_uri)
                self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
                self.client.update_run(parent_run_id, status="RUNNING")
                self.client.set_tag(parent_run_id, STATUS, "RUNNING")
                for run in self._children():
                    trial_id = run.data.tags.get(TRIAL_ID)
                    if trial_id:
                        self._run_ids[trial_id] = run.info.run_id
            except BaseException as exc:
                self._init_error = exc
                raise
            finally:
                self._ready.set()

        self._writer.call(reopen)

    def _children(self) -> list[Run]:
        assert self.experiment_id is not None
        runs: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], f"tags.`{PARENT}` = '{self.parent_run_id}'", max_results=1000, page_token=token
            )
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def _warm_up(self) -> None:
        """While the last trials run: import what the end-of-search report needs, so the report does not
        pay for it after the last trial. (Not at start-up, and not while every core trains: there the
        import's CPU would come out of the trials.)"""
        if self.report is None or self._init_error is not None:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
        import optuna.importance  # noqa: F401
        import sklearn.ensemble  # noqa: F401

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
        defer = defer_report and self.parent_run_id is not None and self.report is not None
        if self.parent_run_id is not None:
            self._op(Op("parent_results", PARENT_REF, self._results(metrics, params, tags, artifacts)), flush=None)
            if self.report is not None and not defer:  # after every trial's writes; a failure is reported
                self._op(Op("report", PARENT_REF))
            self._op(Op("terminate", PARENT_REF, {"status": status}))
            self._writer.call(self._last_chance)
        if not defer:
            return self._close()
        self._writer.flush()
        self._save_journal()  # what the store did not take is on disk before the summary
        self._report_pending = True
        return list(self._writer.errors)

    def write_report(self) -> list[str]:
        """After ``finish(defer_report=True)``: make the report (into the journal if the store is away),
        end the tracking thread, and return the write errors since ``finish``."""
        if not self._report_pending:
            return []
        self._report_pending = False
        before = len(self._writer.errors)
        self._op(Op("report", PARENT_REF))
        self._writer.call(self._last_chance)
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
            "params": {k: _param_value(v) for k, v in params.items()},
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
        tags = {TRIAL: rec.name, CONFIG: _config_tag(config), **tags}
        name = self.namer(rec.name, config)
        self._op(Op("create_trial", rec.trial_id, {"name": name, "params": flatten(params), "tags": tags}))

    def trial_result(self, rec: TrialRecord, step: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.points_reported += len(metrics)
        self._writer.metrics(rec.trial_id, [[k, v, now, step] for k, v in metrics.items()])

    def trial_ended(self, rec: TrialRecord) -> None:
        trial_id, state, error, epochs = rec.trial_id, rec.state, rec.error, rec.epochs
        where = {k: v for k, v in ((NODE_ID, rec.node_id), (DEVICE, rec.device)) if v}
        where.update({f"{RUNTIME_PREFIX}{k}": v[:_MAX_TAG] for k, v in rec.runtime.items() if k != "device"})

        tags = {STATE: state, EPOCHS: str(epochs), **where}
        if error:
            tags[ERROR] = redact(error)[:5000]
        interrupted = error is not None and error.startswith("interrupted")
        status = "KILLED" if interrupted else RUN_STATUS[state]

        def end(points: list[list[Any]]) -> None:
            self._run(Op("end_trial", trial_id, {"points": points, "tags": tags, "status": status}))

        self._writer.take(trial_id, end)
        if self._warm_thread is None and self.report is not None and self.warm_up_when():
            # Once: start-up is over and a core is free. A thread of its own, not the tracking thread,
            # so that no write (and not the summary) waits behind the imports; the report, if it comes
            # first, waits for them on Python's import lock.
            self._warm_thread = threading.Thread(target=self._warm_up, name="hpsearch-report-imports", daemon=True)
            self._warm_thread.start()

    def trial_restarted(self, rec: TrialRecord) -> None:
        """Tune restarts the trial from its checkpoint: its run continues (the ledger drops redone epochs)."""
        tags = {RESTARTS: str(rec.restarts), RESTART_CAUSE: redact(rec.restart_cause or "")[:_MAX_TAG]}
        self._op(Op("tags", rec.trial_id, {"tags": tags}), flush=rec.trial_id)

    def search_restored(self, records: list[TrialRecord]) -> None:
        """After ``Tuner.restore``: trials Tune continues are running again; runs of trials the restored
        experiment does not know (started after its last snapshot, then lost) are deleted: Tune runs
        other trials in their place, so keeping them would count those trials twice."""
        known = {r.trial_id for r in records}
        running = [r.trial_id for r in records if r.state == "running"]

        def restore() -> None:
            for trial_id, run_id in list(self._run_ids.items()):
                if trial_id not in known:
                    self.client.delete_run(run_id)
                    del self._run_ids[trial_id]
            for trial_id in running:
                if trial_id in self._run_ids:
                    run_id = self._run_ids[trial_id]
                    self.client.update_run(run_id, status="RUNNING")
                    self.client.set_tag(run_id, STATE, "running")
                    if ERROR in self.client.get_run(run_id).data.tags:  # "interrupted" no longer holds
                        self.client.delete_tag(run_id, ERROR)

        self._writer.call(restore)

    # Writer thread ---------------------------------------------------------------------
    def _open(self, run_name: str, params: dict[str, Any], tags: dict[str, str], artifacts: dict[str, str]) -> None:
        try:
            from mlflow import MlflowClient
            from mlflow.entities import Param

            new_sqlite_store(self.tracking_uri)
            self.client = MlflowClient(self.tracking_uri)
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                # A model-training experiment: MLflow's UI opens it on the runs table.
                self.experiment_id = self.client.create_experiment(
                    self.experiment,
                    artifact_location=artifact_location(self.tracking_uri, self.experiment),
                    tags={"mlflow.experimentKind": "custom_model_development"},
                )
            else:
                self.experiment_id = exp.experiment_id
            tags = {k: redact(v) for k, v in tags.items()}
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags={ROLE: "search", **tags})
            self.parent_run_id = parent = run.info.run_id
            self.client.log_batch(parent, params=[Param(k, _param_value(v)) for k, v in params.items()])
            for name, text in artifacts.items():
                self.client.log_text(parent, redact(text), name)
        except BaseException as exc:
            self._init_error = exc
            raise
        finally:
            self._ready.set()

    def _log_points(self, trial_id: str, points: list[list[Any]]) -> None:
        self._run(Op("metrics", trial_id, {"points": points}))

    # Writes as journaled ops (writer thread) -------------------------------------------
    def _op(self, op: Op, flush: str | None = "") -> None:
        """Enqueue ``op`` (after the pending points of trial ``flush``; None: of every trial)."""
        self._writer.call(lambda: self._run(op), flush=flush)

    def _run(self, op: Op) -> None:
        """Apply ``op``, or journal it while the store is away (a failure the store's health check
        explains takes the store away; any other failure is reported as a failed write)."""
        if self._offline_since is None:
            try:
                self._apply(op, replaying=False)
                return
            except Exception as exc:
                if self.journal is None or self._answers():
                    raise
                self._offline_since = time.monotonic()
                self._next_probe = self._offline_since + PROBE_S
                print(
                    f"hpsearch: the MLflow store {redact(self.tracking_uri)} does not answer "
                    f"({type(exc).__name__}: {redact(str(exc)).splitlines()[0][:200] if str(exc) else ''}); its "
                    f"writes are kept in {self.journal.path} and replayed when it is back",
                    file=sys.stderr,
                )
        assert self.journal is not None
        if op.run_id is None:
            op.run_id = self.parent_run_id if op.ref == PARENT_REF else self._run_ids.get(op.ref)
        self.journal.append(op)

    def _answers(self) -> bool:
        """Whether the store answers now (a few seconds at most)."""
        if is_server(self.tracking_uri):
            import urllib.error
            import urllib.request

            try:
                with urllib.request.urlopen(self.tracking_uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S) as r:
                    r.read()
                return True
            except urllib.error.HTTPError as exc:
                return exc.code in (401, 403)
            except OSError:
                return False
        try:
            self.client.search_experiments(max_results=1)
            return True
        except Exception:
            return False

    def _heartbeat(self) -> float | None:
        """While the store is away: check it every PROBE_S, and replay the journal once it answers."""
        if self._offline_since is None or self.journal is None:
            return None
        now = time.monotonic()
        if now < self._next_probe:
            return self._next_probe - now
        self._next_probe = now + PROBE_S
        self._replay()
        return None if self._offline_since is None else PROBE_S

    def _replay(self) -> None:
        assert self.journal is not None
        if not self._answers():
            return
        try:
            self.replayed += self.journal.replay(lambda op: self._apply(op, replaying=True))
        except Exception:
            return  # away again: the rest stays journaled, tried at the next check
        away = time.monotonic() - (self._offline_since or time.monotonic())
        self._offline_since = None
        print(
            f"hpsearch: the MLflow store answers again (away {away:.0f} s): {self.replayed} journaled writes replayed",
            file=sys.stderr,
        )

    def _last_chance(self) -> None:
        """At the end of the search: one more check of an absent store (no waiting beyond it)."""
        if self._offline_since is not None:
            self._replay()

    def _apply(self, op: Op, replaying: bool) -> None:
        """Write ``op`` to the store. ``replaying``: it may have been (partly) written before; write nothing twice."""
        from mlflow.entities import Metric, Param, RunTag

        if op.kind == "create_trial":
            self._create_trial(op, replaying)
            return
        found = op.run_id or (self.parent_run_id if op.ref == PARENT_REF else self._run_ids[op.ref])
        assert found is not None  # the parent run exists before any write is made
        run_id: str = found
        data = op.data

        def metrics(points: list[list[Any]]) -> list[Metric]:
            if replaying:
                points = self._unwritten(run_id, points)
            return [Metric(str(k), float(v), int(t), int(s)) for k, v, t, s in points]

        if op.kind == "metrics":
            log_metrics(self.client, run_id, metrics(data["points"]))
        elif op.kind == "tags":
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in data["tags"].items()])
        elif op.kind == "end_trial":
            points, tags = metrics(data["points"]), data["tags"]
            # Its last points and its end tags in one write (MLflow: <= 1000 points, 100 tags per request).
            if len(points) + len(tags) > 1000:
                log_metrics(self.client, run_id, points)
                points = []
            self.client.log_batch(run_id, metrics=points, tags=[RunTag(k, v) for k, v in tags.items()])
            self.client.set_terminated(run_id, data["status"])
        elif op.kind == "parent_results":
            self.client.log_batch(
                run_id,
                metrics=metrics(data["metrics"]),
                params=[Param(k, v) for k, v in data["params"].items()],
                tags=[RunTag(k, v) for k, v in data["tags"].items()],
            )
            for name, text in data["artifacts"].items():
                self.client.log_text(run_id, text, name)
        elif op.kind == "report":
            if self.report is not None:
                self.report(self.client, run_id)
        elif op.kind == "terminate":
            self.client.set_terminated(run_id, data["status"])
        else:
            raise ValueError(f"unknown journaled write {op.kind!r}")

    def _create_trial(self, op: Op, replaying: bool) -> None:
        assert self.experiment_id is not None and self.parent_run_id is not None  # trials start after _open
        if replaying:  # the run may exist already (created just before the store went away, or a cut replay)
            found = self.client.search_runs(
                [self.experiment_id],
                f"tags.`{PARENT}` = '{self.parent_run_id}' and tags.`{TRIAL_ID}` = '{op.ref}'",
                max_results=1,
            )
            if found:
                self._run_ids[op.ref] = found[0].info.run_id
                log_params(self.client, found[0].info.run_id, op.data["params"])
                return
        tags = {PARENT: self.parent_run_id, ROLE: "trial", STATE: "running", TRIAL_ID: op.ref, **op.data["tags"]}
        run = self.client.create_run(self.experiment_id, run_name=op.data["name"], tags=tags)
        self._run_ids[op.ref] = run.info.run_id
        log_params(self.client, run.info.run_id, op.data["params"])

    def _unwritten(self, run_id: str, points: list[list[Any]]) -> list[list[Any]]:
        """The points whose (key, step) the run does not have yet."""
        have: dict[str, set[int]] = {}
        for key in {str(p[0]) for p in points}:
            have[key] = {m.step for m in self.client.get_metric_history(run_id, key)}
        return [p for p in points if int(p[3]) not in have[str(p[0])]]


def log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    """Params within MLflow's limits: values cut with a marker, at most 100 per request."""
    from mlflow.entities import Param

    items = [Param(k, _param_value(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def log_metrics(client: Any, run_id: str, points: list[Metric]) -> None:
    """Metric points (``mlflow.entities.Metric``), at most 1000 per request."""
    for i in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[i : i + 1000])


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 14] + "...[truncated]"


def _config_tag(config: dict[str, Any]) -> str:
    return _cut(redact(json.dumps(config, default=str)), _MAX_TAG)


def _param_value(value: Any) -> str:
    return _cut(redact(value if isinstance(value, str) else json.dumps(value)), _MAX_PARAM)
