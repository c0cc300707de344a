import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import load_spec, parse_spec
from tests.helpers import QUICKSTART, write_spec


def problems_of(data):
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return [str(p) for p in info.value.problems]


def test_quickstart_is_valid():
    spec = load_spec(QUICKSTART)
    assert spec.name == "quickstart-digits" and spec.search.num_trials == 30 and spec.epochs == 10
    assert "optimizer.momentum" in spec.search_space.keys()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["search"].update(num_trials=-3), "search.num_trials: must be >= 1, got -3"),
        (
            lambda d: d.update(resources={"gpu": 2}),
            "resources.gpu: the built-in mlp trainable trains on one GPU per worker",
        ),
        (lambda d: d.update(serach={"x": 1}), "serach: unknown key, got {'x': 1}"),
        (lambda d: d["search"]["scheduler"].update(max_epoch=5), "search.scheduler.max_epoch: unknown key, got 5"),
        (
            lambda d: d["data"].update(dataset="mnist"),
            "data.dataset: must be one of 'digits', 'fashion_mnist', 'cifar10', 'synthetic', 'npz', 'npy', 'image_folder' or 'loader', got 'mnist'",
        ),
        (lambda d: d.update(name="my search!"), "name: must match ^[A-Za-z0-9._-]+$, got 'my search!'"),
        (lambda d: d["search"].update(mode="maximum"), "search.mode: must be one of 'max' or 'min', got 'maximum'"),
        (lambda d: d["search"].update(metric="accuracy"), "search.metric: the mlp trainable reports"),
        (lambda d: d["search"].update(mode="min"), "search.mode: val_accuracy should be maximised, got 'min'"),
        (
            lambda d: d["search"]["scheduler"].update(grace_period=20),
            "search.scheduler.grace_period: must be <= max_epochs (10), got 20",
        ),
        (
            lambda d: d["search"]["scheduler"].update(reduction_factor=1),
            "search.scheduler.reduction_factor: must be > 1, got 1",
        ),
        (lambda d: d["resources"].update(cpu=0), "resources.cpu: must be > 0, got 0"),
        (lambda d: d.update(space="no_such_preset"), "space: unknown preset 'no_such_preset'"),
        (
            lambda d: d["space"].update(dropout={"float": [0.6, 0.2]}),
            "space.dropout: low must be <= high, got low=0.6, high=0.2",
        ),
        (
            lambda d: d["space"].update(dropuot={"float": [0.0, 0.2]}),
            "space.dropuot: unknown parameter for the mlp trainable",
        ),
        (
            lambda d: d["space"].update(activation={"choice": ["relu", "swish"]}),
            "space.activation: must be one of relu",
        ),
        (
            lambda d: d["space"]["optimizer"]["choice"]["adam"].update(momentum=0.9),
            "space.optimizer.adam.momentum: does not apply when optimizer is 'adam'",
        ),
        (
            lambda d: d["space"]["optimizer"]["choice"].update(lion={}),
            "space.optimizer: must be one of sgd, adagrad, rmsprop, adam, adamw, nadam, got 'lion'",
        ),
        (lambda d: d["space"].update(dropout={"float": [0.0, 1.5]}), "space.dropout: must be < 1, got 1.5"),
        (lambda d: d.update(trainable="nomodule_xyz:fn"), "trainable: cannot import module 'nomodule_xyz'"),
        (
            lambda d: d.update(trainable="not a path"),
            "trainable: must be a built-in (mlp, cnn, resnet_transfer) or 'pkg.module:function'",
        ),
        (lambda d: d.update(tracking={"uri": "mlruns.db"}), "tracking.uri: must start with one of"),
        (lambda d: d["search"].pop("num_trials"), "search.num_trials: required"),
        (lambda d: d["search"].update(num_trials="30"), "search.num_trials: must be an integer, got '30'"),
        (
            lambda d: d["search"].update(enqueue=[{"units": 64}, {"optimizer": "adam", "optimizer.lr": 0.5}]),
            "search.enqueue[1].optimizer.lr: 0.5 is outside [0.0001, 0.03]",
        ),
        (
            lambda d: d["search"].update(enqueue=[{"optimizer": "adam", "optimizer.momentum": 0.9}]),
            "search.enqueue[0].optimizer.momentum: not a parameter of the space (in the branches this config chose)",
        ),
        (
            lambda d: d["search"].update(enqueue=[{"activation": "swish"}]),
            "search.enqueue[0].activation: 'swish' is not one of",
        ),
        (lambda d: d["search"].update(enqueue={"units": 64}), "search.enqueue: must be a list"),
        (lambda d: d["search"].update(warm_start=""), "search.warm_start: "),
    ],
)
def test_each_error_names_its_path_and_value(quickstart_data, edit, expected):
    edit(quickstart_data)
    problems = problems_of(quickstart_data)
    assert any(p.startswith(expected) for p in problems), problems


