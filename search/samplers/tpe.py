"""Optuna's TPE (tree-structured Parzen estimator): the default sampler. It handles conditional branches
and categorical parameters, and with ``constant_liar`` it samples the trials in flight aware of each other.
It searches several objectives (MOTPE) and steers by constraints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from hpsearch.samplers import SamplerSpec, register

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler


@register
class TpeSpec(SamplerSpec):
    """TPE: ``seed`` makes the search reproducible; the first ``n_startup_trials`` are random.

    Args:
        n_startup_trials: random trials before TPE models what worked.
        multivariate: model the parameters jointly (with group sampling, which conditional spaces need).
        constant_liar: trials in flight count as bad guesses while they run, so parallel trials are
            sampled aware of each other instead of as near-duplicates.
    """

    type: Literal["tpe"] = "tpe"
    n_startup_trials: int = Field(10, ge=0)
    multivariate: bool = False
    constant_liar: bool = True

    steers_by_constraints = True

    def build(self) -> BaseSampler:
        import optuna

        return optuna.samplers.TPESampler(
            seed=self.seed,
            n_startup_trials=self.n_startup_trials,
            multivariate=self.multivariate,
            group=self.multivariate,  # conditional spaces need group sampling for multivariate TPE
            constant_liar=self.constant_liar,
        )
