"""Samplers: what proposes each trial's config (``search.sampler``). One module per sampler, each a spec
model registered here (:class:`hpsearch.registry.Registry`); ``tpe`` is the default.

A sampler is a :class:`SamplerSpec` subclass: its fields are the spec's ``search.sampler`` keys and
:meth:`SamplerSpec.build` returns the Optuna sampler (:meth:`SamplerSpec.build_for` when it needs the
space, the objectives or the constraints). :meth:`SamplerSpec.fit_problems` says where a space or the
objectives do not suit it (exit 2 at validation). Add one with :func:`register` (in a module the job
spec names under ``plugins``, so that ``hpsearch run`` imports it before it reads the spec).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from hpsearch import spaces
from hpsearch.errors import Problem
from hpsearch.registry import Registry, Strict

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler


@dataclass(frozen=True)
class StudyPlan:
    """What a sampler is built for: the space, one direction per objective (``max``/``min``), the
    constraints (``search.constraints``: the search sets each trial's values with Optuna's
    ``Trial.set_constraint``, which the samplers that steer by constraints read) and the trials."""

    space: spaces.Space
    directions: Sequence[str] = ("max",)
    constraints: Sequence[str] = ()
    num_trials: int = 1


class SamplerSpec(Strict):
    """The settings every sampler has.

    Args:
        type: the sampler's registered name.
        seed: makes the search reproducible: the sampler's seed, and each trial's.
    """

    type: str
    seed: int = 0

    multi_objective: ClassVar[bool] = True
    """It can search several objectives (``search.objectives``)."""
    steers_by_constraints: ClassVar[bool] = False
    """It proposes configs that meet ``search.constraints`` (else they only decide the report's front)."""

    def build(self) -> BaseSampler:
        """The Optuna sampler these settings describe (a new one: the search owns it)."""
        raise NotImplementedError(f"{type(self).__qualname__} does not build a sampler")

    def build_for(self, plan: StudyPlan) -> BaseSampler:
        """The sampler for this search (default: :meth:`build`, for samplers that need nothing of it)."""
        return self.build()

    def fit_problems(self, plan: StudyPlan) -> list[Problem]:
        """Where the space or the objectives do not suit this sampler (paths relative to ``search``)."""
        if len(plan.directions) > 1 and not self.multi_objective:
            return [
                Problem(
                    "sampler.type",
                    f"{self.type} searches one objective; search.objectives has {len(plan.directions)}: "
                    f"use {', '.join(n for n in REGISTRY.names() if REGISTRY.get(n).multi_objective)}",
                )
            ]
        return []


class NumericSamplerSpec(SamplerSpec):
    """A sampler that models only the parameters every trial has (CMA-ES, QMC: only the numeric ones; GP,
    NSGA-II: choices too): Optuna samples the others (parameters inside conditional branches, and choices
    for the numeric ones) independently at random.

    Args:
        fallback: ``none`` (default) refuses a space with such parameters; ``random`` accepts that they
            are drawn at random.
    """

    fallback: Literal["none", "random"] = "none"
    models_choices: ClassVar[bool] = False

    def fit_problems(self, plan: StudyPlan) -> list[Problem]:
        problems = super().fit_problems(plan)
        params = spaces.optuna_params(plan.space)
        modelled = [
            n
            for n, p, branch in params
            if not branch and (self.models_choices or isinstance(p, (spaces.Float, spaces.Int)))
        ]
        unmodelled = [n for n, _, _ in params if n not in modelled]
        if not modelled:
            what = "parameters outside conditional branches" if self.models_choices else "numeric ranges"
            problems.append(Problem("sampler.type", f"{self.type} models {what}, and the space has none"))
        elif unmodelled and self.fallback == "none":
            shown = ", ".join(unmodelled[:6]) + (f" and {len(unmodelled) - 6} more" if len(unmodelled) > 6 else "")
            kinds = "conditional branches' parameters" if self.models_choices else "choices and branches' parameters"
            problems.append(
                Problem(
                    "sampler.fallback",
                    f"{self.type} does not model {kinds} ({shown}): Optuna would draw them at random. Give "
                    "fallback: random to accept that, fix them in the space, or use tpe",
                )
            )
        return problems


REGISTRY: Registry[SamplerSpec] = Registry("sampler", SamplerSpec)
register = REGISTRY.register
DEFAULT = "tpe"


def default() -> SamplerSpec:
    """The sampler of a spec that names none: the default one with its default settings."""
    return REGISTRY.get(DEFAULT).model_validate({})


# The built-ins register themselves, the default first (it leads the lists of choices)
import hpsearch.samplers.tpe  # noqa: E402, F401
from hpsearch.samplers import basic, grid, tpe  # noqa: E402

__all__ = [
    "DEFAULT",
    "REGISTRY",
    "NumericSamplerSpec",
    "SamplerSpec",
    "StudyPlan",
    "basic",
    "default",
    "grid",
    "register",
    "tpe",
]
