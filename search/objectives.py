"""Several objectives and constraints (``search.objectives``, ``search.constraints``): what they mean to
the search, and the Pareto front of a finished one.

- A search with objectives tells Optuna one value per objective (a multi-objective study: TPE and
  NSGA-II among others search the trade-off); Ray Tune's schedulers take one metric, so early stopping
  ranks trials by the **first** objective.
- A constraint (``latency_ms <= 2``) is a bound on a reported metric. Samplers that can (TPE, GP,
  NSGA-II) steer away from configs that break one (Optuna's ``Trial.set_constraint``: the value minus
  the bound, <= 0 when it holds); every sampler's search keeps such trials off the front.
- The front: the finished trials no other one beats in every objective (feasible ones only), by each
  trial's metrics at its last epoch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hpsearch.registry import Strict

INFEASIBLE = 1e12
"""A constraint's value for a trial that never reported its metric (diverged, failed): broken."""
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w./-]*)\s*(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class Objective(Strict):
    """One objective: a reported metric and which way is better."""

    metric: str
    mode: Literal["max", "min"]


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` or ``metric >= bound``."""

    metric: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Raises: ValueError naming the form it takes."""
        m = _CONSTRAINT.match(text) if isinstance(text, str) else None
        if m is None:
            raise ValueError(
                f"a constraint is `METRIC <= NUMBER` or `METRIC >= NUMBER` (latency_ms <= 2), got {text!r}"
            )
        return cls(m.group(1), m.group(2), float(m.group(3)))

    def value(self, metrics: Mapping[str, Any]) -> float:
        """Optuna's constraint value: <= 0 when it holds; :data:`INFEASIBLE` when the metric is missing."""
        v = metrics.get(self.metric)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            return INFEASIBLE
        return float(v) - self.bound if self.op == "<=" else self.bound - float(v)

    def holds(self, metrics: Mapping[str, Any]) -> bool:
        return self.value(metrics) <= 0

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one."""
    better = False
    for x, y, mode in zip(a, b, modes, strict=True):
        if (x < y) if mode == "max" else (x > y):
            return False
        better = better or x != y
    return better


def pareto_front(points: Mapping[str, Sequence[float]], modes: Sequence[str]) -> list[str]:
    """The keys of the points no other point dominates (ties: both stay), in the given order."""
    items = list(points.items())
    return [k for k, p in items if not any(dominates(q, p, modes) for j, q in items if j != k)]


def hypervolume(points: Sequence[Sequence[float]], modes: Sequence[str], reference: Sequence[float]) -> float:
    """The volume the points dominate up to ``reference`` (a worst point): the higher, the better the front.
    Exact (Optuna's WFG); points no better than the reference in every objective add nothing."""
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    sign = np.array([-1.0 if m == "max" else 1.0 for m in modes])  # minimise everything
    ref = np.asarray(reference, dtype=float) * sign
    losses = np.asarray([p for p in points], dtype=float).reshape(-1, len(modes)) * sign
    losses = losses[np.all(losses < ref, axis=1)]
    if len(losses) == 0:
        return 0.0
    return float(compute_hypervolume(losses, ref))
