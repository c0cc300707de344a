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


def spec_with(space, **sampler):
    import yaml

    data = yaml.safe_load(QUICKSTART.read_text())
    data["space"] = space
    data["search"].setdefault("sampler", {}).update(sampler)
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
    searcher.on_trial_complete("a", {"val_accuracy": 0.5, "epoch": spec_with(CONDITIONAL).epochs})
    searcher.on_trial_complete("b", error=True)
    assert searcher.trial_states() == {"COMPLETE": 1, "FAIL": 1}
    SpaceSearch.restored = None
    copy = pickle.loads(pickle.dumps(searcher))  # how Tune stores it with the experiment
    assert SpaceSearch.restored is copy and copy.trial_states() == {"COMPLETE": 1, "FAIL": 1}


# What Optuna learns from a trial --------------------------------------------------------------
def test_the_verdict_on_each_way_a_trial_can_end():
    from optuna.trial import TrialState

    from hpsearch import faults
    from hpsearch.searcher import verdict

    values = {1: 0.5, 2: 0.6, 3: 0.7}
    done = verdict(values, 3, error=False, failure=None)
    assert (done.state, done.value, done.intermediate) == (TrialState.COMPLETE, 0.7, values)
    stopped = verdict({1: 0.2}, 3, error=False, failure=None)  # ASHA stopped it at its first rung
    assert (stopped.state, stopped.value, stopped.intermediate) == (TrialState.PRUNED, None, {1: 0.2})
    for blamed in (faults.Failure(faults.DIVERGED, ""), faults.Failure(faults.PROCESS_DIED, "oom", out_of_memory=True)):
        told = verdict({1: 0.9}, 3, error=True, failure=blamed)
        assert (told.state, told.intermediate) == (TrialState.PRUNED, {})  # no values: TPE ranks it last
    for neutral in (faults.Failure(faults.NODE_LOST, "lost"), faults.Failure(faults.RAISED, ""), None):
        assert verdict({1: 0.9}, 3, error=True, failure=neutral).state == TrialState.FAIL
    assert verdict({}, 3, error=False, failure=None).state == TrialState.FAIL  # never reported


def test_optuna_gets_values_by_epoch_from_batched_results_and_stopped_trials_as_pruned():
    from hpsearch import faults
    from hpsearch.protocol import EARLIER

    spec = spec_with(CONDITIONAL)  # max_epochs 10
    searcher = optuna_search(spec)
    for t in ("done", "stopped", "diverged", "lost"):
        searcher.suggest(t)
    # epochs 1-3 arrive in one Tune result (training_iteration 1), then 4-10 in another
    first = {
        "val_accuracy": 0.3,
        "epoch": 3,
        "training_iteration": 1,
        EARLIER: [{"val_accuracy": 0.1, "epoch": 1}, {"val_accuracy": 0.2, "epoch": 2}],
    }
    searcher.on_trial_result("done", first)
    last = {
        "val_accuracy": 0.9,
        "epoch": 10,
        "training_iteration": 2,
        EARLIER: [{"val_accuracy": 0.4 + e / 100, "epoch": e} for e in range(4, 10)],
    }
    searcher.on_trial_complete("done", last)
    # ASHA stops a trial at epoch 1: Tune passes that result only to on_trial_complete
    searcher.on_trial_complete("stopped", {"val_accuracy": 0.15, "epoch": 1, "training_iteration": 1})
    searcher.on_trial_result("diverged", {"val_accuracy": 0.5, "epoch": 1, "training_iteration": 1})
    faults._by_trial_id["diverged"] = faults.Failure(faults.DIVERGED, "")
    searcher.on_trial_complete("diverged", error=True)
    faults._by_trial_id["lost"] = faults.Failure(faults.NODE_LOST, "its node was lost")
    searcher.on_trial_complete("lost", error=True)

    done, stopped, diverged, lost = searcher._ot_study.trials
    assert done.state.name == "COMPLETE" and done.value == 0.9
    assert sorted(done.intermediate_values) == list(range(1, 11))  # keyed by epoch, not Tune's result count
    assert done.intermediate_values[2] == 0.2
    assert stopped.state.name == "PRUNED" and stopped.intermediate_values == {1: 0.15}
    assert diverged.state.name == "PRUNED" and diverged.intermediate_values == {}
    assert lost.state.name == "FAIL"


def _lr_study(tell_diverged_as_fail: bool) -> list[float]:
    """A 1-D learning-rate search where every lr above 0.1 diverges; the lrs TPE proposes next."""
    from hpsearch import faults

    spec = spec_with({"optimizer": {"choice": {"sgd": {"lr": {"float": [1.0e-4, 1.0], "log": True}}}}})
    searcher = optuna_search(spec)
    proposed = []
    for i in range(60):
        tid = f"t{i}"
        lr = searcher.suggest(tid)["optimizer.lr"]
        if i >= 20:
            proposed.append(lr)
        if lr > 0.1:
            if not tell_diverged_as_fail:
                faults._by_trial_id[tid] = faults.Failure(faults.DIVERGED, "")
            searcher.on_trial_complete(tid, error=True)
        else:  # accuracy rises with lr up to the edge where it blows up
            searcher.on_trial_complete(tid, {"val_accuracy": 0.5 + lr * 4, "epoch": 10})
    return proposed


def test_diverged_configs_steer_tpe_away_where_fail_would_not():
    ours = sum(lr > 0.1 for lr in _lr_study(tell_diverged_as_fail=False))
    rays = sum(lr > 0.1 for lr in _lr_study(tell_diverged_as_fail=True))
    assert ours < rays / 2, (ours, rays)


def test_trials_in_flight_are_sampled_aware_of_each_other():
    """Constant liar: eight trials asked before any of them ends spread out instead of piling up."""
    import statistics

    def spread(liar: bool) -> float:
        spec = spec_with({"dropout": {"float": [0.0, 0.9]}}, constant_liar=liar, n_startup_trials=5)
        searcher = optuna_search(spec)
        for i in range(10):
            x = searcher.suggest(f"h{i}")["dropout"]
            searcher.on_trial_complete(f"h{i}", {"val_accuracy": 1 - abs(x - 0.45), "epoch": 10})
        in_flight = [searcher.suggest(f"p{i}")["dropout"] for i in range(8)]
        return statistics.pstdev(in_flight)

    assert spread(liar=True) > 1.5 * spread(liar=False)
