"""The ``hpsearch`` command line. Exit codes: 0 success, 2 invalid input or usage, 1 runtime failure.

:func:`main` parses the arguments (:mod:`.parser`) and runs the subcommand's module: :mod:`.searches`
(validate, space, run, resume, sync), :mod:`.clusters` (submit, status, logs, stop, list, cluster) or
:mod:`.review` (ui, report, retrain). Only that module is imported: ``hpsearch validate`` does not pay
for Ray, MLflow or torch.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import NoReturn

from hpsearch.cli.parser import EXIT_USAGE, build_parser

EXIT_OK, EXIT_FAILURE = 0, 1

# subcommand -> (module, function)
COMMANDS = {
    "validate": ("searches", "validate"),
    "space": ("searches", "space"),
    "run": ("searches", "run"),
    "resume": ("searches", "resume"),
    "sync": ("searches", "sync"),
    **{name: ("clusters", "jobs") for name in ("submit", "status", "logs", "stop", "list")},
    "cluster": ("clusters", "cluster"),
    "ui": ("review", "ui"),
    "report": ("review", "report"),
    "retrain": ("review", "retrain"),
}


def entry() -> NoReturn:
    """The ``hpsearch`` command (and ``python -m hpsearch``): :func:`main`, then :func:`exit_now`."""
    exit_now(main())


def exit_now(code: int) -> NoReturn:
    """End the process the way Python's exit does, without its last step. Once the command is done,
    Python would spend ~1.5 s here tearing down torch, Ray, MLflow and matplotlib (measured: 0.8 s for
    an ``import torch`` alone) before the shell gets its prompt back. Everything an exit does for other
    code still happens, in the same order: threads that are not daemons are waited for (the local Ray's
    shutdown), the exit handlers run (Ray's, MLflow's, logging's), and the output is flushed."""
    import atexit
    import threading

    # As Python's exit begins: threading's own exit hooks (concurrent.futures tells its idle workers to
    # end: joined before that, an executor's worker waits for work forever), then every thread that is
    # not a daemon is waited for.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    from hpsearch.redact import guard_streams

    guard_streams()  # no password or token is printed, whoever prints it (hpsearch, Ray, MLflow)
    args = build_parser().parse_args(argv)
    # Like `python -m`: a trainable "mymodels.train:fit" next to where you run hpsearch is importable
    # (Ray passes the driver's sys.path on to the trial workers).
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from hpsearch.errors import HpsearchError, SpecError

    module, function = COMMANDS[args.command]
    try:
        command = getattr(importlib.import_module(f"hpsearch.cli.{module}"), function)
        return int(command(args))
    except SpecError as exc:
        print(f"hpsearch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HpsearchError as exc:
        print(f"hpsearch: {exc}", file=sys.stderr)
        return EXIT_FAILURE


__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "build_parser", "entry", "exit_now", "main"]


if __name__ == "__main__":
    sys.exit(main())
