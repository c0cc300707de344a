"""Writes MLflow has not taken yet, kept durably beside the search's state.

While the tracking store answers, writes go straight to it and the journal stays empty. When a write
fails and the store does not answer its health check, that write and every one after it go to the
journal (``RUN_DIR/mlflow-journal.jsonl``, one JSON line per write, in order) instead; the tracking
thread checks the store every few seconds and replays the journal, in order, when it is back. What is
still pending when the search ends stays there for ``hpsearch sync RUN_DIR``.

Replaying is idempotent: a trial's run is found by its tags before one is created, metric points MLflow
already has (same key and step) are skipped, params, tags, artifacts and statuses are the same values
again. So a replay cut short (the store went away again, ``sync`` was killed) can simply run again.

A line that does not read back as a write (the machine died mid-append and left half a line, or the file
was damaged) is skipped and set aside, as it was, in ``RUN_DIR/mlflow-journal.rejected.jsonl``: the
lines around it replay, and ``sync`` and ``resume`` say how many were set aside.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hpsearch import rundir

JOURNAL_FILE = "mlflow-journal.jsonl"
REJECTED_FILE = "mlflow-journal.rejected.jsonl"
PARENT = "parent"  # the ref of the search's own run


@dataclass
class Op:
    """One write. ``ref`` names the run: :data:`PARENT` or a trial id (whose run may not exist yet when
    the write is journaled; ``run_id`` is filled in when it is known)."""

    kind: str  # create_trial | metrics | tags | end_trial | parent_results | report | terminate
    ref: str
    data: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None

    def to_line(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @staticmethod
    def from_line(line: str) -> Op:
        """The op a journal line holds; ValueError for a line that is not one (torn, damaged)."""
        try:
            data = json.loads(line)
            op = Op(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a journaled write: {exc}") from None
        if op is None or not isinstance(op.kind, str) or not isinstance(op.ref, str) or not isinstance(op.data, dict):
            raise ValueError("not a journaled write")
        return op


class Journal:
    """The pending writes of one search, in memory and in ``RUN_DIR/mlflow-journal.jsonl``."""

    SAVE_EVERY_S = 1.0  # a storage URI (no appends) is rewritten at most this often, and at the end

    def __init__(self, run_dir: str):
        self.path = f"{run_dir.rstrip('/')}/{JOURNAL_FILE}"
        self.local = not rundir.is_uri(self.path)
        self.ops: list[Op] = []
        self.rejected = 0  # lines set aside by :meth:`load` (torn or damaged)
        self._saved_at = 0.0
        self._on_storage = False  # (storage URI) whether a journal file may exist there
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ops)

    def append(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)
            if self.local:  # appended and flushed: durable as soon as it is journaled
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a") as f:
                    f.write(op.to_line() + "\n")
                    f.flush()
                    os.fsync(f.fileno())
        if not self.local and time.monotonic() - self._saved_at >= self.SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        """Write the pending ops (all of them: the file is replaced); no file when none is pending."""
        with self._lock:
            text = "".join(op.to_line() + "\n" for op in self.ops)
            self._saved_at = time.monotonic()
            if self.local:
                path = Path(self.path)
                if not text:
                    path.unlink(missing_ok=True)
                    return
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(text)
                os.replace(tmp, path)
            elif text or self._on_storage:
                rundir.write_text(self.path, text)
                self._on_storage = bool(text)

    @staticmethod
    def load(run_dir: str) -> Journal:
        """The journal as ``run_dir`` keeps it. Lines that are not writes are moved, as they were, to
        :data:`REJECTED_FILE` (appended) and counted in ``rejected``; the journal keeps the rest, in order."""
        journal = Journal(run_dir)
        if journal.local:  # bytes a dying machine left may not even be UTF-8
            path = Path(journal.path)
            text = path.read_bytes().decode("utf-8", "replace") if path.is_file() else ""
        else:
            text = rundir.read_text(journal.path) or ""
        bad: list[str] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                journal.ops.append(Op.from_line(line))
            except ValueError:
                bad.append(line)
        journal._on_storage = bool(text)
        if bad:
            journal.rejected = len(bad)
            rejected_path = f"{run_dir.rstrip('/')}/{REJECTED_FILE}"
            earlier = rundir.read_text(rejected_path) or ""
            rundir.write_text(rejected_path, earlier + "".join(line + "\n" for line in bad))
            journal.save()  # the journal without them (set aside first: nothing is lost if this dies)
        return journal

    def replay(self, apply: Callable[[Op], None], on_progress: Callable[[int], None] | None = None) -> int:
        """Apply the pending ops in order (each with ``replaying=True`` semantics, see the module doc),
        dropping each once applied; stop at the first that fails (it raises). Returns how many were applied."""
        done = 0
        try:
            while self.ops:
                apply(self.ops[0])
                with self._lock:
                    self.ops.pop(0)
                done += 1
                if on_progress is not None:
                    on_progress(done)
        finally:
            if done:
                self.save()
        return done


__all__ = ["JOURNAL_FILE", "PARENT", "REJECTED_FILE", "Journal", "Op"]
