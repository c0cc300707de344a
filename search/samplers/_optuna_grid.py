"""Optuna's ``GridSampler`` as a search run by Ray Tune can use it (imported only when a grid is built)."""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState


class TunedGridSampler(optuna.samplers.GridSampler):
    """A grid sampler that does not stop the study when the grid is done: Optuna's calls ``study.stop()``,
    which raises outside ``study.optimize`` (Tune tells trials with ``study.tell``); ``num_trials`` is at
    most the grid's size (validated), so the search ends with the grid."""

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        return None
