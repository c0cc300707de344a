"""Real servers the integration tests start on 127.0.0.1 and stop by their own pids: `hpsearch ui` as a
user runs it (read until it prints an experiment's link, stopped with Ctrl-C, no server process left
behind) and PostgreSQL."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager

import psutil

from tests.helpers import apt_install, hpsearch, start_hpsearch


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


def _bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        apt_install("postgresql")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL is not installed and could not be installed with apt-get"
    return os.path.dirname(found[-1])


@contextmanager
def running_postgres(user: str = "postgres", database: str = "mlflow", password: str | None = None):
    """A real PostgreSQL server on 127.0.0.1, a database owned by ``user``; yields its URI (without a
    password). Trust auth, or with ``password``: TCP connections must give it (scram-sha-256).
    Stopped by the postmaster's own pid."""
    bindir = _bindir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
    folder = tempfile.mkdtemp(prefix="hpsearch-pg-")
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    data = os.path.join(folder, "data")
    subprocess.run(
        [*as_postgres, f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth-local=trust"]
        + (["--auth-host=scram-sha-256"] if password else ["--auth-host=trust"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [*as_postgres, f"{bindir}/postgres", "-D", data, "-p", str(port), "-h", "127.0.0.1", "-k", folder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while subprocess.run(
            [f"{bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode:
            assert time.time() < deadline and server.poll() is None, "PostgreSQL did not start"
            time.sleep(0.3)
        where = ["-h", folder, "-p", str(port), "-U", "postgres"]  # the Unix socket: trusted
        if user != "postgres":
            subprocess.run([f"{bindir}/createuser", *where, user], check=True)
        subprocess.run([f"{bindir}/createdb", *where, "-O", user, database], check=True)
        if password:
            sql = f"ALTER USER {user} PASSWORD '{password}'"
            subprocess.run([f"{bindir}/psql", *where, "-d", database, "-c", sql], check=True, capture_output=True)
        yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
    finally:
        pid_file = os.path.join(data, "postmaster.pid")
        if os.path.exists(pid_file):  # the postmaster's own pid (runuser forks it)
            with open(pid_file) as f:
                os.kill(int(f.readline()), signal.SIGINT)  # fast shutdown
        server.wait(60)
        shutil.rmtree(folder, ignore_errors=True)


def wait_job(job: str, until, address: str, env: dict | None = None, timeout: float = 240) -> str:
    """Poll `hpsearch status JOB` until ``until(its output)``; return that output."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = hpsearch("status", job, "--address", address, env=env)
        assert out.returncode == 0, out.stderr
        if until(out.stdout):
            return out.stdout
        time.sleep(1.0)
    raise AssertionError(f"job {job} did not get there in {timeout} s: {out.stdout}")
