"""A team's own training code on hpsearch, end to end with real Ray, Optuna and MLflow: a trainable that
reads CSV files the test wrote (no ``data`` in the spec) gets everything the built-ins get: checkpoints
and restores, every metric point in its MLflow run, ASHA's verdicts told to Optuna, the per-worker cache,
warm start, the report and retrain with its own evaluation. A ``loader`` serves the same files to the
built-in MLP as a regression."""

import pytest
from mlflow import MlflowClient

from hpsearch.review.report import load_report
from hpsearch.review.retrain import retrain
from hpsearch.run import run_search
from hpsearch.spec import parse_spec
from tests.integration_tests.own_training import write_csv

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OWN = "tests.integration_tests.own_training"
EPOCHS = 6


def own_spec(name, root, trainable="csv_regression", trials=8, **search):
    return parse_spec(
        {
            "name": name,
            "trainable": f"{OWN}:{trainable}",
            "task": "regression",
            "space": {
                "root": str(root),
                "lr": {"float": [1e-3, 1e-1], "log": True},
                "hidden": {"choice": [4, 16, 32]},
                **search.pop("space", {}),
            },
            "search": {
                "metric": "val_mse",
                "mode": "min",
                "num_trials": trials,
                "report_interval_s": 0,
                "checkpoint_min_interval_s": 0,
                "sampler": {"seed": 1, "n_startup_trials": 4},
                "scheduler": {"max_epochs": EPOCHS, "grace_period": 2, "reduction_factor": 2},
                **search,
            },
        }
    )


def trial_runs(client, name):
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=500)
    return [r for r in runs if r.data.tags["hpsearch.role"] == "trial"]


