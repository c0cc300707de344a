"""Whose fault a trial's failure is, and what Tune does about it.

* **The trainable raised** (a ``RayTaskError``): Tune's rules, as before: the trial ends ``failed`` (or
  ``diverged``), or is retried from its last checkpoint up to ``search.max_failures`` times.
* **The trainable's process died on a live node** (``os._exit``, a fatal signal, SIGKILL by the OOM
  killer or Ray's memory monitor): the trainable's doing, counted like an exception; the cause is read
  from the note the process left (:mod:`hpsearch.trainables.exits`) or from what Ray says.
* **The node was lost** (its raylet died: the actor became unreachable, or Ray says its node died), or
  a worker of a multi-worker trial died (:class:`~hpsearch.protocol.GroupWorkerLost`):
  not the config's fault. The trial is restarted from its last checkpoint on another node without
  counting against ``max_failures``, up to ``search.max_node_restarts`` times, then ends ``failed``
  with that said in ``hpsearch.error``.

Ray Tune has no hook to tell these apart before it decides to retry, so :func:`install` wraps
``Trial.handle_error`` (Tune counts the failure there; ``should_recover`` reads the count right after):
a node loss within the limit leaves the count as it was, as Ray itself does for preempted nodes.

It also mends a Ray Tune 2.60 gap: when Ray's memory monitor kills a trial's actor, its task fails with
``OutOfMemoryError``, which Tune's actor manager does not expect ("Caught unexpected exception") and
which ends the whole search. :func:`install` hands it on as the actor's death it is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from hpsearch.protocol import EXIT_NOTE_NAMESPACE, GroupWorkerLost, TrialDiverged, exit_note_key, fault_file

NODE_LOST = "node_lost"
PROCESS_DIED = "process_died"
RAISED = "raised"
DIVERGED = "diverged"  # the trainable raised TrialDiverged: the loss became NaN/inf


@dataclass(frozen=True)
class Failure:
    kind: str  # NODE_LOST | PROCESS_DIED | RAISED | DIVERGED
    text: str  # one readable line (for process deaths and node losses); "" for exceptions
    out_of_memory: bool = False  # the config asked for more memory than there is (host or GPU)

    @property
    def blames_config(self) -> bool:
        """Whether the config itself caused it (it diverged, or ran out of memory), so the searcher should
        steer away from it; a lost node, a bug or a crash says nothing about the config."""
        return self.kind == DIVERGED or self.out_of_memory


def _ray_errors() -> tuple[type[BaseException], type[BaseException], type[BaseException]]:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

    return ActorDiedError, ActorUnavailableError, RayTaskError


def _field(message: str, name: str) -> str | None:
    match = re.search(rf"^\s*{name}: (\S+)\s*$", message, re.MULTILINE)
    return match.group(1) if match else None


def _exit_note(trial_id: str) -> str | None:
    try:
        from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_get, _internal_kv_initialized

        if not _internal_kv_initialized():
            return None
        key = exit_note_key(trial_id)
        note = _internal_kv_get(key, namespace=EXIT_NOTE_NAMESPACE)
        if note is not None:
            _internal_kv_del(key, namespace=EXIT_NOTE_NAMESPACE)
        return note.decode() if note is not None else None
    except Exception:
        return None


def _fault_text(pid: str | None) -> tuple[bool, str | None]:
    """Whether ``pid`` had a fault file on this node (every trial process makes one: so it ran here), and
    what faulthandler wrote there, as one line: the error and where it struck."""
    if not pid or not pid.isdigit():
        return False, None
    path = fault_file(int(pid))
    try:
        with open(path) as f:
            text = f.read()
        os.unlink(path)
    except OSError:
        return False, None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return True, None
    where = next((line for line in lines if line.startswith("File ")), "")
    return True, f"{lines[0]}{f' ({where})' if where else ''}"


def _died_of(message: str, trial_id: str) -> str:
    """The cause of death of a trial's process on a live node, as readable as what is known."""
    note = _exit_note(trial_id)
    if note:
        return note
    pid, ip = _field(message, "pid"), _field(message, "ip")
    here, fault = _fault_text(pid)
    if fault:
        return f"the trial's process died of a fatal signal: {fault}"
    text = (
        "the trial's process was killed without an exit code or a Python error: SIGKILL, by the kernel's OOM "
        f"killer (look for 'Killed process {pid or ''}' in `dmesg`{f' on {ip}' if ip else ''}) or kill -9"
    )
    if pid and pid.isdigit() and not here:  # it ran on another node: a fatal signal left its stack there
        text += f"; or a fatal signal: then {fault_file(int(pid))}{f' on {ip}' if ip else ''} has its Python stack"
    return text


