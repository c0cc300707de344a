"""Ray for a search: the Tune settings hpsearch runs with, joining or starting Ray, and checking that
the cluster can run the search at all (a trial that fits a node, storage every node can reach)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hpsearch.errors import HpsearchError, Problem, SpecError
from hpsearch.spec import JobSpec

# Tune settings (README, "How it runs"), applied by configure_tune() before Ray starts:
TUNE_ENV = {
    # trials stay in the driver's working directory (relative data paths keep working)
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    # experiment-state snapshots, what `hpsearch resume` continues from, every 5 s: trials that
    # finished in the last 5 s before a crash run again on resume
    "TUNE_GLOBAL_CHECKPOINT_S": "5",
    # Ray's console reporter: silent (verbose=0) only with the classic output engine; we print our own
    "RAY_AIR_NEW_OUTPUT": "0",
    # Tune's automatic per-trial JSON/CSV/TensorBoard loggers: MLflow already records every result
    # (BENCHMARKS.md: they cost the driver CPU and memory that the trials then lack)
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # Ray's C++ failure-signal handler in the driver: it logs a stack for SIGTERM, which hpsearch
    # handles itself (the search ends as with Ctrl-C), and then aborts the process at exit (exit 134
    # after a clean interrupt). Trial processes keep hpsearch's own record of fatal signals
    # (hpsearch.trainables.exits: faulthandler).
    "RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1",
}


def configure_tune() -> None:
    """Set hpsearch's Tune defaults in this process's environment (a value the user set wins).

    Called before Ray starts: a local Ray's workers inherit the environment.
    """
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)


def snapshot_interval_s() -> float:
    """Seconds between Tune's experiment-state snapshots (what a resumed search continues from)."""
    return float(os.environ.get("TUNE_GLOBAL_CHECKPOINT_S", TUNE_ENV["TUNE_GLOBAL_CHECKPOINT_S"]))


_early: dict[str, Any] = {}  # the init_ray that start_early began: its thread, and what it raised


def start_early(address: str | None, num_cpus: int | None = None, log_to_driver: bool = False) -> None:
    """Begin :func:`init_ray` in a background thread; the next :func:`init_ray` waits for it (and raises
    what it raised). A command calls this as soon as its input is valid: Ray's processes (~4 s to start
    here, mostly waiting on them) then start while this process imports Tune, Optuna and MLflow and opens
    the tracking store. From a thread, ``ray.init`` also leaves the SIGTERM handler alone: the CLI's
    (SIGTERM ends the search as Ctrl-C does) stays in place."""
    import threading

    configure_tune()  # before Ray is imported and its processes start (they inherit the environment)
    import ray  # noqa: F401 - imported here, before the thread: not by two threads at once

    started = threading.Event()

    def target() -> None:
        try:
            _init(address, num_cpus, log_to_driver)
        except BaseException as exc:  # noqa: BLE001 - handed to init_ray, in the main thread
            _early["error"] = exc
        started.set()
        # Ray starts its local processes with PR_SET_PDEATHSIG, which the kernel sends when the *thread*
        # that started them ends: this one lives as long as the process (a daemon, it does not hold
        # the exit up), or the GCS and raylet would be killed as soon as it returned.
        threading.Event().wait()

    thread = threading.Thread(target=target, name="hpsearch-ray-init", daemon=True)
    _early.clear()
    _early["started"] = started
    _early["local"] = address is None
    thread.start()


def release_early() -> None:
    """The search is over: begin ``ray.shutdown()`` of the local Ray that :func:`start_early` started
    (a command that exits when its search ends), in a thread, while the driver writes its results and
    report. Ray stops its processes one by one, ~1.4 s here, which the command otherwise waited for
    at exit after the summary. Python waits for the thread before it exits. Nothing else: a cluster
    the search joined, or a Ray a caller started, stays as it is."""
    import threading

    if not _early.pop("local", False):
        return

    def target() -> None:
        import gc

        import ray

        # Ray objects in reference cycles (Tune's, dropped by the search) go first, while Ray is up: a
        # collection during the shutdown would make Ray end the process. Here, not in the search's thread:
        # a full collection takes ~0.2 s with torch, Ray and MLflow loaded, which the summary need not wait for.
        gc.collect()
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001 - at exit Ray's own handler tries again
            logging.getLogger(__name__).debug("ray.shutdown after the search failed", exc_info=True)

    threading.Thread(target=target, name="hpsearch-ray-shutdown", daemon=False).start()


