"""A search's trials as the report reads them (:class:`TrialRow`), what it needs to know of the search
(:class:`Settings`), the report itself (:class:`SearchReport`), and the one grouping of trials by a
parameter's value that the marginals, the equal-epoch comparisons and the answers share."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

FINISHED = ("completed", "stopped_early")
TOP_K = 5


@dataclass
class TrialRow:
    name: str  # t017
    run_name: str
    run_id: str
    state: str
    epochs: int
    value: float | None  # last reported metric (None when it never reported one)
    config: dict[str, Any]  # searched keys -> values (as trained)
    history: list[tuple[int, float]] = field(default_factory=list)  # (epoch, metric)
    metrics: dict[str, float] = field(default_factory=dict)  # every metric's value at its last epoch

    @property
    def index(self) -> int:
        digits = self.name.lstrip("t")
        return int(digits) if digits.isdigit() else 0


@dataclass
class Settings:
    """What the report needs to know of the search: its metric, its epochs and where its scheduler
    decided (``rungs``: :meth:`hpsearch.schedulers.SchedulerSpec.rungs`), and its space's parameters."""

    metric: str
    mode: str
    max_epochs: int
    rungs: list[int]  # the epochs trials are compared at (the last is max_epochs); [] when unknown
    kinds: dict[str, dict[str, Any]]  # searched key -> {"kind": choice|int|float, ...range or options}
    objectives: list[tuple[str, str]] = field(default_factory=list)  # (metric, mode) with several objectives
    constraints: list[str] = field(default_factory=list)  # "latency_ms <= 2", ...
    population_based: bool = False  # PBT: its trials have segment runs (hpsearch.review.pbt)


@dataclass
class SearchReport:
    experiment: str
    experiment_id: str
    search_run_id: str
    search_run_name: str
    status: str
    metric: str
    mode: str
    counts: dict[str, int]
    top: list[dict[str, Any]]
    history: list[dict[str, Any]]
    importance: dict[str, Any]
    marginals: dict[str, list[dict[str, Any]]]
    curves: dict[str, list[list[float]]]
    rungs: list[dict[str, Any]]
    by_rung: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # marginals at equal epochs
    questions: list[dict[str, Any]] = field(default_factory=list)  # the lecture's questions, answered
    objectives: list[tuple[str, str]] = field(default_factory=list)  # several objectives: (metric, mode)
    constraints: list[str] = field(default_factory=list)
    front: list[dict[str, Any]] = field(default_factory=list)  # the Pareto front (hpsearch.review.front)
    objective_points: list[dict[str, Any]] = field(default_factory=list)  # every completed trial's objectives
    max_epochs: int = 0
    pbt_schedule: list[dict[str, Any]] = field(default_factory=list)  # hpsearch.review.pbt
    pbt_lineage: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def config_columns(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials (with a ``config``) as CSV rows: the config's keys as ``config.<key>`` columns."""
    return [
        {k: v for k, v in t.items() if k != "config"} | {f"config.{k}": v for k, v in t["config"].items()}
        for t in items
    ]


def groups_of(key: str, kind: dict[str, Any] | None, values: list[Any]) -> tuple[list[str], Any]:
    """The labels of a parameter's groups, and a function value -> label."""
    if kind is None or kind["kind"] == "choice":
        options = list(kind["options"]) if kind else []
        seen = [v for v in dict.fromkeys(values) if v not in options]
        labels = [text(o) for o in options + seen]
        return labels, text
    lo, hi, log = kind["low"], kind["high"], kind["log"]
    if kind["kind"] == "int" and hi - lo < 12:
        return [str(v) for v in range(lo, hi + 1)], lambda v: str(v)
    n = 4
    scale = (lambda x: math.log(x)) if log and lo > 0 else (lambda x: x)
    a, b = scale(lo), scale(hi)
    edges = [a + (b - a) * i / n for i in range(n + 1)]
    real = [math.exp(e) if log and lo > 0 else e for e in edges]
    labels = [f"[{num(real[i])}, {num(real[i + 1])}{']' if i == n - 1 else ')'}" for i in range(n)]

    def label(v: Any) -> str:
        x = scale(max(min(float(v), hi), lo)) if not (log and lo > 0 and float(v) <= 0) else a
        i = min(int((x - a) / (b - a) * n) if b > a else 0, n - 1)
        return labels[i]

    return labels, label


def grouped(rows: list[TrialRow], settings: Settings) -> Iterator[tuple[str, dict[str, list[TrialRow]]]]:
    """Per searched parameter the trials that ended having it, grouped by value (numeric ranges in 4 bins):
    ``(key, {label: [rows]})``, every label of the parameter present (empty groups too), in order."""
    keys = list(settings.kinds) or sorted({k for r in rows for k in r.config})
    for key in keys:
        having = [r for r in rows if key in r.config and r.state != "running"]
        if not having:
            continue
        labels, label_of = groups_of(key, settings.kinds.get(key), [r.config[key] for r in having])
        groups: dict[str, list[TrialRow]] = {lab: [] for lab in labels}
        for r in having:
            groups.setdefault(label_of(r.config[key]), []).append(r)
        yield key, groups


def text(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return num(v)
    return str(v)


def num(x: float) -> str:
    return f"{x:.3g}"
