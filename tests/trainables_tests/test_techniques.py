"""Each training technique against its definition (known values, not "it runs")."""

import math

import pytest
import torch
from torch import nn

from hpsearch.sources import load_data
from hpsearch.trainables.augment import random_crop, random_hflip
from hpsearch.trainables.config import ConfigError, TrainConfig, overrides, resolve
from hpsearch.trainables.data import synthetic
from hpsearch.trainables.loop import _unfreeze, evaluate, train_model
from hpsearch.trainables.models import ResidualBlock, TransferResNet, build_cnn, build_mlp
from hpsearch.trainables.optim import apply_max_norm, build_optimizer, penalty
from hpsearch.trainables.schedules import LRSchedule
from tests.helpers import untimed


def cfg(trainable="mlp", **config):
    return TrainConfig.from_dict(trainable, config)


def schedule_for(config, steps_per_epoch=10, epochs=5, lr=0.1):
    p = nn.Parameter(torch.zeros(1))
    c = cfg(**{"optimizer": "sgd", "optimizer.lr": lr, **config})
    opt = build_optimizer([p], c)
    return opt, LRSchedule(opt, c, steps_per_epoch, epochs)


def lrs(opt, schedule, steps):
    out = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        schedule.step_batch()
        out.append(opt.param_groups[0]["lr"])
    return out


# ---- activations, init, self-normalisation -------------------------------------------


@pytest.mark.parametrize(
    ("name", "module", "check"),
    [
        ("relu", nn.ReLU, None),
        ("leaky_relu", nn.LeakyReLU, lambda m: m.negative_slope == 0.2),
        ("prelu", nn.PReLU, lambda m: m.weight.requires_grad and float(m.weight) == pytest.approx(0.2)),
        ("rrelu", nn.RReLU, lambda m: (m.lower, m.upper) == (1 / 8, 1 / 3)),
        ("elu", nn.ELU, lambda m: m.alpha == 0.2),
        ("selu", nn.SELU, None),
        ("gelu", nn.GELU, None),
        ("tanh", nn.Tanh, None),
        ("sigmoid", nn.Sigmoid, None),
    ],
)
def test_every_activation_with_its_parameter(name, module, check):
    config = {"activation": name, "hidden_layers": 1, "units": 8}
    if name in ("leaky_relu", "prelu", "elu"):
        config["activation.alpha"] = 0.2
    model = build_mlp((4,), 3, cfg(**config))
    (act,) = [m for m in model if isinstance(m, module)]
    assert check is None or check(act)


def test_activation_alpha_defaults_per_activation():
    assert resolve("mlp", {"activation": "leaky_relu"})["activation.alpha"] == 0.01
    assert resolve("mlp", {"activation": "elu"})["activation.alpha"] == 1.0
    assert resolve("mlp", {"activation": "prelu"})["activation.alpha"] == 0.25
    with pytest.raises(ConfigError, match="activation.alpha: does not apply when activation is 'relu'"):
        resolve("mlp", {"activation": "relu", "activation.alpha": 0.1})


def test_rrelu_is_random_in_training_and_fixed_at_test():
    act = nn.RReLU()
    x = -torch.ones(1000)
    assert not torch.equal(act.train()(x), act.train()(x))
    assert torch.equal(act.eval()(x), act.eval()(x))
    assert float(act.eval()(x)[0]) == pytest.approx(-(1 / 8 + 1 / 3) / 2)


@pytest.mark.parametrize(
    ("init", "std"),
    [
        ("lecun_normal", lambda fan_in, fan_out: 1 / math.sqrt(fan_in)),
        ("kaiming_normal", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
        ("xavier_normal", lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out))),
        ("xavier_uniform", lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out))),
        ("kaiming_uniform", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
    ],
)
def test_weight_init_has_the_scheme_standard_deviation(init, std):
    torch.manual_seed(0)
    model = build_mlp((400,), 10, cfg(init=init, hidden_layers=1, units=300))
    w = model[1].weight
    assert float(w.std()) == pytest.approx(std(400, 300), rel=0.03)
    assert float(model[1].bias.abs().max()) == 0.0


