"""The schedulers beside ASHA: where each decides (trials report exactly there), what PBT may change and
how it perturbs, and the pieces of Ray it builds on (these fail loudly when a Ray upgrade moves them)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule

from hpsearch import spaces
from hpsearch.schedulers.asha import asha_milestones
from hpsearch.schedulers.pbt import HOT_KEYS, Explore, active_param, searched_keys
from hpsearch.spec import parse_spec
from tests.helpers import spec_problems


def with_scheduler(quickstart_data, scheduler, **search):
    data = copy.deepcopy(quickstart_data)
    data["search"]["scheduler"] = scheduler
    data["search"].update(search)
    return data


@pytest.mark.parametrize(
    ("max_t", "grace", "rf", "brackets"), [(9, 1, 3, 3), (10, 1, 3, 3), (27, 1, 3, 2), (20, 2, 2, 3)]
)
def test_hyperband_decides_where_rays_brackets_have_rungs(max_t, grace, rf, brackets):
    ray = AsyncHyperBandScheduler(
        time_attr="epoch",
        metric="m",
        mode="max",
        max_t=max_t,
        grace_period=grace,
        reduction_factor=rf,
        brackets=brackets,
    )
    rungs = sorted({r[0] for b in ray._brackets for r in b._rungs})
    assert asha_milestones(max_t, grace, rf, brackets) == rungs


def test_each_scheduler_builds_rays_and_says_where_it_decides(quickstart_data):
    hb = parse_spec(with_scheduler(quickstart_data, {"type": "hyperband", "max_epochs": 9})).search.scheduler
    assert isinstance(hb.build(), AsyncHyperBandScheduler) and hb.milestones() == [1, 3, 9] and hb.rungs() == [1, 3, 9]
    median = parse_spec(with_scheduler(quickstart_data, {"type": "median", "max_epochs": 5, "grace_period": 2})).search
    assert isinstance(median.scheduler.build(), MedianStoppingRule)
    assert median.scheduler.milestones() == [1.0, 2.0, 3.0, 4.0, 5.0] and median.scheduler.rungs() == [2, 5]
    fifo = parse_spec(with_scheduler(quickstart_data, {"type": "fifo", "max_epochs": 5})).search.scheduler
    assert isinstance(fifo.build(), FIFOScheduler) and fifo.milestones() == [] and fifo.rungs() == [5]
    assert spec_problems(with_scheduler(quickstart_data, {"type": "hyperband", "max_epochs": 9, "brackets": 4})) == [
        "search.scheduler.brackets: max_epochs 9 with grace_period 1 and reduction_factor 3 has room for at most 3, got 4"
    ]
    assert spec_problems(with_scheduler(quickstart_data, {"type": "median", "max_epochs": 3, "grace_period": 4})) == [
        "search.scheduler.grace_period: must be <= max_epochs (3), got 4"
    ]


SPACE = spaces.parse_space(
    {
        "units": {"choice": [16, 32]},
        "l2": {"float": [1e-6, 1e-2], "log": True},
        "batch_size": {"int": [16, 256], "step": 16},
        "hflip": {"choice": [True, False]},
        "optimizer": {
            "choice": {
                "sgd": {"lr": {"float": [1e-3, 0.3], "log": True}, "momentum": {"float": [0.0, 0.9]}},
                "adam": {"lr": {"float": [1e-4, 1e-2], "log": True}},
            }
        },
    }
)


def test_pbt_perturbs_within_the_ranges_of_the_branch_a_trial_took():
    keys = ["l2", "batch_size", "hflip", "optimizer.lr", "optimizer.momentum"]
    explore = Explore(SPACE, keys, resample_probability=0.25, seed=1)
    config = {"units": 16, "l2": 1e-4, "batch_size": 128, "hflip": True, "optimizer": "adam", "optimizer.lr": 9e-3}
    seen_lr, seen_flip = set(), set()
    for _ in range(400):
        config = explore(config)
        assert config["units"] == 16 and config["optimizer"] == "adam"  # not mutated: the model and the branch
        assert 1e-4 <= config["optimizer.lr"] <= 1e-2  # adam's range, not sgd's
        assert 1e-6 <= config["l2"] <= 1e-2
        assert (
            isinstance(config["batch_size"], int)
            and 16 <= config["batch_size"] <= 256
            and config["batch_size"] % 16 == 0
        )
        assert "optimizer.momentum" not in config  # the branch taken has none
        seen_lr.add(config["optimizer.lr"])
        seen_flip.add(config["hflip"])
    assert len(seen_lr) > 50 and seen_flip == {True, False}
    again = Explore(SPACE, keys, 0.25, seed=1)
    start = {"units": 16, "l2": 1e-4, "batch_size": 128, "hflip": True, "optimizer": "adam", "optimizer.lr": 9e-3}
    assert again(dict(start)) == Explore(SPACE, keys, 0.25, seed=1)(dict(start))  # seeded


def test_pbt_finds_the_parameter_of_the_branch_and_lists_what_the_space_searches():
    assert active_param(SPACE, {"optimizer": "sgd"}, "optimizer.lr") == spaces.Float(1e-3, 0.3, log=True)
    assert active_param(SPACE, {"optimizer": "adam"}, "optimizer.momentum") is None
    assert searched_keys(SPACE) == ["units", "l2", "batch_size", "hflip", "optimizer.lr", "optimizer.momentum"]
    assert set(HOT_KEYS) >= {"optimizer.lr", "l2", "batch_size"}


def test_pbt_refuses_what_it_cannot_do(quickstart_data):
    pbt = {"type": "pbt", "max_epochs": 6}
    spec = parse_spec(with_scheduler(quickstart_data, pbt, sampler={"type": "random"}))
    assert spec.search.scheduler.mutated(spec.search_space, True) == [
        "optimizer.lr",
        "optimizer.momentum",
        "grad_clip.threshold",
    ]
    assert spec_problems(with_scheduler(quickstart_data, {**pbt, "mutate": ["units", "flops"]})) == [
        "search.scheduler.mutate: a built-in trainable cannot change 'units' on a checkpoint (it shapes the model "
        "or its schedule); it can change: optimizer.* (lr, momentum, alpha, betas, eps, weight_decay), l1, l2, "
        "max_norm, grad_clip.threshold, batch_size, crop_padding, hflip",
        "search.scheduler.mutate: 'flops' is not a searched parameter of the space (hidden_layers, units, activation, "
        "batch_norm, dropout, optimizer.lr, optimizer.momentum, optimizer.nesterov, grad_clip.threshold)",
        "search.sampler.type: pbt evolves its population itself (its first one is drawn at random): give random or "
        "no sampler, got 'tpe'",
    ]
    assert spec_problems(
        with_scheduler(quickstart_data, {**pbt, "perturbation_interval": 6}, sampler={"type": "random"})
    ) == ["search.scheduler.perturbation_interval: must be < max_epochs (6): it never exploits otherwise, got 6"]
    data = with_scheduler(quickstart_data, pbt, warm_start="earlier")
    del data["search"]["sampler"]
    assert spec_problems(data) == [
        "search.warm_start: pbt evolves its population itself (its first one is drawn at random): there is no Optuna study to seed"
    ]
    data = with_scheduler(quickstart_data, {**pbt, "mutate": ["units"]})
    del data["search"]["sampler"], data["data"]
    data["trainable"] = "tests.integration_tests.own_training:untestable"
    assert any("pbt continues trials from other trials' checkpoints" in p for p in spec_problems(data))


def test_the_first_population_is_the_configs_given_as_tune_trials(tmp_path):
    from ray.tune.experiment import Experiment

    from hpsearch.population import Population

    configs = [
        {"optimizer": "sgd", "optimizer.lr": 0.1, "optimizer.momentum": 0.5},
        {"optimizer": "adam", "optimizer.lr": 1e-3},
    ]
    generator = Population(configs)
    generator.add_configurations([Experiment("x", run=lambda config: None, storage_path=str(tmp_path))])
    trials = [generator.next_trial() for _ in range(2)]
    assert [t.config for t in trials] == configs  # keys of different branches, as they are
    assert generator.next_trial() is None and generator.is_finished()


def test_a_resumed_pbt_waits_for_the_epoch_after_the_restored_trials_not_before():
    from hpsearch.schedulers.recorded_pbt import RecordedPBT

    pbt = RecordedPBT(max_epochs=12, time_attr="epoch", metric="m", mode="max", perturbation_interval=2,
                      custom_explore_fn=lambda c: c, synch=True)  # fmt: skip

    class Restored:  # what PBT reads of a Tune trial restored with its last result
        trial_id, config, evaluated_params, experiment_tag = "t1", {}, {}, "1"
        last_result = {"epoch": 5}
        run_metadata = SimpleNamespace(
            checkpoint_manager=SimpleNamespace(checkpoint_config=SimpleNamespace(num_to_keep=None))
        )

    restored = Restored()
    pbt.on_trial_add(SimpleNamespace(search_alg=None), restored)
    state = pbt._trial_state[restored]
    assert (state.last_perturbation_time, state.last_train_time, pbt._next_perturbation_sync) == (4, 4, 6)


def test_hyperband_draws_each_trials_bracket_from_the_samplers_seed(quickstart_data):
    """Ray draws brackets from NumPy's global state: unseeded, a search with the same seed stopped other trials."""
    import pickle

    import numpy as np

    hb = parse_spec(with_scheduler(quickstart_data, {"type": "hyperband", "max_epochs": 27})).search.scheduler

    def scheduler(seed):
        built = hb.build_for(None, True, seed)
        built.set_search_properties("m", "max")
        return built

    def add(built, first, last):
        for i in range(first, last):
            built.on_trial_add(None, SimpleNamespace(trial_id=f"t{i}"))
        return [built._brackets.index(built._trial_info[f"t{i}"]) for i in range(first, last)]

    np.random.seed(5)
    outside = np.random.get_state()
    drawn = add(scheduler(3), 0, 40)
    assert np.array_equal(np.random.get_state()[1], outside[1])  # the global state is left as it was
    np.random.rand(7)  # whatever else draws from it in between
    assert add(scheduler(3), 0, 40) == drawn and len(set(drawn)) == 3
    assert add(scheduler(4), 0, 40) != drawn
    resumed = scheduler(3)
    head = add(resumed, 0, 20)
    assert head + add(pickle.loads(pickle.dumps(resumed)), 20, 40) == drawn  # saved with the search, resumed
