"""Ray's ``PopulationBasedTraining`` telling the search of each exploit (imported only when PBT runs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ray.tune.schedulers import PopulationBasedTraining


@dataclass(frozen=True)
class Exploit:
    """Trial ``trial_id`` continues from ``donor_id``'s checkpoint of epoch ``epoch`` with ``config``."""

    trial_id: str
    donor_id: str
    epoch: int
    config: dict[str, Any]


class RecordedPBT(PopulationBasedTraining):
    """PBT whose exploits reach ``recorder`` (the search's ledger: it records a segment per exploit)."""

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.recorder: Callable[[Exploit], None] | None = None

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        done = (trial.last_result or {}).get("epoch")
        if done:  # a resumed search: the trial continues from its checkpoint of its last interval's epoch
            at = int(done // self._perturbation_interval * self._perturbation_interval)
            state = self._trial_state[trial]
            state.last_perturbation_time = state.last_train_time = at
            # Ray's synchronous mode waits for every trial to reach this epoch: a fresh scheduler's first one
            # (the interval) is behind the restored trials, which would then wait forever
            self._next_perturbation_sync = max(self._next_perturbation_sync, at + self._perturbation_interval)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if result.get("epoch", 0) >= self.max_epochs:  # its last epoch: nothing left to train with a new config
            return self.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
        super()._exploit(tune_controller, trial, trial_to_clone)
        donor: dict[str, Any] = self._trial_state[trial_to_clone].last_result or {}
        if self.recorder is not None:
            self.recorder(
                Exploit(trial.trial_id, trial_to_clone.trial_id, int(donor.get("epoch", 0)), dict(trial.config))
            )

    restored: ClassVar[RecordedPBT | None] = None
    """The scheduler Tune unpickled last (``Tuner.restore``): how a resumed search re-attaches its recorder."""

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "recorder": None}  # re-attached by whoever restores the search

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        RecordedPBT.restored = self
