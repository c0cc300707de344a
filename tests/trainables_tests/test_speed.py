"""The speed switches (amp, channels_last, compile) on the CPU: they change how the work is done, not
what is learned (beyond mixed precision's rounding)."""

import pytest
import torch

from hpsearch.sources import load_data
from hpsearch.trainables.config import check_config
from hpsearch.trainables.loop import train_model


@pytest.fixture(scope="module")
def images():
    return load_data({"dataset": "synthetic", "samples": 600, "shape": [3, 8, 8], "classes": 4, "seed": 0})


def _run(trainable, config, data, epochs=2):
    metrics = []
    model = train_model(trainable, config, data, epochs, lambda m, state=None: metrics.append(m), seed=0)
    return model, [m["val_loss"] for m in metrics]


CNN = {"blocks": 1, "channels": 8}


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_with_float32_weights(images, amp):
    _, plain = _run("cnn", CNN, images)
    model, mixed = _run("cnn", {**CNN, "amp": amp, "grad_clip": "norm", "grad_clip.threshold": 1.0}, images)
    _, clipped_plain = _run("cnn", {**CNN, "grad_clip": "norm", "grad_clip.threshold": 1.0}, images)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast computes, weights stay fp32
    assert mixed != clipped_plain  # the forward pass really ran in reduced precision ...
    assert mixed == pytest.approx(clipped_plain, abs=5e-3)  # ... and learned the same thing
    assert plain[1] < plain[0] and mixed[1] < mixed[0]


def test_channels_last_gives_the_same_metrics(images):
    _, plain = _run("cnn", CNN, images)
    model, last = _run("cnn", {**CNN, "channels_last": True}, images)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert last == pytest.approx(plain, abs=1e-5)


@pytest.mark.slow
def test_compiled_model_gives_the_same_metrics(images):
    config = {"hidden_layers": 1, "units": 16}
    _, plain = _run("mlp", config, images, epochs=1)
    model, compiled = _run("mlp", {**config, "compile": True}, images, epochs=1)
    assert compiled == pytest.approx(plain, abs=1e-5)
    assert not any(k.startswith("_orig_mod") for k in model.state_dict())  # checkpoints keep plain keys


def test_speed_switches_are_checked():
    assert [str(p) for p in check_config("cnn", {"amp": "fp8", "channels_last": "yes"})] == [
        "amp: must be one of none, bf16, fp16, got 'fp8'",
        "channels_last: must be true or false, got 'yes'",
    ]
    assert check_config("mlp", {"channels_last": True})[0].path == "channels_last"  # images only
