"""Helpers the tests share: paths, writing specs, running the CLI as a real process, a stand-in Tune trial."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def fake_trial(trial_id: str, **config) -> SimpleNamespace:
    """What the ledger reads of a Tune ``Trial``: its id, config and error files (none)."""
    return SimpleNamespace(trial_id=trial_id, config=config, pickled_error_file=None, error_file=None)


def write_spec(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cli_env(extra: dict | None = None) -> dict:
    """The environment of a CLI process: this checkout importable (test helper trainables too)."""
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT), **(extra or {})}


def hpsearch(*args, cwd=None, env=None, timeout=300):
    """Run ``hpsearch ARGS`` as a user would (a real process); return the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
    )


def start_hpsearch(*args, cwd, stderr=None, env=None):
    """Start ``hpsearch ARGS`` in the background, its progress lines readable from ``stdout``."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "hpsearch", *map(str, args)],
        cwd=cwd,
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=stderr or subprocess.PIPE,
        text=True,
    )


def apt_install(package: str) -> None:
    """Install a Debian package for a test that needs a real program (chromium, postgresql)."""
    import os
    import subprocess

    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", package], check=True, env=env, timeout=900)


def kill_driver_when(driver, ready, timeout_s: float, settle_s: float = 0.0, stuck: str = "the search got nowhere"):
    """Once ``ready()`` (the driver still running), wait ``settle_s`` and kill -9 the driver and every
    process it started (its local Ray), by pid; if it never gets there, fail saying ``stuck``."""
    import signal
    import time

    import psutil

    from hpsearch.cluster import signal_all

    tree: list = []
    try:
        deadline = time.time() + timeout_s
        while not ready():
            assert time.time() < deadline and driver.poll() is None, stuck
            time.sleep(0.1)
        time.sleep(settle_s)
        tree = psutil.Process(driver.pid).children(recursive=True)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            tree = psutil.Process(driver.pid).children(recursive=True)
            driver.kill()
        signal_all(tree, "kill")
        psutil.wait_procs(tree, timeout=30)


def untimed(history: list[dict]) -> list[dict]:
    """Reported metrics without the one that is a timing (``latency_ms``): what must repeat exactly."""
    return [{k: v for k, v in m.items() if k != "latency_ms"} for m in history]


def spec_problems(data: dict) -> list[str]:
    """The problems (``path: message``) a spec given as a mapping is refused with."""
    import pytest

    from hpsearch.errors import SpecError
    from hpsearch.spec import parse_spec

    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return [str(p) for p in info.value.problems]
