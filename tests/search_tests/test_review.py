"""Run names, the report's computations and `hpsearch ui`'s checks, without a server or a search."""

import random

import pytest

from hpsearch import spaces
from hpsearch.errors import SpecError
from hpsearch.review import ui
from hpsearch.review.evidence import (
    Settings,
    TrialRow,
    build_report,
    marginals,
    param_importance,
    rung_marginals,
)
from hpsearch.schedulers.asha import AshaSpec
from hpsearch.spaces import space_kinds
from hpsearch.tracking.labels import format_value, run_name
from hpsearch.tracking.reader import parse_param
from hpsearch.tracking.writes import param_value
from tests.helpers import hpsearch

SPACE = spaces.parse_space(
    {
        "hidden_layers": {"int": [1, 3]},
        "units": {"choice": [32, 64]},
        "activation": {"choice": ["relu", "selu"]},
        "batch_norm": {"choice": ["none", "before", "after"]},
        "dropout": {"float": [0.0, 0.5]},
        "batch_size": 64,
        "optimizer": {
            "choice": {
                "sgd": {"lr": {"float": [1e-3, 0.3], "log": True}, "momentum": {"float": [0.0, 0.99]}},
                "adam": {"lr": {"float": [1e-4, 3e-2], "log": True}},
            }
        },
        "grad_clip": {"choice": {"none": {}, "norm": {"threshold": {"float": [0.1, 10.0], "log": True}}}},
    }
)


def test_run_name_reads_as_the_key_choices():
    config = {
        "hidden_layers": 2,
        "units": 64,
        "activation": "selu",
        "batch_norm": "after",
        "dropout": 0.1234,
        "batch_size": 64,
        "optimizer": "adam",
        "optimizer.lr": 0.0032,
        "grad_clip": "none",
    }
    name = run_name("t017", config, SPACE)
    assert name.startswith("t017 selu adam lr=3.2e-3 bn=after")
    assert "units=64" in name and "layers=2" in name and "drop=0.123" in name
    assert "clip" not in name and "bs=" not in name  # "none" choices and constants say nothing
    assert len(run_name("t017", config, SPACE, limit=30)) <= 30
    space = spaces.parse_space({"l2": {"choice": [0.0, 1e-4]}, "nesterov": {"choice": [True, False]}})
    assert run_name("t002", {"l2": 0.0, "nesterov": False}, space) == "t002"
    assert run_name("t003", {"l2": 1e-4, "nesterov": True}, space) == "t003 l2=1.0e-4 nesterov=true"


def test_run_name_without_a_space_and_value_formats():
    assert run_name("t001", {"depth": 3, "kind": "wide"}, None) == "t001 kind=wide depth=3"  # text choices first
    assert [format_value(v) for v in (3.2e-3, 0.25, 1e-5, True, 0.0, 2500.0)] == [
        "3.2e-3",
        "0.25",
        "1.0e-5",
        "true",
        "0",
        "2.5e3",
    ]


@pytest.mark.parametrize("value", ["relu", 3, 0.1234, True, None, 1e-5, "0.5 apples"])
def test_params_parse_back_to_their_values(value):
    assert parse_param(param_value(value)) == value


def test_space_kinds_take_the_envelope_of_branches():
    kinds = space_kinds(SPACE)
    assert kinds["optimizer"] == {"kind": "choice", "options": ["sgd", "adam"]}
    assert kinds["optimizer.lr"] == {"kind": "float", "low": 1e-4, "high": 0.3, "log": True}
    assert "batch_size" not in kinds  # a constant is not searched


def _settings(kinds=None, max_epochs=9, grace_period=1, reduction_factor=3.0, **kw):
    """Settings of an ASHA search: its rungs are the scheduler's own (as the report reads them back)."""
    asha = AshaSpec(max_epochs=max_epochs, grace_period=grace_period, reduction_factor=reduction_factor)
    base = dict(metric="val_accuracy", mode="max", max_epochs=max_epochs, rungs=asha.rungs())
    return Settings(**{**base, **kw}, kinds=space_kinds(SPACE) if kinds is None else kinds)


