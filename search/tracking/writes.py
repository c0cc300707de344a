"""Writing the MLflow layout (README, "MLflow layout"): :class:`StoreWriter` applies one write (a journal
:class:`~hpsearch.tracking.journal.Op`) to the store, idempotently when it replays one; the helpers keep
params, tags and metrics within MLflow's limits. It runs on the tracking thread only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hpsearch.redact import redact
from hpsearch.tracking import reader
from hpsearch.tracking.journal import PARENT as PARENT_REF
from hpsearch.tracking.journal import Op
from hpsearch.tracking.store import artifact_location, new_sqlite_store
from hpsearch.tracking.tags import PARENT, ROLE, SEGMENT_ID, SEGMENTS, STATE, STATUS, TRIAL_ID

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Run

# MLflow run status per trial state. Stopped early is a normal outcome of the search (the scheduler did
# its job), not a failure: MLflow's UI draws KILLED runs with the red failure icon, so it is FINISHED and
# the tag ``hpsearch.trial_state`` tells it from a completed run. KILLED means interrupted.
RUN_STATUS = {"completed": "FINISHED", "stopped_early": "FINISHED", "diverged": "FAILED", "failed": "FAILED"}
MAX_PARAM = 6000  # MLflow's limit on a param value's length
MAX_TAG = 8000  # ... and on a tag value's


class StoreWriter:
    """The search's runs in one MLflow store: the experiment, the parent run and a run per trial (by Tune
    trial id), and how each kind of write lands in them. ``report(client, parent_run_id)`` writes the
    search's report artifacts."""

    def __init__(self, tracking_uri: str, report: Callable[[MlflowClient, str], object] | None = None):
        self.tracking_uri, self.report = tracking_uri, report
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.run_ids: dict[str, str] = {}  # trial_id -> child run id
        self.client: MlflowClient

    def connect(self) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(self.tracking_uri)

    def open(
        self, experiment: str, run_name: str, params: dict[str, Any], tags: dict[str, str], artifacts: dict[str, str]
    ) -> None:
        """Create the store if it is a new SQLite file, the experiment if it is new, and the parent run."""
        from mlflow.entities import Param

        new_sqlite_store(self.tracking_uri)
        self.connect()
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            # A model-training experiment: MLflow's UI opens it on the runs table.
            self.experiment_id = self.client.create_experiment(
                experiment,
                artifact_location=artifact_location(self.tracking_uri, experiment),
                tags={"mlflow.experimentKind": "custom_model_development"},
            )
        else:
            self.experiment_id = exp.experiment_id
        tags = {k: redact(v) for k, v in tags.items()}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={ROLE: "search", **tags})
        self.parent_run_id = parent = run.info.run_id
        self.client.log_batch(parent, params=[Param(k, param_value(v)) for k, v in params.items()])
        for name, text in artifacts.items():
            self.client.log_text(parent, redact(text), name)

    def reopen(self, experiment_id: str, parent_run_id: str) -> None:
        """Continue a search's parent run (``hpsearch resume``) and find its trials' runs again."""
        self.connect()
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self.client.update_run(parent_run_id, status="RUNNING")
        self.client.set_tag(parent_run_id, STATUS, "RUNNING")
        for run in self.trial_runs():
            trial_id = run.data.tags.get(TRIAL_ID)
            if trial_id:
                self.run_ids[trial_id] = run.info.run_id

    def trial_runs(self) -> list[Run]:
        assert self.experiment_id is not None and self.parent_run_id is not None
        return reader.search_trials(self.client, self.experiment_id, self.parent_run_id)

    def run_id_of(self, ref: str) -> str | None:
        return self.parent_run_id if ref == PARENT_REF else self.run_ids.get(ref)

    def apply(self, op: Op, replaying: bool) -> None:
        """Write ``op`` to the store. ``replaying``: it may have been (partly) written before; write nothing twice."""
        from mlflow.entities import Metric, Param, RunTag

        if op.kind == "create_trial":
            self._create_trial(op, replaying)
            return
        if op.kind == "create_segment":
            self._create_segment(op, replaying)
            return
        found = op.run_id or (self.parent_run_id if op.ref == PARENT_REF else self.run_ids.get(op.ref))
        if found is None:  # its create_trial failed for a reason other than the store being away
            raise LookupError(f"trial {op.ref}'s MLflow run was never created (its first write failed)")
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
        assert self.experiment_id is not None and self.parent_run_id is not None  # trials start after open
        if replaying:  # the run may exist already (created just before the store went away, or a cut replay)
            found = reader.trial_run(self.client, self.experiment_id, self.parent_run_id, op.ref)
            if found is not None:
                self.run_ids[op.ref] = found.info.run_id
                log_params(self.client, found.info.run_id, op.data["params"])
                return
        tags = {PARENT: self.parent_run_id, ROLE: "trial", STATE: "running", TRIAL_ID: op.ref, **op.data["tags"]}
        run = self.client.create_run(self.experiment_id, run_name=op.data["name"], tags=tags)
        self.run_ids[op.ref] = run.info.run_id
        log_params(self.client, run.info.run_id, op.data["params"])

    def _create_segment(self, op: Op, replaying: bool) -> None:
        """A PBT segment: a finished run under its trial's run with the config it continues with."""
        assert self.experiment_id is not None
        trial_run = self.run_ids.get(op.data["trial"])
        if trial_run is None:
            raise LookupError(f"trial {op.data['trial']}'s MLflow run was never created (its first write failed)")
        if replaying and reader.segment_run(self.client, self.experiment_id, op.ref) is not None:
            return
        tags = {PARENT: trial_run, ROLE: "segment", SEGMENT_ID: op.ref, **op.data["tags"]}
        run = self.client.create_run(self.experiment_id, run_name=op.data["name"], tags=tags)
        log_params(self.client, run.info.run_id, op.data["params"])
        self.client.set_terminated(run.info.run_id, "FINISHED")
        self.client.set_tag(trial_run, SEGMENTS, str(op.data["segments"]))

    def _unwritten(self, run_id: str, points: list[list[Any]]) -> list[list[Any]]:
        """The points whose (key, step) the run does not have yet."""
        have: dict[str, set[int]] = {}
        for key in {str(p[0]) for p in points}:
            have[key] = {m.step for m in self.client.get_metric_history(run_id, key)}
        return [p for p in points if int(p[3]) not in have[str(p[0])]]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (``{"optimizer": {"lr": 1}}`` -> ``{"optimizer.lr": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    """Params within MLflow's limits: values cut with a marker, at most 100 per request."""
    from mlflow.entities import Param

    items = [Param(k, param_value(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def log_metrics(client: Any, run_id: str, points: list[Metric]) -> None:
    """Metric points (``mlflow.entities.Metric``), at most 1000 per request."""
    for i in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[i : i + 1000])


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 14] + "...[truncated]"


def config_tag(config: dict[str, Any]) -> str:
    return cut(redact(json.dumps(config, default=str)), MAX_TAG)


def param_value(value: Any) -> str:
    """A param's text: strings as they are, anything else as JSON (:func:`hpsearch.tracking.reader.parse_param`
    reads it back), masked and cut to MLflow's limit."""
    return cut(redact(value if isinstance(value, str) else json.dumps(value)), MAX_PARAM)


__all__ = ["RUN_STATUS", "StoreWriter", "config_tag", "flatten", "log_metrics", "log_params", "param_value"]
