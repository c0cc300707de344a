"""The one adapter between Optuna and Ray Tune: Ray's ``OptunaSearch``, fed by a compiled space.

Ray's public API cannot do two things hpsearch needs, so this module owns the workarounds (and
``tests/search_tests/test_searcher.py`` fails loudly when a Ray upgrade breaks them):

- the trial config must be exactly what the compiled space returns: Ray's ``OptunaSearch`` merges
  Optuna's raw parameter names (``optimizer[sgd].lr``) into it; ours are resolved by the space
  (``optimizer.lr``). Overridden: ``OptunaSearch._suggest_from_define_by_run_func``.
- the Optuna study's trial states (what Optuna learnt) are read from ``OptunaSearch._ot_study``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import optuna
from ray.tune.search.optuna import OptunaSearch

from hpsearch import spaces
from hpsearch.spec import JobSpec


class SpaceSearch(OptunaSearch):
    """OptunaSearch whose trial config is exactly what the compiled space returns."""

    restored: ClassVar[SpaceSearch | None] = None
    """The searcher Tune unpickled last (``Tuner.restore``): how a resumed search gets hold of it."""

    def _suggest_from_define_by_run_func(
        self, func: Callable[[optuna.Trial], dict[str, Any] | None], ot_trial: optuna.Trial
    ) -> dict[str, Any]:
        return func(ot_trial) or {}

    def trial_states(self) -> dict[str, int]:
        """How many Optuna trials ended in each state (COMPLETE, FAIL, ...)."""
        states: dict[str, int] = {}
        study = self._ot_study
        assert study is not None, "OptunaSearch sets up its study when it is given a space"
        for t in study.trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        return states

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        SpaceSearch.restored = self


def optuna_search(spec: JobSpec) -> SpaceSearch:
    """SpaceSearch with TPE (seeded) driven by the space's define-by-run function."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = spec.search.sampler
    sampler = optuna.samplers.TPESampler(
        seed=s.seed,
        n_startup_trials=s.n_startup_trials,
        multivariate=s.multivariate,
        group=s.multivariate,  # conditional spaces need group sampling for multivariate TPE
    )
    return SpaceSearch(
        space=spaces.define_by_run(spec.search_space), metric=spec.search.metric, mode=spec.search.mode, sampler=sampler
    )
