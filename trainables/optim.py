"""Optimizers, regularisation penalties, max-norm and gradient clipping."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from hpsearch.trainables.config import TrainConfig

FUSED = ("sgd", "adam", "adamw", "adagrad")  # optimizers with a fused implementation (one kernel, AMP-aware)


def build_optimizer(params: Iterable[Any], cfg: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    """The configured optimizer over ``params`` (tensors or param-group dicts); only its own options apply.

    ``fused``: use the fused implementation where there is one (:data:`FUSED`). On CUDA it is both
    faster and what lets fp16's gradient scaler step without a host-device sync per step (a fused
    optimizer checks for inf/NaN gradients on the device).
    """
    name, lr = cfg["optimizer"], cfg["optimizer.lr"]
    fuse: dict[str, Any] = {"fused": True} if fused and name in FUSED else {}
    if name == "sgd":
        momentum = cfg["optimizer.momentum"]
        nesterov = cfg["optimizer.nesterov"] and momentum > 0
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, **fuse)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=cfg["optimizer.eps"], **fuse)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=lr, alpha=cfg["optimizer.alpha"], momentum=cfg["optimizer.momentum"], eps=cfg["optimizer.eps"]
        )
    betas = (cfg["optimizer.beta1"], cfg["optimizer.beta2"])
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=cfg["optimizer.eps"], **fuse)
    if name == "adamw":  # decoupled weight decay
        return torch.optim.AdamW(
            params, lr=lr, betas=betas, eps=cfg["optimizer.eps"], weight_decay=cfg["optimizer.weight_decay"], **fuse
        )
    if name == "nadam":
        return torch.optim.NAdam(params, lr=lr, betas=betas, eps=cfg["optimizer.eps"])
    raise ValueError(f"optimizer: unknown optimizer {name!r}")


def weight_matrices(model: nn.Module) -> list[torch.Tensor]:
    """Weights of Linear and Conv layers that are being trained (not biases, not BatchNorm)."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and m.weight.requires_grad]


def penalty(model: nn.Module, l1: float, l2: float) -> torch.Tensor | None:
    """``l1 * sum|W| + l2/2 * sum W^2`` over the weight matrices (gradient ``l1*sign(W) + l2*W``)."""
    if l1 == 0 and l2 == 0:
        return None
    weights = weight_matrices(model)
    total = torch.zeros((), device=weights[0].device)
    for w in weights:
        if l1:
            total = total + l1 * w.abs().sum()
        if l2:
            total = total + 0.5 * l2 * w.pow(2).sum()
    return total


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> None:
    """Rescale each unit's incoming weight vector (a row of a Linear weight, an output channel's
    kernel of a Conv) to L2 norm <= ``max_norm``."""
    for w in weight_matrices(model):
        w.copy_(torch.renorm(w, p=2, dim=0, maxnorm=max_norm))


def clip_gradients(params: Iterable[nn.Parameter], mode: str, threshold: float) -> None:
    """Clip in place: ``value`` clamps each component to [-t, t]; ``norm`` rescales to global L2 norm <= t."""
    if mode == "norm":
        torch.nn.utils.clip_grad_norm_(params, threshold)
    elif mode == "value":
        torch.nn.utils.clip_grad_value_(params, threshold)
    elif mode != "none":
        raise ValueError(f"grad_clip: unknown mode {mode!r}")


_GROUP_KEYS = {  # config key -> the optimizer's parameter-group setting it is
    "optimizer.momentum": "momentum",
    "optimizer.alpha": "alpha",
    "optimizer.eps": "eps",
    "optimizer.weight_decay": "weight_decay",
}


def hot_values(cfg: TrainConfig) -> dict[str, Any]:
    """The optimizer settings a checkpoint was trained with (what :func:`retune` compares against)."""
    keys = ["optimizer.lr", *_GROUP_KEYS, "optimizer.beta1", "optimizer.beta2"]
    return {k: cfg.get(k) for k in keys}


def retune(optimizer: torch.optim.Optimizer, schedule: Any, saved: dict[str, Any] | None, cfg: TrainConfig) -> None:
    """After loading a checkpoint trained with the optimizer settings ``saved``: apply this config's
    (population-based training continues another trial's checkpoint with new values). The learning rate
    scales every group's base rate by new/old (a transfer model's lower rates keep their ratio); the
    schedule's progress is kept. A checkpoint of the same config changes nothing."""
    if not saved:
        return
    old_lr, new_lr = saved.get("optimizer.lr"), cfg["optimizer.lr"]
    if old_lr and new_lr != old_lr:
        for group in optimizer.param_groups:
            group["base_lr"] *= new_lr / old_lr
        schedule._apply()
    for key, setting in _GROUP_KEYS.items():
        if cfg.get(key) is not None and saved.get(key) != cfg.get(key):
            for group in optimizer.param_groups:
                if setting in group:
                    group[setting] = cfg[key]
    if cfg.get("optimizer.beta1") is not None and (saved.get("optimizer.beta1"), saved.get("optimizer.beta2")) != (
        cfg["optimizer.beta1"],
        cfg["optimizer.beta2"],
    ):
        for group in optimizer.param_groups:
            if "betas" in group:
                group["betas"] = (cfg["optimizer.beta1"], cfg["optimizer.beta2"])
