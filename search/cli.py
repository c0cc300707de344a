"""The ``hpsearch`` command line. Exit codes: 0 success, 2 invalid input or usage, 1 runtime failure."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 on usage errors too; keep its message short
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from search.errors import HpsearchError, SpecError

    try:
        if args.command == "validate":
            return _validate(args)
        if args.command == "space":
            return _space(args)
        if args.command == "run":
            return _run(args)
    except SpecError as exc:
        print(f"hpsearch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HpsearchError as exc:
        print(f"hpsearch: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_USAGE  # pragma: no cover - argparse requires a command


def _validate(args: argparse.Namespace) -> int:
    from search.spec import load_spec

    spec = load_spec(args.spec)
    print(
        f"{args.spec}: valid ({spec.name}: {spec.search.num_trials} trials of {spec.trainable} on "
        f"{spec.data.dataset}, {len(spec.search_space.keys())} parameters)"
    )
    return EXIT_OK


def _space(args: argparse.Namespace) -> int:
    import spaces
    from search.errors import SpecError

    if args.space_command == "presets":
        for name in spaces.preset_names():
            print(name)
        return EXIT_OK
    if args.n < 1:
        raise SpecError([f"-n: must be >= 1, got {args.n}"])
    ref = args.space
    try:
        if ref.endswith((".yaml", ".yml")) and Path(ref).is_file() and _is_job_spec(Path(ref)):
            from search.spec import load_spec

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

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "space" in data and "search" in data


def _run(args: argparse.Namespace) -> int:
    from search.errors import SpecError
    from search.spec import check_tracking_uri, load_spec

    spec = load_spec(args.spec)  # validated before anything starts
    if args.tracking_uri and (problems := check_tracking_uri(args.tracking_uri)):
        raise SpecError(problems)
    from search.summary import print_summary
    from search.tuner import run_search

    result = run_search(
        spec,
        tracking_uri=args.tracking_uri,
        storage=args.storage,
        address=args.address,
        quiet=args.quiet,
        ray_logs=args.ray_logs,
    )
    print_summary(result)
    if result.status != "FINISHED":
        done = sum(n for state, n in result.counts.items() if state != "running")
        print(f"hpsearch: search interrupted after {done} of {spec.search.num_trials} trials", file=sys.stderr)
        return EXIT_FAILURE
    if result.counts.get("completed", 0) + result.counts.get("stopped_early", 0) == 0:
        print("hpsearch: no trial finished successfully", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
