"""The ``hpsearch`` command line's arguments (each subcommand's own module runs it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

EXIT_USAGE = 2


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
        "--continue",
        dest="continue_search",
        action="store_true",
        help="with --run-name: continue the search already in that run directory if it has not finished "
        "(nothing to do if it has), else start it (what a retried job runs)",
    )
    p.add_argument(
        "--driver-restarts",
        type=int,
        default=0,
        metavar="N",
        help="with --run-name: run the search in a child process and, when that process dies (killed, "
        "crashed), continue the search in a new one, up to N times (a submitted job uses 3)",
    )
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
    p.add_argument(
        "--top-k", type=int, default=None, help="how many of the best configs (default 3; with --front: all of it)"
    )
    p.add_argument(
        "--front",
        action="store_true",
        help="retrain the configs on the Pareto front (a search with several objectives), best first objective first",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per config (default 3)")
    p.add_argument("--epochs", type=int, help="epochs per training (default: the search's max_epochs)")
    p.add_argument("--register", metavar="NAME", help="also register the best model in the Model Registry as NAME")
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cuda", "cpu"),
        help="auto (default): a GPU if the search's trials had one (an error if this machine has none)",
    )
    p.add_argument(
        "--address",
        help="retrain on a Ray cluster, as one task with a trial's CPUs and GPUs, instead of in this process: "
        "its Jobs API (http://HEAD:8265: a job that runs there) or a cluster to join (HOST:6379, ray://...)",
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