def test_own_trainable_on_its_own_files_gets_everything_the_builtins_get(ray_session, tmp_path):
    root = write_csv(tmp_path / "csv")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = own_spec("own-csv", root, max_failures=1, enqueue=[{"lr": 0.03, "hidden": 16, "fail_once_at": 4}],
                    space={"fail_once_at": {"choice": [0, 4]}})  # fmt: skip
    assert spec.data is None
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert result.status == "FINISHED" and sum(result.counts.values()) == 8, result.counts
    assert result.counts["failed"] == 0  # the scripted failure was retried from its checkpoint

    client = MlflowClient(uri)
    trials = trial_runs(client, "own-csv")
    assert len(trials) == 8
    for run in trials:  # every epoch once, in one run per trial
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_mse"))
        reached = int(run.data.tags["hpsearch.epochs"])
        assert steps == list(range(1, reached + 1)), (run.info.run_name, steps)
        assert run.data.metrics["scratch_empty"] == 1.0  # a scratch folder of its own, empty at its start
    # The failed-once trial restarted from its epoch-3 checkpoint, not from epoch 0.
    failed_once = [r for r in trials if r.data.params.get("fail_once_at") == "4"]
    restarted = [r for r in failed_once if client.get_metric_history(r.info.run_id, "resumed_from")[-1].value == 3.0]
    assert restarted, [(r.info.run_name, r.data.metrics) for r in failed_once]
    # A reused worker read the files once for all its trials (TrialContext.cache).
    assert max(r.data.metrics["csv_reads"] for r in trials) == 1.0
    # ASHA's verdicts reached Optuna: every stopped trial PRUNED, the others COMPLETE.
    stopped = sum(r.data.tags["hpsearch.trial_state"] == "stopped_early" for r in trials)
    assert stopped > 0
    assert result.searcher_states.get("PRUNED", 0) == stopped
    assert result.searcher_states.get("COMPLETE", 0) == 8 - stopped

    report = load_report(uri, "own-csv")
    values = [t["value"] for t in report.top]
    assert values == sorted(values) and report.top[0]["value"] == pytest.approx(result.best.metrics["val_mse"])

    warm = own_spec(
        "own-csv-warm", root, trials=2, warm_start="own-csv", enqueue=[], space={"fail_once_at": {"choice": [0, 4]}}
    )
    again = run_search(warm, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert again.warm_start is not None and again.warm_start.trials == 8

    done = retrain(uri, "own-csv", top_k=1, seeds=2, progress=lambda *a: None)
    (config,) = done.configs
    assert done.metric == "test_mse" and done.mode == "min"
    assert [set(r) >= {"test_mse"} for r in config.runs] == [True, True], config.runs
    assert done.best is not None and done.best["model_uri"]


def test_retrain_says_when_it_cannot_test_a_model(ray_session, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = own_spec("own-untestable", tmp_path, trainable="untestable", trials=2)
    assert run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True).status == "FINISHED"
    lines = []
    done = retrain(uri, "own-untestable", top_k=1, seeds=1, progress=lines.append)
    (run,) = done.configs[0].runs
    assert "error" not in run and "test_mse" not in run
    assert "returned dict" in run["untested"] and "Trained(model, evaluate)" in run["untested"]
    assert done.best is None
    client = MlflowClient(uri)
    assert "returned dict" in client.get_run(run["run_id"]).data.tags["hpsearch.not_tested"]
    assert any("not tested" in line for line in lines)


def test_a_metric_the_trainable_never_reports_stops_the_search(ray_session, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = own_spec("own-wrong-metric", tmp_path, trainable="wrong_metric", trials=30)
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert result.status == "FAILED"
    assert "'val_mse' is not among the metrics the trainable reported (accuracy, loss)" in result.stopped_because
    started = sum(result.counts.values())
    assert started <= spec.search.max_concurrent + 1, result.counts  # not 30 trials burnt on one mistake
    trials = trial_runs(MlflowClient(uri), "own-wrong-metric")
    assert any("(accuracy, loss)" in r.data.tags.get("hpsearch.error", "") for r in trials)


def test_a_loader_serves_the_builtin_mlp_as_a_regression(ray_session, tmp_path):
    root = write_csv(tmp_path / "csv", samples=400)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = parse_spec(
        {
            "name": "loader-mlp",
            "trainable": "mlp",
            "task": "regression",
            "data": {"loader": f"{OWN}:csv_loader", "args": {"root": str(root)}},
            "space": {"units": {"choice": [16, 32]}, "batch_size": 32, "optimizer": {"choice": {"adam": {"lr": 0.01}}}},
            "search": {
                "metric": "val_r2",
                "mode": "max",
                "num_trials": 3,
                "sampler": {"seed": 0},
                "scheduler": {"max_epochs": 4, "grace_period": 4},
            },
        }
    )
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert result.status == "FINISHED" and result.counts["completed"] == 3, result.records
    client = MlflowClient(uri)
    for run in trial_runs(client, "loader-mlp"):
        assert {"val_loss", "val_mae", "val_r2", "train_loss"} <= set(run.data.metrics)
        assert len(client.get_metric_history(run.info.run_id, "val_r2")) == 4
    assert result.best.metrics["val_r2"] > 0.5  # it learnt the function, not the mean
    done = retrain(uri, "loader-mlp", top_k=1, seeds=1, progress=lambda *a: None)
    (run,) = done.configs[0].runs
    assert done.metric == "test_r2" and run["test_r2"] > 0.5 and {"test_loss", "test_mae"} <= set(run)


def test_an_own_search_whose_driver_was_killed_resumes_from_the_trainables_checkpoints(tmp_path):
    """``hpsearch resume`` after a SIGKILL of the driver: the trials in flight continue from their own
    checkpoints (``resume``), each epoch is in MLflow once."""
    import json
    import os
    import subprocess

    from tests.helpers import hpsearch, kill_driver_when, start_hpsearch, write_spec

    root = write_csv(tmp_path / "csv")
    spec = {
        "name": "own-resume",
        "trainable": f"{OWN}:csv_regression",
        "task": "regression",
        "space": {"root": str(root), "lr": {"float": [1e-3, 1e-1], "log": True}, "hidden": 8, "epoch_s": 1.0},
        "search": {
            "metric": "val_mse", "mode": "min", "num_trials": 4, "report_interval_s": 0,
            "checkpoint_min_interval_s": 0, "scheduler": {"max_epochs": EPOCHS, "grace_period": EPOCHS},
        },
    }  # fmt: skip
    env = {"TUNE_GLOBAL_CHECKPOINT_S": "1"}
    driver = start_hpsearch(
        "run", write_spec(tmp_path / "spec.yaml", spec), cwd=tmp_path, stderr=subprocess.DEVNULL, env=env
    )
    kill_driver_when(
        driver,
        lambda: max((int(p.read_text() or 0) for p in root.glob("epoch-of-*")), default=0) >= 3,
        timeout_s=120,
        settle_s=1.2,  # past one of Tune's snapshots of the experiment, mid-epoch
        stuck="no trial got 3 epochs in",
    )

    (run_dir,) = (tmp_path / "hpsearch_results").iterdir()
    resumed = hpsearch("resume", run_dir, cwd=tmp_path, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    uri = json.loads((run_dir / "hpsearch.json").read_text())["tracking_uri"]
    client = MlflowClient(uri)
    trials = trial_runs(client, "own-resume")
    assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in trials)
    for run in trials:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_mse"))
        assert steps == list(range(1, EPOCHS + 1)), (run.info.run_name, steps)
    continued = [r for r in trials if r.data.metrics["resumed_from"] > 0]
    assert continued, "no trial continued from its checkpoint"
    assert os.path.isdir(run_dir)


def test_the_example_script_runs_as_it_is_and_as_a_search(tmp_path):
    """examples/own_training: the plain script and its hpsearch version (at most 20 changed lines, as the
    README shows), both run on the CSV files its make_data.py writes."""
    import difflib
    import shutil
    import subprocess
    import sys

    import yaml

    from tests.helpers import ROOT, hpsearch

    example = ROOT / "examples" / "own_training"
    plain, searched = (example / name for name in ("train.py", "search_train.py"))
    diff = difflib.unified_diff(plain.read_text().splitlines(), searched.read_text().splitlines(), lineterm="", n=0)
    changed = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(changed) <= 20, "\n".join(changed)
    for name in ("train.py", "search_train.py", "make_data.py", "spec.yaml"):
        shutil.copy(example / name, tmp_path / name)
    subprocess.run([sys.executable, "make_data.py", "data"], cwd=tmp_path, check=True)
    script = subprocess.run([sys.executable, "train.py", "--data", "data", "--epochs", "2"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert script.returncode == 0 and "test_mse" in script.stdout, script.stderr
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    spec["search"].update(num_trials=3)
    spec["search"]["scheduler"].update(max_epochs=2, grace_period=1)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    run = hpsearch("run", "spec.yaml", cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "best val_mse" in run.stdout and "trials       │ 3" in run.stdout
    done = hpsearch("retrain", "own-training-csv", "--top-k", "1", "--seeds", "1", cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and "test_mse" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]


def test_an_image_folder_streams_through_loader_processes_in_a_real_search(ray_session, tmp_path):
    """Images on disk, decoded as batches need them, by one DataLoader process per trial (resources.cpu 2)."""
    from tests.trainables_tests.test_own_data import write_images

    write_images(tmp_path / "imgs", per_class=20)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = parse_spec(
        {
            "name": "image-folder",
            "trainable": "cnn",
            "data": {"dataset": "image_folder", "root": str(tmp_path / "imgs"), "size": 8, "val_fraction": 0.25},
            "space": {"channels": {"choice": [4, 8]}, "blocks": 1, "batch_size": 8, "hflip": True},
            "resources": {"cpu": 2},
            "search": {"num_trials": 2, "max_concurrent": 1, "scheduler": {"max_epochs": 2, "grace_period": 2}},
        }
    )
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert result.status == "FINISHED" and result.counts["completed"] == 2, [r.error for r in result.records]
    client = MlflowClient(uri)
    for run in trial_runs(client, "image-folder"):
        assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 2