def test_rung_milestones_match_asha():
    assert _settings().rungs == [1, 3, 9]
    assert _settings(max_epochs=10).rungs == [1, 3, 9, 10]
    assert _settings(max_epochs=20, grace_period=2, reduction_factor=2).rungs == [2, 4, 8, 16, 20]
    # a fractional rung (2.5, 6.25) is decided at the first epoch past it, where the trials send their results
    assert _settings(max_epochs=12, grace_period=1, reduction_factor=2.5).rungs == [1, 3, 7, 12]


def _rows(n=40, seed=0):
    """Trials where the activation decides the metric (selu good, relu bad) and nothing else matters."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, n + 1):
        act = rng.choice(["relu", "selu"])
        opt = rng.choice(["sgd", "adam"])
        config = {
            "hidden_layers": rng.randint(1, 3),
            "units": rng.choice([32, 64]),
            "activation": act,
            "batch_norm": rng.choice(["none", "before", "after"]),
            "dropout": rng.uniform(0, 0.5),
            "optimizer": opt,
            "optimizer.lr": 10 ** rng.uniform(-4, -1.6),
            "grad_clip": "none",
        }
        base = 0.9 if act == "selu" else 0.5
        epochs = [1, 3, 9][i % 3]
        history = [(e, base + 0.01 * e + rng.uniform(-0.005, 0.005)) for e in range(1, epochs + 1)]
        state = "completed" if epochs == 9 else "stopped_early"
        if i == 7:
            state, history = "diverged", history[:1]
        rows.append(
            TrialRow(f"t{i:03d}", f"t{i:03d} {act}", f"run{i}", state, len(history), history[-1][1], config, history)
        )
    return rows


def test_report_finds_what_decided_the_metric():
    rows = _rows()
    report = build_report(
        _settings(),
        rows,
        top_k=3,
        experiment="e",
        experiment_id="1",
        search_run_id="p",
        search_run_name="s",
        status="FINISHED",
    )
    assert sum(report.counts.values()) == 40 and report.counts["diverged"] == 1
    assert [t["rank"] for t in report.top] == [1, 2, 3]
    assert all(t["config"]["activation"] == "selu" for t in report.top)
    values = [t["value"] for t in report.top]
    assert values == sorted(values, reverse=True)
    assert next(iter(report.importance["params"])) == "activation"  # ranked first, by a margin
    assert report.importance["params"]["activation"] > 0.5
    act = {r["value"]: r for r in report.marginals["activation"]}
    assert act["selu"]["median"] > 0.9 > act["relu"]["best"]
    assert sum(r["trials"] for r in report.marginals["activation"]) == 40
    assert sum(r["failed"] for r in report.marginals["activation"]) == 1
    history = report.history
    best = [h["best_so_far"] for h in history if h["best_so_far"] is not None]
    assert best == sorted(best) and best[-1] == report.top[0]["value"]
    assert history[6]["value"] is None  # the diverged trial has no value
    assert set(report.curves) == {t["trial"] for t in report.top}
    rungs = {r["rung"]: r for r in report.rungs}
    assert rungs[1]["reached"] == 40 and rungs[3]["reached"] == 26 and rungs[9]["reached"] == 13
    assert [r["reached"] for r in report.rungs] == sorted((r["reached"] for r in report.rungs), reverse=True)


def test_marginals_bin_numeric_ranges_and_min_mode():
    rows = _rows()
    table = marginals(rows, _settings(mode="min"), sign=-1.0)
    lr = table["optimizer.lr"]
    assert len(lr) == 4 and lr[0]["value"].startswith("[0.0001,") and lr[-1]["value"].endswith("0.3]")
    assert sum(r["trials"] for r in lr) == 40
    for r in table["activation"]:
        assert r["best"] <= r["median"]  # mode min: the best is the lowest


def _asha_biased_rows(seed=1):
    """Activations that learn alike, but TPE happened to try sigmoid mostly in trials ASHA stopped at epoch
    1, and relu in trials that ran 9 epochs (the 80-trial seed_practices_digits search had this shape)."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, 41):
        act = "sigmoid" if i % 2 else "relu"
        epochs = 1 if (act == "sigmoid") == (i % 5 != 0) else 9  # 80 % of sigmoid trials stopped at epoch 1
        history = [(e, 0.6 + 0.04 * e + rng.uniform(-0.02, 0.02)) for e in range(1, epochs + 1)]
        state = "completed" if epochs == 9 else "stopped_early"
        config = {"activation": act}
        rows.append(TrialRow(f"t{i:03d}", f"t{i:03d}", f"r{i}", state, epochs, history[-1][1], config, history))
    return rows


