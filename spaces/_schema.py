"""Declarative search-space schema: parse YAML-shaped data into typed parameters.

A space is a mapping from names to parameters:

    units: {int: [32, 256], log: true}           # integer range (``step`` optional)
    dropout: {float: [0.0, 0.5]}                  # float range (``log`` / ``step`` optional)
    activation: {choice: [relu, elu, selu]}       # categorical
    optimizer:                                    # conditional: each branch has its own params
      choice:
        sgd:  {lr: {float: [1.0e-4, 1.0e-1], log: true}, momentum: {float: [0.0, 0.99]}}
        adam: {lr: {float: [1.0e-5, 1.0e-2], log: true}}
    batch_size: 64                                # a constant
    model: {units: {int: [32, 256]}}              # a plain mapping groups names: ``model.units``

Every problem is collected with the path of the parameter it belongs to, so the user
sees all of them at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Union

from hpsearch.errors import Problem, problems_of

Scalar = Union[str, int, float, bool, None]
_TYPE_KEYS = ("float", "int", "choice", "value")


class SpaceError(ValueError):
    """A search space is invalid; ``problems`` holds one :class:`~hpsearch.errors.Problem` per problem."""

    def __init__(self, problems: Iterable[tuple[str, str]]):
        self.problems = problems_of(problems)
        super().__init__("invalid search space:\n" + "\n".join(f"  {p}" for p in self.problems))


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False
    step: float | None = None


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False
    step: int = 1


@dataclass(frozen=True)
class Choice:
    options: tuple[Scalar, ...]


@dataclass(frozen=True)
class Fixed:
    value: Any


@dataclass(frozen=True)
class Conditional:
    """A choice whose branches carry their own parameters (``branches[name]`` is a Space)."""

    branches: dict[str, Space]


Param = Union[Float, Int, Choice, Fixed, Conditional]


@dataclass(frozen=True)
class Space:
    """Parameters by (dotted) name, in declaration order."""

    params: dict[str, Param] = field(default_factory=dict)

    def keys(self) -> list[str]:
        """Every config key the space can produce (all branches), in order."""
        out: list[str] = []
        for name, param in self.params.items():
            out.append(name)
            if isinstance(param, Conditional):
                for branch in param.branches.values():
                    out.extend(f"{name}.{k}" for k in branch.keys() if f"{name}.{k}" not in out)
        return out

    def to_data(self) -> dict[str, Any]:
        """The space in the YAML schema's form (``parse_space(space.to_data()) == space``)."""
        out: dict[str, Any] = {}
        for name, param in self.params.items():
            *groups, leaf = name.split(".")  # dotted names came from plain grouping mappings
            target = out
            for group in groups:
                target = target.setdefault(group, {})
            target[leaf] = _param_data(param)
        return out


