"""`hpsearch submit` to a cluster whose `python` cannot import hpsearch (Ray started from another
environment): one line that says what to do, exit 1, and no search job on the cluster."""

import os
import shutil

import pytest

from hpsearch import cluster
from tests.helpers import hpsearch, write_spec
from tests.integration_tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_submit_to_a_cluster_whose_python_lacks_hpsearch_submits_nothing(tmp_path, monkeypatch, quickstart_data):
    system_python = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    if system_python is None:
        pytest.skip("no system python3 to stand for another environment")
    fake_bin = tmp_path / "other-env" / "bin"
    fake_bin.mkdir(parents=True)
    (fake_bin / "python").symlink_to(system_python)  # the cluster's `python`: no hpsearch there
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    node_env = cluster._env

    def other_env() -> dict:
        env = node_env()
        env["PATH"] = f"{fake_bin}{os.pathsep}{env['PATH']}"
        return env

    monkeypatch.setattr(cluster, "_env", other_env)
    state = home / ".hpsearch" / "cluster.json"
    info = cluster.up(workers=0, num_cpus=1, port=free_port(), dashboard_port=free_port(), state_file=state)
    try:
        spec = write_spec(tmp_path / "spec.yaml", quickstart_data)
        sub = hpsearch("submit", spec, "--address", info.dashboard, cwd=tmp_path, env={"HOME": str(home)})
        assert sub.returncode == 1, sub.stdout + sub.stderr
        message = sub.stderr.strip()
        assert message.count("\n") == 0, message  # one line
        assert "No module named 'hpsearch'" in message and "install hpsearch" in message
        assert "nothing was submitted" in message
        listed = hpsearch("list", "--address", info.dashboard, env={"HOME": str(home)})
        assert listed.returncode == 0 and "hpsearch-quickstart" not in listed.stdout
    finally:
        cluster.down(state)
