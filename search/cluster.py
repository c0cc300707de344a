"""A Ray cluster on this machine, for trying the cluster workflow: a head and N worker nodes.

``up`` starts ``ray start --block`` processes (head, then workers) and records them, with every
process they spawned, in a state file; ``down`` stops exactly those processes, by pid (checked
against their start time, so a reused pid is never touched).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpsearch.errors import HpsearchError

DEFAULT_STATE = Path("~/.hpsearch/cluster.json")


@dataclass
class ClusterInfo:
    address: str  # for ray.init / `hpsearch run --address`
    dashboard: str  # for the Jobs API: `hpsearch submit --address`
    state_file: Path
    pids: list[int]


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _env() -> dict[str, str]:
    # `python` on the cluster must be this environment's (job drivers run `python -m hpsearch`).
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def local_gpus() -> list[str]:
    """The GPUs this machine shows this process: ``CUDA_VISIBLE_DEVICES`` if set, else nvidia-smi's list."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def gpu_slices(nodes: int, per_node: int, gpus: list[str]) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` for each node of a local cluster (head first): GPUs of its own, so no
    two nodes claim the same GPU (None: leave it as it is, for nodes without GPUs).

    Raises:
        HpsearchError: the machine has fewer GPUs than the nodes claim.
    """
    if per_node == 0:
        return [None] * nodes
    need = nodes * per_node
    if len(gpus) < need:
        raise HpsearchError(
            f"--num-gpus: {nodes} node(s) x {per_node} GPU(s) need {need} GPUs, but this machine shows "
            f"{len(gpus)} ({', '.join(gpus) or 'none'}): use fewer --workers or --num-gpus"
        )
    return [",".join(gpus[i * per_node : (i + 1) * per_node]) for i in range(nodes)]


def _wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise HpsearchError(f"`ray start` exited with code {proc.returncode}; see {log}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise HpsearchError(f"nothing answered on 127.0.0.1:{port} after {timeout_s:.0f} s; see {log}")


STARTED_MARK = "Ray runtime started."


def _wait_started(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> None:
    """Wait until `ray start` says its node runs (its raylet registered with the head). Nodes of one
    machine start one after the other: two `ray start` at once choose the same socket and log names in
    the session folder (``raylet.1``), and one raylet dies on "bind: Address already in use"."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if STARTED_MARK in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise HpsearchError(f"`ray start` exited with code {proc.returncode}; see {log}")
        time.sleep(0.2)
    raise HpsearchError(f"`ray start` did not start its node in {timeout_s:.0f} s; see {log}")


def free_port() -> int:
    """A TCP port nothing on this machine listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_port_args() -> list[str]:
    """A node's dashboard agent on a free port of its own: Ray's default (52365) is taken by any other
    Ray on the machine (another node of this cluster, a `ray.init` of another program), and a head
    whose agent cannot bind it accepts no job ("No available agent to submit job")."""
    return ["--dashboard-agent-listen-port", str(free_port())]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def up(
    workers: int = 1,
    num_cpus: int = 1,
    num_gpus: int = 0,
    port: int = 6379,
    dashboard_port: int = 8265,
    dashboard_host: str = "127.0.0.1",
    state_file: Path = DEFAULT_STATE,
) -> ClusterInfo:
    import psutil

    state_file = state_file.expanduser()
    if state_file.exists():
        if _alive(json.loads(state_file.read_text())["processes"]):
            raise HpsearchError(
                f"a cluster started by hpsearch is running ({state_file}); `hpsearch cluster down` first"
            )
        state_file.unlink()
    if not _is_loopback(dashboard_host):
        print(
            f"hpsearch: warning: the dashboard and Jobs API listen on {dashboard_host}: anyone who can reach it "
            "and has the token can run code on this machine",
            file=sys.stderr,
        )
    logs = state_file.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = _env()
    if "RAY_AUTH_MODE" not in os.environ:
        # Token authentication, as Ray 2.60 recommends: `ray start` turns it on only with a token at
        # hand, so make sure there is one (~/.ray/auth_token, unless RAY_AUTH_TOKEN(_PATH) gives it).
        from hpsearch.jobs import token_available

        if not token_available():
            subprocess.run(
                [_ray_bin(), "get-auth-token", "--generate"],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        env["RAY_AUTH_MODE"] = "token"
    slices = gpu_slices(1 + workers, num_gpus, local_gpus() if num_gpus else [])

    def node_env(i: int) -> dict[str, str]:
        return env if slices[i] is None else {**env, "CUDA_VISIBLE_DEVICES": str(slices[i])}

    common = [
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        str(num_cpus),
        "--num-gpus",
        str(num_gpus),
        "--disable-usage-stats",
    ]
    head_cmd = [
        _ray_bin(),
        "start",
        "--head",
        "--port",
        str(port),
        "--dashboard-host",
        dashboard_host,
        "--dashboard-port",
        str(dashboard_port),
        "--include-dashboard",
        "true",
        *common,
        *agent_port_args(),
    ]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        log = logs / "head.log"
        head = subprocess.Popen(
            head_cmd, env=node_env(0), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )
        procs.append(head)
        _wait_port(port, 60, head, log)
        _wait_port(dashboard_port, 60, head, log)
        _wait_started(head, log)
        for i in range(workers):
            log = logs / f"worker{i + 1}.log"
            cmd = [_ray_bin(), "start", "--address", f"127.0.0.1:{port}", *common, *agent_port_args()]
            worker = subprocess.Popen(
                cmd, env=node_env(i + 1), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
            )
            procs.append(worker)
            _wait_started(worker, log)
        _wait_nodes(f"127.0.0.1:{port}", 1 + workers, procs, logs, env)
    except BaseException:
        _stop([_record(psutil.Process(p.pid), node=True) for p in procs if p.poll() is None], with_children=True)
        raise
    records = []
    for p in procs:
        parent = psutil.Process(p.pid)
        records += [_record(parent, node=True)] + [_record(c) for c in parent.children(recursive=True)]
    address = f"127.0.0.1:{port}"
    dashboard = f"http://{'127.0.0.1' if dashboard_host in ('0.0.0.0', '::') else dashboard_host}:{dashboard_port}"
    state_file.write_text(json.dumps({"address": address, "dashboard": dashboard, "processes": records}, indent=2))
    return ClusterInfo(address, dashboard, state_file, [r["pid"] for r in records])


def _wait_nodes(
    address: str,
    expected: int,
    procs: list[subprocess.Popen[bytes]],
    logs: Path,
    env: dict[str, str],
    timeout_s: float = 90,
) -> None:
    """Wait until ``expected`` nodes are alive (asked in a child process: this one stays Ray-free)."""
    code = (
        "import ray, sys, time\n"
        f"ray.init(address={address!r}, log_to_driver=False, logging_level='ERROR')\n"
        f"deadline = time.time() + {timeout_s}\n"
        f"while sum(n['Alive'] for n in ray.nodes()) < {expected} and time.time() < deadline:\n"
        "    time.sleep(0.5)\n"
        f"sys.exit(0 if sum(n['Alive'] for n in ray.nodes()) >= {expected} else 3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s + 60)
    dead = [p.args for p in procs if p.poll() is not None]
    if done.returncode != 0 or dead:
        raise HpsearchError(f"the cluster did not come up with {expected} nodes; see the logs in {logs}")


def _record(p: Any, node: bool = False) -> dict[str, Any]:
    """A process ``up`` started; ``node``: a node's own ``ray start --block`` process."""
    return {"pid": p.pid, "create_time": p.create_time(), "name": p.name(), **({"node": True} if node else {})}


