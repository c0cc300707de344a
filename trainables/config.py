"""What the built-in trainables accept: keys, defaults, allowed values (no torch import).

Configs are flat and keyed by names, exactly as the search space produces them and MLflow
records them. A choice's own parameters are dotted under it: ``optimizer`` is the optimizer's
name, ``optimizer.lr`` its learning rate, ``optimizer.momentum`` exists only for the
optimizers that have one. Every key and its default live in :data:`KEYS`; each trainable
accepts the shared keys plus its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpsearch.errors import Problem


class ConfigError(ValueError):
    """A trial config names an unknown key or holds a value the trainable cannot use."""


@dataclass(frozen=True)
class Key:
    """One config key: its default, its type and range, and which choice it belongs to."""

    default: Any
    kind: str  # choice | int | float | bool | str
    doc: str
    choices: tuple = ()
    low: float | None = None  # inclusive
    high: float | None = None  # exclusive when high_open
    high_open: bool = False
    low_open: bool = False
    when: tuple[str, tuple[str, ...]] | None = None  # (choice key, the values it applies to)
    nullable: bool = False


ACTIVATIONS = ("relu", "leaky_relu", "prelu", "rrelu", "elu", "selu", "gelu", "tanh", "sigmoid")
INITS = ("auto", "default", "xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform", "lecun_normal")
OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam")
SCHEDULES = ("constant", "power", "exponential", "plateau", "cosine", "onecycle")
_ADAMS = ("adam", "adamw", "nadam")

_SHARED: dict[str, Key] = {
    # Activation and the initialisation that matches it
    "activation": Key("relu", "choice", "hidden-layer activation", ACTIVATIONS),
    "activation.alpha": Key(
        None,
        "float",
        "leaky_relu negative slope (0.01), elu alpha (1.0), prelu initial slope (0.25)",
        low=0.0,
        when=("activation", ("leaky_relu", "elu", "prelu")),
        nullable=True,
    ),
    "activation.lower": Key(
        1 / 8, "float", "rrelu: lower bound of the random slope", low=0.0, high=1.0, when=("activation", ("rrelu",))
    ),
    "activation.upper": Key(
        1 / 3, "float", "rrelu: upper bound of the random slope", low=0.0, high=1.0, when=("activation", ("rrelu",))
    ),
    "self_normalizing": Key(True, "bool", "with selu: LeCun-normal init, no batch norm, AlphaDropout"),
    "init": Key(
        "auto",
        "choice",
        "weight init; auto = lecun_normal for selu, else kaiming for the relu family, xavier for tanh/sigmoid/gelu",
        INITS,
    ),
    "batch_norm": Key(
        "none", "choice", "none | before (Linear/Conv -> BN -> act) | after (-> act -> BN)", ("none", "before", "after")
    ),
    "dropout": Key(
        0.0, "float", "dropout rate (inverted dropout, off in eval mode)", low=0.0, high=1.0, high_open=True
    ),
    "dropout_layers": Key(0, "int", "apply dropout to the last k hidden layers; 0 = all", low=0),
    "mc_dropout": Key(0, "int", "evaluate as the mean of n stochastic passes (Monte-Carlo dropout); 0 = off", low=0),
    # Regularisation
    "l1": Key(0.0, "float", "L1 penalty: adds l1 * sum|W| over weight matrices to the loss", low=0.0),
    "l2": Key(0.0, "float", "L2 penalty: adds l2/2 * sum W^2 over weight matrices to the loss", low=0.0),
    "max_norm": Key(
        0.0,
        "float",
        "max-norm: each unit's incoming weight vector rescaled to norm <= r after every step; 0 = off",
        low=0.0,
    ),
    "grad_clip": Key("none", "choice", "gradient clipping", ("none", "value", "norm")),
    "grad_clip.threshold": Key(
        1.0,
        "float",
        "clip each component to [-t, t] (value) or the global L2 norm to t (norm)",
        low=0.0,
        low_open=True,
        when=("grad_clip", ("value", "norm")),
    ),
    # Optimizer
    "optimizer": Key("adam", "choice", "optimizer", OPTIMIZERS),
    "optimizer.lr": Key(
        1e-3, "float", "learning rate (peak rate for onecycle)", low=0.0, low_open=True, when=("optimizer", OPTIMIZERS)
    ),
    "optimizer.momentum": Key(
        0.9,
        "float",
        "momentum (sgd: 0.9, rmsprop: 0.0 unless set)",
        low=0.0,
        high=1.0,
        high_open=True,
        when=("optimizer", ("sgd", "rmsprop")),
    ),
    "optimizer.nesterov": Key(False, "bool", "Nesterov momentum", when=("optimizer", ("sgd",))),
    "optimizer.alpha": Key(
        0.99,
        "float",
        "RMSProp decay of the squared-gradient average",
        low=0.0,
        high=1.0,
        high_open=True,
        when=("optimizer", ("rmsprop",)),
    ),
    "optimizer.beta1": Key(0.9, "float", "Adam beta1", low=0.0, high=1.0, high_open=True, when=("optimizer", _ADAMS)),
    "optimizer.beta2": Key(0.999, "float", "Adam beta2", low=0.0, high=1.0, high_open=True, when=("optimizer", _ADAMS)),
    "optimizer.eps": Key(
        1e-8, "float", "Adam epsilon", low=0.0, low_open=True, when=("optimizer", _ADAMS + ("rmsprop", "adagrad"))
    ),
    "optimizer.weight_decay": Key(
        0.01, "float", "AdamW decoupled weight decay", low=0.0, when=("optimizer", ("adamw",))
    ),
    # Learning-rate schedule
    "schedule": Key("constant", "choice", "learning-rate schedule", SCHEDULES),
    "schedule.s": Key(
        1000.0,
        "float",
        "power/exponential: steps s in lr0/(1+t/s)^c and lr0*0.1^(t/s)",
        low=0.0,
        low_open=True,
        when=("schedule", ("power", "exponential")),
    ),
    "schedule.c": Key(1.0, "float", "power: exponent c", low=0.0, low_open=True, when=("schedule", ("power",))),
    "schedule.factor": Key(
        0.5,
        "float",
        "plateau: multiply the rate by this factor",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        when=("schedule", ("plateau",)),
    ),
    "schedule.patience": Key(
        2, "int", "plateau: epochs without val_loss improvement before reducing", low=0, when=("schedule", ("plateau",))
    ),
    "schedule.min_lr": Key(0.0, "float", "cosine: final rate", low=0.0, when=("schedule", ("cosine",))),
    "schedule.pct_start": Key(
        0.3,
        "float",
        "onecycle: share of steps spent increasing the rate",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        when=("schedule", ("onecycle",)),
    ),
    "warmup_epochs": Key(0.0, "float", "linear warm-up of the rate over the first epochs (per step); 0 = off", low=0.0),
    "batch_size": Key(64, "int", "mini-batch size", low=1),
    # Speed (mostly for GPUs; each also runs on the CPU)
    "amp": Key(
        "none",
        "choice",
        "mixed precision of forward and loss: none | bf16 (autocast) | fp16 (autocast + gradient scaler; CUDA)",
        ("none", "bf16", "fp16"),
    ),
    "compile": Key(False, "bool", "torch.compile the model for training (compiles once per trial)"),
}

_MLP = {
    "hidden_layers": Key(2, "int", "hidden layers", low=1),
    "units": Key(128, "int", "units per hidden layer", low=1),
}

_CNN = {
    "blocks": Key(3, "int", "conv stages; each halves the resolution and doubles the channels", low=1, high=5),
    "channels": Key(32, "int", "channels of the first stage", low=1),
    "block_type": Key(
        "plain", "choice", "plain (conv-BN-act x2, max-pool) | residual (projection shortcuts)", ("plain", "residual")
    ),
    "crop_padding": Key(0, "int", "augmentation: random crop after zero-padding by p pixels; 0 = off", low=0),
    "hflip": Key(False, "bool", "augmentation: random horizontal flip"),
    "channels_last": Key(False, "bool", "images and conv weights in channels-last memory format (tensor-core GPUs)"),
}

_TRANSFER = {
    "weights": Key(None, "str", "path of resnet18 weights (a state_dict .pth); none = random init", nullable=True),
    "freeze_epochs": Key(1, "int", "epochs with the backbone frozen (only the new head trains)", low=0),
    "unfreeze_blocks": Key(1, "int", "then unfreeze the top k of resnet18's 4 blocks", low=0, high=4),
    "finetune_lr_mult": Key(
        0.1, "float", "learning-rate multiplier of the unfrozen blocks", low=0.0, high=1.0, low_open=True
    ),
    "crop_padding": _CNN["crop_padding"],
    "hflip": _CNN["hflip"],
    "channels_last": _CNN["channels_last"],
}

KEYS: dict[str, dict[str, Key]] = {
    "mlp": {**_MLP, **_SHARED},
    "cnn": {**_CNN, **{k: v for k, v in _SHARED.items() if k != "dropout_layers"}},
    "resnet_transfer": {
        **_TRANSFER,
        **{
            k: v
            for k, v in _SHARED.items()
            if not k.startswith(("activation", "init", "self_normalizing", "batch_norm", "dropout_layers"))
        },
    },
}


def check_value(keys: dict[str, Key], key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for ``key`` (a message), or None if it can be used."""
    spec = keys[key]
    if value is None and spec.nullable:
        return None
    if spec.kind == "choice":
        return None if value in spec.choices else f"must be one of {', '.join(spec.choices)}, got {value!r}"
    if spec.kind == "bool":
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if spec.kind == "str":
        return None if isinstance(value, str) else f"must be a string, got {value!r}"
    integer = spec.kind == "int"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return f"must be {'an integer' if integer else 'a number'}, got {value!r}"
    if not math.isfinite(value):
        return f"must be finite, got {value!r}"
    if spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low):
        return f"must be {'>' if spec.low_open else '>='} {spec.low:g}, got {value!r}"
    if spec.high is not None and (value >= spec.high if spec.high_open else value > spec.high):
        return f"must be {'<' if spec.high_open else '<='} {spec.high:g}, got {value!r}"
    return None


