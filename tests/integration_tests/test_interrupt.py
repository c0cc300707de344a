"""SIGTERM (what `ray job stop`, a scheduler or `kill` sends) ends a local search the way Ctrl-C does:
the trials done are kept, the others end, the summary says how to resume. Ray's ``ray.init`` in the
main thread replaces the SIGTERM handler with ``sys.exit``; the search then ended FAILED, without a
summary (found while moving Ray's start to a thread; both paths keep hpsearch's handler now)."""

import signal

import pytest
from mlflow import MlflowClient

from tests.helpers import start_hpsearch, write_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_sigterm_interrupts_a_local_search_like_ctrl_c(tmp_path, quickstart_data):
    quickstart_data["name"] = "sigterm-digits"
    quickstart_data["search"]["num_trials"] = 400  # more than can finish before the signal
    spec = write_spec(tmp_path / "spec.yaml", quickstart_data)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    driver = start_hpsearch("run", spec, "--tracking-uri", uri, cwd=tmp_path)
    try:
        for _ in range(5):  # a few trials in
            line = driver.stdout.readline()
            assert line.startswith("["), line
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 1, err[-3000:]
    assert "search interrupted after" in err and "hpsearch resume" in err, err[-3000:]
    assert "best val_accuracy" in out, out[-3000:]  # the summary was printed
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sigterm-digits")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags["hpsearch.role"] == "search"]
    assert parent.info.status == "KILLED", parent.data.tags
    trials = [r for r in runs if r.data.tags["hpsearch.role"] == "trial"]
    assert 5 <= len(trials) < 400
    assert not [r.data.tags["hpsearch.trial"] for r in trials if r.info.status == "RUNNING"]
