"""The Optuna searcher the Tuner uses: Ray's OptunaSearch, fed by a compiled space."""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

import spaces
from search.spec import JobSpec


class SpaceSearch(OptunaSearch):
    """OptunaSearch whose trial config is exactly what the compiled space returns.

    Ray's OptunaSearch merges Optuna's raw parameter names (``optimizer[sgd].lr``) into the config;
    ours are resolved by the space (``optimizer.lr``).
    """

    def _suggest_from_define_by_run_func(self, func, ot_trial):  # type: ignore[override]
        return func(ot_trial)

    def trial_states(self) -> dict[str, int]:
        """How many Optuna trials ended in each state (COMPLETE, FAIL, ...)."""
        states: dict[str, int] = {}
        for t in self._ot_study.trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        return states


def optuna_search(spec: JobSpec) -> Any:
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
