"""Reviewing a finished search: the parent run's report artifacts, `hpsearch report`, `hpsearch retrain`
and `hpsearch ui` loaded in a real headless Chromium. One real search (CLI, real Ray, Optuna, MLflow)."""

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from hpsearch.spec import load_spec
from hpsearch.tracking.labels import run_name
from tests.helpers import QUICKSTART, apt_install, hpsearch, write_spec
from tests.integration_tests.servers import running_ui

pytestmark = [pytest.mark.slow, pytest.mark.integration]
NAME, TRIALS, EPOCHS = "review-digits", 12, 3
METRICS = ("train_loss", "val_loss", "val_accuracy", "lr")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """A finished 12-trial quickstart-style search on digits, run through the CLI."""
    folder = tmp_path_factory.mktemp("review")
    data = yaml.safe_load(QUICKSTART.read_text())
    data["name"] = NAME
    data["search"].update(num_trials=TRIALS, max_concurrent=2)
    data["search"]["sampler"]["n_startup_trials"] = 6
    data["search"]["scheduler"]["max_epochs"] = EPOCHS
    spec_path = write_spec(folder / "spec.yaml", data)
    result = hpsearch("run", spec_path, "--quiet", cwd=folder)
    assert result.returncode == 0, result.stderr
    uri = f"sqlite:///{folder / 'mlruns.db'}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(NAME)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags["hpsearch.role"] == "search"]
    children = [r for r in runs if r.data.tags["hpsearch.role"] == "trial"]
    return {
        "folder": folder,
        "uri": uri,
        "client": client,
        "exp": exp,
        "parent": parent,
        "children": children,
        "spec": load_spec(spec_path),
        "stdout": result.stdout,
    }


def test_child_runs_are_named_by_their_choices_and_keep_every_point(search):
    client, children, spec = search["client"], search["children"], search["spec"]
    assert len(children) == TRIALS
    for child in children:
        tags = child.data.tags
        config = json.loads(tags["hpsearch.config"])
        assert child.info.run_name == run_name(tags["hpsearch.trial"], config, spec.search_space)
        assert re.match(r"t0\d\d [a-z_]+ (sgd|adam) lr=", child.info.run_name), child.info.run_name
        assert tags["hpsearch.trial_id"] and tags["hpsearch.node_id"] and tags["hpsearch.device"] == "cpu"
        # how the trial used its device, as decided in its process (trainables.device)
        assert tags["hpsearch.runtime.amp"] == config.get("amp", "none"), tags
        assert "hpsearch.runtime.gpu" not in tags  # a CPU trial: no GPU decisions to record
        epochs = int(tags["hpsearch.epochs"])
        for key in METRICS:  # every reported epoch of every trial, by count
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            assert sorted(steps) == list(range(1, epochs + 1)), (child.info.run_name, key)


