"""Learning-rate schedules. ``t`` counts optimizer steps (mini-batches) from 0.

- constant:    lr = lr0
- power:       lr = lr0 / (1 + t/s)^c                      (per step)
- exponential: lr = lr0 * 0.1^(t/s)                         (per step)
- cosine:      lr = min_lr + (lr0 - min_lr) * (1 + cos(pi t/T)) / 2, T = all steps of the run (per step)
- onecycle:    up from lr0/25 to lr0 over pct_start of the steps, then down to lr0/25/1e4, both halves
               cosine-shaped (as torch's OneCycleLR)                                          (per step)
- plateau:     lr *= factor when val_loss has not improved for more than ``patience`` epochs (per epoch)
- warmup_epochs (any schedule): the rate is scaled by (t+1)/W for the first W steps.

Each parameter group keeps its own base rate (transfer learning gives unfrozen blocks a lower one).
"""

from __future__ import annotations

import math

import torch

from hpsearch.trainables.config import TrainConfig


class LRSchedule:
    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, epochs: int):
        self.optimizer = optimizer
        self.kind = cfg["schedule"]
        self.cfg = cfg
        self.total = max(1, steps_per_epoch * epochs)
        self.warmup = round(cfg["warmup_epochs"] * steps_per_epoch)
        self.t = 0
        self.scale = 1.0  # plateau reductions so far
        self.best = math.inf
        self.bad_epochs = 0
        for group in optimizer.param_groups:
            self.add_group(group)

    def add_group(self, group: dict) -> None:
        """Register a parameter group's current ``lr`` as its base rate and apply the schedule to it."""
        group["base_lr"] = group["lr"]
        group["lr"] = self.lr_at(group["base_lr"], self.t)

    def lr_at(self, base: float, t: int) -> float:
        cfg, kind = self.cfg, self.kind
        if kind == "power":
            lr = base / (1 + t / cfg["schedule.s"]) ** cfg["schedule.c"]
        elif kind == "exponential":
            lr = base * 0.1 ** (t / cfg["schedule.s"])
        elif kind == "cosine":
            lo = cfg["schedule.min_lr"]
            lr = lo + (base - lo) * (1 + math.cos(math.pi * min(t, self.total) / self.total)) / 2
        elif kind == "onecycle":
            lr = self._one_cycle(base, t)
        else:  # constant, plateau
            lr = base
        lr *= self.scale
        if self.warmup and t < self.warmup:
            lr *= (t + 1) / self.warmup
        return lr

    def _one_cycle(self, base: float, t: int) -> float:
        start = base / 25.0
        end = start / 1e4
        up = float(self.cfg["schedule.pct_start"] * self.total) - 1
        down = float(self.total - 1)

        def cos_anneal(a: float, b: float, pct: float) -> float:
            return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)

        if t <= up:
            return cos_anneal(start, base, t / up) if up > 0 else base
        return cos_anneal(base, end, min(1.0, (t - up) / (down - up)))

    def step_batch(self) -> None:
        """Call after every optimizer step."""
        self.t += 1
        self._apply()

    def step_epoch(self, val_loss: float) -> None:
        """Call after every epoch with the validation loss (drives ``plateau``)."""
        if self.kind != "plateau":
            return
        if val_loss < self.best * (1 - 1e-4):
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.cfg["schedule.patience"]:
                self.scale *= self.cfg["schedule.factor"]
                self.bad_epochs = 0
        self._apply()

    def state_dict(self) -> dict:
        return {
            "t": self.t,
            "scale": self.scale,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "base_lrs": [g["base_lr"] for g in self.optimizer.param_groups],
        }

    def load_state_dict(self, state: dict) -> None:
        self.t, self.scale, self.best, self.bad_epochs = state["t"], state["scale"], state["best"], state["bad_epochs"]
        for group, base in zip(self.optimizer.param_groups, state["base_lrs"], strict=True):
            group["base_lr"] = base
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(group["base_lr"], self.t)