def test_selu_implies_the_self_normalising_setup_unless_overridden():
    used = resolve("mlp", {"activation": "selu", "batch_norm": "after", "init": "xavier_uniform", "dropout": 0.1})
    assert (used["init"], used["batch_norm"]) == ("lecun_normal", "none")
    model = build_mlp((16,), 3, cfg(activation="selu", batch_norm="after", dropout=0.1))
    assert any(isinstance(m, nn.AlphaDropout) for m in model) and not any(isinstance(m, nn.BatchNorm1d) for m in model)
    assert overrides("mlp", {"activation": "selu", "batch_norm": "after"}) == {"batch_norm": ("after", "none")}
    manual = build_mlp((16,), 3, cfg(activation="selu", batch_norm="after", dropout=0.1, self_normalizing=False))
    assert any(isinstance(m, nn.BatchNorm1d) for m in manual) and any(type(m) is nn.Dropout for m in manual)


def test_selu_with_lecun_init_keeps_activations_standardised_through_10_layers():
    torch.manual_seed(0)
    model = build_mlp((256,), 10, cfg(activation="selu", hidden_layers=10, units=256)).eval()
    h = torch.randn(4096, 256)
    with torch.no_grad():
        for module in list(model)[1:-1]:
            h = module(h)
    assert abs(float(h.mean())) < 0.1 and abs(float(h.var()) - 1.0) < 0.15


def test_without_lecun_init_the_same_net_drifts():
    torch.manual_seed(0)
    model = build_mlp(
        (256,), 10, cfg(activation="selu", hidden_layers=10, units=256, init="default", self_normalizing=False)
    ).eval()
    h = torch.randn(4096, 256)
    with torch.no_grad():
        for module in list(model)[1:-1]:
            h = module(h)
    assert (
        float(h.var()) < 0.5
    )  # PyTorch's default init shrinks the signal: the contrast that makes the test above mean something


# ---- batch norm, dropout -----------------------------------------------------------------


def test_dropout_on_the_last_k_hidden_layers_only():
    model = build_mlp((8,), 3, cfg(hidden_layers=4, units=8, dropout=0.3, dropout_layers=2))
    kinds = [type(m).__name__ for m in model]
    hidden = " ".join(kinds).split("Linear")[1:]  # the text after each Linear
    assert ["Dropout" in h for h in hidden] == [False, False, True, True, False]


