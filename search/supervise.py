"""``hpsearch run --driver-restarts N``: the search's driver in a child process, continued in a new one
when it dies.

A submitted job's entrypoint runs this way: the child (``hpsearch run ... --continue``) is the search's
driver. Killed (``kill -9``, the OOM killer) or crashed (a fatal signal), it leaves its run directory
behind, unfinished; the parent starts another child, which finds the search there and continues it as
``hpsearch resume`` does (Tune's state, the same MLflow runs, its trials from their checkpoints). An
exit with a code (0 done, 1 failed, 2 bad input) is the command's own end and is passed on, and so is
an interrupt: SIGTERM (``hpsearch stop``, a pod ending) is handed to the child, which acts on the first
one it gets (Ray signals both); Ctrl-C reaches the child from the terminal itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

CHILD_ENV = "HPSEARCH_SUPERVISED"  # set in the child: it is the driver, not another supervisor


def child_args(argv: list[str]) -> list[str]:
    """The child's arguments: the parent's, ``--continue`` added, ``--driver-restarts`` taken out."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--driver-restarts":
            skip = True
            continue
        if arg.startswith("--driver-restarts="):
            continue
        out.append(arg)
    return out if "--continue" in out else [*out, "--continue"]


def supervise(argv: list[str], restarts: int) -> int:
    """Run ``hpsearch ARGV`` as a child until it ends by itself; its exit code."""
    args = [sys.executable, "-m", "hpsearch", *child_args(argv)]
    env = {**os.environ, CHILD_ENV: "1"}
    stopping: list[int] = []
    child: subprocess.Popen[Any] | None = None

    def forward(signum: int, _frame: Any) -> None:
        stopping.append(signum)
        if signum == signal.SIGTERM and child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)  # recorded: the terminal sent the child its own
    done = 0
    while True:
        child = subprocess.Popen(args, env=env)
        code = child.wait()
        if code >= 0 or stopping:  # its own end (or asked to stop): the command's
            return code if code >= 0 else 128 - code
        try:
            name = signal.Signals(-code).name
        except ValueError:  # a real-time signal
            name = f"signal {-code}"
        if done >= restarts:
            print(
                f"hpsearch: the search's driver died ({name}) and --driver-restarts ({restarts}) are used up; "
                "continue it with hpsearch resume",
                file=sys.stderr,
                flush=True,
            )
            return 128 - code
        done += 1
        print(
            f"hpsearch: the search's driver died ({name}); continuing the search in a new one "
            f"(restart {done} of {restarts})",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(1.0)  # its trials' actors go with it: let Ray release their resources


__all__ = ["CHILD_ENV", "child_args", "supervise"]
