"""Optimizers and gradient clipping."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from trainables.config import MLPConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: MLPConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    raise ValueError(f"optimizer: unknown optimizer {cfg.optimizer!r}")


def clip_gradients(params: Iterable[torch.nn.Parameter], mode: str, threshold: float) -> None:
    """Clip in place: ``value`` clamps each component to [-t, t]; ``norm`` rescales to global L2 norm <= t."""
    if mode == "norm":
        torch.nn.utils.clip_grad_norm_(params, threshold)
    elif mode == "value":
        torch.nn.utils.clip_grad_value_(params, threshold)
    elif mode != "none":
        raise ValueError(f"grad_clip: unknown mode {mode!r}")