def test_dropout_is_identity_in_eval_and_inverted_in_training():
    torch.manual_seed(0)
    model = build_mlp((32,), 4, cfg(hidden_layers=2, units=64, dropout=0.5))
    x = torch.randn(16, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    drop = nn.Dropout(0.5).train()
    y = drop(torch.ones(10000))
    assert set(y.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1/(1-p)


def test_mc_dropout_varies_across_passes_and_averages_them():
    torch.manual_seed(0)
    model = build_mlp((32,), 4, cfg(hidden_layers=2, units=64, dropout=0.5))
    x, y = torch.randn(64, 32), torch.randint(0, 4, (64,))
    plain = evaluate(model, x, y)
    assert plain == evaluate(model, x, y)  # eval mode: deterministic
    mc1, mc2 = evaluate(model, x, y, mc_samples=10), evaluate(model, x, y, mc_samples=10)
    assert mc1 != mc2 and mc1 != plain  # stochastic passes differ
    assert not model.training and not any(m.training for m in model.modules())  # eval mode restored


# ---- regularisation, clipping -----------------------------------------------------------


def test_l1_and_l2_penalties_match_their_definitions():
    torch.manual_seed(0)
    model = build_mlp((5,), 3, cfg(hidden_layers=1, units=4, batch_norm="after"))
    weights = [model[1].weight, model[4].weight]
    value = penalty(model, l1=0.01, l2=0.1)
    expected = sum(0.01 * w.abs().sum() + 0.05 * (w**2).sum() for w in weights)
    assert float(value) == pytest.approx(float(expected))
    value.backward()
    for w in weights:
        assert torch.allclose(w.grad, 0.01 * w.sign() + 0.1 * w)
    assert model[1].bias.grad is None and model[3].weight.grad is None  # biases and BN are not penalised
    assert penalty(model, 0.0, 0.0) is None


def test_max_norm_caps_every_units_incoming_weights():
    torch.manual_seed(0)
    model = build_mlp((20,), 5, cfg(hidden_layers=2, units=16))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10)
    apply_max_norm(model, 1.5)
    for m in model:
        if isinstance(m, nn.Linear):
            assert float(m.weight.norm(dim=1).max()) <= 1.5 + 1e-5
    conv = build_cnn((3, 8, 8), 2, cfg("cnn", blocks=1, channels=4))
    with torch.no_grad():
        conv[0].weight.mul_(50)
    apply_max_norm(conv, 0.5)
    assert float(conv[0].weight.flatten(1).norm(dim=1).max()) <= 0.5 + 1e-5


def test_max_norm_holds_after_every_training_step():
    data = load_data({"dataset": "digits"})
    model = train_model("mlp", {"max_norm": 0.8, "optimizer.lr": 1e-2}, data, epochs=1, report=lambda r: None)
    for m in model:
        if isinstance(m, nn.Linear):
            assert float(m.weight.norm(dim=1).max()) <= 0.8 + 1e-5


# ---- optimizers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "cls", "expected"),
    [
        (
            {"optimizer": "sgd", "optimizer.momentum": 0.8, "optimizer.nesterov": True},
            torch.optim.SGD,
            {"momentum": 0.8, "nesterov": True},
        ),
        ({"optimizer": "adagrad"}, torch.optim.Adagrad, {"eps": 1e-8}),
        (
            {"optimizer": "rmsprop", "optimizer.alpha": 0.95, "optimizer.momentum": 0.5},
            torch.optim.RMSprop,
            {"alpha": 0.95, "momentum": 0.5},
        ),
        ({"optimizer": "rmsprop"}, torch.optim.RMSprop, {"momentum": 0.0}),
        (
            {"optimizer": "adam", "optimizer.beta1": 0.85, "optimizer.beta2": 0.99, "optimizer.eps": 1e-7},
            torch.optim.Adam,
            {"betas": (0.85, 0.99), "eps": 1e-7, "weight_decay": 0},
        ),
        ({"optimizer": "adamw", "optimizer.weight_decay": 0.05}, torch.optim.AdamW, {"weight_decay": 0.05}),
        ({"optimizer": "nadam"}, torch.optim.NAdam, {"betas": (0.9, 0.999)}),
    ],
)
def test_each_optimizer_gets_its_own_parameters(config, cls, expected):
    opt = build_optimizer([nn.Parameter(torch.zeros(2))], cfg(**{**config, "optimizer.lr": 0.02}))
    assert type(opt) is cls and opt.defaults["lr"] == 0.02
    for key, value in expected.items():
        assert opt.defaults[key] == value, key


# ---- learning-rate schedules -----------------------------------------------------------------


def test_power_schedule_matches_its_formula():
    opt, schedule = schedule_for({"schedule": "power", "schedule.s": 20.0, "schedule.c": 1.5})
    got = lrs(opt, schedule, 40)
    for t in (0, 1, 10, 20, 40):
        assert got[t] == pytest.approx(0.1 / (1 + t / 20) ** 1.5)


def test_exponential_schedule_matches_its_formula():
    opt, schedule = schedule_for({"schedule": "exponential", "schedule.s": 20.0})
    got = lrs(opt, schedule, 40)
    assert got[20] == pytest.approx(0.01) and got[40] == pytest.approx(0.001)
    assert got[7] == pytest.approx(0.1 * 0.1 ** (7 / 20))


