"""While the MLflow store is away: :class:`Offline` applies each write, or, once a write fails and the
store does not answer its health check, keeps it and every write after it in the search's journal
(:mod:`hpsearch.tracking.journal`), checks the store every few seconds and replays the journal, in order,
once it answers again. It runs on the tracking thread only."""

from __future__ import annotations

import sys
import time

from hpsearch.redact import redact
from hpsearch.tracking.journal import Journal, Op
from hpsearch.tracking.store import is_server, store_status
from hpsearch.tracking.writes import StoreWriter

PROBE_S = 5.0  # how often an absent store is checked
PROBE_TIMEOUT_S = 3.0


class Offline:
    """Writes through ``store`` while it answers, into ``journal`` while it does not (no journal: a
    failed write is an error, reported with the other write failures)."""

    def __init__(self, store: StoreWriter):
        self.store = store
        self.journal: Journal | None = None
        self.since: float | None = None  # when the store went away (None: it answers)
        self._next_probe = 0.0
        self.replayed = 0  # journaled writes replayed during the search

    def run(self, op: Op) -> None:
        """Apply ``op``, or journal it while the store is away (a failure the store's health check
        explains takes the store away; any other failure is reported as a failed write)."""
        if self.since is None:
            try:
                self.store.apply(op, replaying=False)
                return
            except Exception as exc:
                if self.journal is None or self.answers():
                    raise
                self.since = time.monotonic()
                self._next_probe = self.since + PROBE_S
                print(
                    f"hpsearch: the MLflow store {redact(self.store.tracking_uri)} does not answer "
                    f"({type(exc).__name__}: {redact(str(exc)).splitlines()[0][:200] if str(exc) else ''}); its "
                    f"writes are kept in {self.journal.path} and replayed when it is back",
                    file=sys.stderr,
                )
        assert self.journal is not None
        if op.run_id is None:
            op.run_id = self.store.run_id_of(op.ref)
        self.journal.append(op)

    def answers(self) -> bool:
        """Whether the store answers now (a few seconds at most)."""
        uri = self.store.tracking_uri
        if is_server(uri):  # through the store: a server whose database is down answers /health all the same
            try:
                return store_status(uri, PROBE_TIMEOUT_S) < 500
            except OSError:
                return False
        try:
            self.store.client.search_experiments(max_results=1)
            return True
        except Exception:
            return False

    def heartbeat(self) -> float | None:
        """While the store is away: check it every PROBE_S, and replay the journal once it answers. Returns
        when to be called again (None: the store answers)."""
        if self.since is None or self.journal is None:
            return None
        now = time.monotonic()
        if now < self._next_probe:
            return self._next_probe - now
        self._next_probe = now + PROBE_S
        self.replay()
        return None if self.since is None else PROBE_S

    def replay(self) -> None:
        assert self.journal is not None
        if not self.answers():
            return
        try:
            self.replayed += self.journal.replay(lambda op: self.store.apply(op, replaying=True))
        except Exception:
            return  # away again: the rest stays journaled, tried at the next check
        away = time.monotonic() - (self.since or time.monotonic())
        self.since = None
        print(
            f"hpsearch: the MLflow store answers again (away {away:.0f} s): {self.replayed} journaled writes replayed",
            file=sys.stderr,
        )

    def last_chance(self) -> None:
        """At the end of the search: one more check of an absent store (no waiting beyond it)."""
        if self.since is not None:
            self.replay()


__all__ = ["PROBE_S", "Offline"]