def test_choices_are_compared_at_equal_epochs_not_by_their_last_epoch():
    space = spaces.parse_space({"activation": {"choice": ["relu", "sigmoid"]}})
    settings = _settings(kinds=space_kinds(space))
    rows = _asha_biased_rows()
    last = {r["value"]: r for r in marginals(rows, settings, sign=1.0)["activation"]}
    assert last["relu"]["median"] - last["sigmoid"]["median"] > 0.2  # the artefact: epoch 1 against epoch 9
    at = {(r["rung"], r["value"]): r for r in rung_marginals(rows, settings, sign=1.0)["activation"]}
    assert at[(1, "relu")]["trials"] == at[(1, "sigmoid")]["trials"] == 20  # every trial at the first rung
    assert abs(at[(1, "relu")]["median"] - at[(1, "sigmoid")]["median"]) < 0.02
    assert at[(1, "relu")]["certainty"] in ("unclear", "a hint")  # no real difference: not called one
    assert at[(9, "sigmoid")]["trials"] == 4 and at[(9, "relu")]["trials"] == 16


def test_the_lecture_questions_are_answered_with_how_sure_the_search_is():
    rows = _rows()  # selu beats relu by far; batch norm makes no difference
    report = build_report(
        _settings(), rows, experiment="e", experiment_id="1", search_run_id="p", search_run_name="s", status="x"
    )
    answers = {q["param"]: q for q in report.questions}
    act = answers["activation"]
    assert [r["value"] for r in act["ranking"]] == ["selu", "relu"]
    assert act["steps"][0]["certainty"] == "sure" and act["agreement"] == "1 of 1 pairs in the lecture's order"
    assert act["rung"] == 9  # the deepest rung where both have >= 3 trials
    bn = answers["batch_norm"]
    assert {r["value"] for r in bn["ranking"]} == {"none", "before", "after"}
    assert all(s["certainty"] in ("unclear", "a hint", "too few trials") for s in bn["steps"])
    assert "grad_clip" not in answers  # one value only: nothing to compare


def test_importance_says_why_it_is_missing():
    out = param_importance(_rows(2), _settings())
    assert out["params"] == {} and "needs >= 3 finished trials" in out["note"]


def test_importance_of_a_search_whose_trials_all_scored_the_same_is_a_note_not_a_lost_report():
    rows = [r for r in _rows(12) if r.state != "diverged"]
    for r in rows:
        r.value = 1.0  # every trial reached accuracy 1.0: fANOVA finds zero total variance
    out = param_importance(rows, _settings())
    assert out["params"] == {} and "every finished trial has the same" in out["note"], out


def test_ui_refuses_a_network_host_without_allow_remote(tmp_path):
    db = tmp_path / "mlruns.db"
    db.write_bytes(b"")
    uri = f"sqlite:///{db}"
    with pytest.raises(SpecError) as err:
        ui.plan(uri, host="0.0.0.0", port=70000)
    text = str(err.value)
    assert "--host: '0.0.0.0'" in text and "--allow-remote" in text and "--port: must be 1..65535, got 70000" in text
    plan = ui.plan(uri, host="0.0.0.0", allow_remote=True)
    assert plan.command[plan.command.index("--allowed-hosts") + 1] == "*"
    assert any(note.startswith("WARNING: serving on 0.0.0.0") for note in plan.notes)
    local = ui.plan(uri, port=5001)
    assert "--allowed-hosts" not in local.command and local.url == "http://127.0.0.1:5001"
    assert local.command[local.command.index("--artifacts-destination") + 1] == str(tmp_path / "mlartifacts")
    pg = ui.plan("postgresql://u:p4ss@db:5432/mlflow")  # the store goes by environment: `ps` shows command lines
    assert pg.env["MLFLOW_BACKEND_STORE_URI"] == "postgresql://u:p4ss@db:5432/mlflow"
    assert not [arg for arg in pg.command if "p4ss" in arg]