class _NotFromThread(logging.Filter):
    """Ray's "SIGTERM handler is not set because current thread is not the main thread": by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SIGTERM handler is not set")


logging.getLogger("ray._private.worker").addFilter(_NotFromThread())


def init_ray(address: str | None, num_cpus: int | None = None, log_to_driver: bool = False) -> None:
    """Join the Ray cluster at ``address``, or start a fresh local Ray (``address=None``); if
    :func:`start_early` began that already, wait for it.

    Raises:
        HpsearchError: the cluster cannot be joined (the message says what to set for token auth).
    """
    started = _early.pop("started", None)
    if started is not None:
        started.wait()
        error = _early.pop("error", None)
        if error is not None:
            raise error
    _init(address, num_cpus, log_to_driver)


def _init(address: str | None, num_cpus: int | None, log_to_driver: bool) -> None:
    import signal
    import threading

    import ray

    if ray.is_initialized():
        return
    # ray.init in the main thread replaces the SIGTERM handler with sys.exit: a search told to stop
    # would end FAILED, without its summary. hpsearch's own handler (if any) is put back.
    in_main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if in_main else None
    try:
        _connect(address, num_cpus, log_to_driver)
    finally:
        if in_main and callable(sigterm):
            signal.signal(signal.SIGTERM, sigterm)


def _connect(address: str | None, num_cpus: int | None, log_to_driver: bool) -> None:
    import ray

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
        with lean_local_head(log_to_driver):
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)


@contextlib.contextmanager
def lean_local_head(log_to_driver: bool) -> Iterator[None]:
    """While a local Ray starts: its head without the processes a search on this machine does not use
    (BENCHMARKS.md, issue 26: ~3 s of CPU while Ray starts, and their CPU all search long):

    * the dashboard's API server (``include_dashboard=False`` still starts it, for the Jobs and state
      APIs: a local search uses neither);
    * the autoscaler's monitor (a local node never scales);
    * the log monitor, which streams the workers' output to the driver (kept with ``log_to_driver``,
      ``--ray-logs``).

    Ray has no public switch for them: its node reads ``RayParams.no_monitor`` and
    ``include_log_monitor`` and calls ``Node.start_api_server``, which this sets and replaces for the call
    only. If a Ray release moves them, Ray starts them as before, and
    ``tests/integration_tests/test_raysetup.py`` fails, saying which are back."""
    try:
        from ray._private import node, parameter
    except ImportError:  # pragma: no cover - a Ray without these modules starts everything
        yield
        return
    params_init, start_api_server = parameter.RayParams.__init__, getattr(node.Node, "start_api_server", None)

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        params_init(self, *args, **kwargs)
        self.no_monitor = True
        self.include_log_monitor = log_to_driver

    def no_api_server(self: Any, **_: Any) -> None:
        self._webui_url = None

    parameter.RayParams.__init__ = init  # type: ignore[method-assign]
    if start_api_server is not None:
        node.Node.start_api_server = no_api_server  # type: ignore[method-assign]
    try:
        yield
    finally:
        parameter.RayParams.__init__ = params_init  # type: ignore[method-assign]
        if start_api_server is not None:
            node.Node.start_api_server = start_api_server  # type: ignore[method-assign]


@dataclass(frozen=True)
class NodeGroup:
    """Nodes the autoscaler can start (a KubeRay worker group): their resources and how many at most
    (``max_count`` -1: no limit)."""

    name: str
    resources: dict[str, float]
    max_count: int


@dataclass(frozen=True)
class ClusterView:
    """What a search can run on: the nodes alive now (their hosts and resources) and the node groups
    an autoscaler may add (none on a fixed cluster)."""

    nodes: list[tuple[str, dict[str, float]]]
    groups: list[NodeGroup] = field(default_factory=list)


def total_resources() -> dict[str, float] | None:
    """The Ray cluster's total resources (None when Ray is not up)."""
    import ray

    return dict(ray.cluster_resources()) if ray.is_initialized() else None


def cluster_view() -> ClusterView:
    """The Ray cluster this process is connected to, as :func:`check_cluster` sees it."""
    import ray

    nodes = [(str(n.get("NodeManagerHostname")), dict(n["Resources"])) for n in ray.nodes() if n.get("Alive")]
    return ClusterView(nodes, autoscaling_groups())


NODE_GROUPS_ENV = "HPSEARCH_NODE_GROUPS"


