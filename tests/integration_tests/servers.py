"""`hpsearch ui` as a user runs it: started, read until it prints an experiment's link, stopped with
Ctrl-C, and checked to leave no server process behind."""

import signal
import socket
import subprocess
import time
from contextlib import contextmanager

import psutil

from tests.conftest import start_hpsearch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_processes(port: int) -> list:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "mlflow" in " ".join(cmd) and "--port" in cmd and str(port) in cmd:
            found.append(proc)
    return found


@contextmanager
def running_ui(*args, cwd, experiment: str, timeout_s: float = 150):
    """Yield ``(port, lines)``: what `hpsearch ui ARGS` printed up to the link of ``experiment``."""
    port = free_port()
    proc = start_hpsearch("ui", *args, "--port", port, cwd=cwd, stderr=subprocess.STDOUT)
    try:
        lines: list[str] = []
        deadline = time.time() + timeout_s
        while not any(line.startswith(f"  {experiment}: http://") for line in lines):
            line = proc.stdout.readline()
            assert line and time.time() < deadline, "".join(lines)
            lines.append(line)
        yield port, lines
        assert server_processes(port)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0
        deadline = time.time() + 30
        while server_processes(port) and time.time() < deadline:
            time.sleep(0.5)
        assert not server_processes(port), "the mlflow server outlived hpsearch ui"
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
        for leftover in server_processes(port):
            leftover.kill()
