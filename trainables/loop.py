"""The training loop: a pure function of (config, data) that reports through a callback.

It knows nothing about Ray or MLflow; ``trainables.tune_adapter`` connects it to Ray Tune.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from trainables.config import MLPConfig
from trainables.data import Splits
from trainables.models import build_mlp
from trainables.optim import build_optimizer, clip_gradients

Report = Callable[[dict[str, float]], None]


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite: the config diverged (not a bug in the code)."""


def train_mlp(config: dict[str, Any], data: Splits, epochs: int, report: Report, seed: int = 0) -> None:
    """Train the MLP for ``epochs`` epochs; after each call ``report`` with
    ``epoch, train_loss, val_loss, val_accuracy, lr``. Raise :class:`TrialDiverged` on a non-finite loss.
    """
    cfg = MLPConfig.from_dict(config)
    device = data.train_x.device
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    model = build_mlp(data.num_features, data.num_classes, cfg).to(device)
    optimizer = build_optimizer(model.parameters(), cfg)
    n = len(data.train_y)
    # BatchNorm cannot normalise a batch of one sample; drop such a tail batch.
    last_start = n - 1 if n % cfg.batch_size == 1 else n
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for start in range(0, last_start, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(model.parameters(), cfg.grad_clip, cfg.clip_threshold)
            optimizer.step()
            # Accumulate on the device: one host sync per epoch, not per step.
            loss_sum += loss.detach() * len(idx)
            seen += len(idx)
        train_loss = (loss_sum / seen).item()
        val_loss, val_accuracy = evaluate(model, data.val_x, data.val_y)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrialDiverged(
                f"loss became non-finite in epoch {epoch} (train_loss={train_loss}, val_loss={val_loss})"
            )
        report(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "lr": optimizer.param_groups[0]["lr"],
            }
        )


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(dim=1) == target).sum()
    return (loss_sum / len(y)).item(), (correct.float() / len(y)).item()
