"""Subcommands that run on this machine: ``validate``, ``space``, ``run``, ``resume``, ``sync``.

Ray, Optuna and torch come in with :mod:`hpsearch.run` and :mod:`hpsearch.resume`, imported once the
input is checked (a bad spec fails in a fraction of a second) and, for ``run``, while Ray starts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from hpsearch import jobs, raysetup, spaces, supervise, yamlfile
from hpsearch import sync as syncing
from hpsearch.errors import SpecError, UsageError
from hpsearch.redact import redact
from hpsearch.spec import JobSpec, load_spec, load_spec_text
from hpsearch.tracking.store import check_reachable, check_tracking_uri, search_uri
from hpsearch.warmstart import find_experiment

if TYPE_CHECKING:
    from hpsearch.run import SearchResult

EXIT_OK, EXIT_FAILURE = 0, 1


def validate(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    print(
        f"{args.spec}: valid ({spec.name}: {spec.search.num_trials} trials of {spec.trainable} on "
        f"{spec.data.dataset if spec.data is not None else 'its own data'}, "
        f"{len(spec.search_space.keys())} parameters)"
    )
    return EXIT_OK


def space(args: argparse.Namespace) -> int:
    if args.space_command == "presets":
        for name in spaces.preset_names():
            print(name)
        return EXIT_OK
    if args.n < 1:
        raise UsageError([("-n", f"must be >= 1, got {args.n}")])
    ref = args.space
    try:
        if ref.endswith((".yaml", ".yml")) and Path(ref).is_file() and _is_job_spec(Path(ref)):
            searched = load_spec(ref).search_space
        else:
            searched = spaces.load_space(ref, Path.cwd())
    except spaces.SpaceError as exc:
        raise SpecError(exc.problems) from exc
    for config in spaces.sample(searched, args.n, args.seed):
        print(json.dumps(config))
    return EXIT_OK


def _is_job_spec(path: Path) -> bool:
    try:
        data = yamlfile.load(path.read_text())
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "space" in data and "search" in data


def load(spec_arg: Path) -> JobSpec:
    """A spec file, or ``env:VAR`` (how a submitted job hands its spec to the driver)."""
    text = str(spec_arg)
    if text.startswith("env:"):
        var = text[4:]
        if var not in os.environ:
            raise SpecError([("spec", f"environment variable {var} is not set")])
        return load_spec_text(os.environ[var], source=text, base_dir=Path.cwd())
    return load_spec(spec_arg)


def run(args: argparse.Namespace) -> int:
    if (args.continue_search or args.driver_restarts) and not args.run_name:
        flag = "--continue" if args.continue_search else "--driver-restarts"
        raise UsageError([(flag, "needs --run-name (the run directory to continue)")])
    if args.driver_restarts < 0:
        raise UsageError([("--driver-restarts", f"must be 0 or more, got {args.driver_restarts}")])
    if args.address:
        jobs.prepare_auth()  # before anything imports Ray: Ray reads the auth mode once
    spec = load(args.spec)  # validated before anything starts
    if args.driver_restarts and not os.environ.get(supervise.CHILD_ENV):
        return supervise.supervise(sys.argv[1:], args.driver_restarts)
    if args.tracking_uri and (problems := check_tracking_uri(args.tracking_uri)):
        raise UsageError(problems)
    if args.warm_start is not None:
        if not args.warm_start:
            raise UsageError([("--warm-start", "needs an experiment name, got ''")])
        spec = spec.model_copy(update={"search": spec.search.model_copy(update={"warm_start": args.warm_start})})
    # `ray job stop` and schedulers send SIGTERM: end the search the way Ctrl-C does.
    signal.signal(signal.SIGTERM, interrupt_once)
    if args.continue_search:
        ended = continue_or_start(args)
        if ended is not None:
            return ended
    # A server that does not answer fails the command before Ray starts (run_search checks again).
    check_reachable(search_uri(args.tracking_uri, spec.tracking.uri))
    if spec.search.warm_start:  # an experiment that is not there fails the command before Ray starts
        find_experiment(search_uri(args.tracking_uri, spec.tracking.uri), spec.search.warm_start)
    raysetup.start_early(args.address, log_to_driver=args.ray_logs)  # while the rest is imported and set up
    from hpsearch.run import run_search

    result = run_search(
        spec,
        tracking_uri=args.tracking_uri,
        storage=args.storage,
        address=args.address,
        quiet=args.quiet,
        ray_logs=args.ray_logs,
        run_name=args.run_name,
        defer_report=True,
    )
    return outcome(result)


def interrupt_once(signum: int, frame: object) -> None:
    """SIGTERM (`ray job stop`, a scheduler, `hpsearch stop`) ends the search the way Ctrl-C does, once:
    Ray sends it to a job's every process, and the job's driver supervisor passes it on too; a second
    interrupt would cut short the writing of what the first one stopped."""
    if not _interrupted:
        _interrupted.append(signum)
        os.kill(os.getpid(), signal.SIGINT)


_interrupted: list[int] = []


def continue_or_start(args: argparse.Namespace) -> int | None:
    """``run --continue``: the search in STORAGE/RUN_NAME continued (or, finished, left alone) and the
    command's exit code; None when there is none there yet (it starts as usual)."""
    from hpsearch import rundir

    location = rundir.normalise(f"{str(args.storage or rundir.DEFAULT_STORAGE).rstrip('/')}/{args.run_name}")
    meta = rundir.find_meta(location)
    if meta is None:
        return None
    if meta.status == "FINISHED":
        print(f"hpsearch: the search in {location} has finished; nothing to continue")
        return EXIT_OK
    if meta.status == "FAILED":  # a mistake every trial makes: continuing would make it again
        print(f"hpsearch: the search in {location} ended FAILED; not continued", file=sys.stderr)
        return EXIT_FAILURE
    print(f"hpsearch: continuing the unfinished search in {location}", file=sys.stderr)
    return resume_here(location, args)


