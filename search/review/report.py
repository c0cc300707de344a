"""What a search found, read from what MLflow holds (through :mod:`hpsearch.tracking.reader`) and
computed by :mod:`hpsearch.review.evidence`: the same report is written to the parent run when a search
ends (``report/`` artifacts: PNG plots + JSON/CSV) and printed by ``hpsearch report``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hpsearch.review.evidence import build_report
from hpsearch.review.pbt import pbt_history
from hpsearch.review.trials import TOP_K, SearchReport, Settings, TrialRow
from hpsearch.spaces import space_kinds
from hpsearch.tracking import reader
from hpsearch.tracking.reader import parse_param
from hpsearch.tracking.tags import CONFIG, EPOCHS, STATE, STATUS, TRIAL


def settings_of(client: Any, parent: Any) -> Settings:
    """The search's settings from the spec it logged (its scheduler says where it decided); a search whose
    spec cannot be read here (a scheduler of a plugin not loaded) is reported without rungs."""
    params = parent.data.params
    space = reader.logged_space(client, parent.info.run_id)
    kinds = space_kinds(space) if space is not None else {}
    search = reader.logged_search(client, parent.info.run_id)
    if search is None:
        max_epochs = int(params.get("search.scheduler.max_epochs", "0"))
        rungs = [max_epochs] if max_epochs else []
        return Settings(
            params.get("search.metric", "val_accuracy"), params.get("search.mode", "max"), max_epochs, rungs, kinds
        )
    objectives = list(zip(search.objective_metrics, search.directions, strict=True)) if search.multi_objective else []
    return Settings(
        search.metric,
        search.mode,
        search.scheduler.max_epochs,
        search.scheduler.rungs(),
        kinds,
        objectives,
        [str(c) for c in search.parsed_constraints],
        search.scheduler.population_based,
    )


def trial_rows(client: Any, experiment_id: str, parent_run_id: str, settings: Settings) -> list[TrialRow]:
    rows = []
    for run in reader.search_trials(client, experiment_id, parent_run_id):
        tags, metric = run.data.tags, settings.metric
        short = tags.get(TRIAL) or (run.info.run_name or "").split(" ")[0]
        state = tags.get(STATE, "running")
        config = _config_of(run, settings)
        value = run.data.metrics.get(metric)
        history: list[tuple[int, float]] = []
        if metric in run.data.metrics:
            points = client.get_metric_history(run.info.run_id, metric)
            history = sorted((int(p.step), float(p.value)) for p in points)
            value = history[-1][1] if history else value
        rows.append(
            TrialRow(
                name=short,
                run_name=run.info.run_name or short,
                run_id=run.info.run_id,
                state=state,
                epochs=int(tags.get(EPOCHS, str(len(history)))),
                value=value if value is None or math.isfinite(value) else None,
                config=config,
                history=history,
                metrics={k: float(v) for k, v in run.data.metrics.items()},
            )
        )
    rows.sort(key=lambda r: (r.index, r.name))
    return rows


def _config_of(run: Any, settings: Settings) -> dict[str, Any]:
    """The searched keys as trained: the run's params (the resolved config), parsed back from text;
    without a known space, the sampled config kept in the ``hpsearch.config`` tag."""
    params = run.data.params
    if settings.kinds:
        return {k: parse_param(params[k]) for k in settings.kinds if k in params}
    try:
        return dict(json.loads(run.data.tags.get(CONFIG, "{}")))
    except ValueError:
        return {k: parse_param(v) for k, v in params.items()}


def load_report(
    tracking_uri: str, experiment: str, search_run_id: str | None = None, top_k: int = TOP_K
) -> SearchReport:
    client = reader.open_store(tracking_uri)
    exp, parent = reader.find_search(client, experiment, search_run_id)
    return report_for(client, parent, top_k=top_k, experiment=exp)


def report_for(client: Any, parent: Any, top_k: int = TOP_K, experiment: Any = None) -> SearchReport:
    experiment = experiment or client.get_experiment(parent.info.experiment_id)
    settings = settings_of(client, parent)
    rows = trial_rows(client, experiment.experiment_id, parent.info.run_id, settings)
    schedule, lineage = pbt_history(client, experiment.experiment_id, rows) if settings.population_based else ([], [])
    report = build_report(
        settings,
        rows,
        experiment=experiment.name,
        experiment_id=experiment.experiment_id,
        search_run_id=parent.info.run_id,
        search_run_name=parent.info.run_name or "",
        status=parent.data.tags.get(STATUS, parent.info.status),
        top_k=top_k,
    )
    report.max_epochs, report.pbt_schedule, report.pbt_lineage = settings.max_epochs, schedule, lineage
    return report


__all__ = [
    "SearchReport",
    "Settings",
    "TrialRow",
    "load_report",
    "parse_param",
    "report_for",
    "settings_of",
    "trial_rows",
]
