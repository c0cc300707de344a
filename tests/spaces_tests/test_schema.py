import json

import optuna
import pytest

from hpsearch import spaces
from hpsearch.spaces import Choice, Conditional, Fixed, Float, Int, SpaceError, parse_space


def problems_of(data):
    with pytest.raises(SpaceError) as info:
        parse_space(data)
    return [str(p) for p in info.value.problems]


def test_parses_every_parameter_type():
    space = parse_space(
        {
            "lr": {"float": [1e-4, 1e-1], "log": True},
            "units": {"int": [32, 256], "step": 32},
            "act": {"choice": ["relu", "elu"]},
            "batch_size": 64,
            "opt": {"choice": {"sgd": {"momentum": {"float": [0.0, 0.99]}}, "adam": None}},
            "model": {"depth": {"int": [1, 3]}},
        }
    )
    assert space.params["lr"] == Float(1e-4, 1e-1, log=True)
    assert space.params["units"] == Int(32, 256, step=32)
    assert space.params["act"] == Choice(("relu", "elu"))
    assert space.params["batch_size"] == Fixed(64)
    assert isinstance(space.params["opt"], Conditional)
    assert space.params["model.depth"] == Int(1, 3)
    assert space.keys() == ["lr", "units", "act", "batch_size", "opt", "opt.momentum", "model.depth"]
    assert parse_space(space.to_data()) == space


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"lr": {"float": [0.0, 1.0], "log": True}}, "space.lr: a log range needs low > 0, got low=0.0"),
        ({"d": {"float": [0.5, 0.1]}}, "space.d: low must be <= high, got low=0.5, high=0.1"),
        ({"a": {"choice": []}}, "space.a: choice needs at least one option, got []"),
        ({"o": {"choice": {"sgd": {"lr": {"float": [1, 0]}}}}}, "space.o.sgd.lr: low must be <= high"),
        ({"u": {"int": [1.5, 3]}}, "space.u: int needs [low, high] as two integers, got [1.5, 3]"),
        ({"u": {"int": [1, 3], "lg": True}}, "space.u: unknown key(s) lg for a int parameter"),
        ({"a": ["relu", "elu"]}, "space.a: a list is ambiguous"),
        ({"a": {"choice": ["x", "x"]}}, "space.a: choice options must be distinct"),
        ({"s": {"float": [0.1, 1.0], "log": True, "step": 0.1}}, "space.s: step cannot be combined with log"),
        ({}, "space: must define at least one parameter"),
    ],
)
def test_rejects_invalid_ranges_with_the_parameter_path(data, expected):
    problems = problems_of(data)
    assert any(p.startswith(expected) for p in problems), problems


def test_reports_every_problem_at_once():
    problems = problems_of({"a": {"choice": []}, "b": {"float": [2.0, 1.0]}, "c": {"float": [0, 1], "log": True}})
    assert [p.split(":")[0] for p in problems] == ["space.a", "space.b", "space.c"]


