"""One writer per search: ``run``, ``resume`` and ``sync`` hold their run directory's lock while they
write to it (Tune's state, the MLflow journal, the search's MLflow runs). A second command on the same
run directory is refused, saying who holds it and since when, before it changes anything.

* A local run directory: an advisory ``flock`` on ``RUN_DIR/.hpsearch.lock``. The kernel releases it
  when the holder ends in any way (``kill -9`` included), so a crashed command never leaves it behind.
* A storage URI (``s3://``, ``gs://``, ...): a lease, the object ``RUN_DIR/.hpsearch.lock`` naming its
  holder and when it expires (:data:`LEASE_S`). The holder renews it every third of that; a holder that
  died stops renewing, and the lease can be taken once it has expired. Object stores have no atomic
  create, so a taker writes its lease, waits :data:`SETTLE_S` and reads it back: of two takers at once,
  the one whose lease is not there gives way.

Within one process the lock is re-entrant (``resume`` syncs the journal first, under its own lock).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hpsearch import rundir
from hpsearch.errors import HpsearchError

LOCK_FILE = ".hpsearch.lock"
LEASE_S = 60.0
SETTLE_S = 1.0


class SearchLocked(HpsearchError):
    """Another command holds the run directory (the message names it)."""


@dataclass
class Lock:
    """A held lock on one run directory; :meth:`release` gives it up (idempotent)."""

    run_dir: str
    holder: dict[str, Any]
    _file: IO[str] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _count: int = 1

    def release(self) -> None:
        with _guard:
            self._count -= 1
            if self._count > 0 or _held.get(self.run_dir) is not self:
                return
            del _held[self.run_dir]
        self._stop.set()
        if self._file is not None:
            self._file.close()  # the flock goes with the file
            return
        try:  # our lease, unless it was taken from us meanwhile
            if _read_lease(self.run_dir).get("owner") == self.holder["owner"]:
                _delete(_path(self.run_dir))
        except OSError:
            pass  # it expires by itself


_held: dict[str, Lock] = {}
_guard = threading.Lock()


def _path(run_dir: str) -> str:
    return f"{run_dir.rstrip('/')}/{LOCK_FILE}"


def describe(holder: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder.get("since", 0))))
    return f"`hpsearch {holder.get('command', '?')}` (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {since})"


def acquire(run_dir: str, command: str, reentrant: bool = True) -> Lock:
    """Hold ``run_dir`` for ``command`` (run, resume, sync); ``reentrant``: this process may hold it already.

    Raises:
        SearchLocked: another process holds it (or this one, unless ``reentrant``).
    """
    run_dir = run_dir.rstrip("/")
    with _guard:
        if run_dir in _held:
            if not reentrant:
                raise _refused(run_dir, _held[run_dir].holder)
            _held[run_dir]._count += 1
            return _held[run_dir]
    holder = {
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.time(),
        "owner": uuid.uuid4().hex,
    }
    lock = _lease(run_dir, holder) if rundir.is_uri(run_dir) else _flock(run_dir, holder)
    with _guard:
        _held[run_dir] = lock
    return lock


def _refused(run_dir: str, holder: dict[str, Any]) -> SearchLocked:
    return SearchLocked(
        f"{run_dir} is in use: {describe(holder)} holds its lock. One command at a time writes a search: "
        "wait for that one to end (or stop it), then try again"
    )


def _flock(run_dir: str, holder: dict[str, Any]) -> Lock:
    import fcntl

    path = Path(_path(run_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 (held open as long as the lock is)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        try:
            other = json.loads(f.read() or "{}")
        except ValueError:
            other = {}
        f.close()
        raise _refused(run_dir, other) from None
    f.seek(0)
    f.truncate()
    f.write(json.dumps(holder))
    f.flush()
    return Lock(run_dir, holder, _file=f)


def _read_lease(run_dir: str) -> dict[str, Any]:
    text = rundir.read_text(_path(run_dir))
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def _delete(location: str) -> None:
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    fs.delete_file(path)


def _write_lease(run_dir: str, holder: dict[str, Any]) -> None:
    rundir.write_text(_path(run_dir), json.dumps({**holder, "expires": time.time() + LEASE_S}))


def _lease(run_dir: str, holder: dict[str, Any]) -> Lock:
    other = _read_lease(run_dir)
    if other and float(other.get("expires", 0)) > time.time():
        raise _refused(run_dir, other)
    _write_lease(run_dir, holder)
    time.sleep(SETTLE_S)
    now = _read_lease(run_dir)
    if now.get("owner") != holder["owner"]:
        raise _refused(run_dir, now)
    lock = Lock(run_dir, holder)
    threading.Thread(target=_renew, args=(lock,), name="hpsearch-lease", daemon=True).start()
    return lock


def _renew(lock: Lock) -> None:
    while not lock._stop.wait(LEASE_S / 3):
        try:
            if _read_lease(lock.run_dir).get("owner") != lock.holder["owner"]:
                return  # taken over after ours expired (this process was stalled past LEASE_S)
            _write_lease(lock.run_dir, lock.holder)
        except OSError:
            continue  # the storage did not answer: try again; the lease lasts LEASE_S


def new_run_dir(storage_path: str, name: str, fixed: bool) -> tuple[str, Lock]:
    """A run directory no other search has, held (:mod:`hpsearch.lock`): ``name``, else ``name-2``,
    ``name-3``, ... (two searches of one spec started in the same second). A ``fixed`` name (``--run-name``,
    a submitted job's) is taken as it is: a search already there is refused."""
    for n in range(1, 1000):
        run_dir = f"{storage_path.rstrip('/')}/{name}" + (f"-{n}" if n > 1 else "")
        try:
            lock = acquire(run_dir, "run", reentrant=False)
        except SearchLocked:
            if fixed:
                raise
            continue
        if not rundir.has_meta(run_dir):  # a damaged one too: a search was there
            return run_dir, lock
        lock.release()
        if fixed:
            raise HpsearchError(f"{run_dir} already holds a search: continue it with hpsearch resume {run_dir}")
    raise HpsearchError(f"no free run directory for {name!r} under {storage_path}")


@atexit.register
def _release_all() -> None:
    for lock in list(_held.values()):
        lock._count = 1
        lock.release()


__all__ = ["LEASE_S", "LOCK_FILE", "Lock", "SearchLocked", "acquire", "describe", "new_run_dir"]
