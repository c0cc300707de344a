"""The samplers: each proposes configs of the space (real Optuna, through the search's own adapter), and a
space or objectives that do not suit one are refused at validation, naming the field."""

from __future__ import annotations

import copy

import pytest

from hpsearch import samplers
from hpsearch.searcher import optuna_search
from hpsearch.spec import parse_spec
from tests.helpers import spec_problems

NUMERIC = {"dropout": {"float": [0.0, 0.5]}, "units": {"int": [16, 128]}, "l2": {"float": [1e-6, 1e-2], "log": True}}
GRID = {"dropout": {"float": [0.0, 0.4], "step": 0.2}, "units": {"choice": [32, 64]}, "hidden_layers": {"int": [1, 2]}}


def spec_with(quickstart_data, space, sampler, **search):
    data = copy.deepcopy(quickstart_data)
    data["space"] = space
    data["search"].pop("enqueue", None)
    data["search"].update(sampler=sampler, **search)
    return data


@pytest.mark.parametrize(
    ("sampler", "space"),
    [
        ({"type": "tpe"}, "quickstart"),
        ({"type": "random"}, "quickstart"),
        ({"type": "cmaes", "n_startup_trials": 2}, NUMERIC),
        ({"type": "gp", "n_startup_trials": 3}, NUMERIC),
        ({"type": "qmc"}, NUMERIC),
        ({"type": "nsga2", "population_size": 4, "fallback": "random"}, "quickstart"),
        ({"type": "grid"}, GRID),
    ],
)
def test_each_sampler_proposes_configs_of_the_space(quickstart_data, sampler, space):
    data = spec_with(
        quickstart_data, quickstart_data["space"] if space == "quickstart" else space, sampler, num_trials=8
    )
    spec = parse_spec(data)
    searcher = optuna_search(spec)
    keys = set(spec.search_space.keys())
    seen = []
    for i in range(8):
        config = searcher.suggest(f"t{i}")
        assert set(config) <= keys and config, config
        for key, kind in __import__("hpsearch").spaces.space_kinds(spec.search_space).items():
            if key in config and kind["kind"] != "choice":
                assert kind["low"] <= config[key] <= kind["high"], (key, config[key])
        searcher.on_trial_result(f"t{i}", {"epoch": spec.epochs, "val_accuracy": 0.1 * (i % 5)})
        searcher.on_trial_complete(f"t{i}", {"epoch": spec.epochs, "val_accuracy": 0.1 * (i % 5)})
        seen.append(config)
    assert searcher.trial_states() == {"COMPLETE": 8}
    assert (
        type(searcher._ot_study.sampler)
        .__name__.lower()
        .startswith(
            {
                "tpe": "tpe",
                "random": "random",
                "cmaes": "cmaes",
                "gp": "gp",
                "qmc": "qmc",
                "nsga2": "nsgaii",
                "grid": "tunedgrid",
            }[sampler["type"]]
        )
    )
    if sampler["type"] != "grid":
        assert len({str(sorted(c.items())) for c in seen}) > 1  # it explores


def test_the_grid_hands_out_every_point_once_also_to_trials_in_flight(quickstart_data):
    spec = parse_spec(spec_with(quickstart_data, GRID, {"type": "grid", "seed": 3}, num_trials=12))
    searcher = optuna_search(spec)
    in_flight = [searcher.suggest(f"t{i}") for i in range(12)]  # none told yet: all in flight at once
    points = {(c["dropout"], c["units"], c["hidden_layers"]) for c in in_flight}
    assert len(points) == 12 == 3 * 2 * 2
    assert {d for d, _, _ in points} == {0.0, 0.2, 0.4}
    for i in range(12):  # the grid being done does not stop (or break) the study
        searcher.on_trial_complete(f"t{i}", {"epoch": spec.epochs, "val_accuracy": 0.5})
    assert searcher.trial_states() == {"COMPLETE": 12}


@pytest.mark.parametrize(
    ("sampler", "space", "num_trials", "expected"),
    [
        (
            {"type": "grid"},
            NUMERIC,
            4,
            "search.sampler.type: grid needs finite values, and 'dropout' is a continuous range without a step (0 to 0.5)",
        ),
        ({"type": "grid"}, {"l2": {"float": [1e-6, 1e-2], "log": True, "step": None}}, 4, "'l2' is a log range"),
        ({"type": "grid"}, GRID, 13, "search.num_trials: the grid has 12 points: give at most 12, got 13"),
        ({"type": "grid"}, "quickstart", 4, "grid cannot search the conditional parameter 'optimizer'"),
        (
            {"type": "cmaes"},
            "quickstart",
            4,
            "search.sampler.fallback: cmaes does not model choices and branches' parameters (units, activation",
        ),
        (
            {"type": "qmc"},
            {"units": {"choice": [1, 2]}},
            4,
            "search.sampler.type: qmc models numeric ranges, and the space has none",
        ),
        (
            {"type": "gp"},
            "quickstart",
            4,
            "search.sampler.fallback: gp does not model conditional branches' parameters (optimizer[sgd].lr",
        ),
        ({"type": "nsga2"}, "quickstart", 4, "nsga2 does not model conditional branches' parameters"),
    ],
)
def test_a_space_that_does_not_suit_the_sampler_is_refused(quickstart_data, sampler, space, num_trials, expected):
    space = quickstart_data["space"] if space == "quickstart" else space
    problems = spec_problems(spec_with(quickstart_data, space, sampler, num_trials=num_trials))
    assert any(expected in p for p in problems), problems


def test_fallback_random_accepts_what_the_sampler_does_not_model(quickstart_data):
    spec = parse_spec(spec_with(quickstart_data, quickstart_data["space"], {"type": "cmaes", "fallback": "random"}))
    assert spec.search.sampler.fallback == "random"


def test_a_one_objective_sampler_refuses_several_objectives(quickstart_data):
    objectives = [{"metric": "val_accuracy", "mode": "max"}, {"metric": "params", "mode": "min"}]
    data = spec_with(quickstart_data, NUMERIC, {"type": "cmaes"}, objectives=objectives)
    del data["search"]["metric"], data["search"]["mode"]
    assert spec_problems(data) == [
        "search.sampler.type: cmaes searches one objective; search.objectives has 2: use tpe, random, gp, qmc, nsga2, grid"
    ]


def test_cli_exits_2_naming_the_field(tmp_path, quickstart_data):
    from tests.helpers import hpsearch, write_spec

    path = write_spec(tmp_path / "grid.yaml", spec_with(quickstart_data, NUMERIC, {"type": "grid"}))
    result = hpsearch("validate", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "search.sampler.type: grid needs finite values" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.yaml"]  # nothing started or written


def test_the_registry_lists_every_sampler_default_first():
    assert samplers.REGISTRY.names() == ["tpe", "random", "cmaes", "gp", "qmc", "nsga2", "grid"]
    assert not samplers.REGISTRY.get("cmaes").multi_objective
    assert {n for n in samplers.REGISTRY.names() if samplers.REGISTRY.get(n).steers_by_constraints} == {
        "tpe",
        "gp",
        "nsga2",
    }
