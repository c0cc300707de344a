"""A line per finished trial instead of Ray's raw log flood; in a job, also a :class:`Progress` record
that ``hpsearch status`` and ``hpsearch list`` read back."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from hpsearch.protocol import RECORDS_ENV, Progress

if TYPE_CHECKING:
    from hpsearch.ledger import Ledger, TrialRecord


class ProgressPrinter:
    def __init__(
        self,
        ledger: Callable[[], Ledger],
        num_trials: int,
        max_epochs: int,
        stream: TextIO = sys.stdout,
        records: bool | None = None,
    ):
        """``ledger`` returns the search's ledger (a resumed search gets Tune's restored one);
        ``records``: also print a :class:`Progress` record per trial (default: when running as a job,
        ``HPSEARCH_PROGRESS_RECORDS=1``)."""
        self.get_ledger, self.num_trials, self.max_epochs, self.stream = ledger, num_trials, max_epochs, stream
        self.records = os.environ.get(RECORDS_ENV) == "1" if records is None else records
        self.started = time.time()

    @property
    def ledger(self) -> Ledger:
        return self.get_ledger()

    def search_restored(self, records: list[TrialRecord]) -> None:
        done = sum(r.state != "running" for r in records)
        print(
            f"resumed: {done} of {self.num_trials} trials already done, {len(records) - done} to continue",
            file=self.stream,
            flush=True,
        )
        if self.records:  # `hpsearch status` shows where the resumed search starts (it may have nothing left)
            best = self.ledger.best(records)  # of the restored records (the printer may not see that ledger yet)
            value = best.metrics[self.ledger.metric] if best else None
            print(Progress(done, self.num_trials, value).line(), file=self.stream, flush=True)

    def trial_started(self, rec: TrialRecord) -> None:
        pass

    def trial_result(self, rec: TrialRecord, step: int, metrics: dict[str, float]) -> None:
        pass

    def trial_restarted(self, rec: TrialRecord) -> None:
        print(
            f"{rec.name} restarted from its last checkpoint (restart {rec.restarts}): {(rec.restart_cause or '')[:120]}",
            file=self.stream,
            flush=True,
        )

    def trial_ended(self, rec: TrialRecord) -> None:
        counts = self.ledger.counts()
        done = sum(counts[s] for s in ("completed", "stopped_early", "diverged", "failed"))
        metric = self.ledger.metric
        value = rec.metrics.get(metric)
        shown = f"{metric} {value:.4f}" if value is not None else (rec.error or "")[:60]
        best = self.ledger.best()
        best_text = f"best {best.metrics[metric]:.4f} ({best.name})" if best else "best -"
        print(
            f"[{done:>{len(str(self.num_trials))}}/{self.num_trials}] {rec.name} {rec.state:<13} "
            f"epoch {rec.epochs:>2}/{self.max_epochs}  {shown:<24} | running {counts['running']}, "
            f"stopped {counts['stopped_early']}, {best_text} | {time.time() - self.started:5.0f}s",
            file=self.stream,
            flush=True,
        )
        if self.records:
            value = best.metrics[metric] if best else None
            print(Progress(done, self.num_trials, value).line(), file=self.stream, flush=True)
