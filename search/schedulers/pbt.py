"""Population-based training (Ray Tune's ``PopulationBasedTraining``, synchronous): ``num_trials`` trials
train together; every ``perturbation_interval`` epochs the bottom ``quantile_fraction`` of them take the
weights (the checkpoint) of a trial of the top fraction (*exploit*) and continue with its config, perturbed
(*explore*): each parameter of ``mutate`` that is a range is multiplied by 0.8 or 1.2 (or with
``resample_probability`` drawn anew), kept in its range; each that is a choice is drawn anew with
``resample_probability``.

A trial's hyperparameters thus change mid-run while MLflow params cannot: a trial's run keeps the config
it started with as params, and each exploit starts a *segment run* under it (``hpsearch.review.pbt``)
with the config it continues with, the donor and the epoch. The report shows each parameter's schedule
over the epochs and the lineage. Optuna proposes nothing here: the first population is drawn at random
(the ``search.sampler``'s seed), and only PBT's exploits and explores change it.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from hpsearch import spaces
from hpsearch.errors import Problem
from hpsearch.schedulers import SchedulerSpec, register

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

HOT_KEYS = (
    "optimizer.lr",
    "optimizer.momentum",
    "optimizer.alpha",
    "optimizer.beta1",
    "optimizer.beta2",
    "optimizer.eps",
    "optimizer.weight_decay",
    "l1",
    "l2",
    "max_norm",
    "grad_clip.threshold",
    "batch_size",
    "crop_padding",
    "hflip",
)
"""What a built-in trainable can change when it continues from a checkpoint (the rest shapes the model,
whose weights must fit the checkpoint, or the schedule's run): the keys PBT may mutate."""


def active_param(space: spaces.Space, config: dict[str, Any], key: str) -> Any:
    """The parameter that produced ``config[key]``: in the branch ``config`` took (None: not searched)."""
    for name, param in space.params.items():
        if name == key:
            return param
        if isinstance(param, spaces.Conditional) and key.startswith(f"{name}."):
            branch = param.branches.get(str(config.get(name)))
            return active_param(branch, config, key[len(name) + 1 :]) if branch is not None else None
    return None


def searched_keys(space: spaces.Space, prefix: str = "") -> list[str]:
    """Every config key the space searches (ranges and choices, branches' too; not the conditionals' own)."""
    out: list[str] = []
    for name, param in space.params.items():
        if isinstance(param, (spaces.Float, spaces.Int, spaces.Choice)):
            out.append(prefix + name)
        elif isinstance(param, spaces.Conditional):
            for branch in param.branches.values():
                out.extend(k for k in searched_keys(branch, f"{prefix}{name}.") if k not in out)
    return out


class Explore:
    """PBT's explore step (Ray's ``custom_explore_fn``): perturbs ``keys`` of a config within their ranges.
    Seeded; picklable (saved with the search's state)."""

    def __init__(self, space: spaces.Space, keys: list[str], resample_probability: float, seed: int):
        self.space, self.keys, self.resample_probability = space, list(keys), resample_probability
        self.rng = random.Random(seed)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        out = dict(config)
        for key in self.keys:
            param = active_param(self.space, out, key)
            if param is None or key not in out:
                continue
            resample = self.rng.random() < self.resample_probability
            if isinstance(param, spaces.Choice):
                out[key] = self.rng.choice(param.options) if resample else out[key]
            elif isinstance(param, (spaces.Float, spaces.Int)):
                out[key] = self._range(param, out[key], resample)
        return out

    def _range(self, param: Any, value: float, resample: bool) -> float | int:
        lo, hi = param.low, param.high
        if resample:
            x = math.exp(self.rng.uniform(math.log(lo), math.log(hi))) if param.log else self.rng.uniform(lo, hi)
        else:
            x = float(value) * self.rng.choice((0.8, 1.2))
        x = min(max(x, lo), hi)
        step = param.step
        if step:
            x = min(lo + round((x - lo) / step) * step, hi)
        return int(round(x)) if isinstance(param, spaces.Int) else float(x)


@register
class PbtSpec(SchedulerSpec):
    """Population-based training.

    Args:
        perturbation_interval: epochs between exploits (every trial checkpoints then).
        quantile_fraction: the bottom fraction that exploits the top fraction.
        resample_probability: the chance a mutated parameter is drawn anew instead of perturbed.
        mutate: the config keys PBT changes (default: those of the space a built-in trainable can change
            on a checkpoint: learning rate, momentum, betas, weight decay, L1/L2, max-norm, the clipping
            threshold, batch size and augmentation; required for a trainable of your own).
    """

    type: Literal["pbt"] = "pbt"
    perturbation_interval: int = Field(2, ge=1)
    quantile_fraction: float = Field(0.25, gt=0, le=0.5)
    resample_probability: float = Field(0.25, ge=0, le=1)
    mutate: list[str] | None = None
    population_based = True

    def problems(self) -> list[Problem]:
        if self.perturbation_interval >= self.max_epochs:
            return [
                Problem(
                    "perturbation_interval",
                    f"must be < max_epochs ({self.max_epochs}): it never exploits otherwise, got {self.perturbation_interval}",
                )
            ]
        return []

    def mutated(self, space: spaces.Space, builtin: bool) -> list[str]:
        """The keys it changes."""
        if self.mutate is not None:
            return list(self.mutate)
        return [k for k in searched_keys(space) if k in HOT_KEYS] if builtin else []

    def fit_problems(self, space: spaces.Space, builtin: bool) -> list[Problem]:
        searched = searched_keys(space)
        keys = self.mutated(space, builtin)
        problems = []
        for key in keys:
            if key not in searched:
                problems.append(
                    Problem("mutate", f"{key!r} is not a searched parameter of the space ({', '.join(searched)})")
                )
            elif builtin and key not in HOT_KEYS:
                problems.append(
                    Problem(
                        "mutate",
                        f"a built-in trainable cannot change {key!r} on a checkpoint (it shapes the model or its "
                        "schedule); it can change: optimizer.* (lr, momentum, alpha, betas, eps, weight_decay), l1, "
                        "l2, max_norm, grad_clip.threshold, batch_size, crop_padding, hflip",
                    )
                )
        if not keys:
            problems.append(
                Problem(
                    "mutate",
                    "nothing to mutate: give the config keys your trainable takes a new value of when it continues "
                    "from a checkpoint"
                    if not builtin
                    else f"the space searches none of what PBT can change ({', '.join(HOT_KEYS)})",
                )
            )
        return problems

    def build_for(self, space: spaces.Space, builtin: bool, seed: int) -> TrialScheduler:
        from hpsearch.schedulers.recorded_pbt import RecordedPBT

        return RecordedPBT(
            max_epochs=self.max_epochs,
            time_attr="epoch",
            perturbation_interval=self.perturbation_interval,
            quantile_fraction=self.quantile_fraction,
            resample_probability=self.resample_probability,
            custom_explore_fn=Explore(space, self.mutated(space, builtin), self.resample_probability, seed),
            synch=True,  # every trial exploits at the same epochs: a segment starts where its donor's checkpoint is
            log_config=False,  # the segment runs record it
        )

    def milestones(self) -> list[float]:
        return [float(e) for e in range(self.perturbation_interval, self.max_epochs, self.perturbation_interval)]

    def checkpoint_interval(self) -> int | None:
        return self.perturbation_interval
