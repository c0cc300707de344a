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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from hpsearch import faults, spaces
from hpsearch.objectives import Constraint
from hpsearch.protocol import EARLIER
from hpsearch.searchspec import study_plan
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

    def __init__(
        self,
        *args: Any,
        max_epochs: int,
        objectives: Sequence[str] = (),
        constraints: Sequence[str] = (),
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs
        self._epoch_values: dict[str, dict[int, float]] = {}  # metric by epoch, per trial in flight
        # With several objectives or constraints: each trial's metrics at its furthest epoch
        self._objectives = list(objectives or [])
        self._constraints = [Constraint.parse(c) for c in constraints]
        self._last_metrics: dict[str, tuple[int, dict[str, float]]] = {}

    def _suggest_from_define_by_run_func(
        self, func: Callable[[optuna.Trial], dict[str, Any] | None], ot_trial: optuna.Trial
    ) -> dict[str, Any]:
        return func(ot_trial) or {}

    def _collect(self, trial_id: str, result: dict[str, Any]) -> None:
        """Keep the metric of every epoch a Tune result carries (its own and its EARLIER ones), by epoch."""
        values = self._epoch_values.setdefault(trial_id, {})
        first = self._objectives[0] if self._objectives else self._metric
        keep_last = len(self._objectives) > 1 or bool(self._constraints)  # told at the end: all objectives, constraints
        for epoch in [*result.get(EARLIER, ()), result]:
            value, step = epoch.get(first), epoch.get("epoch")
            if isinstance(value, (int, float)) and isinstance(step, (int, float)) and math.isfinite(value):
                values[int(step)] = float(value)  # a restored trial redoes epochs: the newest counts
            if keep_last and isinstance(step, (int, float)) and step >= self._last_metrics.get(trial_id, (-1, {}))[0]:
                numbers = {
                    k: float(v) for k, v in epoch.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                }
                self._last_metrics[trial_id] = (int(step), numbers)

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
        metrics = self._last_metrics.pop(trial_id, (0, {}))[1]
        ot_trial = self._ot_trials[trial_id]
        for c in self._constraints:  # a broken one keeps the trial off the front; TPE, GP, NSGA-II steer by it
            ot_trial.set_constraint(str(c), c.value(metrics))
        assert self._ot_study is not None
        if len(self._objectives) > 1:
            # Optuna keeps no intermediate values for several objectives: a stopped trial is PRUNED bare
            values = [metrics.get(m, math.nan) for m in self._objectives]
            state = told.state
            if state == TrialState.COMPLETE and not all(math.isfinite(v) for v in values):
                state = TrialState.FAIL  # it finished without reporting every objective
            self._ot_study.tell(ot_trial, values if state == TrialState.COMPLETE else None, state=state)
        else:
            for step, value in sorted(told.intermediate.items()):
                ot_trial.report(value, step)
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
        self.__dict__.setdefault("_objectives", [])
        self.__dict__.setdefault("_constraints", [])
        self.__dict__.setdefault("_last_metrics", {})
        SpaceSearch.restored = self


def optuna_search(spec: JobSpec, first: list[dict[str, Any]] | None = None) -> SpaceSearch:
    """SpaceSearch with the spec's sampler driven by the space's define-by-run function; it hands out ``first``
    (default: the spec's first configs) before it samples."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = spec.search
    multi = search.multi_objective
    searcher = SpaceSearch(
        space=spaces.define_by_run(spec.search_space),
        metric=search.objective_metrics if multi else search.metric,
        mode=search.directions if multi else search.mode,
        sampler=search.sampler.build_for(study_plan(search, spec.search_space)),
        max_epochs=spec.epochs,
        objectives=search.objective_metrics,
        constraints=search.constraints,
    )
    study = searcher._ot_study
    assert study is not None
    for config in spec.first_configs if first is None else first:  # handed out first, in order (validated)
        study.enqueue_trial(spaces.to_optuna(spec.search_space, config)[0], skip_if_exists=False)
    return searcher