def resume_here(location: str | Path, args: argparse.Namespace) -> int:
    """Continue the search in ``location`` in this process (on ``--address``'s cluster, if a Ray one)."""
    from hpsearch.resume import resume_search

    address = args.address if args.address and not args.address.startswith("http") else None
    return outcome(
        resume_search(location, address=address, quiet=args.quiet, ray_logs=args.ray_logs, defer_report=True)
    )


def outcome(result: SearchResult) -> int:
    """Print a search's summary, then make its report; the command's exit code."""
    from hpsearch.summary import print_report_written, print_summary

    print_summary(result)  # the results are written (rich flushes it); the report comes after it
    if result.report_writer is not None:
        pending = result.pending_writes
        errors = result.write_report()
        print_report_written(result, errors, pending)
    if result.stopped_because:
        print(f"hpsearch: the search stopped: {result.stopped_because}", file=sys.stderr)
        return EXIT_FAILURE
    if result.status != "FINISHED":
        done = sum(n for state, n in result.counts.items() if state != "running")
        print(
            f"hpsearch: search interrupted after {done} of {result.num_trials} trials; continue it with "
            f"hpsearch resume {result.run_dir}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if result.counts.get("completed", 0) + result.counts.get("stopped_early", 0) == 0:
        print("hpsearch: no trial finished successfully", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def resume(args: argparse.Namespace) -> int:
    jobs.prepare_auth()
    remote = "://" in args.target  # a run directory in a storage URI (s3://...)
    target = args.target if remote else Path(args.target)
    if not remote and not target.is_dir():
        job_id = jobs.resume(args.address, args.target)
        print(f"resuming {args.target} as job {job_id}: hpsearch logs {job_id} --follow")
        print(job_id)
        return EXIT_OK
    signal.signal(signal.SIGTERM, interrupt_once)
    return resume_here(target, args)


def sync(args: argparse.Namespace) -> int:
    result = syncing.sync(args.run_dir)
    where = redact(result.tracking_uri)
    note = syncing.rejected_note(result, str(args.run_dir))
    if note is not None:
        print(note, file=sys.stderr)
    if result.error is not None:
        print(
            f"hpsearch: {result.applied} MLflow writes synced to {where}, then: {result.error}; "
            f"{result.pending} still pending (run hpsearch sync again)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"{result.applied} MLflow writes synced to {where}" if result.applied else "nothing to sync")
    return EXIT_OK
