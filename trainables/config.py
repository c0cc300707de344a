"""What the built-in MLP trainable accepts: keys, defaults and allowed values (no torch import).

Configs are flat and keyed by dotted names, exactly as the search space produces them and
MLflow records them: ``optimizer`` is the optimizer's name, ``optimizer.lr`` its learning rate.
Keys under a choice (``optimizer.momentum``) only apply to the branches that use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A trial config names an unknown key or holds a value the trainable cannot use."""


ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "tanh")
BATCH_NORM = ("none", "before", "after")
OPTIMIZERS = ("sgd", "adam")
GRAD_CLIP = ("none", "norm", "value")

# Which keys a choice's value unlocks: ``optimizer.momentum`` means nothing to Adam.
BRANCH_KEYS = {
    ("optimizer", "sgd"): ("lr", "momentum", "nesterov", "weight_decay"),
    ("optimizer", "adam"): ("lr", "beta1", "beta2", "eps", "weight_decay"),
    ("grad_clip", "none"): (),
    ("grad_clip", "norm"): ("threshold",),
    ("grad_clip", "value"): ("threshold",),
}


@dataclass(frozen=True)
class MLPConfig:
    """One trial's hyperparameters for the MLP; every field has its default here."""

    hidden_layers: int = 2
    units: int = 128
    activation: str = "relu"
    batch_norm: str = "none"  # none | before | after (the activation)
    dropout: float = 0.0
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: str = "none"
    clip_threshold: float = 1.0

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> MLPConfig:
        """Build from a flat config; raise :class:`ConfigError` naming every bad key/value."""
        problems = check_config(config)
        if problems:
            raise ConfigError("invalid trial config: " + "; ".join(problems))
        kw: dict[str, Any] = {}
        for key, value in config.items():
            head, _, tail = key.partition(".")
            if not tail:
                kw[head] = value
            elif head == "grad_clip":
                kw["clip_threshold"] = value
            else:
                kw[tail] = value
        return cls(**kw)


_TOP = {"hidden_layers", "units", "activation", "batch_norm", "dropout", "batch_size", "optimizer", "grad_clip"}
_CHOICES = {"activation": ACTIVATIONS, "batch_norm": BATCH_NORM, "optimizer": OPTIMIZERS, "grad_clip": GRAD_CLIP}


def known_keys() -> set[str]:
    keys = set(_TOP)
    for (head, _), tails in BRANCH_KEYS.items():
        keys.update(f"{head}.{t}" for t in tails)
    return keys


def check_value(key: str, value: Any) -> str | None:
    """Return a problem ``key: message`` if ``value`` cannot be used for ``key``, else None."""
    if key in _CHOICES:
        return None if value in _CHOICES[key] else f"{key}: must be one of {', '.join(_CHOICES[key])}, got {value!r}"
    if key == "optimizer.nesterov":
        return None if isinstance(value, bool) else f"{key}: must be true or false, got {value!r}"
    integer = key in {"hidden_layers", "units", "batch_size"}
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return f"{key}: must be {'an integer' if integer else 'a number'}, got {value!r}"
    if not math.isfinite(value):
        return f"{key}: must be finite, got {value!r}"
    lows = {"hidden_layers": 1, "units": 1, "batch_size": 1}
    if key in lows and value < lows[key]:
        return f"{key}: must be >= {lows[key]}, got {value!r}"
    if key == "dropout" and not 0.0 <= value < 1.0:
        return f"{key}: must be in [0, 1), got {value!r}"
    if key in {"optimizer.lr", "grad_clip.threshold", "optimizer.eps"} and value <= 0:
        return f"{key}: must be > 0, got {value!r}"
    if key in {"optimizer.momentum", "optimizer.beta1", "optimizer.beta2"} and not 0.0 <= value < 1.0:
        return f"{key}: must be in [0, 1), got {value!r}"
    if key == "optimizer.weight_decay" and value < 0:
        return f"{key}: must be >= 0, got {value!r}"
    return None


def check_config(config: dict[str, Any]) -> list[str]:
    """All problems of a flat trial config (unknown keys, bad values, keys of an unused branch)."""
    problems = []
    known = known_keys()
    for key, value in config.items():
        if key not in known:
            problems.append(f"{key}: unknown key for the mlp trainable (known: {', '.join(sorted(known))})")
            continue
        head, _, tail = key.partition(".")
        if tail:
            branch = config.get(head, MLPConfig.__dataclass_fields__[head].default)
            if tail not in BRANCH_KEYS.get((head, branch), ()):
                problems.append(f"{key}: does not apply when {head} is {branch!r}")
                continue
        problem = check_value(key, value)
        if problem:
            problems.append(problem)
    return problems
