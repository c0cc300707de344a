"""The job spec's checks that look past a field: the trainable's signature, the space's keys against a
built-in trainable's, and the configs to run first against the space."""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING, Any

from hpsearch import spaces
from hpsearch.errors import Problem
from hpsearch.trainables import BUILTIN, DATA_PARALLEL_ATTR, TRAINABLE_SIGNATURE, signature_problem
from hpsearch.trainables import config as trainable_config

if TYPE_CHECKING:
    from hpsearch.spec import JobSpec


def check_first_configs(spec: JobSpec, space: spaces.Space) -> list[Problem]:
    """Every config to run first lies in the space (Optuna would quietly sample another value instead)."""
    field = "search.enqueue" if spec.search.enqueue is not None else f"space[{spec.space}] first configs"
    problems = []
    for i, config in enumerate(spec.search.enqueue if spec.search.enqueue is not None else spec.first_configs):
        try:
            spaces.to_optuna(space, config)
        except spaces.OutsideSpace as exc:
            problems.append(Problem(f"{field}[{i}].{exc.key}", exc.message))
    return problems


def check_trainable(name: str) -> list[Problem]:
    if name in BUILTIN:
        return []
    fn, problem = _user_trainable(name)
    if problem is not None:
        return [Problem("trainable", problem)]
    why = signature_problem(fn, "trainable")
    return [Problem("trainable", why)] if why else []


def data_parallel_trainable(name: str) -> bool:
    """Whether a user's trainable is marked :func:`hpsearch.trainables.data_parallel` (one that cannot be
    imported counts as marked: :func:`check_trainable` reports it)."""
    fn, problem = _user_trainable(name)
    return problem is not None or bool(getattr(fn, DATA_PARALLEL_ATTR, False))


def accepts_resume(name: str) -> bool:
    """Whether a user's trainable takes ``resume`` (continues from a checkpoint); one that cannot be
    imported counts as taking it: :func:`check_trainable` reports it."""
    import inspect

    fn, problem = _user_trainable(name)
    if problem is not None:
        return True
    try:
        return "resume" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True


def _user_trainable(name: str) -> tuple[Any, str | None]:
    """``pkg.module:function`` -> (the function, None), or (None, why it cannot be had)."""
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", name):
        return None, f"must be a built-in ({', '.join(BUILTIN)}) or 'pkg.module:function', got {name!r}"
    module, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr, None)
    except ImportError as exc:
        return None, f"cannot import module {module!r}: {exc}"
    if fn is None:
        return None, f"{module!r} has no function {attr!r} (expected {TRAINABLE_SIGNATURE})"
    return fn, None


def check_space_for(trainable: str, space: spaces.Space, path: str = "space") -> list[Problem]:
    """Every key the space can produce must be a key of the built-in trainable, every value usable."""
    keys = trainable_config.KEYS[trainable]
    problems: list[Problem] = []

    def walk(sp: spaces.Space, prefix: str, branch_of: tuple[str, str] | None) -> None:
        for name, param in sp.params.items():
            key = prefix + name
            where = f"{path}.{key}" if branch_of is None else f"{path}.{branch_of[0]}.{branch_of[1]}.{name}"
            if key not in keys:
                problems.append(
                    Problem(where, f"unknown parameter for the {trainable} trainable (known: {', '.join(keys)})")
                )
                continue
            if branch_of is not None:
                why = trainable_config.branch_problem(keys, key, dict([branch_of]), nested_under=branch_of[0])
                if why is not None:
                    problems.append(Problem(where, why))
                    continue
            if isinstance(param, spaces.Conditional):
                for branch, sub in param.branches.items():
                    problem = trainable_config.check_value(keys, key, branch)
                    if problem:
                        problems.append(Problem(f"{path}.{key}", problem))
                    else:
                        walk(sub, f"{key}.", (key, branch))
                continue
            values = {
                spaces.Fixed: lambda p: [p.value],
                spaces.Choice: lambda p: list(p.options),
                spaces.Float: lambda p: [p.low, p.high],
                spaces.Int: lambda p: [p.low, p.high],
            }[type(param)](param)
            for value in values:
                problem = trainable_config.check_value(keys, key, value)
                if problem:
                    problems.append(Problem(where, problem))
                    break

    walk(space, "", None)
    return problems
