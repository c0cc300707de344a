"""Assemble and run a search: Ray Tune + OptunaSearch (define-by-run, TPE) + ASHA + MLflow tracking."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.errors import HpsearchError, SpecError
from search.ledger import Ledger, TrialRecord
from search.progress import ProgressPrinter
from search.searcher import optuna_search
from search.spec import JobSpec
from search.tracking import MlflowTracker, check_reachable, default_tracking_uri, flatten
from trainables import BUILTIN

# Tune settings (README, "How it runs"): trials stay in the driver's working directory (relative
# data paths keep working). Experiment-state snapshots, what `hpsearch resume` continues from, every
# 5 s: trials that finished in the last 5 s before a crash run again on resume.
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
SNAPSHOT_S = float(os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5"))
# Ray's console reporter: silent (verbose=0) only with the classic output engine; we print our own.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Tune's automatic per-trial JSON/CSV/TensorBoard loggers: MLflow already records every result, and
# they cost the driver ~4 s of CPU per 60 short trials (importing tensorboardX, an event-writer thread
# per trial) and double its memory: CPU that the trials on the same machine then lack.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@dataclass
class SearchResult:
    spec_name: str
    status: str  # FINISHED | KILLED (interrupted) | FAILED (the driver failed)
    metric: str
    mode: str
    tracking_uri: str
    experiment_id: str | None
    parent_run_id: str | None
    run_dir: Path
    wall_time_s: float
    counts: dict[str, int]
    best: TrialRecord | None
    records: list[TrialRecord] = field(default_factory=list)
    tracking_errors: list[str] = field(default_factory=list)
    metric_points: int = 0
    num_trials: int = 0
    searcher_states: dict[str, int] = field(default_factory=dict)  # Optuna's view: COMPLETE / FAIL / ...


def asha_scheduler(spec: JobSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    s = spec.search.scheduler
    return ASHAScheduler(
        time_attr="epoch",  # not training_iteration: one Tune result may carry several epochs
        max_t=s.max_epochs,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
    )


def spec_params(spec: JobSpec) -> dict[str, Any]:
    """The spec, minus the space, flattened: the parent run's params."""
    data = spec.model_dump(exclude={"space"})
    data["space"] = spec.space if isinstance(spec.space, str) else "inline"
    return flatten(data)


def trial_describer(trainable: str) -> Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, str]]] | None:
    """For built-in trainables a trial's run records the config as trained: every default filled in,
    implications applied (SELU's self-normalising set-up), and a tag naming what was overridden."""
    if trainable not in BUILTIN:
        return None
    from trainables.config import ConfigError, overrides, resolve

    def describe(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        try:
            changed = overrides(trainable, config)
            params = resolve(trainable, config)
        except ConfigError:  # the trial fails with the same message; record the config as sampled
            return config, {}
        tags = {"hpsearch.overrides": ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items())} if changed else {}
        return params, tags

    return describe


def tracker_for(spec: JobSpec, uri: str) -> MlflowTracker:
    """Child runs named by their key choices, recorded as trained; the report written when it ends."""
    from search.naming import run_name
    from search.report_output import log_report

    space = spec.search_space
    return MlflowTracker(
        uri,
        spec.name,
        describe=trial_describer(spec.trainable),
        namer=lambda short, config: run_name(short, config, space),
        report=log_report,
    )


def init_ray(address: str | None, num_cpus: int | None = None, log_to_driver: bool = False) -> None:
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = dict(log_to_driver=log_to_driver, logging_level=logging.WARNING)
    if address:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            auth = os.environ.get("RAY_AUTH_MODE")
            hint = (
                "if the cluster uses token authentication (Ray 2.60's default), set RAY_AUTH_MODE=token and "
                "provide the token in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
                if auth != "token"
                else "check the address and that the token matches the cluster's"
            )
            raise HpsearchError(f"cannot join the Ray cluster at {address}: {exc}; {hint}") from exc
    else:
        # A local cluster of our own: Ray turns token auth on for it and says so; not news for the user.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        # "local": always a fresh instance, never the cluster a `ray start` left on this machine.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)


