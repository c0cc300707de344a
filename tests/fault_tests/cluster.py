"""A real local Ray cluster for the fault tests (`hpsearch cluster up`: `ray start` head and workers
on 127.0.0.1, a home of its own), and killing one of its nodes the hard way."""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.helpers import hpsearch
from tests.integration_tests.servers import free_port


@contextmanager
def local_cluster(home: Path, workers: int, env: dict | None = None):
    """Yields ``(env, address, dashboard, state)``; stopped by `cluster down` (by pid) afterwards. The
    nodes start with ``env`` added to their environment (the returned ``env`` is only the home)."""
    nodes_env = {"HOME": str(home), **(env or {})}
    env = {"HOME": str(home)}
    state = home / ".hpsearch" / "cluster.json"
    port, dashboard_port = free_port(), free_port()
    up = hpsearch(
        "cluster", "up", "--workers", workers, "--num-cpus", "1", "--port", port,
        "--dashboard-port", dashboard_port, "--state-file", state, env=nodes_env,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr + up.stdout
    try:
        yield env, f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}", state
    finally:
        down = hpsearch("cluster", "down", "--state-file", state, env=env)
        assert down.returncode == 0, down.stderr


def worker_nodes(state: Path) -> list[psutil.Process]:
    """The `ray start` process of each worker node (not the head), in start order."""
    records = json.loads(state.read_text())["processes"]
    procs = []
    for r in records:
        try:
            p = psutil.Process(r["pid"])
        except psutil.NoSuchProcess:
            continue
        if abs(p.create_time() - r["create_time"]) < 0.01 and "--head" not in p.cmdline() and "start" in p.cmdline():
            procs.append(p)
    return procs


def trial_processes(node: psutil.Process) -> list[psutil.Process]:
    """The trial workers (Tune's trainable actors) running on a node."""
    return [c for c in node.children(recursive=True) if c.name().startswith("ray::ImplicitFunc")]


def kill_node(node: psutil.Process) -> int:
    """``kill -9`` every process of the node: its `ray start`, raylet and agents, and its workers (which
    Ray puts in process groups of their own). Returns how many were killed."""
    victims = [node, *node.children(recursive=True)]
    for p in victims:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(victims)
