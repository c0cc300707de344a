"""Ray Tune's other schedulers: asynchronous Hyperband (several ASHA brackets), median stopping and FIFO
(no early stopping). Each decides on the results' ``epoch``; a trial one stops is told to Optuna as PRUNED
with its values by epoch, as with ASHA (:func:`hpsearch.searcher.verdict`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from hpsearch.errors import Problem
from hpsearch.schedulers import SchedulerSpec, register
from hpsearch.schedulers.asha import AshaSpec, asha_milestones, grace_problems

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler


@register
class HyperbandSpec(AshaSpec):
    """Asynchronous Hyperband (Ray Tune's ``AsyncHyperBandScheduler``; Optuna's ``HyperbandPruner`` works
    the same way): trials are spread over ``brackets`` ASHA brackets, bracket ``s`` first deciding at
    ``grace_period * reduction_factor**s`` epochs, which hedges against a grace period too short to judge
    trials by.

    Args:
        grace_period: the fewest epochs a trial trains in the most aggressive bracket.
        reduction_factor: at each rung, the top 1/reduction_factor go on.
        brackets: how many brackets (1 is ASHA).
    """

    type: Literal["hyperband"] = "hyperband"  # type: ignore[assignment]
    brackets: int = Field(3, ge=1, le=10)

    def problems(self) -> list[Problem]:
        if self.grace_period > self.max_epochs:
            return super().problems()
        most = int(math.log(self.max_epochs / self.grace_period) / math.log(self.reduction_factor) + 1)
        if self.brackets > most:
            return [
                Problem(
                    "brackets",
                    f"max_epochs {self.max_epochs} with grace_period {self.grace_period} and reduction_factor "
                    f"{self.reduction_factor:g} has room for at most {most}, got {self.brackets}",
                )
            ]
        return []

    def build(self) -> TrialScheduler:
        return self.build_for(None, True, 0)

    def build_for(self, space: Any, builtin: bool, seed: int) -> TrialScheduler:
        """Ray's scheduler, its draw of each trial's bracket seeded by the sampler's ``seed``."""
        from hpsearch.schedulers.seeded_hyperband import SeededHyperBand

        return SeededHyperBand(
            time_attr="epoch",
            max_t=self.max_epochs,
            grace_period=self.grace_period,
            reduction_factor=self.reduction_factor,
            brackets=self.brackets,
            seed=seed,
        )

    def milestones(self) -> list[float]:
        return asha_milestones(self.max_epochs, self.grace_period, self.reduction_factor, self.brackets)


@register
class MedianSpec(SchedulerSpec):
    """Median stopping (Ray Tune's ``MedianStoppingRule``, Google Vizier's rule): from ``grace_period`` on,
    after every epoch a trial whose best value so far is worse than the median of the other trials'
    running averages up to that epoch stops. It decides at every epoch, so every epoch is its own result.

    Args:
        grace_period: epochs before a trial may be stopped.
        min_samples_required: trials that must have reached an epoch before the rule applies there.
    """

    type: Literal["median"] = "median"
    grace_period: int = Field(1, ge=1)
    min_samples_required: int = Field(3, ge=1)

    def problems(self) -> list[Problem]:
        return grace_problems(self.grace_period, self.max_epochs)

    def build(self) -> TrialScheduler:
        from ray.tune.schedulers import MedianStoppingRule

        return MedianStoppingRule(
            time_attr="epoch",
            grace_period=self.grace_period,
            min_samples_required=self.min_samples_required,
            min_time_slice=0,
            hard_stop=True,
        )

    def milestones(self) -> list[float]:
        return [float(e) for e in range(1, self.max_epochs + 1)]  # its running averages need every epoch

    def rungs(self) -> list[int]:
        return sorted({self.grace_period, self.max_epochs})


@register
class FifoSpec(SchedulerSpec):
    """No early stopping (Ray Tune's ``FIFOScheduler``): every trial trains ``max_epochs``."""

    type: Literal["fifo"] = "fifo"

    def build(self) -> TrialScheduler:
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()  # type: ignore[no-untyped-call]
