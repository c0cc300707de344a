"""A trial as the search records it, and the interface of those told about trials (MLflow tracking, the
progress printer). No Ray import: the tracking package and the report read these without Ray.

States: ``running`` while it trains, then exactly one of ``completed`` (ran every epoch),
``stopped_early`` (the scheduler stopped it), ``diverged`` (the loss became NaN/inf) or ``failed``
(an exception, a lost node).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

STATES = ("completed", "stopped_early", "diverged", "failed")


@dataclass
class TrialRecord:
    index: int  # 1-based, in start order: t001, t002, ...
    trial_id: str
    config: dict[str, Any]
    started: float = field(default_factory=time.time)
    ended: float | None = None
    state: str = "running"
    epochs: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # the last reported values
    error: str | None = None
    node_id: str | None = None  # the Ray node it ran on
    device: str | None = None  # cpu | cuda
    runtime: dict[str, str] = field(default_factory=dict)  # how it used its device (trainables.device)
    restarts: int = 0  # times Tune restarted it from its last checkpoint (a lost node, or max_failures)
    restart_cause: str | None = None  # why, the last time
    # PBT: each exploit, in order: {"segment": 2, 3, ..., "epoch": it continues after, "donor": t00k,
    # "config": the config it continues with, "changed": {key: value}}
    segments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"t{self.index:03d}"


class Listener(Protocol):
    def trial_started(self, rec: TrialRecord) -> None: ...
    def trial_result(self, rec: TrialRecord, step: int, metrics: dict[str, float]) -> None: ...
    def trial_ended(self, rec: TrialRecord) -> None: ...
    def trial_restarted(self, rec: TrialRecord) -> None: ...
    def search_restored(self, records: list[TrialRecord]) -> None: ...
