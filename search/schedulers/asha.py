"""ASHA (asynchronous successive halving, Ray Tune's ``ASHAScheduler``, one bracket): the default
scheduler. Every trial runs at least ``grace_period`` epochs and at most ``max_epochs``; at each rung
(``grace_period * reduction_factor**k`` epochs) only the top 1/``reduction_factor`` of the trials that
reached it go on."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from hpsearch.errors import Problem
from hpsearch.schedulers import SchedulerSpec, register

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler


def asha_milestones(max_t: int, grace_period: int, reduction_factor: float, brackets: int = 1) -> list[float]:
    """The epochs where Ray's ``ASHAScheduler`` (one bracket) or ``AsyncHyperBandScheduler`` (``brackets``)
    decides, ascending: bracket ``s`` has the rungs ``grace * rf**(k + s)`` for as many as Ray makes (its
    formula, ``int(log(max_t / grace) / log(rf) - s + 1)``); all brackets' together."""
    out: set[float] = set()
    for s in range(brackets):
        n = int(math.log(max_t / grace_period) / math.log(reduction_factor) - s + 1)
        out.update(grace_period * reduction_factor ** (k + s) for k in range(max(n, 0)))
    return sorted(out)


def grace_problems(grace_period: int, max_epochs: int) -> list[Problem]:
    """A grace period longer than the trials: the one problem every early-stopping scheduler checks."""
    if grace_period > max_epochs:
        return [Problem("grace_period", f"must be <= max_epochs ({max_epochs}), got {grace_period}")]
    return []


@register
class AshaSpec(SchedulerSpec):
    """ASHA's settings.

    Args:
        grace_period: the fewest epochs a trial trains (its first rung).
        reduction_factor: at each rung, the top 1/reduction_factor go on.
    """

    type: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3.0, gt=1)

    def problems(self) -> list[Problem]:
        return grace_problems(self.grace_period, self.max_epochs)

    def build(self) -> TrialScheduler:
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            time_attr="epoch",  # not training_iteration: one Tune result may carry several epochs
            max_t=self.max_epochs,
            grace_period=self.grace_period,
            reduction_factor=self.reduction_factor,
        )

    def milestones(self) -> list[float]:
        return asha_milestones(self.max_epochs, self.grace_period, self.reduction_factor)
