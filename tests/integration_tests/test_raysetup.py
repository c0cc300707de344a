"""What hpsearch reads of a live Ray cluster before a search starts."""

import pytest

pytestmark = pytest.mark.integration


def test_the_autoscaler_config_is_read_where_ray_keeps_it(ray_session):
    """The one private Ray API hpsearch reads (no public one exists): fails loudly if an upgrade moves it."""
    from ray._private import state

    from hpsearch.raysetup import autoscaling_groups, cluster_view

    assert hasattr(state.state, "get_cluster_config"), "Ray moved get_cluster_config: see hpsearch/raysetup.py"
    assert autoscaling_groups() == []  # a local Ray has no autoscaler
    view = cluster_view()
    assert len(view.nodes) == 1 and view.nodes[0][1]["CPU"] >= 1 and view.groups == []


EARLY = """
import os, signal, sys, time
handler = lambda *_: None
signal.signal(signal.SIGTERM, handler)
from hpsearch import raysetup
raysetup.start_early(None, num_cpus=1)
import ray
raysetup.init_ray(None, num_cpus=1)
time.sleep(2)  # Ray's processes outlive the thread's call (they die with the thread that started them)
print("nodes", sum(n["Alive"] for n in ray.nodes()))
print("task", ray.get(ray.remote(lambda: os.getpid()).remote()) != os.getpid())
print("sigterm kept", signal.getsignal(signal.SIGTERM) is handler)
import psutil
ray_processes = psutil.Process().children(recursive=True)
commands = " ".join(" ".join(p.cmdline()) for p in ray_processes)
# a local search's Ray: no dashboard API server, autoscaler monitor or log monitor (issue 26)
print("lean", [name for name in ("dashboard.py", "autoscaler/_private/monitor.py", "log_monitor.py") if name in commands])
raysetup.release_early()  # the search is over: Ray stops in the background
deadline = time.time() + 60
while ray.is_initialized() and time.time() < deadline:
    time.sleep(0.1)
print("released", not ray.is_initialized())
gone, alive = psutil.wait_procs(ray_processes, timeout=30)
print("processes left", [p.name() for p in alive])
"""


def test_ray_started_early_in_a_thread_stays_up_and_leaves_the_sigterm_handler(tmp_path):
    """`hpsearch run` starts Ray in a background thread while it imports the rest: Ray's processes must
    live on after that thread's ``ray.init`` returned, and the CLI's SIGTERM handler must stay. When
    the search is over, that Ray stops in the background, every process of it."""
    import subprocess
    import sys

    from tests.helpers import cli_env

    done = subprocess.run(
        [sys.executable, "-c", EARLY], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.split("\n")
    assert lines[:6] == [
        "nodes 1",
        "task True",
        "sigterm kept True",
        "lean []",
        "released True",
        "processes left []",
    ], done.stdout + done.stderr
    assert "SIGTERM handler is not set" not in done.stderr


LOGS = """
import os, sys, time
from hpsearch import raysetup
import ray, psutil
class Seen:  # what Ray forwards lands on this process's sys.stdout/stderr: recorded, to wait for it
    def __init__(self, stream):
        self.stream, self.text = stream, ""
    def write(self, text):
        self.text += text
        return self.stream.write(text)
    def __getattr__(self, name):
        return getattr(self.stream, name)
sys.stdout, sys.stderr = Seen(sys.stdout), Seen(sys.stderr)
raysetup.init_ray(None, num_cpus=1, log_to_driver=True)
ray.get(ray.remote(lambda: print("hello from a worker", flush=True)).remote())
deadline = time.time() + 60  # the log monitor polls the worker's log file, then publishes it
while time.time() < deadline and not any("hello from a worker" in s.text for s in (sys.stdout, sys.stderr)):
    time.sleep(0.1)
commands = " ".join(" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True))
print("log monitor", "log_monitor.py" in commands, "dashboard", "dashboard.py" in commands, flush=True)
ray.shutdown()
"""


def test_with_ray_logs_the_local_ray_keeps_its_log_monitor_and_worker_output_reaches_the_driver(tmp_path):
    """``--ray-logs`` (``log_to_driver``) needs the log monitor the lean local head leaves out otherwise."""
    import subprocess
    import sys

    from tests.helpers import cli_env

    done = subprocess.run(
        [sys.executable, "-c", LOGS], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "log monitor True dashboard False" in done.stdout, done.stdout + done.stderr
    assert "hello from a worker" in done.stdout + done.stderr
