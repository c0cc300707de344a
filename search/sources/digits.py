"""scikit-learn's digits: 1797 8x8 grey images of handwritten digits (shipped with scikit-learn, no
download): quick searches and tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from hpsearch.sources import SplitSource, register

if TYPE_CHECKING:
    import numpy as np


@register
class DigitsSource(SplitSource):
    """Digits as (N, 1, 8, 8) images in [0, 1]."""

    dataset: Literal["digits"] = "digits"

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from hpsearch.trainables.data import digits

        return digits()
