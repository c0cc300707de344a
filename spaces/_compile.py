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


def sample(space: Space, n: int, seed: int = 0, first: list[Config] | None = None) -> list[Config]:
    """Draw ``n`` configs at random (seeded): a preview of what a search will explore. ``first`` (dotted
    keys, partial ones filled in at random) come first, in order."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for config in (first or [])[:n]:
        study.enqueue_trial(to_optuna(space, config)[0], skip_if_exists=False)
    fn = define_by_run(space)
    configs = []
    for _ in range(n):
        trial = study.ask()
        configs.append(fn(trial))
        study.tell(trial, 0.0)
    return configs


class OutsideSpace(ValueError):
    """A config value the space cannot produce: ``key`` (dotted) and why."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def to_optuna(space: Space, config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """A config (dotted keys, as a trial gets it) as Optuna params and distributions: the Optuna names the
    space's define-by-run function would have suggested it under (``optimizer[sgd].lr``).

    Keys the config leaves out are left out (Optuna samples them: a partial config, or a trial of an
    earlier space without today's newer parameters). Raises :class:`OutsideSpace` for a value the space
    cannot produce, and for a key that is not one of its parameters in the branches the config chose.
    """
    params: dict[str, Any] = {}
    distributions: dict[str, Any] = {}
    used: set[str] = set()
    _replay(space, config, "", "", params, distributions, used)
    extra = [k for k in config if k not in used]
    if extra:
        raise OutsideSpace(extra[0], "not a parameter of the space (in the branches this config chose)")
    return params, distributions


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _replay(
    space: Space,
    config: Config,
    key_prefix: str,
    name_prefix: str,
    params: dict[str, Any],
    distributions: dict[str, Any],
    used: set[str],
) -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    for key, param in space.params.items():
        name, full_key = name_prefix + key, key_prefix + key
        if full_key not in config:
            continue
        used.add(full_key)
        value = config[full_key]
        if isinstance(param, (Float, Int)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if isinstance(param, Int):
                if not number or float(value) != int(value):
                    raise OutsideSpace(full_key, f"must be an integer, got {value!r}")
                dist: Any = IntDistribution(param.low, param.high, log=param.log, step=param.step)
                value = int(value)
            else:
                if not number:
                    raise OutsideSpace(full_key, f"must be a number, got {value!r}")
                dist = FloatDistribution(param.low, param.high, log=param.log, step=param.step)
                value = float(value)
            if not dist._contains(dist.to_internal_repr(value)):
                step = f" in steps of {param.step}" if param.step not in (None, 1) else ""
                raise OutsideSpace(full_key, f"{value!r} is outside [{param.low}, {param.high}]{step}")
        elif isinstance(param, Choice):
            match = [o for o in param.options if _same(o, value)]
            if not match:
                raise OutsideSpace(full_key, f"{value!r} is not one of {list(param.options)}")
            value, dist = match[0], CategoricalDistribution(param.options)
        elif isinstance(param, Fixed):
            if not _same(value, param.value):
                raise OutsideSpace(full_key, f"{value!r} differs from the space's fixed value {param.value!r}")
            continue
        elif isinstance(param, Conditional):
            if value not in param.branches:
                raise OutsideSpace(full_key, f"{value!r} is not one of {list(param.branches)}")
            dist = CategoricalDistribution(tuple(param.branches))
            _replay(param.branches[value], config, f"{full_key}.", f"{name}[{value}].", params, distributions, used)
        params[name], distributions[name] = value, dist


def optuna_params(space: Space, name_prefix: str = "", in_branch: bool = False) -> list[tuple[str, Any, bool]]:
    """Every parameter Optuna may be asked for, as ``(name, param, in_branch)``: its Optuna name
    (``optimizer[sgd].lr``), its schema (:class:`Float`, :class:`Int`, :class:`Choice`; a conditional's
    own choice is a :class:`Conditional`) and whether it lives inside a conditional branch (asked only
    when its branch is taken). Constants are left out: Optuna never sees them."""
    out: list[tuple[str, Any, bool]] = []
    for key, param in space.params.items():
        name = name_prefix + key
        if isinstance(param, Fixed):
            continue
        out.append((name, param, in_branch))
        if isinstance(param, Conditional):
            for branch, sub in param.branches.items():
                out.extend(optuna_params(sub, f"{name}[{branch}].", True))
    return out
