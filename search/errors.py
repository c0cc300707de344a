"""The exception hierarchy of hpsearch."""

from __future__ import annotations


class HpsearchError(Exception):
    """Base class of the errors hpsearch raises on purpose."""


class SpecError(HpsearchError, ValueError):
    """A job spec (or a space, a CLI argument) is invalid; ``problems`` lists each ``path: message``."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        head = f"{self.what} {source}" if source else self.what
        super().__init__(f"{head}:\n" + "\n".join(f"  {p}" for p in self.problems))

    what = "invalid job spec"


class UsageError(SpecError):
    """Command-line arguments that cannot work (a bad option value, an experiment that does not exist)."""

    what = "invalid arguments"


class TrackingError(HpsearchError):
    """The MLflow tracking store cannot be used."""