def space_kinds(space: Space, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every searched config key (constants left out) -> ``{"kind": "choice", "options": [...]}`` or
    ``{"kind": "int" | "float", "low", "high", "log"}``, in declaration order. A key several branches
    define (``optimizer.lr``) gets the union of their options or the envelope of their ranges."""
    out: dict[str, dict[str, Any]] = {}

    def merge(key: str, kind: dict[str, Any]) -> None:
        have = out.get(key)
        if have is None:
            out[key] = kind
        elif have["kind"] == kind["kind"] == "choice":
            have["options"] += [o for o in kind["options"] if o not in have["options"]]
        elif have["kind"] == kind["kind"]:
            have.update(low=min(have["low"], kind["low"]), high=max(have["high"], kind["high"]))
            have["log"] = have["log"] and kind["log"]

    for name, param in space.params.items():
        key = prefix + name
        if isinstance(param, Fixed):
            continue
        if isinstance(param, Conditional):
            merge(key, {"kind": "choice", "options": list(param.branches)})
            for branch in param.branches.values():
                for sub, kind in space_kinds(branch, f"{key}.").items():
                    merge(sub, kind)
        elif isinstance(param, Choice):
            merge(key, {"kind": "choice", "options": list(param.options)})
        elif isinstance(param, (Int, Float)):
            merge(
                key,
                {
                    "kind": "int" if isinstance(param, Int) else "float",
                    "low": param.low,
                    "high": param.high,
                    "log": param.log,
                },
            )
    return out


def _param_data(param: Param) -> Any:
    if isinstance(param, Float):
        out: dict[str, Any] = {"float": [param.low, param.high]}
    elif isinstance(param, Int):
        out = {"int": [param.low, param.high]}
    elif isinstance(param, Choice):
        return {"choice": list(param.options)}
    elif isinstance(param, Conditional):
        return {"choice": {name: branch.to_data() for name, branch in param.branches.items()}}
    else:
        return {"value": param.value}
    if param.log:
        out["log"] = True
    if param.step is not None and not (isinstance(param, Int) and param.step == 1):
        out["step"] = param.step
    return out


def parse_space(data: Any, path: str = "space") -> Space:
    """Parse a YAML-shaped mapping into a :class:`Space`; raise :class:`SpaceError` listing all problems."""
    problems: list[Problem] = []
    space = _parse_mapping(data, path, problems, prefix="")
    if not problems and not space.params:
        problems.append(Problem(path, "must define at least one parameter, got an empty mapping"))
    if problems:
        raise SpaceError(problems)
    return space


def _parse_mapping(data: Any, path: str, problems: list[Problem], prefix: str) -> Space:
    if not isinstance(data, dict):
        problems.append(Problem(path, f"must be a mapping of parameter names, got {data!r}"))
        return Space()
    params: dict[str, Param] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key or "." in key or "[" in key:
            problems.append(Problem(path, f"parameter names must be non-empty strings without '.' or '[', got {key!r}"))
            continue
        sub = f"{path}.{key}"
        if isinstance(value, dict) and not any(k in value for k in _TYPE_KEYS):
            # A plain mapping groups its parameters under a dotted prefix.
            group = _parse_mapping(value, sub, problems, prefix="")
            if not value:
                problems.append(Problem(sub, "an empty mapping defines no parameter"))
            for name, param in group.params.items():
                params[f"{prefix}{key}.{name}"] = param
            continue
        parsed = _parse_param(value, sub, problems)
        if parsed is not None:
            params[f"{prefix}{key}"] = parsed
    return Space(params)


def _parse_param(value: Any, path: str, problems: list[Problem]) -> Param | None:
    if not isinstance(value, dict):
        if isinstance(value, list):
            problems.append(
                Problem(path, f"a list is ambiguous; write {{choice: {value!r}}} for a choice, got {value!r}")
            )
            return None
        return Fixed(value)
    kinds = [k for k in _TYPE_KEYS if k in value]
    if len(kinds) > 1:
        problems.append(Problem(path, f"give exactly one of {', '.join(_TYPE_KEYS)}, got {', '.join(kinds)}"))
        return None
    kind = kinds[0]
    allowed = {"float": {"float", "log", "step"}, "int": {"int", "log", "step"}}.get(kind, {kind})
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        problems.append(
            Problem(
                path,
                f"unknown key(s) {', '.join(unknown)} for a {kind} parameter (allowed: {', '.join(sorted(allowed))})",
            )
        )
        return None
    if kind == "value":
        return Fixed(value["value"])
    if kind == "choice":
        return _parse_choice(value["choice"], path, problems)
    return _parse_range(kind, value, path, problems)


def _parse_range(kind: str, value: dict[str, Any], path: str, problems: list[Problem]) -> Param | None:
    bounds, log, step = value[kind], value.get("log", False), value.get("step")
    number = (int,) if kind == "int" else (int, float)
    if (
        not isinstance(bounds, list)
        or len(bounds) != 2
        or not all(isinstance(b, number) and not isinstance(b, bool) for b in bounds)
    ):
        problems.append(
            Problem(
                path, f"{kind} needs [low, high] as two {'integers' if kind == 'int' else 'numbers'}, got {bounds!r}"
            )
        )
        return None
    low, high = bounds
    start = len(problems)
    if kind == "float" and not all(math.isfinite(b) for b in bounds):
        problems.append(Problem(path, f"bounds must be finite, got [{low}, {high}]"))
    if low > high:
        problems.append(Problem(path, f"low must be <= high, got low={low}, high={high}"))
    if not isinstance(log, bool):
        problems.append(Problem(f"{path}.log", f"must be true or false, got {log!r}"))
    elif log and low <= 0:
        problems.append(Problem(path, f"a log range needs low > 0, got low={low}"))
    if step is not None:
        if not isinstance(step, number) or isinstance(step, bool) or step <= 0:
            problems.append(
                Problem(f"{path}.step", f"must be a positive {'integer' if kind == 'int' else 'number'}, got {step!r}")
            )
        elif log is True and (kind == "float" or step != 1):
            problems.append(Problem(path, f"step cannot be combined with log, got step={step}"))
    if len(problems) > start:
        return None
    if kind == "int":
        return Int(low, high, log=log, step=step or 1)
    return Float(float(low), float(high), log=log, step=None if step is None else float(step))


def _parse_choice(options: Any, path: str, problems: list[Problem]) -> Param | None:
    if isinstance(options, list):
        if not options:
            problems.append(Problem(path, "choice needs at least one option, got []"))
            return None
        bad = [o for o in options if not isinstance(o, (str, int, float, bool)) and o is not None]
        if bad:
            problems.append(Problem(path, f"choice options must be strings, numbers, booleans or null, got {bad[0]!r}"))
            return None
        if len(set(map(repr, options))) != len(options):
            problems.append(Problem(path, f"choice options must be distinct, got {options!r}"))
            return None
        return Choice(tuple(options))
    if isinstance(options, dict):
        if not options:
            problems.append(Problem(path, "choice needs at least one option, got {}"))
            return None
        branches: dict[str, Space] = {}
        for name, sub in options.items():
            bpath = f"{path}.{name}"
            if not isinstance(name, str):
                problems.append(Problem(path, f"conditional branch names must be strings, got {name!r}"))
            elif sub is None or sub == {}:
                branches[name] = Space()
            else:
                branches[name] = _parse_mapping(sub, bpath, problems, prefix="")
        return Conditional(branches)
    problems.append(Problem(path, f"choice needs a list of options or a mapping of branches, got {options!r}"))
    return None
