"""What a model costs, reported by the built-in trainables beside its scores (objectives and constraints
of a search: ``search.objectives``, ``search.constraints``):

- ``params``: trainable and frozen parameters, counted;
- ``latency_ms``: inference time of one sample (eval mode, no gradients, batch of one; the median of
  several timed runs after a warm-up) on the trial's device;
- ``peak_memory_mb``: on a GPU the peak memory the trial allocated (PyTorch's allocator, since the trial
  started); on the CPU, where no allocator keeps a peak, an estimate of training's peak: the parameters,
  their gradients and optimizer state, plus the activations a training batch saves for the backward pass
  (counted as one batch's forward saves them).

Measuring runs once per trial (after its first epoch) and draws no random numbers of the trial's streams.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from hpsearch.protocol import COST_METRICS  # noqa: F401  (re-exported)

LATENCY_RUNS = 7


def _bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def latency_ms(model: nn.Module, sample: torch.Tensor, runs: int = LATENCY_RUNS) -> float:
    """Median milliseconds of one eval-mode forward of ``sample`` (a batch of one)."""
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            model(sample)  # warm-up: lazy initialisation, kernel selection
            _sync(sample.device)
            for _ in range(runs):
                start = time.perf_counter()
                model(sample)
                _sync(sample.device)
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        model.train(was_training)
    return statistics.median(times)


def activation_bytes(model: nn.Module, batch: torch.Tensor) -> int:
    """Bytes of the tensors a forward of ``batch`` saves for the backward pass (eval mode: no running
    statistics change; the graph is dropped unused)."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        if not isinstance(t, nn.Parameter):  # parameters are counted once, with the model
            saved += t.numel() * t.element_size()
        return t

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(batch)
    finally:
        model.train(was_training)
    return saved


def model_costs(
    model: nn.Module, batch: torch.Tensor, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, float]:
    """``params``, ``latency_ms`` and ``peak_memory_mb`` of ``model`` training on batches like ``batch``
    (on its device). The trial's random streams are left as they were."""
    device = batch.device
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        costs = {
            "params": float(sum(p.numel() for p in model.parameters())),
            "latency_ms": latency_ms(model, batch[:1]),
        }
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device)
        else:
            grads = [p for p in model.parameters() if p.requires_grad]
            state = [v for s in (optimizer.state.values() if optimizer else ()) for v in s.values()]
            peak = _bytes(model.parameters()) + _bytes(grads) + _bytes(state) + activation_bytes(model, batch)
    costs["peak_memory_mb"] = peak / 2**20
    return costs
