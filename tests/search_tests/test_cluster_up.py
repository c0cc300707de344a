"""`hpsearch cluster up` starts the nodes of one machine one after the other: two `ray start` at once
pick the same socket name in Ray's session folder and one raylet dies ("bind: Address already in
use"; it made a fault test fail once). A stand-in `ray` that fails as Ray does when another node of
the machine is starting at the same moment pins the order; the real cluster is in the integration
and fault tests."""

import os
import stat
import subprocess
import sys

import pytest

from hpsearch import cluster
from hpsearch.errors import HpsearchError

FAKE_RAY = """\
#!{python}
import os, socket, sys, time
args = sys.argv[1:]
if args[0] != "start":
    sys.exit(0)
folder = os.environ["FAKE_RAY_DIR"]
starting = os.path.join(folder, "starting")
if os.path.exists(starting):  # another node of this machine is choosing its socket names right now
    print("bind: Address already in use", flush=True)
    sys.exit(1)
open(starting, "w").close()
with open(os.path.join(folder, "order"), "a") as f:
    f.write(("head" if "--head" in args else "worker") + "\\n")
listening = []
for flag in ("--port", "--dashboard-port"):
    if flag in args:
        s = socket.socket()
        s.bind(("127.0.0.1", int(args[args.index(flag) + 1])))
        s.listen()
        listening.append(s)
time.sleep(float(os.environ.get("FAKE_RAY_START_S", "0.5")))
os.unlink(starting)
if os.environ.get("FAKE_RAY_DIES"):
    sys.exit(1)
print("Ray runtime started.", flush=True)
time.sleep(600)
"""


@pytest.fixture
def fake_ray(tmp_path, monkeypatch):
    ray = tmp_path / "bin" / "ray"
    ray.parent.mkdir()
    ray.write_text(FAKE_RAY.format(python=sys.executable))
    ray.chmod(ray.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(cluster, "_ray_bin", lambda: str(ray))
    monkeypatch.setattr(cluster, "_wait_nodes", lambda *a, **k: None)  # asks a real Ray; not here
    monkeypatch.setenv("FAKE_RAY_DIR", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    return tmp_path


def test_nodes_of_one_machine_start_one_after_the_other(fake_ray):
    state = fake_ray / "state" / "cluster.json"
    info = cluster.up(workers=3, port=cluster.free_port(), dashboard_port=cluster.free_port(), state_file=state)
    try:
        assert (fake_ray / "order").read_text().split() == ["head", "worker", "worker", "worker"]
        logs = sorted(p.name for p in (state.parent / "logs").iterdir())
        assert logs == ["head.log", "worker1.log", "worker2.log", "worker3.log"]
        assert not any("Address already in use" in (state.parent / "logs" / n).read_text() for n in logs)
    finally:
        assert cluster.down(state) >= 4
    assert info.address.startswith("127.0.0.1:")


def test_a_node_that_does_not_start_stops_the_others_and_names_its_log(fake_ray, monkeypatch):
    monkeypatch.setenv("FAKE_RAY_DIES", "1")
    monkeypatch.setenv("FAKE_RAY_START_S", "0.2")
    state = fake_ray / "state" / "cluster.json"
    with pytest.raises(HpsearchError, match=r"exited with code 1; see .*head\.log"):
        cluster.up(workers=1, port=cluster.free_port(), dashboard_port=cluster.free_port(), state_file=state)
    assert not state.exists()
    assert not os.path.exists(fake_ray / "starting")


def test_waiting_for_a_node_gives_up_with_its_log(tmp_path):
    log = tmp_path / "worker1.log"
    log.write_text("Local node IP: 127.0.0.1\n")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(HpsearchError, match="did not start its node in 1 s"):
            cluster._wait_started(proc, log, timeout_s=1)
    finally:
        proc.kill()
        proc.wait()


NODE = """\
import os, signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
child.stdout.readline()  # its handlers are set
def stop(*_):  # as `ray start --block` does: its node's processes are stopped in order
    time.sleep(0.5)  # its own shutdown first: a SIGTERM sent to everyone at once reaches the child before this
    child.send_signal(signal.SIGUSR1)
    child.wait()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print(child.pid, flush=True)
time.sleep(600)
"""
NODE_PROCESS = """\
import signal, sys, time
def drain(*_):  # a SIGTERM of its own: it waits for its peers from now on (only SIGKILL ends it)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
signal.signal(signal.SIGTERM, drain)
def ended(*_):
    open(sys.argv[1], "w").write("ended by its node")
    sys.exit(0)
signal.signal(signal.SIGUSR1, ended)
print("ready", flush=True)
time.sleep(600)
"""


def test_down_asks_each_node_to_stop_its_processes_before_signalling_them(tmp_path):
    """Ray's processes given SIGTERM all at once wait on each other until the SIGKILL (cluster down took 21 s
    for a head and a worker); a node's `ray start` given it first stops them in order (4 s)."""
    import psutil

    marker = tmp_path / "ended"
    node = subprocess.Popen([sys.executable, "-c", NODE, NODE_PROCESS, str(marker)], stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(node.stdout.readline()))
        records = [cluster._record(psutil.Process(node.pid), node=True), cluster._record(child)]
        assert cluster._stop(records, with_children=True, timeout_s=6) == 2
        assert marker.read_text() == "ended by its node"  # not SIGKILLed after a SIGTERM of its own
        assert node.wait(5) == 0
    finally:
        node.kill()