def run_search(
    spec: JobSpec,
    tracking_uri: str | None = None,
    storage: str | Path | None = None,
    address: str | None = None,
    quiet: bool = False,
    ray_logs: bool = False,
    run_name: str | None = None,
) -> SearchResult:
    """Run the whole search and return its summary; the spec must already be validated.

    Trial errors are summarised by hpsearch (and kept in MLflow and the Tune folder); Ray's own
    per-error tracebacks on the console are shown only with ``ray_logs``.
    """
    from ray import tune

    uri = tracking_uri or spec.tracking.uri or default_tracking_uri()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_name = run_name or f"{spec.name}-{stamp}"
    storage_path = str(storage or "hpsearch_results")
    if "://" not in storage_path:
        storage_path = str(Path(storage_path).expanduser().resolve())
    run_dir = f"{storage_path.rstrip('/')}/{run_name}"

    check_reachable(uri)
    searcher = optuna_search(spec)
    tracker = tracker_for(spec, uri)
    tracker.start(
        run_name=f"search {stamp}",
        params=spec_params(spec),
        tags={"hpsearch.run_dir": run_dir},
        artifacts={
            "spec.yaml": spec.source_text or json.dumps(spec.model_dump(), indent=2),
            "space.json": json.dumps(spec.search_space.to_data(), indent=2),
        },
        on_ready=lambda: _write_run_meta(run_dir, spec, uri, tracker),  # what `hpsearch resume` reads
    )
    ledger = Ledger(spec.epochs, spec.search.metric, spec.search.mode, listeners=[])

    def make_tuner() -> Any:
        tuner = tune.Tuner(
            trainable_for(spec),
            tune_config=tune.TuneConfig(
                metric=spec.search.metric,
                mode=spec.search.mode,
                search_alg=searcher,
                scheduler=asha_scheduler(spec),
                num_samples=spec.search.num_trials,
                max_concurrent_trials=spec.search.max_concurrent,
                time_budget_s=spec.search.time_budget_s,
                # Reusing trial actors avoids a new Python worker (and torch import) per trial:
                # measured 64 s -> 8 s for 20 short digits trials on 2 cores.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=run_name,
                storage_path=storage_path,
                callbacks=[ledger],
                failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
                # Every checkpoint stays until the search ends: Tune's experiment snapshot may point at
                # an older one than a trial's newest, and resume needs exactly that one.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                verbose=0,
            ),
        )
        return tuner

    holder = {"ledger": ledger}
    return _execute(spec, tracker, holder, lambda: searcher, make_tuner, address, quiet, ray_logs, uri, run_dir)


