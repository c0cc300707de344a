"""The Optuna/Tune adapter: the one place that relies on Ray's OptunaSearch internals. These tests fail
loudly when a Ray or Optuna upgrade breaks what it relies on."""

import inspect
import pickle

from ray.tune.search.optuna import OptunaSearch

from hpsearch.searcher import SpaceSearch, optuna_search
from hpsearch.spec import parse_spec
from tests.helpers import QUICKSTART

CONDITIONAL = {
    "activation": {"choice": ["relu", "elu"]},
    "optimizer": {
        "choice": {
            "sgd": {"lr": {"float": [1.0e-3, 1.0e-1], "log": True}, "momentum": {"float": [0, 0.9]}},
            "adam": {"lr": {"float": [1.0e-4, 1.0e-2], "log": True}},
        }
    },
}


def spec_with(space):
    import yaml

    data = yaml.safe_load(QUICKSTART.read_text())
    data["space"] = space
    return parse_spec(data)


def test_ray_still_has_the_hook_the_adapter_overrides():
    hook = getattr(OptunaSearch, "_suggest_from_define_by_run_func", None)
    assert hook is not None, (
        "Ray's OptunaSearch no longer has _suggest_from_define_by_run_func: see hpsearch/searcher.py"
    )
    assert list(inspect.signature(hook).parameters) == ["self", "func", "ot_trial"], inspect.signature(hook)


def test_trial_configs_are_exactly_what_the_space_returns():
    spec = spec_with(CONDITIONAL)
    searcher = optuna_search(spec)
    configs = [searcher.suggest(f"t{i}") for i in range(12)]
    for config in configs:
        # resolved names only: no Optuna-internal "optimizer[sgd].lr" keys merged in by Ray
        assert not any("[" in key for key in config), config
        expected = {"activation", "optimizer", "optimizer.lr"} | (
            {"optimizer.momentum"} if config["optimizer"] == "sgd" else set()
        )
        assert set(config) == expected, config
    assert {c["optimizer"] for c in configs} == {"sgd", "adam"}


def test_the_study_reports_what_optuna_learnt_and_survives_pickling():
    searcher = optuna_search(spec_with(CONDITIONAL))
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", {"val_accuracy": 0.5})
    searcher.on_trial_complete("b", error=True)
    assert searcher.trial_states() == {"COMPLETE": 1, "FAIL": 1}
    SpaceSearch.restored = None
    copy = pickle.loads(pickle.dumps(searcher))  # how Tune stores it with the experiment
    assert SpaceSearch.restored is copy and copy.trial_states() == {"COMPLETE": 1, "FAIL": 1}
