import pytest
import torch
from torch import nn

from hpsearch.sources import load_data
from hpsearch.trainables.config import ConfigError, TrainConfig
from hpsearch.trainables.costs import COST_METRICS
from hpsearch.trainables.loop import TrialDiverged, evaluate, train_mlp
from hpsearch.trainables.models import build_mlp
from hpsearch.trainables.optim import build_optimizer, clip_gradients
from tests.helpers import untimed


def MLPConfig(**kw):  # noqa: N802 - reads like the config it builds
    renames = {
        "lr": "optimizer.lr",
        "momentum": "optimizer.momentum",
        "nesterov": "optimizer.nesterov",
        "beta1": "optimizer.beta1",
        "beta2": "optimizer.beta2",
    }
    return TrainConfig.from_dict("mlp", {renames.get(k, k): v for k, v in kw.items()})


@pytest.fixture(scope="module")
def digits():
    return load_data({"dataset": "digits", "val_fraction": 0.2, "test_fraction": 0.2, "seed": 0})


def test_digits_splits_are_seeded_and_disjoint(digits):
    assert digits.input_shape == (1, 8, 8) and digits.num_features == 64 and digits.num_classes == 10
    assert len(digits.train_y) + len(digits.val_y) + len(digits.test_y) == 1797
    rows = lambda x: {tuple(r.flatten().tolist()) for r in x}  # noqa: E731
    # digits has a few duplicate images, so compare index-level disjointness through sizes of a fresh split
    again = load_data({"dataset": "digits", "seed": 0})
    assert torch.equal(again.val_x, digits.val_x) and torch.equal(again.test_y, digits.test_y)
    other = load_data({"dataset": "digits", "seed": 1})
    assert not torch.equal(other.val_x, digits.val_x)
    assert len(rows(digits.train_x) & rows(digits.test_x)) < 10  # only the data set's own duplicate images
    # standardised with the train split's statistics
    assert abs(float(digits.train_x.mean())) < 1e-3 and abs(float(digits.train_x.std()) - 1) < 0.05


@pytest.mark.parametrize(
    ("batch_norm", "expected"),
    [
        ("none", [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]),
        ("before", [nn.Flatten] + [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]),
        ("after", [nn.Flatten] + [nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout] * 2 + [nn.Linear]),
    ],
)
def test_mlp_layer_order_follows_batch_norm_placement(batch_norm, expected):
    cfg = MLPConfig(hidden_layers=2, units=16, batch_norm=batch_norm, dropout=0.2)
    model = build_mlp((1, 8, 8), 10, cfg)
    assert [type(m) for m in model] == expected
    assert model[-1].out_features == 10  # no dropout after the output layer


def test_mlp_width_depth_and_activation():
    model = build_mlp((64,), 10, MLPConfig(hidden_layers=3, units=32, activation="gelu"))
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 32), (32, 32), (32, 32), (32, 10)]
    assert sum(isinstance(m, nn.GELU) for m in model) == 3
    assert not any(isinstance(m, nn.Dropout) for m in model)


def test_config_errors_name_key_and_value():
    with pytest.raises(ConfigError, match="units: must be >= 1, got 0"):
        TrainConfig.from_dict("mlp", {"units": 0})
    with pytest.raises(ConfigError, match="optimizer.momentum: does not apply when optimizer is 'adam'"):
        TrainConfig.from_dict("mlp", {"optimizer": "adam", "optimizer.momentum": 0.9})
    with pytest.raises(ConfigError, match="colour: unknown key"):
        TrainConfig.from_dict("mlp", {"colour": "red"})
    config = {
        "optimizer": "sgd",
        "optimizer.lr": 0.1,
        "optimizer.momentum": 0.5,
        "grad_clip": "norm",
        "grad_clip.threshold": 2.0,
    }
    cfg = TrainConfig.from_dict("mlp", config)
    assert {k: cfg[k] for k in config} == config
    assert "optimizer.beta1" not in cfg.values  # only the chosen optimizer's options


def test_optimizers_get_their_own_parameters():
    params = [nn.Parameter(torch.zeros(3))]
    sgd = build_optimizer(params, MLPConfig(optimizer="sgd", lr=0.1, momentum=0.8, nesterov=True))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.8 and sgd.defaults["nesterov"] is True and sgd.defaults["lr"] == 0.1
    adam = build_optimizer(params, MLPConfig(optimizer="adam", lr=1e-3, beta1=0.8, beta2=0.99))
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["betas"] == (0.8, 0.99)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("value", [0.9, 1.0]), ("norm", [0.00899964, 0.9999595]), ("none", [0.9, 100.0])],
)
def test_gradient_clipping_known_values(mode, expected):
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([0.9, 100.0])
    clip_gradients([p], mode, 1.0)
    assert p.grad.tolist() == pytest.approx(expected, rel=1e-5)


def test_one_epoch_lowers_the_loss_on_digits(digits):
    torch.manual_seed(0)
    config = {"hidden_layers": 2, "units": 128, "optimizer": "adam", "optimizer.lr": 3e-3}
    before, _ = evaluate(build_mlp((64,), 10, TrainConfig.from_dict("mlp", config)), digits.val_x, digits.val_y)
    reports = []
    train_mlp(config, digits, epochs=1, report=reports.append, seed=0)
    assert len(reports) == 1
    r = reports[0]
    assert set(r) == {"epoch", "train_loss", "val_loss", "val_accuracy", "lr", *COST_METRICS}
    assert before > 2.2  # ~ln(10): an untrained 10-class model
    assert r["val_loss"] < 0.7 * before and r["val_accuracy"] > 0.5 and r["lr"] == 3e-3


def test_training_is_reproducible_for_a_seed(digits):
    config = {"dropout": 0.2, "batch_norm": "after", "optimizer": "adam", "optimizer.lr": 3e-3}
    runs = []
    for _ in range(2):
        reports = []
        train_mlp(config, digits, epochs=2, report=reports.append, seed=7)
        runs.append(reports)
    assert untimed(runs[0]) == untimed(runs[1])


def test_an_exploding_loss_raises_trial_diverged(digits):
    config = {"optimizer": "sgd", "optimizer.lr": 10.0, "optimizer.momentum": 0.9, "grad_clip": "none"}
    reports = []
    with pytest.raises(TrialDiverged, match="non-finite"):
        train_mlp(config, digits, epochs=5, report=reports.append, seed=0)
    assert len(reports) < 5
