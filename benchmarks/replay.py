"""Replay workloads: learning curves recorded once for every config of a discretised space
(``benchmarks.replay_record``), replayed instead of trained (the field's tabular benchmarks: HPOBench,
LCBench).

Two ways to replay a table:

- :func:`replay_digits_mlp`, :func:`replay_images_cnn`: trainables ``hpsearch run`` takes
  (``trainable: benchmarks.replay:replay_digits_mlp``, no ``data``). Each epoch reports the recorded
  metrics after the recorded seconds (times ``HPSEARCH_REPLAY_TIME_SCALE``); a recorded divergence raises
  :class:`~hpsearch.protocol.TrialDiverged` at its epoch. A real search, end to end, at a fraction of the cost.
- :func:`simulate`: the same searcher and scheduler objects Ray Tune would drive (hpsearch's own
  ``SpaceSearch``, Ray's ``OptunaSearch``, Ray's schedulers) or an Optuna study with its pruner, driven by a
  virtual clock: trials in flight end their epochs at the recorded times, in the order real runs would;
  each searcher and scheduler is called as Tune calls it. Deterministic and milliseconds per trial: a
  method can be run with 30+ seeds in minutes (``benchmarks.replay_quality``).
"""

from __future__ import annotations

import functools
import gzip
import heapq
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks.replay_spaces import config_key

DATA = Path(__file__).parent / "replay_data"
METRIC = "val_accuracy"
TIME_SCALE_ENV = "HPSEARCH_REPLAY_TIME_SCALE"


@dataclass(frozen=True)
class Table:
    name: str
    space: Any  # the hpsearch Space
    max_epochs: int
    configs: dict[str, dict[str, Any]]  # config_key -> {"epochs": [[seconds, val_accuracy, val_loss]], ...}

    def curve(self, config: dict[str, Any]) -> dict[str, Any]:
        found = self.configs.get(config_key({k: v for k, v in config.items() if "[" not in k}))
        if found is None:
            raise KeyError(f"{self.name}: no recorded curve for {config}")
        return found

    def best(self) -> float:
        """The best validation accuracy any config reaches at any epoch (the table's optimum)."""
        return max(e[1] for c in self.configs.values() for e in c["epochs"])


@functools.lru_cache(maxsize=4)
def load_table(name: str) -> Table:
    from hpsearch import spaces

    with gzip.open(DATA / f"{name}.json.gz", "rt") as f:
        raw = json.load(f)
    return Table(name, spaces.parse_space(raw["space"]), raw["max_epochs"], raw["configs"])


def epoch_metrics(curve: dict[str, Any], epoch: int) -> dict[str, float]:
    seconds, acc, loss = curve["epochs"][epoch - 1]
    return {"epoch": epoch, METRIC: acc, "val_loss": loss, "params": curve["params"], "latency_ms": curve["latency_ms"]}


# The replay trainables (hpsearch run) -------------------------------------------------------------
def _replay(name: str, config: dict[str, Any], epochs: int, report: Any, resume: Any) -> None:
    from hpsearch.protocol import TrialDiverged

    curve = load_table(name).curve(config)
    scale = float(os.environ.get(TIME_SCALE_ENV, "1"))
    for epoch in range((resume or {}).get("epoch", 0) + 1, epochs + 1):
        if epoch == curve["diverged_at"]:
            raise TrialDiverged(f"recorded: the loss became non-finite in epoch {epoch}")
        time.sleep(curve["epochs"][epoch - 1][0] * scale)
        report(epoch_metrics(curve, epoch), {"epoch": epoch})


def replay_digits_mlp(
    config: dict[str, Any], data: Any, epochs: int, report: Any, seed: int = 0, *, resume: Any = None
) -> None:
    """The digits MLP table, replayed (``seed`` is the recorded one: a table has one curve per config)."""
    _replay("digits_mlp", config, epochs, report, resume)


def replay_images_cnn(
    config: dict[str, Any], data: Any, epochs: int, report: Any, seed: int = 0, *, resume: Any = None
) -> None:
    """The small CNN table, replayed."""
    _replay("images_cnn", config, epochs, report, resume)


# The virtual-clock driver ------------------------------------------------------------------------
@dataclass
class Timeline:
    """A simulated search: every epoch in the order it ended (value None: it diverged there)."""

    values: list[float | None] = field(default_factory=list)
    trials: list[str] = field(default_factory=list)
    finished: dict[str, dict[str, float]] = field(default_factory=dict)  # completed trial -> last metrics
    finished_at: dict[str, int] = field(default_factory=dict)  # completed trial -> epochs spent when it ended

    def best_within(self, epochs: int) -> float:
        return max((v for v in self.values[:epochs] if v is not None), default=0.0)


