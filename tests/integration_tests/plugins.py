"""A user's own sampler, scheduler and data source, registered from outside the package (a job spec names
this module under ``plugins``)."""

from typing import Literal

import numpy as np
from pydantic import Field

from hpsearch import samplers, schedulers, sources
from hpsearch.errors import Problem


@samplers.register
class PlainRandom(samplers.SamplerSpec):
    """Optuna's random sampler."""

    type: Literal["plain_random"] = "plain_random"

    def build(self):
        import optuna

        return optuna.samplers.RandomSampler(seed=self.seed)


@schedulers.register
class StopAtHalf(schedulers.SchedulerSpec):
    """Median stopping at one epoch: a trial below the median of the trials that reached ``at`` stops there."""

    type: Literal["stop_at_half"] = "stop_at_half"
    at: int = Field(2, ge=1)

    def problems(self):
        return (
            [Problem("at", f"must be < max_epochs ({self.max_epochs}), got {self.at}")]
            if self.at >= self.max_epochs
            else []
        )

    def build(self):
        from ray.tune.schedulers import MedianStoppingRule

        return MedianStoppingRule(time_attr="epoch", grace_period=self.at, min_samples_required=2, min_time_slice=0)

    def milestones(self):
        return [float(self.at)]


@sources.register
class Blobs(sources.SplitSource):
    """Gaussian blobs: ``classes`` clusters in ``features`` dimensions."""

    dataset: Literal["blobs"] = "blobs"
    samples: int = Field(600, ge=10)
    features: int = Field(8, ge=1)
    classes: int = Field(3, ge=2)

    def arrays(self):
        rng = np.random.default_rng(self.seed)
        centers = rng.normal(scale=3.0, size=(self.classes, self.features))
        y = rng.integers(0, self.classes, size=self.samples)
        x = centers[y] + rng.normal(size=(self.samples, self.features))
        return x.astype(np.float32), y.astype(np.int64)