def torch_lrs(make_scheduler, steps):
    """The rates torch's own scheduler gives, for comparison (lr0 = 0.1)."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = make_scheduler(opt)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        scheduler.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_cosine_and_onecycle_follow_torch_reference_schedules():
    opt, schedule = schedule_for({"schedule": "cosine", "schedule.min_lr": 0.001})
    cosine = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=50, eta_min=0.001), 50)
    assert lrs(opt, schedule, 50) == pytest.approx(cosine)

    opt, schedule = schedule_for({"schedule": "onecycle", "schedule.pct_start": 0.3})
    one_cycle = torch_lrs(
        lambda o: torch.optim.lr_scheduler.OneCycleLR(
            o, max_lr=0.1, total_steps=50, pct_start=0.3, cycle_momentum=False
        ),
        49,
    )
    assert lrs(opt, schedule, 49) == pytest.approx(one_cycle)


def test_plateau_reduces_by_factor_after_patience_epochs():
    opt, schedule = schedule_for({"schedule": "plateau", "schedule.factor": 0.5, "schedule.patience": 2})
    history = []
    for val_loss in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.5, 0.6]:
        schedule.step_epoch(val_loss)
        history.append(opt.param_groups[0]["lr"])
    # best 0.9 at epoch 2; epochs 3, 4 are within patience; epoch 5 is the third bad one -> x0.5;
    # the count restarts: epochs 6, 7 bad, epoch 8 -> x0.5 again; 0.5 improves, 0.6 is one bad epoch.
    assert history == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025])


def test_warmup_scales_the_first_steps_linearly():
    opt, schedule = schedule_for({"warmup_epochs": 1.0}, steps_per_epoch=4)
    assert lrs(opt, schedule, 5) == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])


def test_reported_lr_follows_the_schedule_in_training():
    data = load_data({"dataset": "digits"})
    reports = []
    train_model(
        "mlp",
        {"optimizer": "sgd", "optimizer.lr": 0.05, "schedule": "exponential", "schedule.s": 17.0},
        data,
        epochs=3,
        report=reports.append,
    )
    steps = math.ceil(len(data.train_y) / 64)
    # the rate reported for epoch e is the one in force at the end of that epoch
    assert [r["lr"] for r in reports] == pytest.approx([0.05 * 0.1 ** (steps * e / 17.0) for e in (1, 2, 3)])


# ---- CNN, augmentation ----------------------------------------------------------------------


def test_cnn_stages_plain_and_residual_with_projection_shortcuts():
    plain = build_cnn((3, 32, 32), 10, cfg("cnn", blocks=3, channels=8, batch_norm="before"))
    assert plain(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert [m.out_channels for m in plain if isinstance(m, nn.Conv2d)] == [8, 8, 16, 16, 32, 32]
    assert sum(isinstance(m, nn.MaxPool2d) for m in plain) == 3
    res = build_cnn((3, 32, 32), 10, cfg("cnn", blocks=2, channels=8, block_type="residual", batch_norm="before"))
    blocks = [m for m in res if isinstance(m, ResidualBlock)]
    assert len(blocks) == 2
    shortcut = blocks[0].shortcut[0]
    assert (shortcut.kernel_size, shortcut.stride, shortcut.in_channels, shortcut.out_channels) == (
        (1, 1),
        (2, 2),
        3,
        8,
    )
    x = torch.randn(2, 3, 32, 32)
    assert blocks[0](x).shape == (2, 8, 16, 16)
    assert res(x).shape == (2, 10)
    assert build_cnn((1, 8, 8), 10, cfg("cnn", blocks=4))(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    assert torch.equal(random_crop(x, 0), x)
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, generator=g)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # each sample equals some window of its padded image
        windows = [padded[i, :, r : r + 5, c : c + 5] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_hflip_mirrors_about_half_the_images():
    x = torch.randn(2000, 1, 4, 4)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x, strict=True)])
    same = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert bool((flipped | same).all()) and 0.45 < float(flipped.float().mean()) < 0.55


def test_cnn_trains_with_augmentation_on_image_tensors():
    x, y = synthetic(300, [3, 16, 16], 3, seed=0)
    from hpsearch.trainables.data import split, standardise

    data = standardise(split(x, y, 0.2, 0.0, 0))
    reports = []
    train_model(
        "cnn",
        {"blocks": 2, "channels": 8, "crop_padding": 2, "hflip": True, "batch_norm": "before", "optimizer.lr": 3e-3},
        data,
        epochs=3,
        report=reports.append,
    )
    # random-noise prototypes are hard to recognise once shifted and mirrored: above chance (1/3) is the bar
    assert reports[-1]["val_accuracy"] > 0.45 and reports[-1]["train_loss"] < reports[0]["train_loss"]


# ---- transfer learning -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_images():
    x, y = synthetic(96, [3, 32, 32], 4, seed=1)
    from hpsearch.trainables.data import split, standardise

    return standardise(split(x, y, 0.25, 0.0, 0))


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before, model, prefix):
    after = model.state_dict()
    return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))


def test_transfer_frozen_backbone_does_not_change_during_frozen_epochs(tiny_images):
    config = {"freeze_epochs": 2, "unfreeze_blocks": 1, "batch_size": 32}
    torch.manual_seed(0)
    initial = snapshot(TransferResNet(tiny_images.input_shape, 4, cfg("resnet_transfer", **config)))
    model = train_model("resnet_transfer", config, tiny_images, epochs=2, report=lambda r: None)
    assert not changed(initial, model, "backbone.")  # weights and BN statistics alike
    assert changed(initial, model, "head.")


def test_transfer_unfreezes_only_the_top_blocks_at_the_multiplied_rate(tiny_images):
    config = {
        "freeze_epochs": 1,
        "unfreeze_blocks": 2,
        "finetune_lr_mult": 0.1,
        "batch_size": 32,
        "optimizer": "sgd",
        "optimizer.lr": 0.01,
    }
    torch.manual_seed(0)
    initial = snapshot(TransferResNet(tiny_images.input_shape, 4, cfg("resnet_transfer", **config)))
    model = train_model("resnet_transfer", config, tiny_images, epochs=2, report=lambda r: None)
    for frozen in ("backbone.conv1", "backbone.bn1", "backbone.layer1", "backbone.layer2"):
        assert not changed(initial, model, frozen), frozen
    for trained in ("backbone.layer3", "backbone.layer4", "head."):
        assert changed(initial, model, trained), trained

    c = cfg("resnet_transfer", **config)
    m = TransferResNet(tiny_images.input_shape, 4, c)
    m.freeze_backbone()
    opt = build_optimizer(m.head.parameters(), c)
    schedule = LRSchedule(opt, c, steps_per_epoch=3, epochs=2)
    _unfreeze(m, opt, schedule, c)
    head, top = opt.param_groups
    assert head["lr"] == pytest.approx(0.01) and top["lr"] == pytest.approx(0.001)
    top_params = {id(p) for block in m.blocks[2:] for p in block.parameters()}
    assert {id(p) for p in top["params"]} == top_params


def test_transfer_loads_local_weights_and_names_a_missing_file(tmp_path, tiny_images):
    from torchvision.models import resnet18

    torch.manual_seed(3)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = TransferResNet((3, 32, 32), 4, cfg("resnet_transfer", weights=str(path)))
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
    with pytest.raises(ConfigError, match="weights: file not found"):
        TransferResNet((3, 32, 32), 4, cfg("resnet_transfer", weights=str(tmp_path / "nope.pth")))


def test_transfer_accepts_grey_images():
    model = TransferResNet((1, 28, 28), 10, cfg("resnet_transfer"))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


# ---- checkpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trainable", "config"),
    [
        (
            "mlp",
            {"dropout": 0.3, "batch_norm": "after", "schedule": "plateau", "optimizer": "sgd", "optimizer.lr": 0.05},
        ),
        ("cnn", {"blocks": 2, "channels": 4, "crop_padding": 1, "hflip": True, "schedule": "cosine"}),
    ],
)
def test_resuming_from_a_checkpoint_gives_the_uninterrupted_run(trainable, config):
    import copy

    data = load_data({"dataset": "digits"})
    whole = []
    train_model(trainable, config, data, 4, lambda m, s=None: whole.append(m), checkpoint_every=2)
    saved = {}

    def keep(metrics, state=None):
        if state is not None:  # state holds live tensors: copy at once (the Tune adapter saves to disk)
            saved[metrics["epoch"]] = copy.deepcopy(state)

    train_model(trainable, config, data, 4, keep, checkpoint_every=2)
    assert sorted(saved) == [2, 4]
    rest = []
    train_model(trainable, config, data, 4, lambda m, s=None: rest.append(m), resume=saved[2])
    assert untimed(rest) == untimed(whole[2:])


def test_transfer_resumes_after_the_unfreeze(tiny_images):
    import copy

    config = {"freeze_epochs": 1, "unfreeze_blocks": 1, "batch_size": 32}
    whole, saved = [], {}
    train_model("resnet_transfer", config, tiny_images, 3, lambda m, s=None: whole.append(m))

    def keep(metrics, state=None):
        if state is not None:
            saved[metrics["epoch"]] = copy.deepcopy(state)

    train_model("resnet_transfer", config, tiny_images, 3, keep, checkpoint_every=1)
    rest = []
    train_model("resnet_transfer", config, tiny_images, 3, lambda m, s=None: rest.append(m), resume=saved[2])
    assert untimed(rest) == untimed(whole[2:])


@pytest.mark.parametrize(
    ("base", "new"),
    [
        (
            {"optimizer": "sgd", "optimizer.lr": 0.05, "optimizer.momentum": 0.5},
            {"optimizer.lr": 0.01, "optimizer.momentum": 0.9},
        ),
        (
            {"optimizer": "adam", "optimizer.lr": 0.003, "schedule": "exponential", "schedule.s": 50},
            {"optimizer.lr": 0.0006},
        ),
    ],
)
def test_a_checkpoint_continues_with_the_new_configs_optimizer_settings(base, new):
    """PBT's exploit: another config's checkpoint, this config's rate and momentum (the schedule's progress kept)."""
    import copy

    data = load_data({"dataset": "digits"})
    saved = {}
    train_model(
        "mlp", base, data, 3, lambda m, s=None: saved.setdefault(m["epoch"], copy.deepcopy(s)), checkpoint_every=1
    )
    rates, seen = [], []
    config = {**base, **new}

    def report(metrics, state=None):
        rates.append(metrics["lr"])
        seen.append(state)

    train_model("mlp", config, data, 3, report, resume=saved[2], checkpoint_every=1)
    unbroken = []
    train_model("mlp", config, data, 3, lambda m, s=None: unbroken.append(m["lr"]))
    assert rates[0] == pytest.approx(unbroken[2])  # the new rate at the schedule's point of epoch 3
    assert seen[0]["hot"]["optimizer.lr"] == new["optimizer.lr"]  # and its checkpoint says so
    momentum = seen[0]["optimizer"]["param_groups"][0].get("momentum")
    assert momentum == new.get("optimizer.momentum", momentum)
    same = []
    train_model("mlp", base, data, 3, lambda m, s=None: same.append(m["lr"]), resume=saved[2])
    assert same[0] == pytest.approx(saved[3]["optimizer"]["param_groups"][0]["lr"])  # its own checkpoint: unchanged
