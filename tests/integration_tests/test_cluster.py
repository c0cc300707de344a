"""Search jobs on a real multi-node Ray cluster (head + worker, `ray start` processes on 127.0.0.1),
driven through the CLI, as a user would; every process is stopped by pid."""

import re
import time

import psutil
import pytest
from mlflow import MlflowClient

from tests.helpers import hpsearch as run_cli
from tests.helpers import write_spec
from tests.integration_tests.servers import wait_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DASHBOARD = "http://127.0.0.1:8266"


HOME = {}  # the cluster's own home: its auth token and state file, as on a fresh machine


def hpsearch(*args, env=None, timeout=300, cwd=None):
    return run_cli(*args, env={**HOME, **(env or {})}, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    HOME["HOME"] = str(home)  # no ~/.ray/auth_token yet: `cluster up` makes one and turns token auth on
    state = home / ".hpsearch" / "cluster.json"
    up = hpsearch(
        "cluster",
        "up",
        "--workers",
        "1",
        "--num-cpus",
        "1",
        "--port",
        "6391",
        "--dashboard-port",
        "8266",
        "--state-file",
        state,
    )
    assert up.returncode == 0, up.stderr + up.stdout
    assert up.stdout.strip().splitlines()[-1] == DASHBOARD
    assert (home / ".ray" / "auth_token").is_file()
    import json

    pids = [(p["pid"], p["create_time"]) for p in json.loads(state.read_text())["processes"]]
    yield state
    down = hpsearch("cluster", "down", "--state-file", state)
    assert down.returncode == 0, down.stderr
    for pid, created in pids:  # every process `up` started is gone
        assert not (psutil.pid_exists(pid) and abs(psutil.Process(pid).create_time() - created) < 0.01)
    HOME.clear()


def small_spec(tmp_path, quickstart_data, name, trials, epochs=3):
    quickstart_data["name"] = name
    quickstart_data["search"]["num_trials"] = trials
    quickstart_data["search"]["scheduler"]["max_epochs"] = epochs
    return write_spec(tmp_path / f"{name}.yaml", quickstart_data)


def wait_status(job, until, timeout=240):
    return wait_job(job, until, DASHBOARD, env=HOME, timeout=timeout)


def runs(uri, name):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    found = client.search_runs([exp.experiment_id], max_results=1000)
    parent = [r for r in found if r.data.tags["hpsearch.role"] == "search"]
    return client, parent, [r for r in found if r.data.tags["hpsearch.role"] == "trial"]


def test_submitted_search_runs_trials_on_both_nodes(cluster, tmp_path, quickstart_data):
    spec = small_spec(tmp_path, quickstart_data, "cluster-digits", trials=8)
    sub = hpsearch("submit", spec, "--address", DASHBOARD, cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip().splitlines()[-1]
    assert job.startswith("hpsearch-cluster-digits-")
    final = wait_status(job, lambda s: any(k in s for k in ("SUCCEEDED", "FAILED", "STOPPED")))
    assert "SUCCEEDED" in final and "trials done 8/8" in final, final

    client, parent, children = runs(f"sqlite:///{tmp_path / 'mlruns.db'}", "cluster-digits")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED" and len(children) == 8
    nodes = {c.data.tags["hpsearch.node_id"] for c in children}
    assert len(nodes) == 2  # head and worker both ran trials
    assert all(c.data.tags["hpsearch.device"] == "cpu" for c in children)
    assert all(client.get_metric_history(c.info.run_id, "val_accuracy") for c in children)

    listing = hpsearch("list", "--address", DASHBOARD)
    assert listing.returncode == 0 and job in listing.stdout and "8/8" in listing.stdout
    logs = hpsearch("logs", job, "--address", DASHBOARD)
    assert "[8/8]" in logs.stdout and "best val_accuracy" in logs.stdout


PACED = """import time

from hpsearch.trainables.loop import train_mlp


def fit(config, data, epochs, report, seed=0, resume=None, checkpoint_every=0):
    def paced(metrics, state=None):
        time.sleep(0.3)  # epochs of a real length: the stop must land while trials remain, however fast digits trains
        report(metrics) if state is None else report(metrics, state)

    return train_mlp(config, data, epochs, paced, seed, resume=resume, checkpoint_every=checkpoint_every)
"""


def test_stop_mid_search_keeps_the_trials_done_and_resume_finishes_it(cluster, tmp_path, quickstart_data):
    (tmp_path / "paced").mkdir()
    (tmp_path / "paced" / "__init__.py").write_text("")
    (tmp_path / "paced" / "train.py").write_text(PACED)
    quickstart_data["trainable"] = "paced.train:fit"
    spec = small_spec(tmp_path, quickstart_data, "cluster-stop", trials=30, epochs=6)
    job = hpsearch("submit", spec, "--address", DASHBOARD, cwd=tmp_path).stdout.strip().splitlines()[-1]
    wait_status(job, lambda s: int((re.search(r"trials done (\d+)/", s) or [0, "0"])[1]) >= 3)
    stop = hpsearch("stop", job, "--address", DASHBOARD)
    assert stop.returncode == 0 and stop.stdout.strip().endswith("STOPPED"), stop.stdout + stop.stderr

    client, (parent,), children = runs(f"sqlite:///{tmp_path / 'mlruns.db'}", "cluster-stop")
    assert parent.info.status == "KILLED"
    assert 2 <= len(children) < 300
    assert all(c.info.status != "RUNNING" for c in children)
    done = [c for c in children if c.data.tags["hpsearch.trial_state"] in ("completed", "stopped_early")]
    assert len(done) >= 2 and all(client.get_metric_history(c.info.run_id, "val_loss") for c in done)

    resumed = hpsearch("resume", job, "--address", DASHBOARD)
    assert resumed.returncode == 0, resumed.stderr
    again = resumed.stdout.strip().splitlines()[-1]
    final = wait_status(again, lambda s: any(k in s for k in ("SUCCEEDED", "FAILED", "STOPPED")))
    assert "SUCCEEDED" in final and "trials done 30/30" in final, final
    client, (parent,), children = runs(f"sqlite:///{tmp_path / 'mlruns.db'}", "cluster-stop")
    assert parent.info.status == "FINISHED"
    assert len(children) == 30 == len({c.data.tags["hpsearch.trial_id"] for c in children})
    assert {c.info.run_id for c in done} <= {c.info.run_id for c in children}  # kept, not re-run


def test_bad_spec_is_not_submitted(cluster, tmp_path, quickstart_data):
    quickstart_data["name"] = "never-submitted"
    quickstart_data["search"]["num_trials"] = 0
    bad = hpsearch("submit", write_spec(tmp_path / "bad.yaml", quickstart_data), "--address", DASHBOARD)
    assert bad.returncode == 2 and "search.num_trials" in bad.stderr
    assert "never-submitted" not in hpsearch("list", "--address", DASHBOARD).stdout


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}, "invalid"),
        ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/nonexistent/token"}, "RAY_AUTH_TOKEN_PATH"),
        ({"RAY_AUTH_MODE": "disabled"}, "token"),
    ],
)
def test_a_client_without_the_token_gets_one_clear_line(cluster, env, reason):
    out = hpsearch("list", "--address", DASHBOARD, env=env)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "RAY_AUTH_MODE=token" in lines[0] and reason.lower() in lines[0].lower()