def autoscaling_groups() -> list[NodeGroup]:
    """The node groups the cluster's autoscaler can add nodes from.

    From the cluster config an autoscaler publishes to the GCS (Ray has no public API for it; Ray
    Data reads it the same way, and a test fails loudly when an upgrade moves it); Ray 2.60's
    autoscalers do not publish one, so a cluster may declare its groups in ``HPSEARCH_NODE_GROUPS``
    on the head node (``gpu-workers:CPU=8,GPU=1;cpu-workers:CPU=2``), as deploy/'s manifests do.
    None for a fixed cluster.
    """
    from ray._private import state

    config = state.state.get_cluster_config()
    if config and config.node_group_configs:
        return [
            NodeGroup(g.name, {k: float(v) for k, v in g.resources.items()}, int(g.max_count))
            for g in config.node_group_configs
            if g.resources and g.max_count != 0
        ]
    return parse_node_groups(os.environ.get(NODE_GROUPS_ENV, ""))


def parse_node_groups(text: str) -> list[NodeGroup]:
    """``name:CPU=8,GPU=1;other:CPU=2`` -> node groups (no upper bound on their size).

    Raises:
        HpsearchError: naming the variable and the part it cannot read.
    """
    groups = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, resources = part.partition(":")
        try:
            parsed = {k.strip(): float(v) for k, v in (r.split("=") for r in resources.split(",") if r.strip())}
        except ValueError:
            parsed = {}
        if not name.strip() or not parsed:
            raise HpsearchError(f"{NODE_GROUPS_ENV}: cannot read {part!r} (expected name:CPU=8,GPU=1;...)")
        groups.append(NodeGroup(name.strip(), parsed, -1))
    return groups


def check_cluster(spec: JobSpec, storage: str, view: ClusterView | None = None) -> None:
    """Fail fast on what the cluster can never do: a trial (or a worker of one) bigger than any node it
    has or its autoscaler can add, a group of workers more than all its nodes hold, or a storage path
    that only one of several machines can see.

    Raises:
        SpecError: the spec's resources (exit 2), naming them, the largest node and what would work.
        HpsearchError: the storage path.
    """
    view = view or cluster_view()
    problems = resource_problems(spec, view)
    if problems:
        raise SpecError(problems)
    hosts = {host for host, _ in view.nodes}
    machines = f"{len(hosts)} machines" if len(hosts) > 1 else "machines its autoscaler adds"
    if (len(hosts) > 1 or view.groups) and "://" not in storage and not shared_filesystem(storage):
        raise HpsearchError(
            f"--storage: {storage!r} is a local folder, but the cluster spans {machines}: trials on other "
            "machines could not write their checkpoints there. Use a shared path (an NFS mount) or a URI "
            "such as s3://bucket/prefix"
        )


def resource_problems(spec: JobSpec, view: ClusterView) -> list[Problem]:
    """What in ``resources`` the cluster ``view`` can never run (see :func:`check_cluster`)."""
    res = spec.resources
    need_cpu, need_gpu = res.cpu, res.gpu
    each = "each worker of a trial" if res.workers > 1 else "each trial"

    def fits(resources: dict[str, float]) -> int:
        """How many of one trial's (one worker's) reservations a node of ``resources`` holds."""
        counts = [resources.get("CPU", 0) / need_cpu]
        if need_gpu:
            counts.append(resources.get("GPU", 0) / need_gpu)
        return int(min(counts) + 1e-9)

    shapes = [r for _, r in view.nodes] + [g.resources for g in view.groups]
    if not any(fits(r) for r in shapes):
        biggest = max(shapes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
        where = (
            "no node of this cluster has that, and its autoscaler can add none"
            if view.groups
            else ("no node of this cluster has that")
        )
        field = "resources.gpu" if need_gpu > biggest.get("GPU", 0) else "resources.cpu"
        return [
            Problem(
                field,
                f"{each} asks for cpu={need_cpu:g}, gpu={need_gpu:g}, but {where} (the largest has "
                f"cpu={biggest.get('CPU', 0):g}, gpu={biggest.get('GPU', 0):g}): no trial could ever start",
            )
        ]
    if res.workers > 1 and not view.groups:
        room = sum(fits(r) for _, r in view.nodes)
        if room < res.workers:
            return [
                Problem(
                    "resources.workers",
                    f"a trial asks for {res.workers} workers of cpu={need_cpu:g}, gpu={need_gpu:g}, but all the "
                    f"cluster's nodes together hold {room}: no trial could ever start (give at most {room})",
                )
            ]
    return []


_SHARED_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "glusterfs", "beegfs", "9p")


def shared_filesystem(path: str, mounts: str = "/proc/mounts") -> bool:
    """Whether ``path`` lives on a network file system (by the longest matching mount point)."""
    target = os.path.realpath(path)
    while not os.path.exists(target):
        target = os.path.dirname(target)
    best, fstype = "", ""
    try:
        with open(mounts) as f:
            for line in f:
                _, mount, kind = line.split()[:3]
                if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                    best, fstype = mount, kind
    except OSError:
        return False
    return fstype in _SHARED_FS or fstype.startswith("fuse.")
