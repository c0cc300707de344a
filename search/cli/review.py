"""Subcommands that review results in MLflow: ``ui``, ``report``, ``retrain`` (MLflow and torch are
imported when they read or train, not with this module)."""

from __future__ import annotations

import argparse
import json
import sys

from hpsearch.cli.searches import EXIT_FAILURE, EXIT_OK
from hpsearch.errors import UsageError
from hpsearch.redact import connectable
from hpsearch.review import report_output
from hpsearch.review import retrain as retraining
from hpsearch.review import ui as mlflow_ui
from hpsearch.review.report import load_report
from hpsearch.tracking import default_tracking_uri


def _tracking_uri(args: argparse.Namespace) -> str:
    return connectable(args.tracking_uri or default_tracking_uri())


def ui(args: argparse.Namespace) -> int:
    uri = _tracking_uri(args)
    plan = mlflow_ui.plan(uri, args.host, args.port, args.allow_remote, args.auth, args.workers)
    return mlflow_ui.serve(plan, uri)


def report(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise UsageError([("--top-k", f"must be >= 1, got {args.top_k}")])
    found = load_report(_tracking_uri(args), args.experiment, args.search, top_k=args.top_k)
    if args.out:
        report_output.write_report(found, args.out)
    if args.format == "json":
        print(json.dumps(found.to_json(), indent=2, default=str))
    else:
        report_output.print_report(found)
        if args.out:
            print(f"report files in {args.out}")
    return EXIT_OK


def _retrain_job(args: argparse.Namespace) -> int:
    from hpsearch import jobs
    from hpsearch.review import retrain_job

    options = [
        *(["--front"] if args.front else []),
        f"--seeds={args.seeds}",
        f"--device={args.device}",
        f"--format={args.format}",
    ]
    options += [f"--{name}={value}" for name, value in (("search", args.search), ("epochs", args.epochs), ("top-k", args.top_k),
                                                         ("register", args.register)) if value is not None]  # fmt: skip
    cluster = jobs.client(args.address)
    job_id = retrain_job.submit_retrain(cluster, args.experiment, _tracking_uri(args), options)
    print(f"submitted {job_id}: retraining on the cluster", file=sys.stderr)
    jobs.logs(args.address, job_id, follow=True)
    state = jobs.wait(cluster, job_id)
    print(f"{job_id}: {state}", file=sys.stderr)
    return EXIT_OK if state == "SUCCEEDED" else EXIT_FAILURE


def retrain(args: argparse.Namespace) -> int:
    quiet = args.format == "json"
    if args.address:
        from hpsearch import jobs

        jobs.prepare_auth()  # before anything imports Ray: Ray reads the auth mode once
        if args.address.startswith(("http://", "https://")):  # the Jobs API: the whole retrain runs there
            return _retrain_job(args)
    result = retraining.retrain(
        _tracking_uri(args),
        args.experiment,
        args.top_k,
        args.seeds,
        search_run_id=args.search,
        epochs=args.epochs,
        register=args.register,
        device=args.device,
        front=args.front,
        progress=(lambda line: None) if quiet else print,
        address=args.address,
    )
    if quiet:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        retraining.print_retrain(result)
    return EXIT_OK if result.best else EXIT_FAILURE
