"""Grid search (Optuna's ``GridSampler``): every combination of the space's values, in a seeded order.
A range is on the grid only with a ``step`` (an int range's step is 1); conditional branches are not (one
product over every parameter would repeat each config once per value of the branches it does not take)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from hpsearch import spaces
from hpsearch.errors import Problem
from hpsearch.samplers import SamplerSpec, StudyPlan, register

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

MAX_POINTS = 1_000_000


def grid_values(param: Any) -> list[Any] | None:
    """A parameter's values on the grid; None for a range without a step."""
    if isinstance(param, spaces.Choice):
        return list(param.options)
    if isinstance(param, spaces.Int):
        if param.log:
            return None
        return list(range(param.low, param.high + 1, param.step))
    if isinstance(param, spaces.Float) and param.step is not None and not param.log:
        n = int(math.floor((param.high - param.low) / param.step + 1e-9)) + 1
        return [round(param.low + i * param.step, 12) for i in range(n)]
    return None


@register
class GridSpec(SamplerSpec):
    """Every combination, once (``num_trials`` at most the grid's size; fewer run a seeded part of it)."""

    type: Literal["grid"] = "grid"

    def grid(self, space: spaces.Space) -> dict[str, list[Any]]:
        return {name: grid_values(p) or [] for name, p, _ in spaces.optuna_params(space)}

    def fit_problems(self, plan: StudyPlan) -> list[Problem]:
        problems = super().fit_problems(plan)
        params = spaces.optuna_params(plan.space)
        for name, param, _ in params:
            if isinstance(param, spaces.Conditional):
                problems.append(
                    Problem(
                        "sampler.type",
                        f"grid cannot search the conditional parameter {name!r} (branches with their own "
                        "parameters): give each branch its own spec, or use tpe or random",
                    )
                )
            elif grid_values(param) is None:
                kind = "a log range" if param.log else "a continuous range without a step"
                problems.append(
                    Problem(
                        "sampler.type",
                        f"grid needs finite values, and {name!r} is {kind} ({param.low:g} to {param.high:g}): "
                        "give it a step (float: [0.0, 0.5], step: 0.1), or a choice of values",
                    )
                )
        if not problems:
            size = math.prod(len(v) for v in self.grid(plan.space).values())
            if size > MAX_POINTS:
                problems.append(Problem("sampler.type", f"the grid has {size} points (at most {MAX_POINTS})"))
            elif plan.num_trials > size:
                problems.append(
                    Problem("num_trials", f"the grid has {size} points: give at most {size}, got {plan.num_trials}")
                )
        return problems

    def build_for(self, plan: StudyPlan) -> BaseSampler:
        from hpsearch.samplers._optuna_grid import TunedGridSampler

        return TunedGridSampler(self.grid(plan.space), seed=self.seed)
