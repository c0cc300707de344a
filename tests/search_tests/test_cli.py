"""The CLI as users meet it: a real process, real exit codes, real files (or none)."""

import json
import os
from pathlib import Path

import pytest

from tests.helpers import QUICKSTART, hpsearch, start_hpsearch, write_spec


def ray_session_marker() -> str | None:
    latest = Path("/tmp/ray/session_latest")
    return os.path.realpath(latest) if latest.exists() else None


def test_validate_exit_codes(tmp_path, quickstart_data):
    ok = hpsearch("validate", QUICKSTART, cwd=tmp_path)
    assert ok.returncode == 0 and "valid" in ok.stdout
    quickstart_data["search"]["num_trials"] = -3
    quickstart_data["data"]["datset"] = "digits"
    bad = hpsearch("validate", write_spec(tmp_path / "bad.yaml", quickstart_data), cwd=tmp_path)
    assert bad.returncode == 2
    assert "search.num_trials: must be >= 1, got -3" in bad.stderr
    assert "data.datset: unknown key" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_usage_errors_exit_2(tmp_path):
    assert hpsearch("frobnicate", cwd=tmp_path).returncode == 2
    assert hpsearch("space", "sample", "mlp_basic", "-n", "0", cwd=tmp_path).returncode == 2
    missing = hpsearch("validate", tmp_path / "nope.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read spec file" in missing.stderr


def test_space_sample_prints_one_json_config_per_line(tmp_path):
    out = hpsearch("space", "sample", "mlp_basic", "-n", "50", "--seed", "1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    configs = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(configs) == 50
    assert {c["optimizer"] for c in configs} == {"sgd", "adam"}
    assert all(("optimizer.momentum" in c) == (c["optimizer"] == "sgd") for c in configs)
    again = hpsearch("space", "sample", "mlp_basic", "-n", "50", "--seed", "1", cwd=tmp_path)
    assert again.stdout == out.stdout
    from_spec = hpsearch("space", "sample", QUICKSTART, "-n", "3", cwd=tmp_path)
    assert from_spec.returncode == 0 and len(from_spec.stdout.splitlines()) == 3
    unknown = hpsearch("space", "sample", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown preset 'nope'" in unknown.stderr


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["search"].update(num_trials=0),
        lambda d: d.update(space="no_such_preset"),
        lambda d: d["data"].update(dataset="imagenet"),
        lambda d: d.update(trainable="os:system"),  # importable and callable, but not a trainable
        lambda d: d.update(data={"loader": "os.path:join", "args": {"root": "x"}}),
        lambda d: d.update(data={"dataset": "image_folder", "root": "no-such-folder"}),
    ],
)
def test_run_with_bad_input_starts_nothing(tmp_path, quickstart_data, edit):
    edit(quickstart_data)
    spec = write_spec(tmp_path / "spec.yaml", quickstart_data)
    before = ray_session_marker()
    result = hpsearch("run", spec, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "invalid job spec" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # no mlruns.db, no storage dir
    assert ray_session_marker() == before  # no Ray cluster started


def test_run_with_bad_tracking_uri_argument_starts_nothing(tmp_path):
    result = hpsearch("run", QUICKSTART, "--tracking-uri", "mlruns.db", cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "--tracking-uri: must start with one of" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_run_warm_started_from_an_experiment_that_is_not_there_starts_nothing(tmp_path):
    before = ray_session_marker()
    result = hpsearch("run", QUICKSTART, "--warm-start", "nope", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "search.warm_start: no experiment 'nope'" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [] and ray_session_marker() == before  # no store created, no Ray
    store = f"sqlite:///{tmp_path / 'other.db'}"
    from mlflow import MlflowClient

    MlflowClient(store).create_experiment("something-else")
    result = hpsearch("run", QUICKSTART, "--warm-start", "nope", "--tracking-uri", store, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "no experiment 'nope' in the tracking store" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"] and ray_session_marker() == before


def test_run_with_unreachable_mlflow_server_fails_fast(tmp_path):
    before = ray_session_marker()
    result = hpsearch("run", QUICKSTART, "--tracking-uri", "http://127.0.0.1:9", cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "MLflow server http://127.0.0.1:9 is not reachable" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [] and ray_session_marker() == before


@pytest.mark.slow
@pytest.mark.integration
def test_run_end_to_end_prints_progress_and_summary(tmp_path, quickstart_data):
    quickstart_data["search"].update(num_trials=4, max_concurrent=2)
    quickstart_data["search"]["scheduler"]["max_epochs"] = 3
    spec = write_spec(tmp_path / "spec.yaml", quickstart_data)
    result = hpsearch("run", spec, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("[") >= 4 and "[4/4]" in out  # one progress line per finished trial
    assert "best val_accuracy" in out and "wall time" in out and "completed" in out
    flat = out.replace("\n", "")
    assert "Review in MLflow: hpsearch ui, then open" in flat  # the store is the default one here
    assert "/#/experiments/1/runs?orderByKey=metrics.%60val_accuracy%60&orderByAsc=false" in flat
    assert "Report: hpsearch report quickstart-digits" in flat
    assert (tmp_path / "mlruns.db").is_file() and (tmp_path / "hpsearch_results").is_dir()
    assert "Configuration for experiment" not in out  # Ray's own banner is not shown


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_ends_the_search_cleanly(tmp_path, quickstart_data):
    import signal
    import time

    from mlflow import MlflowClient

    quickstart_data["search"]["num_trials"] = 200
    spec = write_spec(tmp_path / "spec.yaml", quickstart_data)
    proc = start_hpsearch("run", spec, cwd=tmp_path)
    try:
        first = proc.stdout.readline()  # the first finished trial: the search is under way
        assert first.startswith("[ ") or first.startswith("["), first
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert "search interrupted after" in err and "of 200 trials" in err
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    exp = client.get_experiment_by_name("quickstart-digits")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    (parent,) = [r for r in runs if r.data.tags["hpsearch.role"] == "search"]
    children = [r for r in runs if r.data.tags["hpsearch.role"] == "trial"]
    assert parent.info.status == "KILLED"
    assert 1 <= len(children) < 200
    assert all(c.info.status != "RUNNING" for c in children)  # nothing left dangling
    finished = [c for c in children if c.data.tags["hpsearch.trial_state"] in ("completed", "stopped_early")]
    assert finished and all(client.get_metric_history(c.info.run_id, "val_accuracy") for c in finished)


@pytest.mark.slow
@pytest.mark.integration
def test_a_tracking_store_that_cannot_be_opened_ends_the_search(tmp_path, quickstart_data):
    quickstart_data["search"].update(num_trials=4)
    spec = write_spec(tmp_path / "spec.yaml", quickstart_data)
    uri = "sqlite:////proc/hpsearch-nowhere/mlruns.db"  # /proc takes no new folders, even as root
    result = hpsearch("run", spec, "--tracking-uri", uri, "--quiet", cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert f"cannot use MLflow tracking store {uri}: FileNotFoundError" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_resume_from_a_storage_uri_that_cannot_be_read_is_one_line(tmp_path):
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens there
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    out = hpsearch("resume", "s3://no-bucket/searches/some-run", cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "cannot read s3://no-bucket/searches/some-run/hpsearch.json" in lines[0]


def test_the_cli_exits_with_an_idle_thread_pool_alive():
    """`hpsearch report` against an MLflow server hung after printing its report: MLflow had left an idle
    thread-pool worker, and the quick exit waited for it before telling the pool to end."""
    import subprocess
    import sys

    code = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "pool = ThreadPoolExecutor(2)\n"
        "assert pool.submit(lambda: 1).result() == 1\n"
        "from hpsearch.cli import exit_now\n"
        "exit_now(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr


def test_the_driver_child_continues_and_does_not_supervise_again():
    from hpsearch.supervise import child_args

    argv = ["run", "env:SPEC", "--address", "auto", "--run-name", "job-1", "--driver-restarts", "3"]
    assert child_args(argv) == ["run", "env:SPEC", "--address", "auto", "--run-name", "job-1", "--continue"]
    assert child_args(["run", "s.yaml", "--run-name", "x", "--continue", "--driver-restarts=2"]) == [
        "run", "s.yaml", "--run-name", "x", "--continue",
    ]  # fmt: skip


def test_continue_needs_a_run_name_and_leaves_a_finished_search_alone(tmp_path):
    from hpsearch import rundir
    from tests.helpers import QUICKSTART, hpsearch

    for flag in (["--continue"], ["--driver-restarts", "2"]):
        out = hpsearch("run", QUICKSTART, *flag, cwd=tmp_path)
        assert out.returncode == 2 and f"{flag[0]}: needs --run-name" in out.stderr, out.stderr
    meta = rundir.RunMeta(QUICKSTART.read_text(), f"sqlite:///{tmp_path / 'm.db'}", "1", "abc", status="FINISHED")
    rundir.write_meta(str(tmp_path / "runs" / "job-1"), meta)
    out = hpsearch("run", QUICKSTART, "--storage", tmp_path / "runs", "--run-name", "job-1", "--continue", cwd=tmp_path)
    assert out.returncode == 0 and "has finished; nothing to continue" in out.stdout, out.stderr
    assert not (tmp_path / "m.db").exists()  # nothing started


def test_sigterm_twice_interrupts_once():
    """Ray signals every process of a stopped job, and the driver's supervisor passes SIGTERM on as well:
    the driver is interrupted once, not again while it writes what it has."""
    import subprocess
    import sys

    code = (
        "import os, signal, time\n"
        "from hpsearch.cli.searches import interrupt_once\n"
        "signal.signal(signal.SIGTERM, interrupt_once)\n"
        "interrupts = 0\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(0.5)\n"
        "    except KeyboardInterrupt:\n"
        "        interrupts += 1\n"
        "print(interrupts)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "1", done.stdout + done.stderr
