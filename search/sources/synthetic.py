"""A seeded, learnable classification set of any sample shape (noisy copies of random class prototypes):
benchmarks and tests of shapes no shipped data set has."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from hpsearch.errors import Problem
from hpsearch.sources import SplitSource, register

if TYPE_CHECKING:
    import numpy as np


@register
class SyntheticSource(SplitSource):
    """Synthetic examples.

    Args:
        samples: how many examples.
        features: the size of a tabular example (when ``shape`` is not given).
        shape: a sample's shape, ``[features]`` or ``[channels, height, width]``.
        classes: how many classes.
    """

    dataset: Literal["synthetic"] = "synthetic"
    node_shared: ClassVar[bool] = True
    samples: int = Field(2000, ge=10)
    features: int = Field(64, ge=1)
    shape: list[int] | None = None
    classes: int = Field(10, ge=2)

    def problems(self) -> list[Problem]:
        if self.shape is not None and (len(self.shape) not in (1, 3) or min(self.shape) < 1):
            return [
                Problem("shape", f"must be [features] or [channels, height, width] of positive sizes, got {self.shape}")
            ]
        return []

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from hpsearch.trainables.data import synthetic

        return synthetic(self.samples, self.shape or [self.features], self.classes, self.seed)
