"""Orchestration: job spec, Tuner assembly, MLflow tracking, reports, CLI."""

from search.errors import HpsearchError, SpecError, TrackingError

__all__ = ["HpsearchError", "SpecError", "TrackingError"]
