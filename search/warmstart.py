"""Warm start: seed a search's Optuna study with an earlier search's finished trials, read back from MLflow.

A trial of the earlier search is used when it finished (completed, stopped early, or diverged) and its
config, as sampled (the ``hpsearch.config`` tag), lies in today's space: every parameter it has is one of
today's and in today's ranges, options and branches (parameters new in today's space may be missing:
TPE samples them). It reaches Optuna as the search itself would have told it
(:func:`hpsearch.searcher.verdict`): trained to today's ``max_epochs`` -> COMPLETE with its last value;
fewer epochs -> PRUNED with its last value at its last epoch; diverged -> PRUNED without values.
Failed and unfinished trials say nothing about their config and are not used.

The best three earlier configs are also run first again (with the new search's seed): ASHA then has
strong trials at its rungs from the start and stops weak ones sooner, and the search starts from its
best known point. They replace a preset's own first configs (``search.enqueue`` still runs, after them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpsearch import spaces
from hpsearch.errors import UsageError
from hpsearch.tracking import reader
from hpsearch.tracking.tags import CONFIG, EPOCHS, PARENT, STATE

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from hpsearch.spec import JobSpec

RERUN = 3  # the best earlier configs a warm-started search runs first again (with its own seed)


@dataclass
class WarmStart:
    """What a warm start took from an earlier experiment, as the parent run records it."""

    experiment: str
    used: dict[str, int] = field(default_factory=dict)  # Optuna state -> trials (COMPLETE, PRUNED)
    outside_space: int = 0  # finished trials whose config today's space cannot produce
    not_finished: int = 0  # failed or still running: nothing learnt about the config
    no_metric: int = 0  # finished without the search's metric
    searches: list[str] = field(default_factory=list)  # the parent runs the used trials came from
    outside_examples: list[str] = field(default_factory=list)  # why, for the first few
    rerun: list[dict[str, Any]] = field(default_factory=list)  # the best earlier configs: run first again

    @property
    def trials(self) -> int:
        return sum(self.used.values())

    def line(self) -> str:
        """One line for the summary."""
        parts = [f"{self.trials} trials of experiment {self.experiment!r} ({len(self.searches)} searches)"]
        skipped = {
            "outside today's space": self.outside_space,
            "failed or unfinished": self.not_finished,
            "without the metric": self.no_metric,
        }
        skipped = {k: v for k, v in skipped.items() if v}
        if skipped:
            parts.append("skipped " + ", ".join(f"{v} {k}" for k, v in skipped.items()))
        return "; ".join(parts)

    def to_data(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "trials": self.trials,
            "used": self.used,
            "skipped": {
                "outside_space": self.outside_space,
                "not_finished": self.not_finished,
                "no_metric": self.no_metric,
            },
            "outside_examples": self.outside_examples,
            "searches": self.searches,
            "rerun": self.rerun,
        }


def find_experiment(uri: str, experiment: str) -> str:
    """The id of ``experiment`` in the store; a usage error (exit 2) naming it if it is not there."""
    from mlflow.tracking import MlflowClient

    from hpsearch.tracking.store import sqlite_path

    path = sqlite_path(uri)
    if path is not None and not path.is_file():  # MLflow would create an empty store to look in
        raise UsageError([("search.warm_start", f"no experiment {experiment!r}: there is no MLflow store at {path}")])
    found = MlflowClient(uri).get_experiment_by_name(experiment)
    if found is None:
        raise UsageError(
            [("search.warm_start", f"no experiment {experiment!r} in the tracking store to warm-start from")]
        )
    return str(found.experiment_id)


def read(uri: str, experiment: str, spec: JobSpec) -> tuple[list[FrozenTrial], WarmStart]:
    """The earlier trials of ``experiment`` as Optuna trials for ``spec``'s study, and what was taken."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment_id = find_experiment(uri, experiment)
    taken = WarmStart(experiment)
    trials: list[FrozenTrial] = []
    searches: set[str] = set()
    for run in reader.experiment_trials(client, experiment_id):
        trial = _trial(run, spec, taken)
        if trial is not None:
            trials.append(trial)
            searches.add(run.data.tags.get(PARENT, ""))
    taken.searches = sorted(s for s in searches if s)
    taken.rerun = best_configs(trials, spec.search.mode, RERUN)
    return trials, taken


def best_configs(trials: list[FrozenTrial], mode: str, k: int) -> list[dict[str, Any]]:
    """The configs (as sampled) of the ``k`` best earlier trials, ranked as TPE ranks them: completed
    trials by value, then the others by how far they got and their value there."""
    sign = 1.0 if mode == "max" else -1.0

    def rank(t: FrozenTrial) -> tuple[int, int, float]:
        if t.value is not None:
            return (0, 0, -sign * t.value)
        if t.intermediate_values:
            step = max(t.intermediate_values)
            return (1, -step, -sign * t.intermediate_values[step])
        return (2, 0, 0.0)

    ranked = sorted((t for t in trials if t.value is not None or t.intermediate_values), key=rank)
    return [dict(t.user_attrs["config"]) for t in ranked[:k]]


def _trial(run: Any, spec: JobSpec, taken: WarmStart) -> FrozenTrial | None:
    import optuna
    from optuna.trial import TrialState

    tags = run.data.tags
    state = tags.get(STATE)
    if state not in ("completed", "stopped_early", "diverged"):
        taken.not_finished += 1
        return None
    try:
        config = json.loads(tags.get(CONFIG, ""))
        params, distributions = spaces.to_optuna(spec.search_space, config)
    except (ValueError, TypeError) as exc:  # OutsideSpace is a ValueError; so is a tag that is not JSON
        taken.outside_space += 1
        if len(taken.outside_examples) < 5:
            taken.outside_examples.append(f"{tags.get('hpsearch.trial', run.info.run_id)}: {exc}")
        return None
    if state == "diverged":
        told, value, intermediate = TrialState.PRUNED, None, None
    else:
        value = run.data.metrics.get(spec.search.metric)
        epochs = int(tags.get(EPOCHS) or 0)
        if value is None or not math.isfinite(value) or epochs < 1:
            taken.no_metric += 1
            return None
        if epochs >= spec.epochs:
            told, intermediate = TrialState.COMPLETE, {epochs: value}
        else:
            told, value, intermediate = TrialState.PRUNED, None, {epochs: value}
    taken.used[told.name] = taken.used.get(told.name, 0) + 1
    return optuna.trial.create_trial(
        state=told,
        value=value,
        params=params,
        distributions=distributions,
        intermediate_values=intermediate,
        user_attrs={"warm_start_run_id": run.info.run_id, "config": config},
    )


__all__ = ["WarmStart", "find_experiment", "read"]
