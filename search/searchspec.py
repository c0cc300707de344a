"""The job spec's ``search`` section: what the search optimises (one metric, or several objectives and
constraints: :mod:`hpsearch.objectives`), how many trials, the sampler and the scheduler."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from hpsearch import samplers, schedulers
from hpsearch.errors import Problem
from hpsearch.objectives import Constraint, Objective
from hpsearch.protocol import COST_METRICS
from hpsearch.registry import Strict
from hpsearch.samplers import SamplerSpec
from hpsearch.schedulers import SchedulerSpec
from hpsearch.spec_checks import accepts_resume
from hpsearch.trainables import BUILTIN

BUILTIN_METRICS = {
    "classification": {"val_accuracy": "max", "val_loss": "min", "train_loss": "min"},
    "regression": {"val_loss": "min", "val_mae": "min", "val_r2": "max", "train_loss": "min"},
}
"""What the built-in trainables report per task, and which way each is better (and :data:`COSTS`)."""
COSTS = dict.fromkeys(COST_METRICS, "min")
"""What the built-in trainables report of the model's cost: all better small."""


class SearchSpec(Strict):
    """How the search runs: what it optimises, how many trials, which sampler proposes them and which
    scheduler stops the weak ones (each a registered model: :mod:`hpsearch.samplers`, :mod:`hpsearch.schedulers`)."""

    metric: str = "val_accuracy"
    mode: Literal["max", "min"] = "max"
    # Several objectives (the first one is also ``metric``/``mode``: what early stopping ranks by) and
    # bounds on reported metrics (``latency_ms <= 2``): hpsearch.objectives
    objectives: list[Objective] | None = Field(None, min_length=1, max_length=8)
    constraints: list[str] = Field(default_factory=list, max_length=16)
    num_trials: int = Field(ge=1)
    max_concurrent: int = Field(2, ge=1)
    sampler: SerializeAsAny[SamplerSpec] = Field(default_factory=samplers.default)
    scheduler: SerializeAsAny[SchedulerSpec]
    time_budget_s: float | None = Field(None, gt=0)  # stop starting/continuing trials after this long
    max_failures: int = Field(0, ge=0)  # retries of a failed trial (from its last checkpoint)
    # restarts of a trial whose node was lost (not counted in max_failures: not the config's fault)
    max_node_restarts: int = Field(3, ge=0)
    checkpoint_every: int = Field(1, ge=0)  # epochs between trial checkpoints; 0 = none (no resume mid-trial)
    # ... and at least this many seconds between two checkpoints of a trial (its last epoch always is one):
    # short epochs do not pay a checkpoint each; a crash loses at most this much of a trial's training
    checkpoint_min_interval_s: float = Field(10.0, ge=0)
    # Epochs shorter than this reach Tune (and MLflow) together, at most this many seconds apart, and
    # always at ASHA's rung epochs and a trial's last: each Tune result is a round trip the trial waits
    # for. 0 = every epoch on its own.
    report_interval_s: float = Field(1.0, ge=0)
    # Seed the study with the finished trials of this MLflow experiment (an earlier search of the same or
    # a compatible space, in the same tracking store); hpsearch run --warm-start sets it.
    warm_start: str | None = Field(None, min_length=1, max_length=500)
    # Configs (dotted keys, partial ones allowed: TPE fills in the rest) run first, in order. Default: the
    # preset's own first configs, if the space is a preset that has some; [] for none.
    enqueue: list[dict[str, Any]] | None = None

    @field_validator("sampler", mode="before")
    @classmethod
    def _sampler(cls, value: Any) -> Any:
        return samplers.REGISTRY.validate(value, default=samplers.DEFAULT)

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler(cls, value: Any) -> Any:
        return schedulers.REGISTRY.validate(value, default=schedulers.DEFAULT)

    @model_validator(mode="before")
    @classmethod
    def _first_objective(cls, data: Any) -> Any:
        """The first objective is ``metric``/``mode`` (what schedulers rank by); a conflicting ``metric`` is
        reported by :func:`objective_problems`."""
        if isinstance(data, dict) and isinstance(data.get("objectives"), list) and data["objectives"]:
            first = data["objectives"][0]
            if isinstance(first, dict) and data.get("metric", first.get("metric")) == first.get("metric"):
                data = {**data, "metric": first.get("metric"), "mode": first.get("mode")}
        return data

    @property
    def objective_metrics(self) -> list[str]:
        """The metrics the search optimises, first one first (just ``metric`` without objectives)."""
        return [o.metric for o in self.objectives] if self.objectives else [self.metric]

    @property
    def directions(self) -> list[str]:
        return [o.mode for o in self.objectives] if self.objectives else [self.mode]

    @property
    def multi_objective(self) -> bool:
        return len(self.objective_metrics) > 1

    @property
    def parsed_constraints(self) -> list[Constraint]:
        return [Constraint.parse(c) for c in self.constraints]