def test_ui_auth_generates_an_admin_password_once(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_FLASK_SERVER_SECRET_KEY", raising=False)
    (tmp_path / "mlruns.db").write_bytes(b"")
    plan = ui.plan(f"sqlite:///{tmp_path / 'mlruns.db'}", auth=True)
    assert plan.command[-2:] == ["--app-name", "basic-auth"]
    password = plan.env["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert len(password) >= 12 and any(password in note for note in plan.notes)
    assert f"database_uri = sqlite:///{tmp_path / 'basic_auth.db'}" in (tmp_path / "basic_auth.ini").read_text()
    key = tmp_path / "flask_secret_key"
    assert key.stat().st_mode & 0o777 == 0o600 and plan.env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == key.read_text()
    again = ui.plan(f"sqlite:///{tmp_path / 'mlruns.db'}", auth=True)  # the same key on the next start
    assert again.env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == plan.env["MLFLOW_FLASK_SERVER_SECRET_KEY"]


def test_ui_report_retrain_refuse_a_missing_store(tmp_path):
    for args in (["ui"], ["report", "x"], ["retrain", "x"]):
        result = hpsearch(*args, "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"no MLflow store at {tmp_path / 'none.db'}" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created
    result = hpsearch("retrain", "x", "--top-k", "0", cwd=tmp_path)
    assert result.returncode == 2 and "--top-k: must be >= 1, got 0" in result.stderr


def test_long_values_are_cut_with_a_marker_never_an_aborted_log(tmp_path):
    from mlflow import MlflowClient

    from hpsearch.tracking.records import TrialRecord
    from hpsearch.tracking.tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = MlflowTracker(uri, "long-values")
    tracker.start("search", {"space": "inline"}, {}, {})
    tracker.wait_ready()
    rec = TrialRecord(1, "trial-a", {"note": "x" * 9000, "lr": 0.1})
    tracker.trial_started(rec)
    tracker.trial_result(rec, 1, {"val_accuracy": 0.5})
    rec.state, rec.epochs = "completed", 1
    tracker.trial_ended(rec)
    assert tracker.finish("FINISHED", {}, {}, {}, {}) == []  # no write failed
    client = MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("long-values").experiment_id], "tags.`hpsearch.role` = 'trial'"
    )
    note = run.data.params["note"]
    assert len(note) == 6000 and note.endswith("...[truncated]") and run.data.params["lr"] == "0.1"
    assert len(run.data.tags["hpsearch.config"]) == 8000 and run.data.tags["hpsearch.config"].endswith("...[truncated]")
    assert run.info.run_name == "t001" and run.data.metrics["val_accuracy"] == 0.5


def test_retrain_runs_where_the_search_did_or_says_why_not():
    from hpsearch.errors import HpsearchError, UsageError
    from hpsearch.review.retrain import retrain_device

    assert retrain_device("auto", 0.0, cuda_available=True) == "cpu"  # the search trained on CPUs
    assert retrain_device("auto", 0.5, cuda_available=True) == "cuda"
    with pytest.raises(HpsearchError, match=r"trained on GPUs \(resources.gpu=0.5\).*pass --device cpu"):
        retrain_device("auto", 0.5, cuda_available=False)  # not a silent CPU run
    assert retrain_device("cpu", 0.5, cuda_available=False) == "cpu"  # asked for
    with pytest.raises(UsageError, match="--device: cuda: this process has no usable CUDA device"):
        retrain_device("cuda", 0.0, cuda_available=False)


def test_mlflow_prints_no_run_links_for_the_runs_a_search_ends(monkeypatch):
    from mlflow.environment_variables import MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT

    from hpsearch.tracking.tracker import MlflowTracker

    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    MlflowTracker("http://127.0.0.1:1", "x")
    assert MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.get() is True
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "false")  # a user who wants them keeps them
    MlflowTracker("http://127.0.0.1:1", "x")
    assert MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.get() is False


def test_retrain_compares_configs_by_the_test_twin_of_the_search_metric():
    from hpsearch.review.retrain import test_metric

    assert test_metric("val_accuracy", "max") == ("test_accuracy", "max")
    assert test_metric("val_r2", "max") == ("test_r2", "max")
    assert test_metric("val_mse", "min") == ("test_mse", "min")  # a trainable's own metric
    assert test_metric("train_loss", "min") == ("test_loss", "min")
