"""The overhead benchmark's workload, one definition for every variant: a digits MLP over a flat space
(activation, layers, width, batch norm, dropout, clip-norm, optimizer, learning rate), <= 10 epochs,
batch 64, one torch thread. Only the orchestration around it differs between variants."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

ACTIVATIONS = ["relu", "elu", "selu", "leaky_relu", "tanh"]
WIDTHS = [32, 64, 128, 256]
CLIP_NORMS = [0.0, 1.0, 5.0]
OPTIMIZERS = ["sgd", "adam"]
MAX_EPOCHS, GRACE, REDUCTION, CONCURRENCY = 10, 1, 3, 2
METRIC, MODE = "val_accuracy", "max"

# The same space in hpsearch's spec form (variant a)
SPACE = {
    "activation": {"choice": ACTIVATIONS},
    "layers": {"int": [1, 3]},
    "width": {"choice": WIDTHS},
    "batch_norm": {"choice": [False, True]},
    "dropout": {"float": [0.0, 0.5]},
    "clip_norm": {"choice": CLIP_NORMS},
    "optimizer": {"choice": OPTIMIZERS},
    "lr": {"float": [1.0e-4, 1.0e-1], "log": True},
}


def spec_data(num_trials: int, seed: int) -> dict[str, Any]:
    return {
        "name": "bench-overhead",
        "trainable": "benchmarks.workload:fit",
        "data": {"dataset": "digits", "val_fraction": 0.2, "test_fraction": 0.2, "seed": 0},
        "space": SPACE,
        "search": {
            "metric": METRIC,
            "mode": MODE,
            "num_trials": num_trials,
            "max_concurrent": CONCURRENCY,
            "sampler": {"type": "tpe", "seed": seed, "n_startup_trials": 10},
            "scheduler": {
                "type": "asha",
                "max_epochs": MAX_EPOCHS,
                "grace_period": GRACE,
                "reduction_factor": REDUCTION,
            },
        },
        "resources": {"cpu": 1, "gpu": 0},
    }


def suggest(trial: Any) -> dict[str, Any]:
    """The space for Optuna (variants b, c through Tune's OptunaSearch, and d in-process)."""
    return {
        "activation": trial.suggest_categorical("activation", ACTIVATIONS),
        "layers": trial.suggest_int("layers", 1, 3),
        "width": trial.suggest_categorical("width", WIDTHS),
        "batch_norm": trial.suggest_categorical("batch_norm", [False, True]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "clip_norm": trial.suggest_categorical("clip_norm", CLIP_NORMS),
        "optimizer": trial.suggest_categorical("optimizer", OPTIMIZERS),
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
    }


def train_config(flat: dict[str, Any]) -> dict[str, Any]:
    """The flat benchmark config as the built-in MLP's config."""
    config: dict[str, Any] = {
        "hidden_layers": flat["layers"],
        "units": flat["width"],
        "activation": flat["activation"],
        "batch_norm": "after" if flat["batch_norm"] else "none",
        "dropout": flat["dropout"],
        "batch_size": 64,
        "optimizer": flat["optimizer"],
        "optimizer.lr": flat["lr"],
        "grad_clip": "norm" if flat["clip_norm"] > 0 else "none",
    }
    if flat["optimizer"] == "sgd":
        config["optimizer.momentum"] = 0.9
    if flat["clip_norm"] > 0:
        config["grad_clip.threshold"] = flat["clip_norm"]
    return config


def fit(
    config: dict[str, Any],
    data: Any,
    epochs: int,
    report: Any,
    seed: int = 0,
    resume: dict[str, Any] | None = None,
    checkpoint_every: int = 0,
) -> Any:
    """hpsearch's custom-trainable contract (checkpoints and resume like the built-ins); each result
    also carries ``compute_s``: the time this trial spent training so far, without the time its
    ``report`` calls took (handing results and checkpoints to the orchestrator is overhead)."""
    from hpsearch.trainables.loop import train_model

    started = time.perf_counter()
    reporting = 0.0

    def timed(metrics: dict[str, float], state: Any = None) -> None:
        nonlocal reporting
        now = time.perf_counter()
        metrics = {**metrics, "compute_s": now - started - reporting}
        report(metrics) if state is None else report(metrics, state)
        reporting += time.perf_counter() - now

    return train_model("mlp", train_config(config), data, epochs, timed, seed, resume, checkpoint_every)


@lru_cache(maxsize=1)
def digits() -> Any:
    from hpsearch.trainables.data import load_data

    return load_data({"dataset": "digits", "val_fraction": 0.2, "test_fraction": 0.2, "seed": 0})
