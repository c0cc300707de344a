"""The one adapter between Optuna and Ray Tune: Ray's ``OptunaSearch``, fed by a compiled space.

Ray's public API cannot do what hpsearch needs, so this module owns the workarounds (and
``tests/search_tests/test_searcher.py`` fails loudly when a Ray upgrade breaks them):

- the trial config must be exactly what the compiled space returns: Ray's ``OptunaSearch`` merges
  Optuna's raw parameter names (``optimizer[sgd].lr``) into it; ours are resolved by the space
  (``optimizer.lr``). Overridden: ``OptunaSearch._suggest_from_define_by_run_func``.
- Optuna must learn from a trial what Optuna's own pruning would have told it (Ray tells a trial ASHA
  stopped after one epoch as COMPLETE with its epoch-1 value, keys intermediate values by Tune's result
  count, and tells every error as FAIL, which TPE ignores). Overridden: ``on_trial_result`` and
  ``on_trial_complete``; :func:`verdict` decides.
- the Optuna study's trial states (what Optuna learnt) are read from ``OptunaSearch._ot_study``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from hpsearch import faults, spaces
from hpsearch.protocol import EARLIER
from hpsearch.spec import JobSpec


@dataclass(frozen=True)
class Verdict:
    """How a finished trial is told to Optuna: its state, its value (COMPLETE only) and its
    intermediate values by epoch (what TPE ranks PRUNED trials by: the furthest epoch, then its value)."""

    state: TrialState
    value: float | None = None
    intermediate: dict[int, float] = field(default_factory=dict)


def verdict(values: dict[int, float], max_epochs: int, error: bool, failure: faults.Failure | None) -> Verdict:
    """What Optuna should learn from a trial that reported ``values`` (metric by epoch).

    - it trained every epoch: COMPLETE with its last value;
    - it stopped earlier (ASHA stopped it; the search's time budget ran out): PRUNED with its values
      by epoch, as Optuna's own pruning records it, so TPE ranks it behind every completed trial and
      by how far it got;
    - its config diverged or ran out of memory: PRUNED with no values, the worst rank TPE gives, so TPE
      steers away from it (a FAIL would be ignored: TPE would keep proposing the region that blows up);
    - anything else that ended it with an error (a lost node, a crash, a bug) says nothing about the
      config: FAIL, which TPE leaves out.
    """
    if error:
        if failure is not None and failure.blames_config:
            return Verdict(TrialState.PRUNED)
        return Verdict(TrialState.FAIL)
    if not values:  # it never reported (a trial the search ended before it started)
        return Verdict(TrialState.FAIL)
    last = max(values)
    if last >= max_epochs:
        return Verdict(TrialState.COMPLETE, values[last], values)
    return Verdict(TrialState.PRUNED, None, values)


class SpaceSearch(OptunaSearch):
    """OptunaSearch whose trial config is exactly what the compiled space returns, and which tells
    Optuna what a trial showed (:func:`verdict`)."""

    restored: ClassVar[SpaceSearch | None] = None
    """The searcher Tune unpickled last (``Tuner.restore``): how a resumed search gets hold of it."""

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs
        self._epoch_values: dict[str, dict[int, float]] = {}  # metric by epoch, per trial in flight

    def _suggest_from_define_by_run_func(
        self, func: Callable[[optuna.Trial], dict[str, Any] | None], ot_trial: optuna.Trial
    ) -> dict[str, Any]:
        return func(ot_trial) or {}

    def _collect(self, trial_id: str, result: dict[str, Any]) -> None:
        """Keep the metric of every epoch a Tune result carries (its own and its EARLIER ones), by epoch."""
        values = self._epoch_values.setdefault(trial_id, {})
        for epoch in [*result.get(EARLIER, ()), result]:
            value, step = epoch.get(self._metric), epoch.get("epoch")
            if isinstance(value, (int, float)) and isinstance(step, (int, float)) and math.isfinite(value):
                values[int(step)] = float(value)  # a restored trial redoes epochs: the newest counts

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        # Held until the trial ends: a diverged trial must reach Optuna without values (see verdict).
        # With Optuna's NopPruner nothing reads intermediate values while a trial runs.
        if trial_id not in self._completed_trials:
            self._collect(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if result:  # the result ASHA stopped the trial at reaches the searcher only here
            self._collect(trial_id, result)
        failure = faults.take_failure(trial_id) if error else None
        told = verdict(self._epoch_values.pop(trial_id, {}), self._max_epochs, error, failure)
        ot_trial = self._ot_trials[trial_id]
        for step, value in sorted(told.intermediate.items()):
            ot_trial.report(value, step)
        assert self._ot_study is not None
        self._ot_study.tell(ot_trial, told.value, state=told.state)
        self._completed_trials.add(trial_id)

    def add_prior(self, trials: list[optuna.trial.FrozenTrial]) -> None:
        """Seed the study with trials of an earlier search (:mod:`hpsearch.warmstart`)."""
        assert self._ot_study is not None
        self._ot_study.add_trials(trials)

    def trial_states(self, include_prior: bool = False) -> dict[str, int]:
        """How many of this search's Optuna trials ended in each state (COMPLETE, PRUNED, FAIL, ...); with
        ``include_prior``, also the earlier trials a warm start added."""
        states: dict[str, int] = {}
        study = self._ot_study
        assert study is not None, "OptunaSearch sets up its study when it is given a space"
        for t in study.trials:
            if not include_prior and "warm_start_run_id" in t.user_attrs:
                continue
            states[t.state.name] = states.get(t.state.name, 0) + 1
        return states

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_epoch_values", {})  # a searcher saved before it kept epoch values
        SpaceSearch.restored = self


def optuna_search(spec: JobSpec, first: list[dict[str, Any]] | None = None) -> SpaceSearch:
    """SpaceSearch with the spec's sampler driven by the space's define-by-run function; it hands out ``first``
    (default: the spec's first configs) before it samples."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = SpaceSearch(
        space=spaces.define_by_run(spec.search_space),
        metric=spec.search.metric,
        mode=spec.search.mode,
        sampler=spec.search.sampler.build(),
        max_epochs=spec.epochs,
    )
    study = searcher._ot_study
    assert study is not None
    for config in spec.first_configs if first is None else first:  # handed out first, in order (validated)
        study.enqueue_trial(spaces.to_optuna(spec.search_space, config)[0], skip_if_exists=False)
    return searcher
