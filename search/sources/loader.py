"""A user's own data function: ``data: {loader: "pkg.module:function", args: {...}}`` calls
``function(**args)`` in each trial's worker process (once per process: a reused worker keeps what it
returned) and hands the trainable what it returned, as :class:`hpsearch.trainables.Data`: train,
validation and (optionally) test splits as ``Dataset``s, ``DataLoader``s or ``(x, y)`` tensors."""

from __future__ import annotations

import importlib
from typing import Any, ClassVar, Literal

from pydantic import Field

from hpsearch.errors import Problem
from hpsearch.sources import DataSource, register
from hpsearch.trainables import LOADER_SIGNATURE, signature_problem

_TARGET = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


def resolve(target: str) -> Any:
    """``pkg.module:function`` -> the function (``ImportError``/``AttributeError`` when it is not there)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@register
class LoaderSource(DataSource):
    """The data a user's function returns.

    Args:
        loader: the function, ``pkg.module:function`` (importable where the trials run).
        args: keyword arguments it is called with (paths: absolute, or relative to where the search runs).
    """

    dataset: Literal["loader"] = "loader"
    loader: str = Field(pattern=_TARGET)
    args: dict[str, Any] = Field(default_factory=dict)

    shorthand: ClassVar[str | None] = "loader"
    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")

    def problems(self) -> list[Problem]:
        try:
            fn = resolve(self.loader)
        except ImportError as exc:
            return [Problem("loader", f"cannot import module {self.loader.partition(':')[0]!r}: {exc}")]
        except AttributeError:
            module, _, attr = self.loader.partition(":")
            return [Problem("loader", f"module {module!r} has no function {attr!r} (expected {LOADER_SIGNATURE})")]
        why = signature_problem(fn, "loader", self.args)
        return [Problem("loader", why)] if why else []

    def load(self, merge_val: bool = False) -> Any:
        from hpsearch.trainables.userdata import as_data, merge_validation

        data = as_data(resolve(self.loader)(**self.args), self.loader)
        return merge_validation(data) if merge_val else data