def test_all_problems_are_reported_at_once(quickstart_data):
    quickstart_data["search"]["num_trials"] = 0
    quickstart_data["data"]["dataset"] = "imagenet"
    quickstart_data["space"]["dropout"] = {"float": [0.5, 0.1]}
    quickstart_data["typo"] = 1
    fields = sorted(p.split(":")[0] for p in problems_of(quickstart_data))
    assert fields == ["data.dataset", "search.num_trials", "space.dropout", "typo"]


def test_spec_file_errors(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    write_spec(bad, ["a", "list"])
    with pytest.raises(SpecError, match="the spec must be a mapping"):
        load_spec(bad)


def test_preset_and_space_file(tmp_path, quickstart_data):
    quickstart_data["space"] = "mlp_basic"
    assert "l2" in parse_spec(quickstart_data).search_space.keys()
    (tmp_path / "space.yaml").write_text("units: {int: [8, 32]}\n")
    quickstart_data["space"] = "space.yaml"
    spec = load_spec(write_spec(tmp_path / "spec.yaml", quickstart_data))
    assert spec.search_space.keys() == ["units"]


def test_data_forms_and_files(tmp_path, quickstart_data):
    import numpy as np

    np.savez(tmp_path / "mine.npz", X=np.zeros((20, 3), np.float32), y=np.arange(20) % 2)
    quickstart_data["data"] = {"npz": "mine.npz"}
    spec = load_spec(write_spec(tmp_path / "spec.yaml", quickstart_data))
    assert spec.data.dataset == "npz" and spec.data.path == str(tmp_path / "mine.npz")

    quickstart_data["data"] = {"npz": "missing.npz"}
    with pytest.raises(SpecError, match="data.npz: file not found: .*missing.npz"):
        load_spec(write_spec(tmp_path / "spec.yaml", quickstart_data))

    quickstart_data["data"] = {"dataset": "fashion_mnist", "root": "data"}
    with pytest.raises(SpecError) as info:
        load_spec(write_spec(tmp_path / "spec.yaml", quickstart_data))
    (problem,) = info.value.problems
    assert problem.path == "data.root"
    assert str(problem).startswith(f"data.root: fashion_mnist files not found under '{tmp_path / 'data'}'")
    assert "download: true" in problem.message
    quickstart_data["data"]["download"] = True  # nothing to check before the download
    load_spec(write_spec(tmp_path / "spec.yaml", quickstart_data))

    quickstart_data["data"] = {"dataset": "synthetic", "shape": [3, 0, 4]}
    with pytest.raises(SpecError, match="data.shape: must be"):
        parse_spec(quickstart_data)


@pytest.mark.parametrize(
    ("trainable", "space", "expected"),
    [
        ("cnn", "seed_practices_cnn", None),
        ("resnet_transfer", "transfer_resnet18", None),
        ("cnn", {"hidden_layers": 2}, "space.hidden_layers: unknown parameter for the cnn trainable"),
        ("mlp", {"blocks": 2}, "space.blocks: unknown parameter for the mlp trainable"),
        ("resnet_transfer", {"activation": {"choice": ["relu"]}}, "space.activation: unknown parameter"),
        ("resnet_transfer", {"finetune_lr_mult": {"float": [0.1, 2.0]}}, "space.finetune_lr_mult: must be <= 1"),
        ("mlp", {"activation": {"choice": {"relu": {"alpha": 0.1}}}}, "space.activation.relu.alpha: does not apply"),
        ("mlp", {"schedule": {"choice": {"power": {"s": 0.0}}}}, "space.schedule.power.s: must be > 0"),
    ],
)
def test_space_keys_are_checked_against_the_trainable(quickstart_data, trainable, space, expected):
    quickstart_data.update(trainable=trainable, space=space)
    if expected is None:
        parse_spec(quickstart_data)
    else:
        assert any(p.startswith(expected) for p in problems_of(quickstart_data)), problems_of(quickstart_data)


def test_every_presets_first_configs_lie_in_its_space_and_enqueue_replaces_them(quickstart_data):
    from hpsearch import spaces

    with_first = [n for n in spaces.preset_names() if spaces.preset_first_configs(n)]
    assert {"seed_practices_mlp", "seed_practices_cnn"} <= set(with_first)
    for name in with_first:
        space = spaces.load_space(name)
        for config in spaces.preset_first_configs(name):
            params, _ = spaces.to_optuna(space, config)
            assert params and len(params) >= len(config) - 1, (name, config)  # fixed values carry no param
    quickstart_data["space"] = "seed_practices_mlp"
    spec = parse_spec(quickstart_data)
    assert spec.first_configs == spaces.preset_first_configs("seed_practices_mlp")
    quickstart_data["search"]["enqueue"] = []
    assert parse_spec(quickstart_data).first_configs == []


def test_the_searcher_hands_out_the_first_configs_first(quickstart_data):
    from hpsearch.searcher import optuna_search

    quickstart_data["search"]["enqueue"] = [{"optimizer": "sgd", "optimizer.lr": 0.02, "units": 64}, {"units": 128}]
    searcher = optuna_search(parse_spec(quickstart_data))
    first, second, third = (searcher.suggest(t) for t in ("a", "b", "c"))
    assert (first["optimizer"], first["optimizer.lr"], first["units"]) == ("sgd", 0.02, 64)
    assert second["units"] == 128
    assert set(first) >= {"optimizer.momentum", "dropout"}  # the rest sampled


@pytest.mark.parametrize(
    "choice, branch, key",
    [("optimizer", "adam", "momentum"), ("schedule", "cosine", "patience"), ("grad_clip", "none", "threshold")],
)
def test_the_spec_and_the_trainable_share_one_rule_for_which_keys_apply(quickstart_data, choice, branch, key):
    """A choice's parameter under a branch that does not have it: the same message from the space check
    (before the search) and from the trainable's config check (in a trial)."""
    from hpsearch.trainables.config import check_config

    quickstart_data["space"] = {choice: {"choice": {branch: {key: 0.5}}}}
    (from_spec,) = problems_of(quickstart_data)
    (from_config,) = check_config("mlp", {choice: branch, f"{choice}.{key}": 0.5})
    expected = f"does not apply when {choice} is {branch!r}"
    assert from_spec == f"space.{choice}.{branch}.{key}: {expected}" and from_config.message == expected


# Own code, own data, tasks ---------------------------------------------------------------------------
def own(spec, **top):
    spec.update(top)
    return spec


def test_a_trainable_or_loader_without_the_contracts_signature_is_refused(quickstart_data):
    (message,) = problems_of(own(quickstart_data, trainable="os:system"))
    assert message.startswith("trainable: expected a function fn(config, data, epochs, report, seed=0")
    assert "found os.system(command)" in message or "found posix.system(command)" in message
    loader = own(quickstart_data, trainable="mlp", data={"loader": "os:getcwd", "args": {"size": 2}})
    (message,) = problems_of(loader)
    assert message.startswith("data.loader: expected a function fn(**args)") and "'size'" in message
    (message,) = problems_of(own(quickstart_data, data={"loader": "no_such_module:load"}))
    assert message.startswith("data.loader: cannot import module 'no_such_module'")


def test_data_may_be_left_out_by_a_trainable_that_reads_its_own(quickstart_data):
    del quickstart_data["data"]
    assert problems_of(quickstart_data) == ["data: required: the built-in mlp trainable trains on a data source"]
    quickstart_data["trainable"] = "tests.integration_tests.own_training:csv_regression"
    quickstart_data["search"]["metric"] = "val_anything"  # any metric the trainable reports
    spec = parse_spec(quickstart_data)
    assert spec.data is None and spec.search.metric == "val_anything"


def test_the_task_decides_what_the_builtins_report(quickstart_data, tmp_path):
    assert sorted(problems_of(own(quickstart_data, task="regression"))) == [
        "data.dataset: digits is a classification data set: it cannot serve task: regression",
        "search.metric: the mlp trainable reports val_loss, val_mae, val_r2, train_loss, params, latency_ms, peak_memory_mb for task: regression, got 'val_accuracy'",
    ]
    import numpy as np

    np.savez(tmp_path / "r.npz", X=np.zeros((20, 3), np.float32), y=np.linspace(0, 1, 20))
    quickstart_data.update(data={"npz": str(tmp_path / "r.npz")})
    quickstart_data["search"].update(metric="val_r2", mode="max")
    assert parse_spec(quickstart_data).data.regression
    quickstart_data.update(task="classification")
    quickstart_data["search"].update(metric="val_accuracy")
    (message,) = problems_of(quickstart_data)
    assert message.startswith("data.npz: y holds float64 values, not class indices: set task: regression")
    quickstart_data["search"].update(metric="val_r2", mode="min")
    quickstart_data.update(task="regression")
    assert problems_of(quickstart_data) == ["search.mode: val_r2 should be maximised, got 'min'"]