def test_define_by_run_resolves_conditional_branches():
    space = parse_space(
        {
            "optimizer": {
                "choice": {
                    "sgd": {"lr": {"float": [1e-3, 1e-1], "log": True}, "momentum": {"float": [0.0, 0.99]}},
                    "adam": {"lr": {"float": [1e-5, 1e-3], "log": True}},
                }
            },
            "units": {"int": [8, 64], "log": True},
            "batch_size": 32,
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    fn = spaces.define_by_run(space)
    seen = set()
    for _ in range(40):
        trial = study.ask()
        config = fn(trial)
        study.tell(trial, 0.0)
        seen.add(config["optimizer"])
        assert config["batch_size"] == 32 and 8 <= config["units"] <= 64
        if config["optimizer"] == "sgd":
            assert set(config) == {"optimizer", "optimizer.lr", "optimizer.momentum", "units", "batch_size"}
            assert 1e-3 <= config["optimizer.lr"] <= 1e-1
            # Each branch has its own Optuna parameter, so TPE models SGD and Adam rates separately.
            assert "optimizer[sgd].lr" in trial.params
        else:
            assert set(config) == {"optimizer", "optimizer.lr", "units", "batch_size"}
            assert 1e-5 <= config["optimizer.lr"] <= 1e-3
            assert "optimizer[adam].lr" in trial.params
    assert seen == {"sgd", "adam"}


def test_sample_is_seeded_and_json_serialisable():
    space = spaces.load_space("mlp_basic")
    first, again, other = spaces.sample(space, 5, seed=3), spaces.sample(space, 5, seed=3), spaces.sample(space, 5, 4)
    assert first == again and first != other
    json.dumps(first)


def test_unknown_preset_names_the_available_ones():
    with pytest.raises(SpaceError, match="unknown preset 'nope' \\(available: .*mlp_basic"):
        spaces.load_space("nope")


def test_space_file_relative_to_the_spec(tmp_path):
    (tmp_path / "my.yaml").write_text("units: {int: [8, 16]}\n")
    assert spaces.load_space("my.yaml", tmp_path).params["units"] == Int(8, 16)
    with pytest.raises(SpaceError, match="space file not found"):
        spaces.load_space("missing.yaml", tmp_path)


def test_spaces_import_neither_ray_nor_torch():
    import subprocess
    import sys

    code = "import sys, spaces; spaces.load_space('mlp_basic'); print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_400_samples_of_seed_practices_mlp_show_every_choice():
    space = spaces.load_space("seed_practices_mlp")
    configs = spaces.sample(space, 400, seed=0)
    seen: dict[str, set] = {}
    for config in configs:
        for key, value in config.items():
            seen.setdefault(key, set()).add(value)

    def expect(sp, prefix=""):
        for name, param in sp.params.items():
            key = prefix + name
            if isinstance(param, Choice):
                assert seen[key] == set(param.options), key
            elif isinstance(param, Conditional):
                assert seen[key] == set(param.branches), key
                for branch in param.branches.values():
                    expect(branch, key + ".")

    expect(space)
    assert seen["activation"] >= {"relu", "leaky_relu", "prelu", "rrelu", "elu", "selu", "gelu", "tanh", "sigmoid"}
    assert seen["optimizer"] == {"sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam"}
    assert seen["schedule"] == {"constant", "power", "exponential", "plateau", "cosine", "onecycle"}
    assert seen["grad_clip"] == {"none", "value", "norm"} and seen["batch_norm"] == {"none", "before", "after"}


@pytest.mark.parametrize("preset", spaces.preset_names())
def test_a_space_round_trips_through_its_data_form(preset):
    space = spaces.load_space(preset)
    data = space.to_data()
    json.dumps(data)
    again = parse_space(data)
    assert again.keys() == space.keys()
    assert spaces.sample(again, 20, seed=2) == spaces.sample(space, 20, seed=2)


def test_a_config_replays_as_the_optuna_params_and_distributions_the_space_suggests():
    """to_optuna is define_by_run backwards: a sampled config replays as exactly the params Optuna drew."""
    import optuna

    from hpsearch.spaces import OutsideSpace, define_by_run, load_space, to_optuna

    space = load_space("seed_practices_mlp")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    fn = define_by_run(space)
    for _ in range(25):
        trial = study.ask()
        config = fn(trial)
        params, distributions = to_optuna(space, config)
        assert params == trial.params and distributions == trial.distributions
        study.tell(trial, 0.0)
    partial, _ = to_optuna(space, {"optimizer": "adam", "optimizer.lr": 1e-3})
    assert partial == {"optimizer": "adam", "optimizer[adam].lr": 1e-3}
    for config, key, message in [
        ({"optimizer": "adam", "optimizer.lr": 0.5}, "optimizer.lr", "0.5 is outside [0.0001, 0.01]"),
        ({"optimizer": "adam", "optimizer.momentum": 0.9}, "optimizer.momentum", "not a parameter of the space"),
        ({"optimizer": "lion"}, "optimizer", "'lion' is not one of"),
        ({"hidden_layers": 2.5}, "hidden_layers", "must be an integer, got 2.5"),
        ({"mc_dropout": True}, "mc_dropout", "True is not one of [0, 10]"),  # a bool is not the option 1/0
        ({"units": "64"}, "units", "'64' is not one of"),
        ({"no_such": 1}, "no_such", "not a parameter of the space"),
    ]:
        with pytest.raises(OutsideSpace) as info:
            to_optuna(space, config)
        assert info.value.key == key and info.value.message.startswith(message), info.value
