"""The exception hierarchy of hpsearch, and the one shape of a problem with user input."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Problem(NamedTuple):
    """One problem with user input: the field path it belongs to (``search.num_trials``,
    ``space.optimizer[sgd].lr``, ``--port``; ``""`` for the input as a whole) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


MAX_MESSAGE = 300  # characters of one problem's message: a value is quoted as a short excerpt at most


def excerpt(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def problems_of(items: Iterable[tuple[str, str]]) -> list[Problem]:
    """Problems with their field paths and messages cut to short excerpts (a hostile spec's values, which
    messages quote, may be megabytes)."""
    return [Problem(excerpt(str(path), 200), excerpt(str(message))) for path, message in items]


class HpsearchError(Exception):
    """Base class of the errors hpsearch raises on purpose."""


class SpecError(HpsearchError, ValueError):
    """A job spec (or a space, a CLI argument) is invalid; ``problems`` lists every :class:`Problem`."""

    what = "invalid job spec"

    def __init__(self, problems: Iterable[tuple[str, str]], source: str | None = None):
        self.problems = problems_of(problems)
        self.source = source
        head = f"{self.what} {source}" if source else self.what
        super().__init__(f"{head}:\n" + "\n".join(f"  {p}" for p in self.problems))


class UsageError(SpecError):
    """Command-line arguments that cannot work (a bad option value, an experiment that does not exist)."""

    what = "invalid arguments"


class TrackingError(HpsearchError):
    """The MLflow tracking store cannot be used."""