def branch_problem(
    keys: dict[str, Key], key: str, choices: Mapping[str, Any], nested_under: str | None = None
) -> str | None:
    """The one rule for which keys apply: None when ``key`` applies given the ``choices`` made (choice key
    -> the value taken; a choice not given is at its default), else why not. A choice's own parameters
    (``optimizer.momentum``) apply only under the values that have them (sgd, rmsprop).

    ``nested_under``: the key is written under that choice's branch (in a search space), so it must be
    one of that choice's own parameters.
    """
    when = keys[key].when
    if nested_under is not None and (when is None or when[0] != nested_under):
        return f"does not apply when {nested_under} is {choices.get(nested_under)!r}"
    if when is None:
        return None
    value = choices.get(when[0], keys[when[0]].default)
    return None if value in when[1] else f"does not apply when {when[0]} is {value!r}"


def check_config(trainable: str, config: dict[str, Any]) -> list[Problem]:
    """All problems of a flat trial config: unknown keys, bad values, keys of a choice not taken."""
    keys = KEYS[trainable]
    problems: list[Problem] = []
    for key, value in config.items():
        if key not in keys:
            problems.append(
                Problem(key, f"unknown key for the {trainable} trainable (known: {', '.join(sorted(keys))})")
            )
            continue
        if (why := branch_problem(keys, key, config)) is not None:
            problems.append(Problem(key, why))
            continue
        problem = check_value(keys, key, value)
        if problem:
            problems.append(Problem(key, problem))
    return problems