def resume_search(
    run_dir: str | Path, address: str | None = None, quiet: bool = False, ray_logs: bool = False
) -> SearchResult:
    """Continue an interrupted search from its run directory: Tune's state (trials, their
    checkpoints, the Optuna searcher) and the same MLflow parent run, without duplicate trial runs."""
    from ray import tune

    from search.spec import load_spec_text

    run_dir = str(run_dir).rstrip("/") if "://" in str(run_dir) else str(Path(run_dir).expanduser().resolve())
    meta_path = f"{run_dir}/{META_FILE}"
    try:
        text = read_text(meta_path)
    except OSError as exc:  # a storage URI that cannot be read (credentials, endpoint, bucket)
        raise HpsearchError(f"cannot read {meta_path}: {str(exc).splitlines()[0]}") from exc
    if text is None:
        raise SpecError([f"RUN_DIR: {run_dir!r} is not a search's run directory (no {META_FILE})"])
    meta = json.loads(text)
    spec = load_spec_text(meta["spec"], source=meta_path)
    uri = meta["tracking_uri"]
    check_reachable(uri)
    tracker = tracker_for(spec, uri)
    tracker.reopen(meta["experiment_id"], meta["parent_run_id"])
    holder: dict[str, Any] = {}

    def make_tuner() -> Any:
        if not tune.Tuner.can_restore(run_dir):
            raise HpsearchError(f"Ray Tune has no restorable state in {run_dir}")
        tuner = tune.Tuner.restore(
            run_dir,
            trainable=trainable_for(spec),
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
        # The restored Tuner carries our ledger (its records come back from the experiment state).
        callbacks = tuner._local_tuner.get_run_config().callbacks or []
        ledger = next(cb for cb in callbacks if isinstance(cb, Ledger))
        ledger.listeners = holder["ledger"].listeners
        holder["ledger"] = ledger
        holder["searcher"] = tuner._local_tuner._tune_config.search_alg  # Tune restores its state in place
        return tuner

    holder["ledger"] = Ledger(spec.epochs, spec.search.metric, spec.search.mode, listeners=[])
    return _execute(
        spec, tracker, holder, lambda: holder.get("searcher"), make_tuner, address, quiet, ray_logs, uri, run_dir
    )


META_FILE = "hpsearch.json"


def _write_run_meta(run_dir: str, spec: JobSpec, uri: str, tracker: MlflowTracker) -> None:
    meta = {
        "spec": spec.source_text,
        "tracking_uri": uri,
        "experiment_id": tracker.experiment_id,
        "parent_run_id": tracker.parent_run_id,
    }
    write_text(f"{run_dir.rstrip('/')}/{META_FILE}", json.dumps(meta, indent=2))


def write_text(location: str, text: str) -> None:
    """Write a small file to a local path or a storage URI (s3://, gs://, ...: where Tune keeps its state)."""
    if "://" not in location:
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        Path(location).write_text(text)
        return
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


def read_text(location: str) -> str | None:
    """The text of a small file at a local path or a storage URI; None if there is none."""
    if "://" not in location:
        return Path(location).read_text() if Path(location).is_file() else None
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(location)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def trainable_for(spec: JobSpec) -> Any:
    from ray import tune

    from trainables.tune_adapter import asha_milestones, run_trial

    s = spec.search.scheduler

    return tune.with_resources(
        tune.with_parameters(
            run_trial,
            trainable_name=spec.trainable,
            data=spec.data.model_dump(),
            epochs=spec.epochs,
            seed=spec.search.sampler.seed,
            threads=max(1, int(spec.resources.cpu)),
            checkpoint_every=spec.search.checkpoint_every,
            checkpoint_min_interval_s=spec.search.checkpoint_min_interval_s,
            milestones=asha_milestones(s.max_epochs, s.grace_period, s.reduction_factor),
            report_interval_s=spec.search.report_interval_s,
        ),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )


def _execute(
    spec: JobSpec,
    tracker: MlflowTracker,
    holder: dict[str, Any],
    searcher: Callable[[], Any],
    make_tuner: Callable[[], Any],
    address: str | None,
    quiet: bool,
    ray_logs: bool,
    uri: str,
    run_dir: str,
) -> SearchResult:
    """Start Ray, run the Tuner ``make_tuner`` builds, write the results. ``holder["ledger"]`` is the
    search's ledger; a resumed Tuner replaces it with the one Tune restored."""
    started = time.time()
    listeners: list[Any] = [tracker]
    if not quiet:
        listeners.append(ProgressPrinter(lambda: holder["ledger"], spec.search.num_trials, spec.epochs))
    holder["ledger"].listeners = listeners
    if not ray_logs:
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    status = "FAILED"
    try:
        init_ray(address, log_to_driver=ray_logs)
        check_cluster(spec, run_dir)
        tracker.check()  # fails fast if opening the store already failed; otherwise it opens meanwhile
        tuner = make_tuner()
        tuner.fit()
        tracker.wait_ready()  # a store that failed after the last trial started
        ledger = holder["ledger"]
        finished = sum(1 for r in ledger.records.values() if r.state != "running")
        budget = spec.search.time_budget_s
        out_of_time = budget is not None and time.time() - started >= budget
        status = "FINISHED" if finished == spec.search.num_trials or out_of_time else "KILLED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        wall = time.time() - started
        result = _finish(spec, tracker, holder["ledger"], status, wall, uri, Path(run_dir))
        if status == "FINISHED":
            prune_checkpoints(run_dir)
        found = searcher()
        result.searcher_states = found.trial_states() if hasattr(found, "trial_states") else {}
    return result


def prune_checkpoints(run_dir: str) -> None:
    """A finished search keeps only each trial's last checkpoint (the trained model)."""
    if "://" in run_dir or not Path(run_dir).is_dir():
        return
    for trial_dir in Path(run_dir).iterdir():
        checkpoints = sorted(trial_dir.glob("checkpoint_*"), key=lambda p: int(p.name.rsplit("_", 1)[-1]))
        for old in checkpoints[:-1]:
            shutil.rmtree(old, ignore_errors=True)


def check_cluster(spec: JobSpec, storage: str) -> None:
    """Fail fast on what the cluster can never do: a trial bigger than any node, or a storage path
    that only one of several machines can see."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    need_cpu, need_gpu = spec.resources.cpu, spec.resources.gpu
    fits = [n for n in nodes if n["Resources"].get("CPU", 0) >= need_cpu and n["Resources"].get("GPU", 0) >= need_gpu]
    if not fits:
        biggest = max(nodes, key=lambda n: (n["Resources"].get("GPU", 0), n["Resources"].get("CPU", 0)))
        raise HpsearchError(
            f"resources: each trial asks for cpu={need_cpu:g}, gpu={need_gpu:g}, but no node of this cluster has "
            f"that (the largest has cpu={biggest['Resources'].get('CPU', 0):g}, "
            f"gpu={biggest['Resources'].get('GPU', 0):g}): no trial could ever start"
        )
    hosts = {n.get("NodeManagerHostname") for n in nodes}
    if len(hosts) > 1 and "://" not in storage and not shared_filesystem(storage):
        raise HpsearchError(
            f"--storage: {storage!r} is a local folder, but the cluster spans {len(hosts)} machines: trials on other "
            "machines could not write their checkpoints there. Use a shared path (an NFS mount) or a URI "
            "such as s3://bucket/prefix"
        )


_SHARED_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "glusterfs", "beegfs", "9p")


def shared_filesystem(path: str) -> bool:
    """Whether ``path`` lives on a network file system (by the longest matching mount point)."""
    target = os.path.realpath(path)
    while not os.path.exists(target):
        target = os.path.dirname(target)
    best, fstype = "", ""
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _, mount, kind = line.split()[:3]
                if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                    best, fstype = mount, kind
    except OSError:
        return False
    return fstype in _SHARED_FS or fstype.startswith("fuse.")


def _finish(
    spec: JobSpec, tracker: MlflowTracker, ledger: Ledger, status: str, wall: float, uri: str, run_dir: Path
) -> SearchResult:
    metric = spec.search.metric
    ledger.interrupt_running()
    counts = ledger.counts()
    best = ledger.best()
    metrics = {f"trials_{state}": float(n) for state, n in counts.items() if state != "running"}
    metrics["wall_time_s"] = wall
    params: dict[str, Any] = {}
    tags = {"hpsearch.status": status}
    trials = [
        {
            "trial": r.name,
            "trial_id": r.trial_id,
            "state": r.state,
            "epochs": r.epochs,
            **r.metrics,
            "config": r.config,
            **({"error": r.error} if r.error else {}),
        }
        for r in ledger.records.values()
    ]
    artifacts = {"trials.json": json.dumps(trials, indent=2, default=str)}
    if best is not None:
        metrics[f"best_{metric}"] = best.metrics[metric]
        # tags, not params: a resumed search may find a better trial, and params cannot change
        tags.update({f"best.{k}": str(v) for k, v in best.config.items()})
        tags["hpsearch.best_trial"] = best.name
        artifacts["best_config.json"] = json.dumps(
            {"trial": best.name, "metric": metric, "value": best.metrics[metric], "config": best.config}, indent=2
        )
    errors = tracker.finish(status, metrics, params, tags, artifacts)
    return SearchResult(
        spec_name=spec.name,
        status=status,
        metric=metric,
        mode=spec.search.mode,
        tracking_uri=uri,
        experiment_id=tracker.experiment_id,
        parent_run_id=tracker.parent_run_id,
        run_dir=run_dir,
        wall_time_s=wall,
        counts=counts,
        best=best,
        records=list(ledger.records.values()),
        tracking_errors=errors,
        metric_points=tracker.points_reported,
        num_trials=spec.search.num_trials,
    )


__all__ = ["SearchResult", "asha_scheduler", "optuna_search", "resume_search", "run_search"]