def _alive(records: list[dict[str, Any]]) -> list[Any]:
    """The recorded processes that still run (same pid *and* same start time)."""
    import psutil

    out = []
    for r in records:
        try:
            p = psutil.Process(r["pid"])
            if abs(p.create_time() - r["create_time"]) < 0.01:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _stop(records: list[dict[str, Any]], with_children: bool, timeout_s: float = 20) -> int:
    """Stop the recorded processes (and, ``with_children``, what they spawned since); return how many.

    Each node's ``ray start --block`` process is asked first: on SIGTERM it stops its node's processes in
    their order (~4 s for a head and a worker here). SIGTERM to every process at once instead leaves the
    raylets, the GCS and the monitors waiting on each other until the SIGKILL ``timeout_s`` later. What
    is still there after the nodes stopped gets SIGTERM, then SIGKILL.
    """
    import psutil

    procs = _alive(records)
    if with_children:  # Ray workers spawned after `up` belong to the processes we started
        seen = {p.pid for p in procs}
        for p in list(procs):
            try:
                children = p.children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for child in children:
                if child.pid not in seen:
                    seen.add(child.pid)
                    procs.append(child)
    nodes = {r["pid"] for r in records if r.get("node")}
    starters = [p for p in procs if p.pid in nodes]
    rest = procs
    if starters:
        signal_all(starters, "terminate")
        _, rest = psutil.wait_procs(procs, timeout=timeout_s / 2)
    signal_all(rest, "terminate")
    _, survivors = psutil.wait_procs(rest, timeout=timeout_s / 2 if starters else timeout_s)
    signal_all(survivors, "kill")
    psutil.wait_procs(survivors, timeout=5)
    return len(procs)


def signal_all(procs: list[Any], how: str) -> None:
    """``terminate`` or ``kill`` each ``psutil.Process``; those already gone are skipped."""
    import psutil

    for p in procs:
        try:
            getattr(p, how)()
        except psutil.NoSuchProcess:
            pass


def down(state_file: Path = DEFAULT_STATE) -> int:
    """Stop the processes ``up`` recorded (and the workers they spawned); return how many."""
    state_file = state_file.expanduser()
    if not state_file.exists():
        raise HpsearchError(f"no cluster started by hpsearch ({state_file} does not exist)")
    state = json.loads(state_file.read_text())
    stopped = _stop(state["processes"], with_children=True)
    state_file.unlink()
    # `ray start` left a pointer to this cluster for `ray.init()`; it is gone now.
    current = Path("/tmp/ray/ray_current_cluster")
    if current.is_file() and current.read_text().strip() == state["address"]:
        current.unlink()
    return stopped
