"""The replay workloads' discretised spaces (every config is recorded: ``benchmarks.replay_record``) and
the enumeration of a discrete space's configs, key for key as the compiled space proposes them."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from benchmarks.quality_methods import WORKLOADS as QUALITY

MAX_EPOCHS = 9


@dataclass(frozen=True)
class ReplayWorkload:
    name: str
    trainable: str  # the built-in trainable recorded
    data: dict[str, Any]  # the data source recorded on
    space: dict[str, Any]  # hpsearch's space schema: choices and constants only
    about: str


MLP_SPACE: dict[str, Any] = {
    "hidden_layers": {"choice": [1, 2, 3, 4]},
    "units": {"choice": [16, 64, 256]},
    "activation": {"choice": ["relu", "elu", "selu", "tanh", "sigmoid"]},
    "batch_norm": {"choice": ["none", "before", "after"]},
    "dropout": {"choice": [0.0, 0.25, 0.5]},
    "batch_size": 64,
    "optimizer": {
        "choice": {
            "sgd": {"lr": {"choice": [0.001, 0.01, 0.1, 1.0]}, "momentum": 0.9},
            "adam": {"lr": {"choice": [0.0001, 0.001, 0.01, 0.1]}},
        }
    },
}
CNN_SPACE: dict[str, Any] = {
    "blocks": {"choice": [1, 2]},
    "channels": {"choice": [8, 16, 32]},
    "activation": {"choice": ["relu", "elu", "selu", "tanh"]},
    "batch_norm": {"choice": ["none", "before", "after"]},
    "dropout": {"choice": [0.0, 0.25, 0.5]},
    "batch_size": 64,
    "optimizer": {
        "choice": {
            "sgd": {"lr": {"choice": [0.003, 0.03, 0.3]}, "momentum": 0.9},
            "adam": {"lr": {"choice": [0.0003, 0.003, 0.03]}},
        }
    },
}
WORKLOADS = {
    "digits_mlp": ReplayWorkload(
        "digits_mlp", "mlp", QUALITY["digits"].data, MLP_SPACE,
        "MLP on scikit-learn's digits: 4320 configs (depth, width, 5 activations, batch norm and where, dropout, "
        "SGD or Adam with 4 rates each; the highest rates diverge or stall)",
    ),
    "images_cnn": ReplayWorkload(
        "images_cnn", "cnn", QUALITY["images"].data, CNN_SPACE,
        "the small CNN task of benchmarks.quality (synthetic 1x6x6 images, 16 classes): 1296 configs (depth, "
        "width, activation, batch norm and where, dropout, SGD or Adam with 3 rates each)",
    ),
}  # fmt: skip


def configs_of(space: Any) -> list[dict[str, Any]]:
    """Every config of a discrete space, with exactly the keys and values its compiled define-by-run
    function returns (a conditional's branch name, then its branch's keys as ``name.key``)."""
    from hpsearch import spaces

    def expand(sp: Any, prefix: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{}]
        for name, param in sp.params.items():
            key = prefix + name
            if isinstance(param, spaces.Fixed):
                options = [{key: param.value}]
            elif isinstance(param, spaces.Choice):
                options = [{key: v} for v in param.options]
            elif isinstance(param, spaces.Conditional):
                options = [{key: b, **sub} for b, branch in param.branches.items() for sub in expand(branch, f"{key}.")]
            else:
                raise ValueError(f"{key}: a replay space has choices and constants only")
            out = [{**a, **b} for a, b in itertools.product(out, options)]
        return out

    return expand(spaces.parse_space(space), "")


def config_key(config: dict[str, Any]) -> str:
    """The table's key of a config (any key order)."""
    return json.dumps(config, sort_keys=True, default=str)
