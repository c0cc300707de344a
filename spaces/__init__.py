"""Declarative search spaces: schema, compiler to Optuna define-by-run, YAML presets.

Imports neither Ray nor torch; Optuna is imported only when a space is sampled.
"""

from hpsearch.spaces._compile import OutsideSpace, define_by_run, optuna_params, sample, to_optuna
from hpsearch.spaces._presets import load_space, preset_first_configs, preset_names
from hpsearch.spaces._schema import Choice, Conditional, Fixed, Float, Int, Space, SpaceError, parse_space, space_kinds

__all__ = [
    "Choice",
    "Conditional",
    "Fixed",
    "Float",
    "Int",
    "OutsideSpace",
    "Space",
    "SpaceError",
    "define_by_run",
    "load_space",
    "optuna_params",
    "parse_space",
    "preset_first_configs",
    "preset_names",
    "sample",
    "space_kinds",
    "to_optuna",
]
