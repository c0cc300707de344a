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


class Postgres:
    """A real PostgreSQL server on 127.0.0.1 that a test can kill -9 (the postmaster and every backend,
    by their own pids) and start again on the same data (it recovers from its WAL, as after a crash)."""

    def __init__(self, user: str = "postgres", database: str = "mlflow", password: str | None = None):
        self.bindir = _bindir()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # initdb refuses root
        self.folder = tempfile.mkdtemp(prefix="hpsearch-pg-")
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = os.path.join(self.folder, "data")
        self.port = free_port()
        self.server: subprocess.Popen[bytes] | None = None
        self.user, self.database, self.password = user, database, password
        self.uri = f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def create(self) -> None:
        subprocess.run(
            [*self.as_postgres, f"{self.bindir}/initdb", "-D", self.data, "-U", "postgres", "--auth-local=trust"]
            + (["--auth-host=scram-sha-256"] if self.password else ["--auth-host=trust"]),
            check=True,
            capture_output=True,
        )
        self.start()
        where = ["-h", self.folder, "-p", str(self.port), "-U", "postgres"]  # the Unix socket: trusted
        if self.user != "postgres":
            subprocess.run([f"{self.bindir}/createuser", *where, self.user], check=True)
        subprocess.run([f"{self.bindir}/createdb", *where, "-O", self.user, self.database], check=True)
        if self.password:
            sql = f"ALTER USER {self.user} PASSWORD '{self.password}'"
            subprocess.run(
                [f"{self.bindir}/psql", *where, "-d", self.database, "-c", sql], check=True, capture_output=True
            )

    def start(self) -> float:
        """Start it (again) and wait until it takes connections; the seconds that took."""
        started = time.time()
        self.server = subprocess.Popen(
            [*self.as_postgres, f"{self.bindir}/postgres", "-D", self.data, "-p", str(self.port), "-h", "127.0.0.1",
             "-k", self.folder],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.time() + 60
        while subprocess.run(
            [f"{self.bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
        ).returncode:
            assert time.time() < deadline and self.server.poll() is None, "PostgreSQL did not start"
            time.sleep(0.3)
        return time.time() - started

    def postmaster(self):
        import psutil

        pid_file = os.path.join(self.data, "postmaster.pid")
        with open(pid_file) as f:
            return psutil.Process(int(f.readline()))

    def kill(self) -> int:
        """kill -9 of the postmaster and all its backends (no shutdown, no checkpoint); how many."""
        import psutil

        postmaster = self.postmaster()
        victims = [postmaster, *postmaster.children(recursive=True)]
        for proc in victims:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=30)
        assert self.server is not None
        self.server.wait(30)
        return len(victims)

    def stop(self) -> None:
        try:
            os.kill(self.postmaster().pid, signal.SIGINT)  # fast shutdown, by the postmaster's own pid
        except (OSError, ValueError, Exception):
            pass
        if self.server is not None:
            self.server.wait(60)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def running_postgres(user: str = "postgres", database: str = "mlflow", password: str | None = None):
    """A real PostgreSQL server on 127.0.0.1, a database owned by ``user``; yields its URI (without a
    password). Trust auth, or with ``password``: TCP connections must give it (scram-sha-256).
    Stopped by the postmaster's own pid."""
    server = Postgres(user, database, password)
    try:
        server.create()
        yield server.uri
    finally:
        server.stop()


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


@contextmanager
def moto_s3(buckets: tuple[str, ...] = (), secret_key: str = "test-secret"):
    """An S3 server (moto's, which takes any key) on 127.0.0.1 with ``buckets``; yields the ``AWS_*``
    environment that reaches it with ``secret_key``. Stopped afterwards."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "AKIAHPSEARCHTEST",
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        client = boto3.client(
            "s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="x", aws_secret_access_key="y",
            region_name="us-east-1",
        )  # fmt: skip
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield env
    finally:
        server.stop()
