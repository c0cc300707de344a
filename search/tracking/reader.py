"""The one reader of hpsearch's MLflow layout (README, "MLflow layout"): find a search, list its trials or
an experiment's, read what a search logged (its artifacts, its spec). The report, warm start, ``hpsearch
ui``, retrain and the tracker (resume, journal replay) all read MLflow through here; nothing else in the
package calls ``search_runs``.

MLflow itself is imported when a function runs, not with this module.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.errors import UsageError
from hpsearch.tracking.tags import PARENT, ROLE, SEGMENT_ID, TRIAL_ID

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Experiment, Run

    from hpsearch.spec import JobSpec, SearchSpec

PAGE = 1000  # runs per request (MLflow's most is 50000 for SQL stores, 1000 for some servers)
SPEC_ARTIFACT = "spec.yaml"  # the search's spec as written (passwords masked)
SPACE_ARTIFACT = "space.json"  # the resolved space


def open_store(tracking_uri: str, field: str = "--tracking-uri") -> MlflowClient:
    """An MlflowClient on an existing store: a SQLite file that is not there is an error naming ``field``,
    not a new empty store (MLflow would create one silently); a server that does not answer fails fast."""
    from hpsearch.tracking.store import check_existing_store, check_reachable, quiet_mlflow

    if problems := check_existing_store(tracking_uri, field):
        raise UsageError(problems)
    check_reachable(tracking_uri)
    quiet_mlflow()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


def runs(
    client: MlflowClient, experiment_ids: list[str], query: str = "", order_by: list[str] | None = None
) -> Iterator[Run]:
    """Every run of ``experiment_ids`` that ``query`` selects, page by page."""
    token = None
    while True:
        page = client.search_runs(experiment_ids, query, max_results=PAGE, order_by=order_by, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def experiment(client: MlflowClient, name: str, field: str = "EXPERIMENT") -> Experiment:
    """The experiment named ``name``; a usage error naming ``field`` (and what the store has) if there is none."""
    found = client.get_experiment_by_name(name)
    if found is None:
        names = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        raise UsageError([(field, f"no experiment named {name!r} (this store has: {', '.join(names) or 'none'})")])
    return found


def latest_search(client: MlflowClient, experiment_id: str) -> Run | None:
    """The experiment's newest search (its parent run), or None when it holds none."""
    found = client.search_runs(
        [experiment_id], f"tags.`{ROLE}` = 'search'", order_by=["attributes.start_time DESC"], max_results=1
    )
    return found[0] if found else None


def find_search(client: MlflowClient, name: str, search_run_id: str | None = None) -> tuple[Experiment, Run]:
    """The experiment ``name`` and its latest search's parent run (or the search ``search_run_id``)."""
    exp = experiment(client, name)
    if search_run_id:
        try:
            run = client.get_run(search_run_id)
        except Exception as exc:
            raise UsageError([("--search", f"no run {search_run_id!r} in this store")]) from exc
        if run.info.experiment_id != exp.experiment_id or run.data.tags.get(ROLE) != "search":
            raise UsageError([("--search", f"run {search_run_id!r} is not a search of experiment {name!r}")])
        return exp, run
    found = latest_search(client, exp.experiment_id)
    if found is None:
        raise UsageError([("EXPERIMENT", f"{name!r} holds no hpsearch search (no run tagged {ROLE}=search)")])
    return exp, found


def search_trials(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Run]:
    """The trial runs of one search."""
    return list(runs(client, [experiment_id], f"tags.`{PARENT}` = '{parent_run_id}' and tags.`{ROLE}` = 'trial'"))


def experiment_trials(client: MlflowClient, experiment_id: str) -> Iterator[Run]:
    """The trial runs of every search of an experiment."""
    return runs(client, [experiment_id], f"tags.`{ROLE}` = 'trial'")


def segment_runs(client: MlflowClient, experiment_id: str | None, trial_run_ids: list[str]) -> list[Run]:
    """The PBT segment runs under these trial runs."""
    if experiment_id is None or not trial_run_ids:
        return []
    under = set(trial_run_ids)
    return [r for r in runs(client, [experiment_id], f"tags.`{ROLE}` = 'segment'") if r.data.tags.get(PARENT) in under]


def segment_run(client: MlflowClient, experiment_id: str, segment_id: str) -> Run | None:
    """The PBT segment run ``segment_id`` (``TRIALID#N``), if it was written."""
    found = client.search_runs([experiment_id], f"tags.`{SEGMENT_ID}` = '{segment_id}'", max_results=1)
    return found[0] if found else None


def trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> Run | None:
    """The run of Tune trial ``trial_id`` in a search, if it has one."""
    found = client.search_runs(
        [experiment_id], f"tags.`{PARENT}` = '{parent_run_id}' and tags.`{TRIAL_ID}` = '{trial_id}'", max_results=1
    )
    return found[0] if found else None


def read_artifact(client: MlflowClient, run_id: str, path: str) -> str | None:
    """The text of a run's artifact, or None when the run has none at ``path``."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as folder:
        try:
            return Path(client.download_artifacts(run_id, path, folder)).read_text()
        except Exception:  # no such artifact (a run written by hand or by an older version)
            return None


def logged_spec(client: MlflowClient, run_id: str, source: str) -> JobSpec | None:
    """The job spec a search logged (``spec.yaml``), validated again here (its data files must be here
    too); None when the run has none."""
    from hpsearch.spec import load_spec_text

    text = read_artifact(client, run_id, SPEC_ARTIFACT)
    return None if text is None else load_spec_text(text, source=source, base_dir=Path.cwd())


def logged_search(client: MlflowClient, run_id: str) -> SearchSpec | None:
    """The ``search`` section of the spec a search logged (metric, mode, sampler, scheduler), without the
    rest of the spec: the report needs it where the search's data files may not be. None when the run has
    no spec, or one this installation cannot read (a sampler or scheduler of a plugin not loaded here)."""
    from hpsearch.errors import SpecError
    from hpsearch.spec import parse_search_section

    text = read_artifact(client, run_id, SPEC_ARTIFACT)
    if text is None:
        return None
    try:
        return parse_search_section(text)
    except SpecError:
        return None


def logged_space(client: MlflowClient, run_id: str) -> Any:
    """The space a search searched (``space.json``), or None."""
    from hpsearch.spaces import SpaceError, parse_space

    text = read_artifact(client, run_id, SPACE_ARTIFACT)
    if text is None:
        return None
    try:
        return parse_space(json.loads(text))
    except (SpaceError, ValueError):
        return None


def parse_param(text: str) -> Any:
    """A param's value as it was logged (the inverse of the tracker's ``param_value``): JSON for numbers,
    booleans and null, the raw text for strings."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool)) or value is None else text


__all__ = [
    "experiment",
    "experiment_trials",
    "find_search",
    "latest_search",
    "logged_search",
    "logged_space",
    "logged_spec",
    "open_store",
    "parse_param",
    "read_artifact",
    "runs",
    "search_trials",
    "trial_run",
]
