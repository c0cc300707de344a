"""A trial's process that ends itself leaves word of how, for the trial's ``hpsearch.error``
(Ray says only "the actor died unexpectedly", whatever the cause):

* ``os._exit(code)`` (called by the trainable or a library it uses) first writes the exit code to Ray's
  internal key-value store, under the trial's id;
* a fatal signal (SIGSEGV, SIGABRT from ``os.abort()``, SIGBUS, SIGFPE, SIGILL) makes Python's
  ``faulthandler`` write the signal and the Python stack to a file on the node
  (:func:`hpsearch.protocol.fault_file`), removed again when the process exits normally.

SIGKILL (the kernel's OOM killer, ``kill -9``) leaves nothing: the driver says so by elimination.
"""

from __future__ import annotations

import atexit
import faulthandler
import os
from typing import IO, Any

from hpsearch.protocol import EXIT_NOTE_NAMESPACE, exit_note_key, fault_file

_state: dict[str, Any] = {"trial_id": None, "installed": False}


def _note_exit(code: int) -> None:
    trial_id = _state["trial_id"]
    if trial_id is None:
        return
    try:
        from ray.experimental.internal_kv import _internal_kv_put

        message = f"the trainable ended its process with os._exit({code})"
        _internal_kv_put(exit_note_key(trial_id), message.encode(), overwrite=True, namespace=EXIT_NOTE_NAMESPACE)
    except Exception:  # noqa: S110 - the note is a courtesy; the exit must happen
        pass


def watch(trial_id: str) -> None:
    """From now on, an exit of this process is told as ``trial_id``'s (once per process: actors are reused)."""
    _state["trial_id"] = trial_id
    if _state["installed"]:
        return
    _state["installed"] = True
    original = os._exit

    def _exit(code: int) -> None:
        _note_exit(code)
        original(code)

    os._exit = _exit  # type: ignore[assignment]
    path = fault_file(os.getpid())
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        stream: IO[str] = open(path, "w")  # noqa: SIM115 - open for the life of the process
    except OSError:
        return
    faulthandler.enable(file=stream, all_threads=False)

    def remove() -> None:
        faulthandler.disable()
        stream.close()
        try:
            os.unlink(path)
        except OSError:
            pass

    atexit.register(remove)


__all__ = ["watch"]
