"""Ray's ``AsyncHyperBandScheduler`` with its bracket draws seeded (imported only when it runs).

Ray puts each new trial in a bracket drawn with NumPy's global random state, which nothing seeds: two
searches with the same ``search.sampler.seed`` spread their trials differently, and so stop different
ones (the replay benchmark's Hyperband rows changed from run to run). This one keeps its own NumPy state,
seeded by the sampler's seed and saved with the search, and lends it to Ray's draw; the global state is
left as it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler


class SeededHyperBand(AsyncHyperBandScheduler):
    def __init__(self, *args: Any, seed: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._draws = np.random.RandomState(seed).get_state()

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        outside = np.random.get_state()
        np.random.set_state(self._draws)
        try:
            super().on_trial_add(tune_controller, trial)
        finally:
            self._draws = np.random.get_state()
            np.random.set_state(outside)
