"""Subcommands for Ray clusters: ``submit``, ``status``, ``logs``, ``stop``, ``list`` (the Jobs API) and
``cluster up|down`` (a cluster on this machine)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpsearch import cluster as local_cluster
from hpsearch import jobs as ray_jobs
from hpsearch.cli.searches import EXIT_FAILURE, EXIT_OK, load
from hpsearch.errors import SpecError, UsageError
from hpsearch.redact import redact
from hpsearch.tracking.store import absolute, check_tracking_uri, default_tracking_uri


def jobs(args: argparse.Namespace) -> int:
    ray_jobs.prepare_auth()  # before anything imports Ray: Ray reads the auth mode once
    if args.command == "submit":
        spec = load(args.spec)  # a bad spec is never submitted
        uri = args.tracking_uri or spec.tracking.uri or default_tracking_uri()
        if problems := check_tracking_uri(uri):
            raise SpecError(problems)
        uri = absolute(uri)  # the job runs in another working directory
        storage = args.storage or str(Path("hpsearch_results").resolve())
        job_id = ray_jobs.submit(spec, args.address, uri, storage, Path.cwd())
        print(f"submitted {spec.name}: {spec.search.num_trials} trials, tracking {redact(uri)}")
        print(f"follow it: hpsearch logs {job_id} --follow; stop it: hpsearch stop {job_id}")
        print(job_id)
        return EXIT_OK
    if args.command == "status":
        v = ray_jobs.status(args.address, args.job)
        print(
            f"job {v.job_id} ({v.name}): {v.status}, started {v.start_time}, trials done {v.trials_done}, best {v.best}"
        )
        if v.message:
            print(v.message)
        return EXIT_OK
    if args.command == "logs":
        ray_jobs.logs(args.address, args.job, args.follow)
        return EXIT_OK
    if args.command == "stop":
        state = ray_jobs.stop(args.address, args.job)
        print(f"job {args.job}: {state}")
        return EXIT_OK if state in ("STOPPED", "SUCCEEDED", "FAILED") else EXIT_FAILURE
    from rich.console import Console
    from rich.table import Table

    table = Table("job", "search", "state", "started", "trials done", "best")
    for v in ray_jobs.list_jobs(args.address):
        table.add_row(v.job_id, v.name, v.status, v.start_time, v.trials_done, v.best)
    Console(width=160).print(table)
    return EXIT_OK


def cluster(args: argparse.Namespace) -> int:
    state_file = args.state_file or local_cluster.DEFAULT_STATE
    if args.cluster_command == "down":
        print(f"Ray cluster down: stopped {local_cluster.down(state_file)} processes")
        return EXIT_OK
    if args.workers < 0 or args.num_cpus < 1 or args.num_gpus < 0:
        raise UsageError(
            [
                (
                    "--workers/--num-cpus/--num-gpus",
                    f"must be >= 0/1/0, got {args.workers}/{args.num_cpus}/{args.num_gpus}",
                )
            ]
        )
    info = local_cluster.up(
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