def objective_problems(search: dict[str, Any]) -> list[Problem]:
    """The raw ``search`` section's objectives and constraints against each other (any trainable)."""
    problems = []
    objectives = search.get("objectives")
    if isinstance(objectives, list) and objectives and all(isinstance(o, dict) for o in objectives):
        first, metrics = objectives[0].get("metric"), [o.get("metric") for o in objectives]
        if "metric" in search and search["metric"] != first:
            problems.append(
                Problem(
                    "search.metric",
                    f"the first objective is the metric ({first}): give one or the other, got {search['metric']!r}",
                )
            )
        if len(set(map(str, metrics))) < len(metrics):
            problems.append(Problem("search.objectives", f"each metric may be one objective once, got {metrics}"))
    constraints = search.get("constraints")
    for i, text in enumerate(constraints if isinstance(constraints, list) else []):
        try:
            Constraint.parse(text)
        except ValueError as exc:
            problems.append(Problem(f"search.constraints[{i}]", str(exc)))
    return problems


def metric_problems(search: dict[str, Any], trainable: str, task: str) -> list[Problem]:
    """Objectives and constraints of a built-in trainable against what it reports for ``task``."""
    reported = {**BUILTIN_METRICS[task], **COSTS}
    told = f"the {trainable} trainable reports {', '.join(reported)} for task: {task}"
    problems = []
    objectives = search.get("objectives")
    wanted: list[tuple[str, Any, Any]] = []
    if isinstance(objectives, list) and objectives:
        wanted = [
            (f"search.objectives[{i}]", o.get("metric"), o.get("mode"))
            for i, o in enumerate(objectives)
            if isinstance(o, dict)
        ]
    else:
        wanted = [("search", search.get("metric", "val_accuracy"), search.get("mode", "max"))]
    for where, metric, mode in wanted:
        if not isinstance(metric, str):
            continue
        if metric not in reported:
            problems.append(Problem(f"{where}.metric", f"{told}, got {metric!r}"))
        elif mode in ("max", "min") and mode != reported[metric]:
            problems.append(Problem(f"{where}.mode", f"{metric} should be {reported[metric]}imised, got {mode!r}"))
    for i, text in enumerate(search.get("constraints") or [] if isinstance(search.get("constraints"), list) else []):
        try:
            metric = Constraint.parse(text).metric
        except ValueError:
            continue  # the model says so
        if metric not in reported:
            problems.append(Problem(f"search.constraints[{i}]", f"{told}, got {metric!r} (in {text!r})"))
    return problems


def study_plan(search: SearchSpec, space: Any) -> samplers.StudyPlan:
    """What the search's sampler is built for (:class:`hpsearch.samplers.StudyPlan`)."""
    return samplers.StudyPlan(
        space=space,
        directions=tuple(search.directions),
        constraints=tuple(str(c) for c in search.parsed_constraints),
        num_trials=search.num_trials,
    )


def fit_problems(search: SearchSpec, space: Any, trainable: str) -> list[Problem]:
    """Where the space and the objectives do not suit the sampler, or the objectives, the space or the
    trainable the scheduler."""
    try:
        plan = study_plan(search, space)
    except ValueError:  # a constraint that does not parse: objective_problems says so
        return []
    problems = [Problem(f"search.{p.path}", p.message) for p in search.sampler.fit_problems(plan)]
    scheduler = search.scheduler
    builtin = trainable in BUILTIN
    problems += [Problem(f"search.scheduler.{p.path}", p.message) for p in scheduler.fit_problems(space, builtin)]
    if scheduler.population_based:
        why = f"{scheduler.type} evolves its population itself (its first one is drawn at random)"
        if "sampler" in search.model_fields_set and search.sampler.type != "random":
            problems.append(
                Problem("search.sampler.type", f"{why}: give random or no sampler, got {search.sampler.type!r}")
            )
        if search.warm_start is not None:
            problems.append(Problem("search.warm_start", f"{why}: there is no Optuna study to seed"))
        if not builtin and not accepts_resume(trainable):
            problems.append(
                Problem(
                    "search.scheduler.type",
                    f"{scheduler.type} continues trials from other trials' checkpoints: {trainable} must take "
                    "`resume` and report checkpoints (report(metrics, state))",
                )
            )
    if search.multi_objective and not search.scheduler.first_objective:
        problems.append(
            Problem(
                "search.scheduler.type",
                f"{search.scheduler.type} needs one metric, and search.objectives has "
                f"{len(search.objective_metrics)}; schedulers that stop by the first objective: "
                + ", ".join(n for n in schedulers.REGISTRY.names() if schedulers.REGISTRY.get(n).first_objective),
            )
        )
    return problems
