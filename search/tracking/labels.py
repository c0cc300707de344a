"""How a trial's MLflow run is named and labelled.

- Its name, from its key choices: ``t017 selu adam lr=3.2e-3 bn=after``. The MLflow runs table shows run
  names first; a name that says what the trial tried reads at a glance where ``t017`` (or Tune's
  ``trainable_fb682eb5``) does not.
- What it records (:func:`trial_describer`): for a built-in trainable the config as trained, every default
  filled in, and a tag naming what the trainable overrode.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hpsearch.spaces import Space, space_kinds
from hpsearch.tracking.tags import OVERRIDES

# Choices whose values name themselves ("selu", "adam", "cosine"): shown bare, in this order.
_BARE = ("activation", "optimizer", "schedule", "model", "arch", "architecture")
# Short labels for long keys (the last dotted component is used for keys not listed).
_ALIASES = {
    "batch_norm": "bn",
    "hidden_layers": "layers",
    "grad_clip": "clip",
    "dropout": "drop",
    "batch_size": "bs",
    "weight_decay": "wd",
    "unfreeze_blocks": "unfreeze",
    "finetune_lr_mult": "ft_lr",
    "freeze_epochs": "freeze",
}
_QUIET_VALUES = {"none", "constant", "default", "auto"}  # a choice at its "nothing special" value
MAX_NAME = 72


def format_value(value: Any, scientific_below: float = 0.01) -> str:
    """Short text of a value; floats below ``scientific_below`` as ``3.2e-3``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value == 0 or scientific_below <= abs(value) < 1e3:
            return f"{value:.3g}"
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{value:.1e}").replace("e+", "e")
    return str(value)


def _label(key: str) -> str:
    if key in _ALIASES:
        return _ALIASES[key]
    if key.endswith(".lr") or key == "lr":
        return "lr"
    return _ALIASES.get(key.rsplit(".", 1)[-1], key.rsplit(".", 1)[-1])


def _kinds(space: Space) -> dict[str, str]:
    """Searched key -> "bare" (a self-naming choice) | "choice" | "int" | "float"."""
    out = {}
    for key, kind in space_kinds(space).items():
        leaf = key.rsplit(".", 1)[-1]
        strings = kind["kind"] == "choice" and all(isinstance(o, str) for o in kind["options"])
        out[key] = "bare" if strings and leaf in _BARE else kind["kind"]
    return out


def run_name(short: str, config: dict[str, Any], space: Space | None, limit: int = MAX_NAME) -> str:
    """``short`` (``t017``) followed by the trial's key choices, most telling first, within ``limit``
    characters: self-naming choices bare, then learning rates, then other choices, integers and floats
    as ``label=value``. A choice at a "nothing special" value (``none``, ``constant``, 0, false) is left out."""
    kinds = _kinds(space) if space is not None else {k: "choice" for k in config}
    parts: list[tuple[int, str]] = []
    for order, (key, kind) in enumerate(kinds.items()):
        if key not in config:
            continue  # a parameter of a branch this trial did not take
        value = config[key]
        if kind == "bare":
            if str(value) not in _QUIET_VALUES:
                parts.append((order, str(value)))
            continue
        label = _label(key)
        if kind == "choice" and (value in _QUIET_VALUES if isinstance(value, str) else value in (0, False)):
            continue  # l2=0, nesterov=false, mc_dropout=0: nothing special was tried
        if label == "lr":
            rank = 1
        elif kind == "choice":
            rank = 2 if isinstance(value, str) else 3
        else:
            rank = 3 if kind == "int" else 4
        # learning rates read best all alike (3.2e-3, 2.6e-2); other floats as plain decimals where short
        text = format_value(value, scientific_below=0.1 if label == "lr" else 0.01)
        parts.append((rank * 1000 + order, f"{label}={text}"))
    name = short
    for _, part in sorted(parts):
        if len(name) + 1 + len(part) > limit:
            continue
        name += " " + part
    return name


Describer = Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, str]]]


def trial_describer(trainable: str) -> Describer | None:
    """For built-in trainables a trial's run records the config as trained: every default filled in,
    implications applied (SELU's self-normalising set-up), and a tag naming what was overridden."""
    from hpsearch.trainables import BUILTIN

    if trainable not in BUILTIN:
        return None
    from hpsearch.trainables.config import ConfigError, overrides, resolve

    def describe(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        try:
            changed = overrides(trainable, config)
            params = resolve(trainable, config)
        except ConfigError:  # the trial fails with the same message; record the config as sampled
            return config, {}
        tags = {OVERRIDES: ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items())} if changed else {}
        return params, tags

    return describe


__all__ = ["Describer", "format_value", "run_name", "trial_describer"]