def test_cluster_requests_it_can_never_satisfy_fail_fast(cluster, tmp_path, quickstart_data):
    quickstart_data["resources"] = {"cpu": 1, "gpu": 1}
    spec = small_spec(tmp_path, quickstart_data, "needs-gpu", trials=2)
    started = time.time()
    out = hpsearch("run", spec, "--address", "127.0.0.1:6391", cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "no trial could ever start" in out.stderr, out.stderr
    assert "resources.gpu: each trial asks for cpu=1, gpu=1" in out.stderr, out.stderr
    assert time.time() - started < 60
    assert not (tmp_path / "hpsearch_results").exists()  # refused before anything was written
    db = tmp_path / "mlruns.db"
    assert not db.exists() or MlflowClient(f"sqlite:///{db}").get_experiment_by_name("needs-gpu") is None


def test_a_custom_trainable_travels_with_the_job(cluster, tmp_path):
    (tmp_path / "mymodels").mkdir()
    (tmp_path / "mymodels" / "__init__.py").write_text("")
    (tmp_path / "mymodels" / "train.py").write_text(
        "from hpsearch.trainables.loop import train_model\n\n"
        "def fit(config, data, epochs, report, seed=0):\n"
        "    return train_model('mlp', {'units': config['width']}, data, epochs, report, seed)\n"
    )
    spec = write_spec(
        tmp_path / "spec.yaml",
        {
            "name": "cluster-custom",
            "trainable": "mymodels.train:fit",
            "data": {"dataset": "digits"},
            "space": {"width": {"choice": [16, 32]}},
            "search": {"num_trials": 2, "max_concurrent": 2, "scheduler": {"max_epochs": 2}},
        },
    )
    sub = hpsearch("submit", spec, "--address", DASHBOARD, cwd=tmp_path)  # the module is only here
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip().splitlines()[-1]
    final = wait_status(job, lambda s: any(k in s for k in ("SUCCEEDED", "FAILED", "STOPPED")))
    assert "SUCCEEDED" in final and "trials done 2/2" in final, final
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client, _, children = runs(uri, "cluster-custom")
    assert sorted(c.data.params["width"] for c in children) in (["16", "32"], ["16", "16"], ["32", "32"])

    # retrain on the cluster (a job: its trainable module came with the search's job), from elsewhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    retrained = hpsearch("retrain", "cluster-custom", "--address", DASHBOARD, "--tracking-uri", uri, "--top-k", "1",
                         "--seeds", "1", cwd=elsewhere)  # fmt: skip
    assert retrained.returncode == 0, retrained.stdout[-2000:] + retrained.stderr[-2000:]
    assert "test_accuracy" in retrained.stdout and "SUCCEEDED" in retrained.stderr
    exp = client.get_experiment_by_name("cluster-custom")
    (run,) = client.search_runs([exp.experiment_id], "tags.`hpsearch.role` = 'retrain'")
    assert run.data.tags["hpsearch.device"] == "cpu" and "test_accuracy" in run.data.metrics