def resolve(trainable: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config the trainable actually uses: validated, every default filled in, implications applied.

    Only keys that apply are kept (no ``optimizer.momentum`` for Adam). With ``selu`` and
    ``self_normalizing`` the self-normalising set-up wins: LeCun-normal init, no batch norm
    (AlphaDropout is chosen by the model builder).
    """
    problems = check_config(trainable, config)
    if problems:
        raise ConfigError(f"invalid {trainable} config: " + "; ".join(map(str, problems)))
    keys = KEYS[trainable]
    out: dict[str, Any] = {}
    for key, spec in keys.items():
        if branch_problem(keys, key, config) is not None:
            continue
        out[key] = config.get(key, spec.default)
    act: str = out.get("activation", "")
    if out.get("activation.alpha", 0.0) is None:
        out["activation.alpha"] = {"leaky_relu": 0.01, "elu": 1.0, "prelu": 0.25}[act]
    if "optimizer.momentum" in out and out["optimizer"] == "rmsprop" and "optimizer.momentum" not in config:
        out["optimizer.momentum"] = 0.0
    if "init" in out:
        selu = act == "selu" and out.get("self_normalizing", False)
        if selu:
            out["init"], out["batch_norm"] = "lecun_normal", "none"
        elif out["init"] == "auto":
            out["init"] = {
                "selu": "lecun_normal",
                "tanh": "xavier_uniform",
                "sigmoid": "xavier_uniform",
                "gelu": "xavier_uniform",
            }.get(act, "kaiming_uniform")
    return out


def overrides(trainable: str, config: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Keys whose sampled value the trainable does not use as given: ``{key: (sampled, used)}``."""
    used = resolve(trainable, config)
    return {k: (v, used[k]) for k, v in config.items() if k in used and used[k] != v}


@dataclass(frozen=True)
class TrainConfig:
    """Typed access to a resolved config (``cfg["optimizer.lr"]`` or ``cfg.get(...)``)."""

    trainable: str
    values: dict[str, Any]

    @classmethod
    def from_dict(cls, trainable: str, config: dict[str, Any]) -> TrainConfig:
        return cls(trainable, resolve(trainable, config))

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)