def classify(exc: BaseException | None, trial_id: str) -> Failure:
    """Whose fault ``exc`` (what Tune got for the trial) is."""
    if exc is None:
        return Failure(RAISED, "")
    actor_died, unavailable, task_error = _ray_errors()
    if isinstance(exc, task_error):
        cause: Any = exc.as_instanceof_cause()  # type: ignore[attr-defined]
        if isinstance(cause, (actor_died, unavailable)):
            exc = cause
        elif isinstance(cause, TrialDiverged):
            return Failure(DIVERGED, "")
        elif isinstance(cause, GroupWorkerLost):  # a worker of a multi-worker trial: as a lost node
            original = getattr(exc, "cause", None) or cause  # the instance the trial raised: its message
            return Failure(NODE_LOST, (str(original).strip().splitlines() or ["a worker was lost"])[0][:600])
        else:  # torch.OutOfMemoryError (CUDA) is the config's doing: its model or batch is too big
            names = {c.__name__ for c in type(getattr(exc, "cause", None) or cause).__mro__}
            return Failure(RAISED, "", out_of_memory="OutOfMemoryError" in names)
    message = str(exc)
    if isinstance(exc, unavailable):
        note = _exit_note(trial_id)  # the process may have ended itself just before the connection broke
        if note:
            return Failure(PROCESS_DIED, note)
        return Failure(NODE_LOST, "its node was lost (the trial's actor became unreachable: " + _first(message) + ")")
    if isinstance(exc, actor_died):
        if OOM_MARK in message:  # Ray's memory monitor killed it (see install): the trainable's memory
            detail = next((line.strip() for line in message.splitlines() if "Memory on the node" in line), "")
            text = f"the trial's process was killed for using too much memory: {detail[:300]}"
            return Failure(PROCESS_DIED, text, out_of_memory=True)
        if getattr(exc, "preempted", False) or re.search(r"node (has )?died|node .*(is )?dead", message, re.I):
            return Failure(NODE_LOST, "its node was lost (" + _first(message) + ")")
        return Failure(PROCESS_DIED, _died_of(message, trial_id))
    return Failure(RAISED, "")


def _first(message: str) -> str:
    return next((line.strip() for line in message.splitlines() if line.strip()), "")[:300]


def sweep() -> int:
    """Remove the fault files of trial processes on this node that are gone (a process Ray ended without
    its exit handlers leaves an empty one); returns how many."""
    folder = os.path.dirname(fault_file(0))
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        pid = name.removesuffix(".txt")
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


FAILURE_ATTR = "_hpsearch_failure"
RESTARTS_ATTR = "_hpsearch_node_restarts"


def failure_of(trial: Any) -> Failure | None:
    """The classified failure of ``trial``'s last error (set by the wrapped ``handle_error``)."""
    return getattr(trial, FAILURE_ATTR, None)


_by_trial_id: dict[str, Failure] = {}


def take_failure(trial_id: str) -> Failure | None:
    """The classified failure that ended trial ``trial_id``, once (Tune tells its searcher only the id)."""
    return _by_trial_id.pop(trial_id, None)


OOM_MARK = "Worker exit type: NODE_OUT_OF_MEMORY"


def as_actor_death(exc: Exception) -> Exception:
    """Ray's ``OutOfMemoryError`` for a killed actor's task, as the ``ActorDiedError`` Tune can handle."""
    from ray.exceptions import ActorDiedError, OutOfMemoryError

    if not isinstance(exc, OutOfMemoryError):
        return exc
    died = ActorDiedError()
    died.error_msg = f"{OOM_MARK}\n{exc}"
    return died


def install(max_node_restarts: int) -> None:
    """Wrap Tune's ``Trial.handle_error`` and actor manager for this process (idempotent; the limit is updated)."""
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.tune.experiment import Trial

    _limit["max_node_restarts"] = max_node_restarts
    if getattr(Trial.handle_error, "_hpsearch", False):
        return
    task_failed = RayActorManager._actor_task_failed

    def _actor_task_failed(self: Any, tracked_actor_task: Any, exception: Exception) -> None:
        task_failed(self, tracked_actor_task, as_actor_death(exception))

    RayActorManager._actor_task_failed = _actor_task_failed  # type: ignore[method-assign]
    original = Trial.handle_error

    def handle_error(self: Any, exc: Any = None) -> None:
        failure = classify(exc, self.trial_id)
        before = self.run_metadata.num_failures
        original(self, exc)
        if failure.kind == NODE_LOST:
            restarts = getattr(self, RESTARTS_ATTR, 0) + 1
            setattr(self, RESTARTS_ATTR, restarts)
            limit = _limit["max_node_restarts"]
            if restarts <= limit:
                self.run_metadata.num_failures = before  # not the config's fault: retry, uncounted
            else:
                failure = Failure(
                    NODE_LOST,
                    f"gave up after its node was lost {restarts} times (search.max_node_restarts: {limit}); "
                    f"last: {failure.text}",
                )
                self.run_metadata.num_failures = max(self.max_failures, 0) + 1
        setattr(self, FAILURE_ATTR, failure)
        _by_trial_id[self.trial_id] = failure

    handle_error._hpsearch = True  # type: ignore[attr-defined]
    Trial.handle_error = handle_error  # type: ignore[method-assign]


_limit: dict[str, int] = {"max_node_restarts": 3}

__all__ = [
    "DIVERGED",
    "NODE_LOST",
    "PROCESS_DIED",
    "RAISED",
    "Failure",
    "classify",
    "failure_of",
    "install",
    "take_failure",
]