def test_parent_run_holds_the_report(search):
    client, parent = search["client"], search["parent"]
    out = search["stdout"]  # the summary first; the report is made after it, and says so
    assert out.index(f"Report: hpsearch report {NAME}") < out.index(
        f"report written: report/ of parent run {parent.info.run_id}"
    )
    files = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    plots = [
        "optimization_history",
        "param_importance",
        "marginals",
        "marginals_by_rung",
        "learning_curves",
        "asha_rungs",
    ]
    for name in plots:
        assert f"report/{name}.png" in files
    for name in ("report.json", "top_trials.csv", "marginals.csv", "param_importance.csv", "asha_rungs.csv"):
        assert f"report/{name}" in files
    folder = Path(client.download_artifacts(parent.info.run_id, "report", tempfile.mkdtemp()))
    for name in plots:
        assert (folder / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((folder / "report.json").read_text())
    assert report["status"] == "FINISHED" and report["search_run_id"] == parent.info.run_id
    assert sum(report["counts"].values()) == TRIALS
    finished = report["counts"]["completed"] + report["counts"]["stopped_early"]
    assert len(report["top"]) == min(5, finished)
    assert report["top"][0]["value"] == parent.data.metrics["best_val_accuracy"]
    assert report["top"][0]["trial"] == parent.data.tags["hpsearch.best_trial"]
    assert set(report["importance"]["params"]) <= {
        "hidden_layers",
        "units",
        "activation",
        "batch_norm",
        "dropout",
        "optimizer",
        "optimizer.lr",
        "grad_clip",
    }
    assert abs(sum(report["importance"]["params"].values()) - 1.0) < 1e-3
    assert sum(r["trials"] for r in report["marginals"]["activation"]) == TRIALS
    rungs = {r["rung"]: r["reached"] for r in report["rungs"]}
    assert rungs[1] == TRIALS and rungs[3] == report["counts"]["completed"]
    marginals_csv = (folder / "marginals.csv").read_text().splitlines()
    assert marginals_csv[0] == "param,value,trials,finished,failed,median,best"
    # at equal epochs: at the first rung every trial that reported an epoch, valued at that epoch
    first = [r for r in report["by_rung"]["activation"] if r["rung"] == 1]
    assert sum(r["trials"] for r in first) == TRIALS - sum(1 for r in report["history"] if r["state"] == "failed")
    by_rung_csv = (folder / "marginals_by_rung.csv").read_text().splitlines()
    assert by_rung_csv[0] == "param,rung,value,trials,median,best,beats_others,p_value,certainty"
    assert {q["param"] for q in report["questions"]} >= {"activation", "optimizer"}


def test_report_command_prints_the_same_report(search):
    result = hpsearch("report", NAME, "--tracking-uri", search["uri"], "--format", "json", cwd=search["folder"])
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    stored = json.loads(
        Path(
            search["client"].download_artifacts(search["parent"].info.run_id, "report/report.json", tempfile.mkdtemp())
        ).read_text()
    )
    assert printed == stored
    table = hpsearch("report", NAME, cwd=search["folder"])  # the default store: ./mlruns.db
    assert table.returncode == 0, table.stderr
    for heading in (
        "top 5 by val_accuracy",
        "parameter importance",
        "activation: median val_accuracy at each ASHA rung",
        "The lecture's questions, with this search's evidence",
        "Which activation?",
        "ASHA rungs",
    ):
        assert heading in table.stdout
    missing = hpsearch("report", "no-such-experiment", cwd=search["folder"])
    assert (
        missing.returncode == 2
        and f"invalid arguments:\n  EXPERIMENT: no experiment named 'no-such-experiment' (this store has: {NAME})"
        in missing.stderr
    )


def test_retrain_top_configs_logs_runs_and_the_best_model(search):
    import mlflow.pytorch
    import torch

    client, parent = search["client"], search["parent"]
    result = hpsearch(
        "retrain",
        NAME,
        "--top-k",
        "2",
        "--seeds",
        "2",
        "--register",
        "review-mlp",
        "--format",
        "json",
        cwd=search["folder"],
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["metric"] == "test_accuracy" and out["epochs"] == EPOCHS and len(out["configs"]) == 2
    runs = client.search_runs(
        [search["exp"].experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`hpsearch.role` = 'retrain'",
    )
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    for config in out["configs"]:
        accs = [r["test_accuracy"] for r in config["runs"]]
        assert len(accs) == 2 and abs(config["mean"]["test_accuracy"] - sum(accs) / 2) < 1e-9
        mine = [r for r in runs if r.data.tags["hpsearch.source_trial"] == config["trial"]]
        assert sorted(r.data.metrics["test_accuracy"] for r in mine) == sorted(accs)
        assert all(r.data.params["epochs"] == str(EPOCHS) for r in mine)
        # trained on train + validation: no validation metrics, a train loss per epoch
        assert all("val_accuracy" not in r.data.metrics for r in mine)
        assert len(client.get_metric_history(mine[0].info.run_id, "train_loss")) == EPOCHS
    best = out["best"]
    assert best["registered_model"] == "review-mlp" and str(best["registered_version"]) == "1"
    mlflow.set_tracking_uri(search["uri"])  # the registry lives in the same store
    mlflow.set_registry_uri(search["uri"])
    model = mlflow.pytorch.load_model("models:/review-mlp/1")
    splits = search["spec"].data.load(merge_val=True)
    assert len(splits.val_y) == 0 and len(splits.test_y) == 359
    with torch.no_grad():  # a torch.export program (MLflow's default format): call it, no .eval() needed
        accuracy = (model(splits.test_x).argmax(1) == splits.test_y).float().mean().item()
    assert accuracy == pytest.approx(best["test_accuracy"], abs=1e-6)  # the model logged is the one measured
    assert client.get_run(parent.info.run_id).data.tags["hpsearch.retrain_best"].startswith(best["trial"])
    summary = client.download_artifacts(parent.info.run_id, "retrain/summary.json", tempfile.mkdtemp())
    assert json.loads(Path(summary).read_text())["best"]["run_id"] == best["run_id"]


def test_retrain_on_a_cluster_runs_as_a_task_with_a_trials_resources(search, ray_session):
    """``retrain(address=...)``: one Ray task (this session's Ray stands in for the cluster) reserving a
    trial's CPUs; the runs say the host and process that trained them, another than this one."""
    import os

    from hpsearch.review.retrain import retrain

    done = retrain(search["uri"], NAME, top_k=1, seeds=1, address="auto", progress=lambda line: None)
    (config,) = done.configs
    (run,) = config.runs
    assert "test_accuracy" in run and done.best is not None
    where = search["client"].get_run(run["run_id"]).data.tags["hpsearch.retrained_on"]
    assert where.split(" pid ")[1] != str(os.getpid()), where


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, installed by the test set-up where it is missing."""
    path = shutil.which("chromium")
    if path is None:
        apt_install("chromium")
        path = shutil.which("chromium")
    assert path, "chromium is not installed and could not be installed with apt-get"
    return path


def _show_leaderboard_columns(page) -> None:
    """What a user does once in the runs table: the metric and state columns instead of dataset/source/
    models, and a run-name column wide enough for the names."""
    page.get_by_role("button", name="Columns").click()
    tree = page.locator("[data-testid='column-selector-tree']")
    for name in ("Dataset", "Source", "Models"):
        tree.get_by_text(name, exact=True).click()
    page.get_by_placeholder("Search columns").fill("val_")
    tree.get_by_text("val_accuracy", exact=True).click()
    tree.get_by_text("val_loss", exact=True).click()
    page.get_by_placeholder("Search columns").fill("trial_state")
    tree.get_by_text("hpsearch.trial_state", exact=True).click()
    page.keyboard.press("Escape")
    handle = page.locator(".ag-header-cell[col-id='attributes.`Run Name`'] .ag-header-cell-resize").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 300, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    page.wait_for_timeout(300)


def test_ui_serves_the_runs_table_in_a_real_browser(search, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    with running_ui(cwd=search["folder"], experiment=NAME) as (port, lines):
        link = next(line for line in lines if line.startswith(f"  {NAME}: ")).split(": ", 1)[1].strip()
        assert any(f"MLflow UI: http://127.0.0.1:{port}" in line for line in lines)
        assert link.endswith("/runs?orderByKey=metrics.%60val_accuracy%60&orderByAsc=false")

        names = sorted(c.info.run_name for c in search["children"])
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # a fresh profile
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1500, "height": 900},
            )
            page = context.new_page()
            page.goto(link)
            page.get_by_text(names[0], exact=True).wait_for(timeout=60_000)
            close = page.locator("button[aria-label='Close']")  # MLflow's assistant side panel, if it opens
            if close.count():
                close.first.click()
            shown = page.locator("[col-id='attributes.`Run Name`'] a").all_inner_texts()
            _show_leaderboard_columns(page)
            assert page.get_by_role("columnheader", name="val_accuracy", exact=True).count() >= 1
            shot = tmp_path / "mlflow-runs.png"
            page.screenshot(path=str(shot))
            context.close()
        assert set(names) <= set(shown), (names, shown)
        trial_rows = [s for s in shown if re.match(r"t\d{3} ", s)]
        first = next(c for c in search["children"] if c.info.run_name == trial_rows[0])
        best = search["parent"].data.metrics["best_val_accuracy"]
        assert first.data.metrics["val_accuracy"] == best  # a leaderboard: the best trial first
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        if os.environ.get("HPSEARCH_SCREENSHOT_DIR"):  # how the README's screenshot is made
            shutil.copy(shot, Path(os.environ["HPSEARCH_SCREENSHOT_DIR"]) / "mlflow-runs.png")


def test_ui_with_auth_asks_for_the_admin_password(search):
    import base64
    import urllib.error
    import urllib.request

    with running_ui("--auth", cwd=search["folder"], experiment=NAME) as (port, lines):
        found = [m.group(1) for line in lines if (m := re.search(r"user 'admin', password (\S+) ", line))]
        assert len(found) == 1, "".join(lines)  # shown once
        password = found[0]
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name={NAME}"
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=10)
        assert denied.value.code == 401
        request = urllib.request.Request(
            url, headers={"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["experiment"]["name"] == NAME
        assert (search["folder"] / "basic_auth.db").is_file()  # the users live next to the store

        # A search logs to it with the credentials in the URI, or in MLflow's own variables; neither
        # way shows the password.
        data = yaml.safe_load(QUICKSTART.read_text())
        data["search"].update(num_trials=2, max_concurrent=2)
        data["search"]["scheduler"]["max_epochs"] = 1
        server = f"http://127.0.0.1:{port}"
        for name, uri, env in (
            ("auth-in-uri", f"http://admin:{password}@127.0.0.1:{port}", {}),
            ("auth-in-env", server, {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}),
        ):
            spec = write_spec(search["folder"] / f"{name}.yaml", {**data, "name": name})
            run = hpsearch("run", spec, "--tracking-uri", uri, cwd=search["folder"], env=env)
            assert run.returncode == 0, run.stderr + run.stdout
            assert password not in run.stdout + run.stderr and server in run.stdout
            request = urllib.request.Request(
                url.replace(NAME, name),
                headers={"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.loads(response.read())["experiment"]["name"] == name
