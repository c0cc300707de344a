"""The tracking thread: MLflow calls run on it in order, so the Tune driver only enqueues and tracking
costs the search loop nothing; per-epoch metric points go out in batches."""

from __future__ import annotations

import functools
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


class Writer(threading.Thread):
    """Runs MLflow calls in order on its own thread. Metric points wait per trial and go out as one
    batch when the trial ends, when they are ``FLUSH_S`` old (live curves for long trials), or before
    any call that could read them; every other call keeps its place in the order."""

    FLUSH_S = 2.0

    def __init__(self) -> None:
        super().__init__(name="hpsearch-mlflow", daemon=True)
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.errors: list[str] = []
        # Called on every turn of the loop; does what is due (the tracker: check an absent store, replay
        # its journal) and returns the seconds until it next wants a turn (None: only on the next call).
        self.heartbeat: Callable[[], float | None] = lambda: None

    def call(self, fn: Callable[[], Any], flush: str | None = None) -> None:
        """``fn`` after the pending points of trial ``flush``; ``flush=None``: of every trial; ``""``: none."""
        self._queue.put(("call", (fn, flush)))

    def metrics(self, key: str, points: list[Any]) -> None:
        self._queue.put(("metrics", (key, points)))

    def take(self, key: str, fn: Callable[[list[Any]], Any]) -> None:
        """``fn(points)`` with the pending points of ``key``, which it writes itself (in its own request)."""
        self._queue.put(("take", (key, fn)))

    def flush(self) -> None:
        done = threading.Event()
        self.call(done.set)
        done.wait()

    def stop(self) -> None:
        self._queue.put(("stop", None))
        self.join()

    def run(self) -> None:
        pending: dict[str, list[Any]] = {}
        since: dict[str, float] = {}

        def take(key: str) -> list[Any]:
            since.pop(key, None)
            return pending.pop(key, [])

        def write(keys: list[str]) -> None:
            for key in keys:
                if key in pending:
                    points = take(key)
                    self._guard(functools.partial(self.log_points, key, points))

        wake: float | None = None
        while True:
            waits = [min(since.values()) + self.FLUSH_S - time.monotonic()] if since else []
            if wake is not None:
                waits.append(wake)
            timeout = max(0.0, min(waits)) if waits else None
            try:
                kind, payload = self._queue.get(timeout=timeout)
            except queue.Empty:
                kind, payload = "tick", None
            if kind == "metrics":
                key, points = payload
                pending.setdefault(key, []).extend(points)
                since.setdefault(key, time.monotonic())
            elif kind == "call":
                fn, flush = payload
                write(list(pending) if flush is None else [flush] if flush else [])
                self._guard(fn)
            elif kind == "take":
                key, fn = payload
                points = take(key)
                self._guard(functools.partial(fn, points))
            elif kind == "stop":
                write(list(pending))
                return
            now = time.monotonic()
            write([k for k, t in since.items() if now - t >= self.FLUSH_S])
            wake = self.heartbeat()

    log_points: Callable[[str, list[Any]], None]  # set by the tracker

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # tracking must not take the search down; it is reported at the end
            message = f"{type(exc).__name__}: {exc}"
            self.errors.append(message)
            print(f"hpsearch: MLflow write failed: {message}", file=sys.stderr)
