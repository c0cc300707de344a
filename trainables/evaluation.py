"""Scores of a model on a split, in eval mode: the loop's validation, ``hpsearch retrain``'s test.
A group's ranks each score a share and add the sums up (:func:`all_sum`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from hpsearch.trainables.feeds import tensor_batches


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks of the group (in place; returned)."""
    import torch.distributed as dist

    dist.all_reduce(tensor)
    return tensor


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    mc_samples: int = 0,
    batch_size: int = 4096,
    device: torch.device | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a classifier on whole tensors (see :func:`evaluate_batches`);
    batches are copied to ``device`` (default: where ``x`` is) when the data lives elsewhere."""
    device = device or x.device
    scores = evaluate_batches(model, tensor_batches(x, y, batch_size, device), False, mc_samples, device)
    return scores["loss"], scores["accuracy"]


@torch.no_grad()
def evaluate_batches(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    regression: bool,
    mc_samples: int = 0,
    device: torch.device | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Scores in eval mode: ``loss`` (cross-entropy) and ``accuracy`` for a classifier; ``loss`` (mean
    squared error), ``mae`` and ``r2`` (the mean over outputs of each output's R^2) for a regression. With
    ``mc_samples`` > 1 the prediction is the mean of that many stochastic passes with dropout on
    (Monte-Carlo dropout), BatchNorm still in eval. ``reduce`` sums a tensor over the ranks of a group
    that each scored a share of the split (every rank must call it; a classifier's share may be empty)."""
    model.eval()
    if mc_samples > 1:
        for m in model.modules():
            if isinstance(m, (nn.Dropout, nn.AlphaDropout)):
                m.train()
    sums: dict[str, torch.Tensor] = {}
    count = 0

    def add(name: str, value: torch.Tensor) -> None:
        sums[name] = sums[name] + value if name in sums else value

    for xb, target in batches:
        if regression:
            passes = [model(xb) for _ in range(max(mc_samples, 1))]
            pred = torch.stack(passes).mean(0).reshape(target.shape).float()
            t = target.float().reshape(len(target), -1)
            err = pred.reshape(t.shape) - t
            add("se", (err**2).sum(0))
            add("ae", err.abs().sum(0))
            add("y", t.sum(0))
            add("y2", (t**2).sum(0))
            count += len(target)
            continue
        if mc_samples > 1:
            probs = torch.stack([F.softmax(model(xb), dim=1) for _ in range(mc_samples)]).mean(0)
            log_probs = probs.clamp_min(1e-12).log()
        else:
            log_probs = F.log_softmax(model(xb), dim=1)
        add("loss", F.nll_loss(log_probs, target, reduction="sum"))
        add("correct", (log_probs.argmax(dim=1) == target).sum())
        count += len(target)
    model.eval()
    if reduce is not None:
        if not regression:  # a rank whose share is empty adds zeros
            sums.setdefault("loss", torch.zeros((), device=device))
            sums.setdefault("correct", torch.zeros((), dtype=torch.long, device=device))
        keys = sorted(sums)
        flat = reduce(
            torch.cat(
                [sums[k].double().reshape(-1) for k in keys]
                + [torch.tensor([float(count)], dtype=torch.double, device=device)]
            )
        )
        offset = 0
        for k in keys:
            size = sums[k].numel()
            sums[k] = flat[offset : offset + size].reshape(sums[k].shape)
            offset += size
        count = int(flat[-1].item())
    n = max(count, 1)
    if not regression:
        return {
            "loss": (sums["loss"] / n).item() if sums else math.nan,
            "accuracy": (sums["correct"].float() / n).item() if sums else math.nan,
        }
    if not sums:
        return {"loss": math.nan, "mae": math.nan, "r2": math.nan}
    outputs = sums["se"].numel()
    total = sums["y2"] - sums["y"] ** 2 / n  # per output: sum of squares around the mean
    r2 = 1 - sums["se"] / total.clamp_min(1e-12)
    return {
        "loss": (sums["se"].sum() / (n * outputs)).item(),
        "mae": (sums["ae"].sum() / (n * outputs)).item(),
        "r2": r2.mean().item(),
    }


__all__ = ["all_sum", "evaluate", "evaluate_batches"]
