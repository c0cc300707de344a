"""Schedulers: what stops weak trials early (``search.scheduler``). One module per scheduler, each a spec
model registered here (:class:`hpsearch.registry.Registry`); ``asha`` is the default.

A scheduler is a :class:`SchedulerSpec` subclass that owns everything about it: its settings (the spec's
``search.scheduler`` keys), the Ray Tune scheduler it builds, the epochs where it decides (trials send
their results to Tune at exactly those epochs: :class:`hpsearch.protocol.EpochBatch`) and the rungs the
report compares trials at (read back from the spec the search logged).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from hpsearch.errors import Problem
from hpsearch.registry import Registry, Strict

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler


class SchedulerSpec(Strict):
    """The settings every scheduler has.

    Args:
        type: the scheduler's registered name.
        max_epochs: the most epochs a trial trains.
    """

    type: str
    max_epochs: int = Field(ge=1)

    first_objective: ClassVar[bool] = True
    """With several objectives (``search.objectives``) it decides by the first one (Ray Tune's schedulers
    take one metric); False: it cannot serve a multi-objective search (refused at validation)."""

    def build(self) -> TrialScheduler:
        """The Ray Tune scheduler (a new one). It decides on the results' ``epoch`` (one Tune result may
        carry several epochs); the search's metric and mode reach it through Tune's ``TuneConfig``."""
        raise NotImplementedError(f"{type(self).__qualname__} does not build a scheduler")

    population_based: ClassVar[bool] = False
    """It evolves a population itself (PBT): no sampler proposes the trials after the first ones."""

    def build_for(self, space: Any, builtin: bool, seed: int) -> TrialScheduler:
        """The scheduler for this search's space (``builtin``: the trainable is a built-in; ``seed`` the
        sampler's). Default: :meth:`build`."""
        return self.build()

    def fit_problems(self, space: Any, builtin: bool) -> list[Problem]:
        """Where the space or the trainable do not suit this scheduler (paths relative to it)."""
        return []

    def checkpoint_interval(self) -> int | None:
        """Epochs at which every trial must checkpoint (whatever ``search.checkpoint_*`` say), or None."""
        return None

    def milestones(self) -> list[float]:
        """The epochs where it decides whether a trial goes on (ascending; may be fractional). A trial sends
        its result at the first epoch at or past each, so the decision falls on the epoch it would without
        batching. Default: none (it decides only on the results that come anyway)."""
        return []

    def rungs(self) -> list[int]:
        """The epochs the report compares trials at: the first epoch at or past each milestone, then
        ``max_epochs`` (completed trials)."""
        return sorted({math.ceil(m) for m in self.milestones() if m < self.max_epochs} | {self.max_epochs})


REGISTRY: Registry[SchedulerSpec] = Registry("scheduler", SchedulerSpec)
register = REGISTRY.register
DEFAULT = "asha"

# The built-ins register themselves, the default first (it leads the lists of choices)
import hpsearch.schedulers.asha  # noqa: E402, F401
from hpsearch.schedulers import asha, others, pbt  # noqa: E402

__all__ = ["DEFAULT", "REGISTRY", "SchedulerSpec", "asha", "others", "pbt", "register"]
