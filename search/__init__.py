"""hpsearch: distributed hyperparameter search for PyTorch (Ray Tune + Optuna + ASHA, tracked in MLflow).

The package is ``hpsearch``; its parts:

- ``hpsearch.spaces``: declarative search spaces (schema, presets, compiler to Optuna define-by-run).
- ``hpsearch.trainables``: the PyTorch side (data, models, optimizers, schedules, the training loop).
- the search itself: ``hpsearch.spec`` (the job spec), ``hpsearch.run`` / ``hpsearch.resume`` (running
  a search), ``hpsearch.tracking`` (MLflow), ``hpsearch.review`` (report, retrain, UI), ``hpsearch.cli``.

Importing ``hpsearch`` is cheap: torch, Ray and MLflow are imported only by what uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpsearch.errors import HpsearchError, Problem, SpecError, TrackingError, UsageError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hpsearch.run import SearchResult, run_search
    from hpsearch.spec import JobSpec, load_spec

_LAZY = {
    "run_search": "hpsearch.run",
    "SearchResult": "hpsearch.run",
    "load_spec": "hpsearch.spec",
    "JobSpec": "hpsearch.spec",
}


def __getattr__(name: str) -> Any:
    """``hpsearch.run_search`` and friends, imported on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hpsearch' has no attribute {name!r}")


__all__ = [
    "HpsearchError",
    "JobSpec",
    "Problem",
    "SearchResult",
    "SpecError",
    "TrackingError",
    "UsageError",
    "load_spec",
    "run_search",
]
