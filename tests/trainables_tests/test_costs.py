"""What a model costs (params, latency, peak memory): measured without touching the trial's state."""

from __future__ import annotations

import torch
from torch import nn

from hpsearch.trainables import costs
from hpsearch.trainables.costs import activation_bytes, model_costs


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))


def test_params_are_counted_and_memory_covers_weights_gradients_state_and_activations():
    torch.manual_seed(0)
    net, x = _net(), torch.randn(256, 64)
    opt = torch.optim.Adam(net.parameters())
    net(x).sum().backward()
    opt.step()
    measured = model_costs(net, x, opt)
    n = 64 * 128 + 128 + 2 * 128 + 128 * 10 + 10
    assert measured["params"] == n
    weights = 4 * n  # float32: weights, gradients, Adam's two moments
    acts = activation_bytes(net, x)
    assert acts >= 4 * 256 * (64 + 128)  # at least the first layer's input and the hidden layer, per sample
    assert (
        measured["peak_memory_mb"] * 2**20 == 4 * weights + acts + 6 * 4
    )  # + Adam's step counters (one float per parameter tensor)
    assert 0 < measured["latency_ms"] < 1000


def test_measuring_leaves_the_random_streams_and_the_running_statistics_as_they_were():
    net, x = _net(), torch.randn(32, 64)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    model_costs(net, x)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.training  # back in the mode it was in


def test_on_a_gpu_the_peak_is_the_allocators(monkeypatch):
    """The CUDA path: the allocator's peak, not the CPU estimate (the device queries faked; the model on meta)."""
    net = _net().to("meta")
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 300 * 2**20)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(costs, "latency_ms", lambda model, sample: 1.5)
    monkeypatch.setattr(torch.random, "fork_rng", lambda **kw: __import__("contextlib").nullcontext())
    batch = torch.empty(8, 64, device="meta")
    monkeypatch.setattr(type(batch), "device", property(lambda self: torch.device("cuda", 0)))
    assert model_costs(net, batch) == {"params": 9866.0, "latency_ms": 1.5, "peak_memory_mb": 300.0}
