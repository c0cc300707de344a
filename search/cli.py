"""The ``hpsearch`` command line. Exit codes: 0 success, 2 invalid input or usage, 1 runtime failure."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from hpsearch.run import SearchResult
    from hpsearch.spec import JobSpec

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 on usage errors too; keep its message short
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"hpsearch: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hpsearch",
        description="Distributed hyperparameter search for PyTorch (Ray Tune + Optuna + ASHA, tracked in MLflow).",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("validate", help="check a job spec; exit 0 if valid, 2 with every problem if not")
    p.add_argument("spec", type=Path)

    p = sub.add_parser("space", help="work with search spaces")
    space_sub = p.add_subparsers(dest="space_command", required=True, parser_class=_Parser)
    s = space_sub.add_parser("sample", help="print N configs drawn from a space, one JSON object per line")
    s.add_argument("space", help="a preset name, a YAML file, or a job spec (its space is used)")
    s.add_argument("-n", type=int, default=5, help="how many configs (default 5)")
    s.add_argument("--seed", type=int, default=0)
    space_sub.add_parser("presets", help="list the preset spaces")

    p = sub.add_parser("run", help="run a search on this machine (or join a Ray cluster with --address)")
    p.add_argument("spec", type=Path)
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the spec's, else sqlite:///./mlruns.db)")
    p.add_argument("--storage", help="directory for Ray Tune's state (default ./hpsearch_results)")
    p.add_argument("--address", help="address of a running Ray cluster to join (default: start a local one)")
    p.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    p.add_argument("--ray-logs", action="store_true", help="also show Ray's own logs and trial tracebacks")
    p.add_argument("--run-name", help="name of the run directory under --storage (default NAME-TIMESTAMP)")
    p.add_argument(
        "--warm-start",
        metavar="EXPERIMENT",
        help="seed the search with the finished trials of this MLflow experiment (sets search.warm_start)",
    )

    p = sub.add_parser(
        "sync", help="write to MLflow what a search kept in its run directory while the tracking store was away"
    )
    p.add_argument("run_dir", help="the search's run directory (printed as 'tune state'; a folder or s3://...)")

    p = sub.add_parser("resume", help="continue an interrupted search (a run directory, or a job with --address)")
    p.add_argument(
        "target",
        help="the search's run directory (printed as 'tune state'; a folder or a storage URI such as s3://...), or a job id",
    )
    p.add_argument(
        "--address",
        help="with a run directory: a Ray cluster to join (host:6379); with a job id: "
        "the Jobs API (http://HEAD:8265, default $RAY_ADDRESS)",
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--ray-logs", action="store_true")

    p = sub.add_parser("submit", help="submit a search as a job to a Ray cluster; prints the job id last")
    p.add_argument("spec", type=Path)
    _address(p)
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI as seen from the cluster (default: the spec's, "
        "else sqlite:///$PWD/mlruns.db, which only a cluster on this machine can reach)",
    )
    p.add_argument(
        "--storage",
        help="where the search keeps its Tune state, as seen from the cluster "
        "(default $PWD/hpsearch_results; a shared path or s3:// on multi-node clusters)",
    )
    for name, text in (
        ("status", "state, start time, trials done and best metric of a job"),
        ("logs", "a job's output"),
        ("stop", "stop a job (the search ends as with Ctrl-C)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("job")
        _address(p)
        if name == "logs":
            p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p = sub.add_parser("list", help="the search jobs on a cluster")
    _address(p)

    p = sub.add_parser("ui", help="start a real MLflow server (the dashboard) on the tracking store; Ctrl-C stops it")
    _tracking(p)
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="listen address (default loopback)")
    p.add_argument(
        "--allow-remote", action="store_true", help="needed for a non-loopback --host: every experiment is then served"
    )
    p.add_argument("--auth", action="store_true", help="MLflow's basic-auth app (users in basic_auth.db by the store)")
    p.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")

    p = sub.add_parser("report", help="what a search found: top trials, importance, marginals, ASHA rungs")
    p.add_argument("experiment", help="the experiment (the spec's name)")
    _tracking(p)
    p.add_argument("--search", help="a search's parent run id (default: the experiment's latest search)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--top-k", type=int, default=5, help="how many top trials (default 5)")
    p.add_argument("--out", type=Path, help="also write the report's files (PNG plots, JSON, CSV) into this folder")

    p = sub.add_parser("retrain", help="retrain the top-k configs on train+val with several seeds; test once")
    p.add_argument("experiment", help="the experiment (the spec's name)")
    _tracking(p)
    p.add_argument("--search", help="a search's parent run id (default: the experiment's latest search)")
    p.add_argument("--top-k", type=int, default=3, help="how many of the best configs (default 3)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per config (default 3)")
    p.add_argument("--epochs", type=int, help="epochs per training (default: the search's max_epochs)")
    p.add_argument("--register", metavar="NAME", help="also register the best model in the Model Registry as NAME")
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cuda", "cpu"),
        help="auto (default): a GPU if the search's trials had one (an error if this machine has none)",
    )
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = sub.add_parser("cluster", help="a Ray cluster on this machine (head + worker nodes)")
    csub = p.add_subparsers(dest="cluster_command", required=True, parser_class=_Parser)
    c = csub.add_parser("up", help="start a head and N worker nodes on 127.0.0.1")
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--num-cpus", type=int, default=1, help="CPUs per node")
    c.add_argument(
        "--num-gpus", type=int, default=0, help="GPUs per node; each node gets GPUs of its own (CUDA_VISIBLE_DEVICES)"
    )
    c.add_argument("--port", type=int, default=6379)
    c.add_argument("--dashboard-port", type=int, default=8265)
    c.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="listen address of dashboard/Jobs API (default loopback; anything else is reachable from the network)",
    )
    c.add_argument("--state-file", type=Path, default=None, help="where up records its processes")
    c = csub.add_parser("down", help="stop the processes `cluster up` started")
    c.add_argument("--state-file", type=Path, default=None)
    return parser


def _tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///./mlruns.db)")


def _address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="Ray Jobs API, http://HEAD:8265 (default: $RAY_ADDRESS)")


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

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
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

    try:
        if args.command == "validate":
            return _validate(args)
        if args.command == "space":
            return _space(args)
        if args.command == "run":
            return _run(args)
        if args.command == "resume":
            return _resume(args)
        if args.command == "sync":
            return _sync(args)
        if args.command in ("submit", "status", "logs", "stop", "list"):
            return _jobs(args)
        if args.command == "cluster":
            return _cluster(args)
        if args.command == "ui":
            return _ui(args)
        if args.command == "report":
            return _report(args)
        if args.command == "retrain":
            return _retrain(args)
    except SpecError as exc:
        print(f"hpsearch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HpsearchError as exc:
        print(f"hpsearch: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_USAGE  # pragma: no cover - argparse requires a command


def _validate(args: argparse.Namespace) -> int:
    from hpsearch.spec import load_spec

    spec = load_spec(args.spec)
    print(
        f"{args.spec}: valid ({spec.name}: {spec.search.num_trials} trials of {spec.trainable} on "
        f"{spec.data.dataset}, {len(spec.search_space.keys())} parameters)"
    )
    return EXIT_OK


def _space(args: argparse.Namespace) -> int:
    from hpsearch import spaces
    from hpsearch.errors import SpecError, UsageError

    if args.space_command == "presets":
        for name in spaces.preset_names():
            print(name)
        return EXIT_OK
    if args.n < 1:
        raise UsageError([("-n", f"must be >= 1, got {args.n}")])
    ref = args.space
    try:
        if ref.endswith((".yaml", ".yml")) and Path(ref).is_file() and _is_job_spec(Path(ref)):
            from hpsearch.spec import load_spec

            space = load_spec(ref).search_space
        else:
            space = spaces.load_space(ref, Path.cwd())
    except spaces.SpaceError as exc:
        raise SpecError(exc.problems) from exc
    for config in spaces.sample(space, args.n, args.seed):
        print(json.dumps(config))
    return EXIT_OK


def _is_job_spec(path: Path) -> bool:
    import yaml

    from hpsearch import yamlfile

    try:
        data = yamlfile.load(path.read_text())
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "space" in data and "search" in data


def _load(spec_arg: Path) -> JobSpec:
    """A spec file, or ``env:VAR`` (how a submitted job hands its spec to the driver)."""
    import os

    from hpsearch.errors import SpecError
    from hpsearch.spec import load_spec, load_spec_text

    text = str(spec_arg)
    if text.startswith("env:"):
        var = text[4:]
        if var not in os.environ:
            raise SpecError([("spec", f"environment variable {var} is not set")])
        return load_spec_text(os.environ[var], source=text, base_dir=Path.cwd())
    return load_spec(spec_arg)


def _run(args: argparse.Namespace) -> int:
    import signal

    from hpsearch.errors import UsageError
    from hpsearch.tracking.store import check_tracking_uri

    if args.address:
        from hpsearch.jobs import prepare_auth

        prepare_auth()  # before anything imports Ray: Ray reads the auth mode once
    spec = _load(args.spec)  # validated before anything starts
    if args.tracking_uri and (problems := check_tracking_uri(args.tracking_uri)):
        raise UsageError(problems)
    if args.warm_start is not None:
        if not args.warm_start:
            raise UsageError([("--warm-start", "needs an experiment name, got ''")])
        spec = spec.model_copy(update={"search": spec.search.model_copy(update={"warm_start": args.warm_start})})
    # `ray job stop` and schedulers send SIGTERM: end the search the way Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    from hpsearch import raysetup
    from hpsearch.tracking.store import check_reachable, search_uri

    # A server that does not answer fails the command before Ray starts (run_search checks again).
    check_reachable(search_uri(args.tracking_uri, spec.tracking.uri))
    if spec.search.warm_start:  # an experiment that is not there fails the command before Ray starts
        from hpsearch.warmstart import find_experiment

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
    return _outcome(result)


def _outcome(result: SearchResult) -> int:
    from hpsearch.summary import print_report_written, print_summary

    print_summary(result)  # the results are written (rich flushes it); the report comes after it
    if result.report_writer is not None:
        pending = result.pending_writes
        errors = result.write_report()
        print_report_written(result, errors, pending)
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


def _resume(args: argparse.Namespace) -> int:
    import signal

    from hpsearch.jobs import prepare_auth

    prepare_auth()
    remote = "://" in args.target  # a run directory in a storage URI (s3://...)
    target = args.target if remote else Path(args.target)
    if not remote and not target.is_dir():
        from hpsearch import jobs

        job_id = jobs.resume(args.address, args.target)
        print(f"resuming {args.target} as job {job_id}: hpsearch logs {job_id} --follow")
        print(job_id)
        return EXIT_OK
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    from hpsearch.resume import resume_search

    address = args.address if args.address and not args.address.startswith("http") else None
    return _outcome(resume_search(target, address=address, quiet=args.quiet, ray_logs=args.ray_logs, defer_report=True))


def _sync(args: argparse.Namespace) -> int:
    from hpsearch.redact import redact
    from hpsearch.sync import sync

    result = sync(args.run_dir)
    where = redact(result.tracking_uri)
    if result.error is not None:
        print(
            f"hpsearch: {result.applied} MLflow writes synced to {where}, then: {result.error}; "
            f"{result.pending} still pending (run hpsearch sync again)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"{result.applied} MLflow writes synced to {where}" if result.applied else "nothing to sync")
    return EXIT_OK


def _jobs(args: argparse.Namespace) -> int:
    from hpsearch import jobs

    jobs.prepare_auth()  # before anything imports Ray: Ray reads the auth mode once

    if args.command == "submit":
        from hpsearch.redact import redact
        from hpsearch.tracking.store import absolute, check_tracking_uri, default_tracking_uri

        spec = _load(args.spec)  # a bad spec is never submitted
        uri = args.tracking_uri or spec.tracking.uri or default_tracking_uri()
        if problems := check_tracking_uri(uri):
            from hpsearch.errors import SpecError

            raise SpecError(problems)
        uri = absolute(uri)  # the job runs in another working directory
        storage = args.storage or str(Path("hpsearch_results").resolve())
        job_id = jobs.submit(spec, args.address, uri, storage, Path.cwd())
        print(f"submitted {spec.name}: {spec.search.num_trials} trials, tracking {redact(uri)}")
        print(f"follow it: hpsearch logs {job_id} --follow; stop it: hpsearch stop {job_id}")
        print(job_id)
        return EXIT_OK
    if args.command == "status":
        v = jobs.status(args.address, args.job)
        print(
            f"job {v.job_id} ({v.name}): {v.status}, started {v.start_time}, trials done {v.trials_done}, best {v.best}"
        )
        if v.message:
            print(v.message)
        return EXIT_OK
    if args.command == "logs":
        jobs.logs(args.address, args.job, args.follow)
        return EXIT_OK
    if args.command == "stop":
        state = jobs.stop(args.address, args.job)
        print(f"job {args.job}: {state}")
        return EXIT_OK if state in ("STOPPED", "SUCCEEDED", "FAILED") else EXIT_FAILURE
    from rich.console import Console
    from rich.table import Table

    table = Table("job", "search", "state", "started", "trials done", "best")
    for v in jobs.list_jobs(args.address):
        table.add_row(v.job_id, v.name, v.status, v.start_time, v.trials_done, v.best)
    Console(width=160).print(table)
    return EXIT_OK


def _tracking_uri(args: argparse.Namespace) -> str:
    from hpsearch.redact import connectable
    from hpsearch.tracking import default_tracking_uri

    return connectable(args.tracking_uri or default_tracking_uri())


def _ui(args: argparse.Namespace) -> int:
    from hpsearch.review import ui

    uri = _tracking_uri(args)
    plan = ui.plan(uri, args.host, args.port, args.allow_remote, args.auth, args.workers)
    return ui.serve(plan, uri)


def _report(args: argparse.Namespace) -> int:
    from hpsearch.errors import UsageError
    from hpsearch.review.report import load_report
    from hpsearch.review.report_output import print_report, write_report

    if args.top_k < 1:
        raise UsageError([("--top-k", f"must be >= 1, got {args.top_k}")])
    report = load_report(_tracking_uri(args), args.experiment, args.search, top_k=args.top_k)
    if args.out:
        write_report(report, args.out)
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print_report(report)
        if args.out:
            print(f"report files in {args.out}")
    return EXIT_OK


def _retrain(args: argparse.Namespace) -> int:
    from hpsearch.review.retrain import print_retrain, retrain

    quiet = args.format == "json"
    result = retrain(
        _tracking_uri(args),
        args.experiment,
        args.top_k,
        args.seeds,
        search_run_id=args.search,
        epochs=args.epochs,
        register=args.register,
        device=args.device,
        progress=(lambda line: None) if quiet else print,
    )
    if quiet:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        print_retrain(result)
    return EXIT_OK if result.best else EXIT_FAILURE


def _cluster(args: argparse.Namespace) -> int:
    from hpsearch import cluster

    state_file = args.state_file or cluster.DEFAULT_STATE
    if args.cluster_command == "up":
        if args.workers < 0 or args.num_cpus < 1 or args.num_gpus < 0:
            from hpsearch.errors import UsageError

            raise UsageError(
                [
                    (
                        "--workers/--num-cpus/--num-gpus",
                        f"must be >= 0/1/0, got {args.workers}/{args.num_cpus}/{args.num_gpus}",
                    )
                ]
            )
        info = cluster.up(
            args.workers, args.num_cpus, args.num_gpus, args.port, args.dashboard_port, args.dashboard_host, state_file
        )
        print(
            f"Ray cluster up: head + {args.workers} worker node(s), {len(info.pids)} processes "
            f"(recorded in {info.state_file})"
        )
        print(f"  run on it:    RAY_AUTH_MODE=token hpsearch run SPEC --address {info.address}")
        print(f"  submit to it: hpsearch submit SPEC --address {info.dashboard}")
        print("  stop it:      hpsearch cluster down")
        print(info.dashboard)
        return EXIT_OK
    n = cluster.down(state_file)
    print(f"Ray cluster down: stopped {n} processes")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