@pytest.mark.faults
def test_a_killed_job_driver_is_continued_by_the_job_itself(cluster, tmp_path, quickstart_data):
    """The job's driver (the process that holds the search's lock) killed with kill -9 mid-search: the
    job continues the search in a new driver by itself and ends SUCCEEDED, every trial once, none RUNNING."""
    import json
    import os
    import signal

    import psutil

    (tmp_path / "paced").mkdir()
    (tmp_path / "paced" / "__init__.py").write_text("")
    (tmp_path / "paced" / "train.py").write_text(PACED)
    quickstart_data["trainable"] = "paced.train:fit"
    spec = small_spec(tmp_path, quickstart_data, "cluster-driver-lost", trials=16, epochs=6)
    sub = hpsearch("submit", spec, "--address", DASHBOARD, "--storage", tmp_path / "jobs", cwd=tmp_path)
    job = sub.stdout.strip().splitlines()[-1]
    wait_status(job, lambda s: int((re.search(r"trials done (\d+)/", s) or [0, "0"])[1]) >= 3)
    holder = json.loads((tmp_path / "jobs" / job / ".hpsearch.lock").read_text())
    driver = psutil.Process(holder["pid"])
    assert holder["command"] == "run" and "--continue" in driver.cmdline(), driver.cmdline()
    os.kill(driver.pid, signal.SIGKILL)
    final = wait_status(job, lambda s: any(k in s for k in ("SUCCEEDED", "FAILED", "STOPPED")), timeout=400)
    assert "SUCCEEDED" in final and "trials done 16/16" in final, final
    logs = hpsearch("logs", job, "--address", DASHBOARD).stdout
    assert "the search's driver died (SIGKILL); continuing the search in a new one (restart 1 of 3)" in logs, logs
    assert "continuing the unfinished search in" in logs

    client, (parent,), children = runs(f"sqlite:///{tmp_path / 'mlruns.db'}", "cluster-driver-lost")
    assert parent.info.status == "FINISHED"
    assert len(children) == 16 == len({c.data.tags["hpsearch.trial_id"] for c in children})  # no trial twice
    assert all(c.info.status != "RUNNING" for c in children), [c.info.status for c in children]
    for c in children:  # every epoch it reported, once
        steps = sorted(m.step for m in client.get_metric_history(c.info.run_id, "val_accuracy"))
        assert steps == list(range(1, int(c.data.tags["hpsearch.epochs"]) + 1)), steps
