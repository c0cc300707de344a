"""The one place where trainables meet Ray Tune: run a trainable inside a Tune trial."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
from ray import tune

from trainables import BUILTIN
from trainables.data import Splits, load_data


def resolve_trainable(name: str) -> Callable[..., None]:
    """``mlp`` or ``pkg.module:function`` -> the training function."""
    target = BUILTIN.get(name, name)
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@lru_cache(maxsize=4)
def _data_on_device(data_json: str, device: str) -> Splits:
    # With actor reuse one worker process runs many trials: load and place the data once.
    return load_data(json.loads(data_json)).to(device)


def device() -> str:
    # Ray exposes only the GPUs assigned to this trial (CUDA_VISIBLE_DEVICES); none -> CPU.
    return "cuda" if torch.cuda.is_available() else "cpu"


def run_trial(
    config: dict[str, Any], *, trainable_name: str, data: dict[str, Any], epochs: int, seed: int, threads: int
) -> None:
    """Tune function trainable: ``tune.with_parameters(run_trial, trainable_name=..., data=..., ...)``."""
    torch.set_num_threads(threads)
    splits = _data_on_device(json.dumps(data, sort_keys=True), device())
    resolve_trainable(trainable_name)(config, splits, epochs, tune.report, seed=seed)
