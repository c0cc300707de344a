"""Compile a :class:`Space` into an Optuna define-by-run function.

The function returns a flat config keyed by dotted names (``optimizer``, ``optimizer.lr``):
the same keys the trainables read and MLflow records as params. Parameters inside a
conditional branch get their own Optuna name (``optimizer[sgd].lr``) so that TPE models
each branch's ranges separately instead of mixing, say, SGD and Adam learning rates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hpsearch.spaces._schema import Choice, Conditional, Fixed, Float, Int, Space

if TYPE_CHECKING:  # optuna is imported lazily: the schema is usable without it
    import optuna

Config = dict[str, Any]


class DefineByRun:
    """``fn(trial) -> config`` suggesting every active parameter of a space (picklable: searchers
    are saved with the experiment state)."""

    def __init__(self, space: Space):
        self.space = space

    def __call__(self, trial: optuna.Trial) -> Config:
        config: Config = {}
        _suggest(self.space, trial, key_prefix="", name_prefix="", out=config)
        return config


def define_by_run(space: Space) -> Callable[[optuna.Trial], Config]:
    """Return ``fn(trial) -> config`` that suggests every active parameter of ``space``."""
    return DefineByRun(space)


def _suggest(space: Space, trial: Any, key_prefix: str, name_prefix: str, out: Config) -> None:
    for key, param in space.params.items():
        name, full_key = name_prefix + key, key_prefix + key
        if isinstance(param, Float):
            out[full_key] = trial.suggest_float(name, param.low, param.high, log=param.log, step=param.step)
        elif isinstance(param, Int):
            out[full_key] = trial.suggest_int(name, param.low, param.high, log=param.log, step=param.step)
        elif isinstance(param, Choice):
            out[full_key] = trial.suggest_categorical(name, param.options)
        elif isinstance(param, Fixed):
            out[full_key] = param.value
        elif isinstance(param, Conditional):
            branch = trial.suggest_categorical(name, tuple(param.branches))
            out[full_key] = branch
            _suggest(param.branches[branch], trial, f"{full_key}.", f"{name}[{branch}].", out)
        else:  # pragma: no cover - the schema has no other parameter types
            raise TypeError(f"unknown parameter type {type(param).__name__} at {full_key}")


def sample(space: Space, n: int, seed: int = 0) -> list[Config]:
    """Draw ``n`` configs at random (seeded): a preview of what a search will explore."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    fn = define_by_run(space)
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(fn(trial))
        study.tell(trial, 0.0)
    return configs
