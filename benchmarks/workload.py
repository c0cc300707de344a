"""The overhead benchmark's workloads, one definition for every variant; only the orchestration
around them differs between variants.

- ``tiny`` (the default): an MLP on digits over a flat space (activation, layers, width, batch norm,
  dropout, clip-norm, optimizer, learning rate), <= 10 epochs, batch 64, one torch thread: trials of
  a fraction of a second, where fixed costs dominate.
- ``realistic``: a fixed 2x256 MLP on 20,000 synthetic 784-feature samples (16,000 to train on),
  <= 8 epochs, batch 256, ReLU, no dropout: every epoch costs about the same in every variant and
  trial (~0.3 s here), trials of ~2-3 s. Only clip-norm, optimizer and learning rate are searched. The task is easy (trials reach accuracy 1.0): ASHA stops few, so every variant trains
  about the same number of epochs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

ACTIVATIONS = ["relu", "elu", "selu", "leaky_relu", "tanh"]
WIDTHS = [32, 64, 128, 256]
CLIP_NORMS = [0.0, 1.0, 5.0]
OPTIMIZERS = ["sgd", "adam"]
MAX_EPOCHS, GRACE, REDUCTION, CONCURRENCY = 10, 1, 3, 2
METRIC, MODE = "val_accuracy", "max"
FIRST_EPOCH_ENV = "BENCH_FIRST_EPOCH_FILE"  # where each trial appends the wall-clock time of its first epoch

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


# Dropout and the activation cost time of their own (dropout's masks ~20 % of an epoch here): fixed, so
# that every epoch costs the same whatever the search picks.
REALISTIC_FIXED = {
    "layers": 2, "width": 256, "batch_norm": False, "batch_size": 256, "activation": "relu", "dropout": 0.0,
}  # fmt: skip


@dataclass(frozen=True)
class Workload:
    name: str
    data: dict[str, Any]  # hpsearch's spec form (`data:`)
    fixed: dict[str, Any]  # settings of the flat config not searched
    max_epochs: int
    trials: int  # the default number of trials
    trainable: str = "fit"  # this module's function variant a runs

    @property
    def space(self) -> dict[str, Any]:
        """The space in hpsearch's spec form (variant a)."""
        return {k: v for k, v in SPACE.items() if k not in self.fixed}


WORKLOADS = {
    "tiny": Workload(
        "tiny", {"dataset": "digits", "val_fraction": 0.2, "test_fraction": 0.2, "seed": 0}, {}, MAX_EPOCHS, 60
    ),
    "realistic": Workload(
        "realistic",
        {
            "dataset": "synthetic",
            "samples": 20_000,
            "features": 784,
            "classes": 10,
            "val_fraction": 0.1,
            "test_fraction": 0.1,
            "seed": 0,
        },
        REALISTIC_FIXED,
        8,
        16,
        "fit_realistic",
    ),
}


def spec_data(num_trials: int, seed: int, workload: Workload = WORKLOADS["tiny"]) -> dict[str, Any]:
    return {
        "name": "bench-overhead",
        "trainable": f"benchmarks.workload:{workload.trainable}",
        "data": dict(workload.data),
        "space": workload.space,
        "search": {
            "metric": METRIC,
            "mode": MODE,
            "num_trials": num_trials,
            "max_concurrent": CONCURRENCY,
            "sampler": {"type": "tpe", "seed": seed, "n_startup_trials": 10},
            "scheduler": {
                "type": "asha",
                "max_epochs": workload.max_epochs,
                "grace_period": GRACE,
                "reduction_factor": REDUCTION,
            },
        },
        "resources": {"cpu": 1, "gpu": 0},
    }


def suggest(trial: Any, workload: Workload = WORKLOADS["tiny"]) -> dict[str, Any]:
    """The space for Optuna (variants b, c through Tune's OptunaSearch, d and e in-process)."""
    suggest = {
        "activation": lambda: trial.suggest_categorical("activation", ACTIVATIONS),
        "layers": lambda: trial.suggest_int("layers", 1, 3),
        "width": lambda: trial.suggest_categorical("width", WIDTHS),
        "batch_norm": lambda: trial.suggest_categorical("batch_norm", [False, True]),
        "dropout": lambda: trial.suggest_float("dropout", 0.0, 0.5),
        "clip_norm": lambda: trial.suggest_categorical("clip_norm", CLIP_NORMS),
        "optimizer": lambda: trial.suggest_categorical("optimizer", OPTIMIZERS),
        "lr": lambda: trial.suggest_float("lr", 1e-4, 1e-1, log=True),
    }
    return {k: workload.fixed[k] if k in workload.fixed else draw() for k, draw in suggest.items()} | {
        k: v for k, v in workload.fixed.items() if k not in suggest
    }


def train_config(flat: dict[str, Any]) -> dict[str, Any]:
    """The flat benchmark config as the built-in MLP's config."""
    config: dict[str, Any] = {
        "hidden_layers": flat["layers"],
        "units": flat["width"],
        "activation": flat["activation"],
        "batch_norm": "after" if flat["batch_norm"] else "none",
        "dropout": flat["dropout"],
        "batch_size": flat.get("batch_size", 64),
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
    first = os.environ.get(FIRST_EPOCH_ENV) if resume is None else None

    def timed(metrics: dict[str, float], state: Any = None) -> None:
        nonlocal reporting, first
        if first:  # the benchmark's time to the first epoch: the earliest line of every trial's
            with open(first, "a") as f:
                f.write(f"{time.time()}\n")
            first = None
        now = time.perf_counter()
        metrics = {**metrics, "compute_s": now - started - reporting}
        report(metrics) if state is None else report(metrics, state)
        reporting += time.perf_counter() - now

    return train_model("mlp", train_config(config), data, epochs, timed, seed, resume, checkpoint_every)


def fit_realistic(
    config: dict[str, Any], data: Any, epochs: int, report: Any, seed: int = 0,
    resume: dict[str, Any] | None = None, checkpoint_every: int = 0,
) -> Any:  # fmt: skip
    """The ``realistic`` workload's trainable: the searched settings on the fixed 2x256 MLP."""
    return fit({**REALISTIC_FIXED, **config}, data, epochs, report, seed, resume, checkpoint_every)


@lru_cache(maxsize=2)
def load(name: str = "tiny") -> Any:
    """A workload's data splits, loaded once per process."""
    from hpsearch.sources import load_data

    return load_data(WORKLOADS[name].data)