class Method:
    """What a search method does when the driver starts a trial, delivers an epoch and ends a trial."""

    def start(self, tid: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def result(self, tid: str, metrics: dict[str, float]) -> bool:
        """Whether the trial goes on."""
        raise NotImplementedError

    def end(self, tid: str, metrics: dict[str, float] | None, stopped: bool, diverged: bool) -> None:
        raise NotImplementedError


class SimTrial:
    """What Ray's schedulers read of a Tune trial (hashable by identity, as Tune's are)."""

    def __init__(self, trial_id: str, config: dict[str, Any]):
        self.trial_id, self.config, self.status = trial_id, config, "RUNNING"


class TuneMethod(Method):
    """A Ray Tune searcher and scheduler, called as Tune's controller calls them."""

    def __init__(self, searcher: Any, scheduler: Any, metric: str = METRIC, mode: str = "max"):
        self.searcher, self.scheduler = searcher, scheduler
        scheduler.set_search_properties(metric, mode)
        self.trials: dict[str, Any] = {}
        self.controller = SimpleNamespace(get_live_trials=lambda: [], get_trials=lambda: list(self.trials.values()))

    def start(self, tid: str) -> dict[str, Any] | None:
        config = self.searcher.suggest(tid)
        if config is None or config == "FINISHED":
            return None
        self.trials[tid] = SimTrial(tid, config)
        self.scheduler.on_trial_add(self.controller, self.trials[tid])
        return config

    def result(self, tid: str, metrics: dict[str, float]) -> bool:
        result = {**metrics, "training_iteration": metrics["epoch"], "trial_id": tid}
        decision = self.scheduler.on_trial_result(self.controller, self.trials[tid], result)
        self.searcher.on_trial_result(tid, result)
        return decision != "STOP"

    def end(self, tid: str, metrics: dict[str, float] | None, stopped: bool, diverged: bool) -> None:
        trial = self.trials[tid]
        if diverged:
            from hpsearch import faults

            faults._by_trial_id[tid] = faults.Failure(faults.DIVERGED, "")  # what hpsearch's Ledger records
            self.scheduler.on_trial_error(self.controller, trial)
            self.searcher.on_trial_complete(tid, None, error=True)
        else:
            result = {**(metrics or {}), "training_iteration": (metrics or {}).get("epoch", 0), "trial_id": tid}
            if not stopped:
                self.scheduler.on_trial_complete(self.controller, trial, result)
            self.searcher.on_trial_complete(tid, result)
        trial.status = "TERMINATED"


class OptunaPruned(Method):
    """An Optuna study with its pruner (``study.optimize`` with trials in flight: ask, report, should_prune)."""

    def __init__(self, study: Any, draw: Callable[[Any], dict[str, Any]]):
        self.study, self.draw = study, draw
        self.trials: dict[str, Any] = {}

    def start(self, tid: str) -> dict[str, Any] | None:
        trial = self.study.ask()
        self.trials[tid] = trial
        return self.draw(trial)

    def result(self, tid: str, metrics: dict[str, float]) -> bool:
        trial = self.trials[tid]
        trial.report(metrics[METRIC], int(metrics["epoch"]))
        return not trial.should_prune()

    def end(self, tid: str, metrics: dict[str, float] | None, stopped: bool, diverged: bool) -> None:
        from optuna.trial import TrialState

        trial = self.trials[tid]
        if diverged:
            self.study.tell(trial, state=TrialState.FAIL)
        elif stopped:
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, (metrics or {})[METRIC])


def simulate(table: Table, method: Method, budget: int, concurrency: int = 2) -> Timeline:
    """Run ``method`` on ``table`` until it has spent ``budget`` epochs, ``concurrency`` trials at a time;
    each trial's epochs end at its recorded times."""
    timeline = Timeline()
    events: list[tuple[float, int, str, int]] = []
    curves: dict[str, dict[str, Any]] = {}
    seq = 0  # ties in time: the event queued first ends first
    running = 0

    def start(now: float) -> bool:
        nonlocal seq, running
        tid = f"t{len(curves):04d}"
        config = method.start(tid)
        if config is None:
            return False
        curves[tid] = table.curve(config)
        running += 1
        seq += 1
        heapq.heappush(events, (now + seconds(curves[tid], 1), seq, tid, 1))
        return True

    spent = 0
    exhausted = False
    while running < concurrency and not exhausted:
        exhausted = not start(0.0)
    while events and spent < budget:
        now, _, tid, epoch = heapq.heappop(events)
        curve = curves[tid]
        spent += 1
        timeline.trials.append(tid)
        if curve["diverged_at"] == epoch:
            timeline.values.append(None)
            method.end(tid, None, stopped=False, diverged=True)
            going = False
        else:
            metrics = epoch_metrics(curve, epoch)
            timeline.values.append(metrics[METRIC])
            going = method.result(tid, metrics) and epoch < table.max_epochs
            if not going:
                method.end(tid, metrics, stopped=epoch < table.max_epochs, diverged=False)
                if epoch == table.max_epochs:
                    timeline.finished[tid], timeline.finished_at[tid] = metrics, spent
        if going:
            seq += 1
            heapq.heappush(events, (now + seconds(curve, epoch + 1), seq, tid, epoch + 1))
        else:
            running -= 1
            while running < concurrency and not exhausted and spent < budget:
                exhausted = not start(now)
    return timeline


def seconds(curve: dict[str, Any], epoch: int) -> float:
    """How long epoch ``epoch`` took; an epoch that diverged took as long as the one before it (or 0.1 s
    when it was the first: it never finished, and no time was recorded)."""
    epochs = curve["epochs"]
    return float(epochs[epoch - 1][0] if epoch <= len(epochs) else epochs[-1][0] if epochs else 0.1)
