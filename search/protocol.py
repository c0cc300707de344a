"""What a trial (in its Ray worker) and the search's driver share, and nothing else: how epochs
travel to Tune (:class:`EpochBatch`, ASHA's rung epochs), how a trial says its config diverged
(:class:`TrialDiverged`), and the progress record a search prints and ``hpsearch status`` reads. The
epochs where the scheduler decides come from the scheduler (:meth:`hpsearch.schedulers.SchedulerSpec.milestones`).

Neutral ground: no Ray, torch or MLflow import, so both sides import it at no cost.

Epochs reach Tune in batches: each Tune result is a round trip to the driver (the trial waits for
it), which costs as much as a short epoch. A result is sent at every epoch where the scheduler decides
(ASHA's rungs), at the last epoch, with every checkpoint, and otherwise when ``report_interval_s`` has passed
since the previous one; it carries the epochs before it under :data:`EARLIER`, so every epoch's
metrics still reach MLflow. Epochs longer than the interval are each sent as they end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

EARLIER = "earlier_epochs"
"""Result key: the metrics of the epochs a Tune result carries besides its own (oldest first)."""


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite: the config diverged (not a bug in the code).

    A trainable raises it to end its trial as ``diverged`` rather than ``failed``.
    """


class EpochBatch:
    """Collects per-epoch metrics; ``add`` says when they must go to Tune: an ASHA milestone was
    reached (so ASHA decides on exactly the epoch it would without batching), the last epoch, or
    ``interval_s`` since the last send. ``take`` returns one Tune result: the newest epoch's
    metrics with the earlier ones under :data:`EARLIER`."""

    def __init__(
        self,
        epochs: int,
        milestones: Iterable[float] = (),
        interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sent_epoch: int = 0,
    ):
        self.epochs, self.milestones, self.interval_s, self.clock = epochs, sorted(milestones), interval_s, clock
        self.pending: list[dict[str, Any]] = []
        self.sent_epoch = sent_epoch  # the last epoch Tune has seen (a restored trial: its checkpoint's)
        self.sent_at = clock()

    def add(self, metrics: dict[str, Any]) -> bool:
        self.pending.append(metrics)
        epoch = metrics["epoch"]
        return (
            epoch >= self.epochs
            or any(self.sent_epoch < m <= epoch for m in self.milestones)
            or self.clock() - self.sent_at >= self.interval_s
        )

    def take(self) -> dict[str, Any]:
        *earlier, last = self.pending
        self.pending = []
        self.sent_epoch, self.sent_at = last["epoch"], self.clock()
        return {**last, EARLIER: earlier} if earlier else dict(last)


class GroupWorkerLost(RuntimeError):
    """A worker process of a multi-worker trial (``resources.workers``) died or its node was lost: the
    group restarts from its last checkpoint, counted in ``search.max_node_restarts`` like a lost node."""


class MetricNotReported(RuntimeError):
    """A trial's report lacks the search's metric: every trial would fail the same way, so the search stops
    starting trials (the trial ends ``failed``, its message naming the metrics it did report)."""


PROGRESS_PREFIX = "hpsearch-progress "
RECORDS_ENV = "HPSEARCH_PROGRESS_RECORDS"  # "1": the driver prints Progress records (set for jobs)


@dataclass(frozen=True)
class Progress:
    """Where a search stands, printed by its driver after every trial as one line
    (``hpsearch-progress {json}``) and read back from a job's log by ``hpsearch status`` / ``list``."""

    done: int
    total: int
    best: float | None

    def line(self) -> str:
        return PROGRESS_PREFIX + json.dumps(asdict(self))

    @classmethod
    def last_in(cls, log: str) -> Progress | None:
        """The newest progress record in a search's log, or None if it has printed none yet."""
        for line in reversed(log.splitlines()):
            if line.startswith(PROGRESS_PREFIX):
                try:
                    data = json.loads(line[len(PROGRESS_PREFIX) :])
                    return cls(int(data["done"]), int(data["total"]), data["best"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut off mid-write (the log is read while the job runs)
        return None


# How a trial's process that ends itself leaves word of how (hpsearch.trainables.exits writes it,
# hpsearch.faults reads it): a note in Ray's internal key-value store (exit code), and a fault file
# on the node (Python's faulthandler: the fatal signal and where it struck).
EXIT_NOTE_NAMESPACE = "hpsearch"


def exit_note_key(trial_id: str) -> bytes:
    return f"exit:{trial_id}".encode()


def group_key(trial_id: str) -> bytes:
    """Where rank 0 of a multi-worker trial leaves its Ray Train placement group's id (same namespace): the
    search removes it when the trial ends, since Tune ending the trial's process can leave it behind."""
    return f"group:{trial_id}".encode()


def fault_file(pid: int) -> str:
    import os
    import tempfile

    return os.path.join(tempfile.gettempdir(), "hpsearch-faults", f"{pid}.txt")


COST_METRICS = ("params", "latency_ms", "peak_memory_mb")
"""What the built-in trainables report of their model's cost (:mod:`hpsearch.trainables.costs`), all
better small: objectives and constraints of a search may name them."""
