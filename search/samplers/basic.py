"""Optuna's other samplers: random, CMA-ES, Gaussian process, quasi-Monte-Carlo and NSGA-II. What each
models is in its docstring and in the README's table; where a space does not suit one, the spec is refused
(:meth:`~hpsearch.samplers.SamplerSpec.fit_problems`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from hpsearch.samplers import NumericSamplerSpec, SamplerSpec, register

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler


@register
class RandomSpec(SamplerSpec):
    """Uniform random search (Optuna's ``RandomSampler``): every kind of parameter, branches, any number of
    objectives; it learns nothing, the baseline every method must beat."""

    type: Literal["random"] = "random"

    def build(self) -> BaseSampler:
        import optuna

        return optuna.samplers.RandomSampler(seed=self.seed)


@register
class CmaEsSpec(NumericSamplerSpec):
    """CMA-ES (Optuna's ``CmaEsSampler``): an evolution strategy over the numeric ranges (one objective).

    Args:
        n_startup_trials: random trials before it starts.
        popsize: candidates per generation (default: CMA-ES's own, 4 + 3 ln(dimensions)).
        restart_strategy: ``ipop``/``bipop`` restart with a larger population when it converges.
    """

    type: Literal["cmaes"] = "cmaes"
    multi_objective = False
    n_startup_trials: int = Field(1, ge=0)
    popsize: int | None = Field(None, ge=2)
    restart_strategy: Literal["ipop", "bipop"] | None = None

    def build(self) -> BaseSampler:
        import optuna

        return optuna.samplers.CmaEsSampler(
            seed=self.seed,
            n_startup_trials=self.n_startup_trials,
            popsize=self.popsize,
            restart_strategy=self.restart_strategy,
            independent_sampler=optuna.samplers.RandomSampler(seed=self.seed),
            warn_independent_sampling=False,  # fallback: random said so at validation
        )


@register
class GpSpec(NumericSamplerSpec):
    """Gaussian-process Bayesian optimisation (Optuna's ``GPSampler``): numeric ranges and choices, one or
    several objectives, constraints. Each proposal fits a GP: slower per trial than TPE, often better in
    few trials.

    Args:
        n_startup_trials: random trials before the GP is fitted.
    """

    type: Literal["gp"] = "gp"
    models_choices = True
    steers_by_constraints = True
    n_startup_trials: int = Field(10, ge=1)

    def build(self) -> BaseSampler:
        import optuna

        return optuna.samplers.GPSampler(
            seed=self.seed,
            n_startup_trials=self.n_startup_trials,
            independent_sampler=optuna.samplers.RandomSampler(seed=self.seed),
            warn_independent_sampling=False,
        )


@register
class QmcSpec(NumericSamplerSpec):
    """Quasi-Monte-Carlo (Optuna's ``QMCSampler``): a low-discrepancy sequence over the numeric ranges, which
    covers them more evenly than random draws; it learns nothing.

    Args:
        qmc_type: ``sobol`` or ``halton``.
    """

    type: Literal["qmc"] = "qmc"
    qmc_type: Literal["sobol", "halton"] = "sobol"

    def build(self) -> BaseSampler:
        import optuna

        return optuna.samplers.QMCSampler(
            qmc_type=self.qmc_type,
            scramble=True,  # seeded; unscrambled Sobol starts at the ranges' corner every time
            seed=self.seed,
            independent_sampler=optuna.samplers.RandomSampler(seed=self.seed),
            warn_asynchronous_seeding=False,
            warn_independent_sampling=False,
        )


@register
class Nsga2Spec(NumericSamplerSpec):
    """NSGA-II (Optuna's ``NSGAIISampler``): a genetic algorithm for several objectives (one works too);
    every kind of parameter, constraints. It breeds generations of ``population_size`` trials: give
    ``num_trials`` several times that.

    Args:
        population_size: trials per generation.
    """

    type: Literal["nsga2"] = "nsga2"
    models_choices = True
    steers_by_constraints = True
    population_size: int = Field(20, ge=2)

    def build(self) -> BaseSampler:
        import optuna

        return optuna.samplers.NSGAIISampler(
            seed=self.seed, population_size=self.population_size
        )  # NSGA-II's independent sampler is random already
