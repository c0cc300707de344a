"""The trials of a population-based search (PBT): exactly the configs given, as Tune trials.

Ray's PBT refuses a searcher (Optuna's), so the population comes from a ``BasicVariantGenerator``; its
``points_to_evaluate`` resolve each config against the ``param_space`` (every key must be a domain of it),
which configs of a space with conditional branches (different keys per branch) cannot satisfy. This
generator hands the configs out as they are (``tests/search_tests/test_schedulers.py`` fails loudly if a
Ray upgrade changes what it builds on: ``_TrialIterator``, ``add_configurations``' bookkeeping).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from ray.tune.search import BasicVariantGenerator
from ray.tune.search.basic_variant import _TrialIterator


class _Configs(_TrialIterator):
    def __next__(self) -> Any:
        if not self.points_to_evaluate:
            raise StopIteration
        config = self.points_to_evaluate.pop(0)
        self.num_samples_left -= 1
        return self.create_trial({}, {**self.unresolved_spec, "config": copy.deepcopy(config)})


class Population(BasicVariantGenerator):
    """One trial per config of ``configs`` (flat dotted keys), in order."""

    def __init__(self, configs: list[dict[str, Any]]):
        super().__init__(points_to_evaluate=configs)

    def add_configurations(self, experiments: Any) -> None:
        from ray.tune.experiment import _convert_to_experiment_list

        for experiment in _convert_to_experiment_list(experiments):
            points = copy.deepcopy(self._points_to_evaluate)
            start = self._total_samples
            self._total_samples += len(points)
            iterator = _Configs(
                uuid_prefix=self._uuid_prefix,
                num_samples=len(points),
                unresolved_spec=experiment.spec,
                points_to_evaluate=points,
                start=start,
            )
            self._iterators.append(iterator)
            self._trial_generator = itertools.chain(self._trial_generator, iterator)  # type: ignore[assignment]
