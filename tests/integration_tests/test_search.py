"""A real search: real Ray Tune, real Optuna, real MLflow (SQLite), asserted through MlflowClient."""

import json

import pytest
from mlflow import MlflowClient

from hpsearch.run import run_search
from hpsearch.spec import parse_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPACE = {
    "hidden_layers": {"int": [1, 2]},
    "units": {"choice": [32, 128]},
    "activation": {"choice": ["relu", "elu", "tanh"]},
    "batch_norm": {"choice": ["none", "after"]},
    "dropout": {"float": [0.0, 0.3]},
    "optimizer": {
        "choice": {
            "sgd": {"lr": {"float": [1e-3, 1e-1], "log": True}, "momentum": {"float": [0.5, 0.95]}},
            "adam": {"lr": {"float": [1e-3, 1e-2], "log": True}},
        }
    },
}


def make_spec(name, num_trials, max_epochs, space=SPACE, trainable="mlp", n_startup=4, grace_period=1, **search):
    return parse_spec(
        {
            "name": name,
            "trainable": trainable,
            "data": {"dataset": "digits"},
            "space": space,
            "search": {
                "num_trials": num_trials,
                "max_concurrent": search.pop("max_concurrent", 2),
                "sampler": {"seed": 0, "n_startup_trials": n_startup},
                "scheduler": {"max_epochs": max_epochs, "grace_period": grace_period, "reduction_factor": 3},
                **search,
            },
        }
    )


def runs_by_role(client, experiment_name):
    exp = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_role = {}
    for run in runs:
        by_role.setdefault(run.data.tags.get("hpsearch.role"), []).append(run)
    return exp, by_role


def test_search_records_parent_and_children_in_mlflow(ray_session, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = make_spec("it-digits", num_trials=8, max_epochs=6)
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)

    client = MlflowClient(uri)
    exp, by_role = runs_by_role(client, "it-digits")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (parent,) = by_role["search"]
    children = by_role["trial"]
    assert len(children) == 8 == len(result.records)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.num_trials"] == "8" and parent.data.params["data.dataset"] == "digits"

    states = {}
    points = 0
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        state = child.data.tags["hpsearch.trial_state"]
        states[state] = states.get(state, 0) + 1
        assert child.info.status == {"completed": "FINISHED", "stopped_early": "FINISHED"}[state]
        params = child.data.params
        assert params["optimizer"] in ("sgd", "adam") and "optimizer.lr" in params
        assert ("optimizer.momentum" in params) == (params["optimizer"] == "sgd")
        epochs = int(child.data.tags["hpsearch.epochs"])
        assert (epochs == 6) == (state == "completed")
        for key in ("train_loss", "val_loss", "val_accuracy", "lr", "params", "latency_ms", "peak_memory_mb"):
            history = client.get_metric_history(child.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, epochs + 1)), key
            points += len(history)
    assert states.get("stopped_early", 0) >= 1
    assert points == result.metric_points  # not one metric point lost

    best = max(c.data.metrics["val_accuracy"] for c in children)
    assert best > 0.9
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best)
    assert parent.data.metrics["trials_completed"] == states.get("completed", 0)
    assert parent.data.metrics["trials_stopped_early"] == states["stopped_early"]
    best_config = json.loads(
        client.download_artifacts(parent.info.run_id, "best_config.json", str(tmp_path))
        and (tmp_path / "best_config.json").read_text()
    )
    assert best_config["value"] == pytest.approx(best) and best_config["config"]["optimizer"] in ("sgd", "adam")
    assert parent.data.tags["best.optimizer"] == best_config["config"]["optimizer"]

    # Checkpoints: these trials last well under checkpoint_min_interval_s (10 s), so only a trial's last
    # epoch is checkpointed: completed trials keep exactly that one, stopped-early trials have none.
    for rec in result.records:
        (trial_dir,) = [d for d in result.run_dir.iterdir() if d.is_dir() and rec.trial_id in d.name]
        checkpoints = sorted(p.name for p in trial_dir.glob("checkpoint_*"))
        assert len(checkpoints) == (1 if rec.state == "completed" else 0), (rec.state, checkpoints)
        # Results live in MLflow; Tune's own per-trial loggers (JSON, CSV, TensorBoard) are off.
        assert not [
            p.name for p in trial_dir.iterdir() if p.name.startswith(("events.out", "progress.csv", "result.json"))
        ]


def test_failed_and_diverged_trials_do_not_stop_the_search(ray_session, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    space = {"outcome": {"choice": ["ok", "fail", "diverge"]}, "optimizer": {"choice": {"adam": {"lr": 3e-3}}}}
    spec = make_spec(
        "it-failures",
        num_trials=9,
        max_epochs=2,
        space=space,
        trainable="tests.integration_tests.helpers:scripted",
        n_startup=9,
    )
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)

    client = MlflowClient(uri)
    _, by_role = runs_by_role(client, "it-failures")
    children = by_role["trial"]
    assert len(children) == 9
    for child in children:
        outcome = child.data.params["outcome"]
        expected = {"ok": ("completed", "stopped_early"), "fail": ("failed",), "diverge": ("diverged",)}[outcome]
        assert child.data.tags["hpsearch.trial_state"] in expected
        if outcome != "ok":
            assert child.info.status == "FAILED"
            assert "scripted" in child.data.tags["hpsearch.error"]
    outcomes = {c.data.params["outcome"] for c in children}
    assert outcomes == {"ok", "fail", "diverge"}
    assert result.counts["failed"] >= 1 and result.counts["diverged"] >= 1
    assert result.best is not None and result.best.config["outcome"] == "ok"
    (parent,) = by_role["search"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_failed"] == result.counts["failed"]
    # Optuna was told: a failure (not the config's fault) as FAIL, which TPE leaves out; a diverged config
    # as PRUNED without values (the worst rank TPE gives); a trial ASHA stopped as PRUNED; the rest COMPLETE
    assert result.searcher_states.get("FAIL", 0) == result.counts["failed"]
    assert result.searcher_states.get("PRUNED", 0) == result.counts["diverged"] + result.counts["stopped_early"]
    assert result.searcher_states.get("COMPLETE", 0) == result.counts["completed"]


def test_epochs_sent_together_give_the_same_search_as_one_result_per_epoch(ray_session, tmp_path):
    """Batching epochs into one Tune result (at ASHA's rungs 1, 3, 9 and the last epoch) changes no
    decision: one trial at a time, same seeds, the same trials stop at the same epochs with the same
    metrics as with a Tune result per epoch, and MLflow has every epoch of each."""
    outcomes = []
    for interval in (0.0, 60.0):
        spec = make_spec(
            f"it-batch-{interval:g}", num_trials=8, max_epochs=10, max_concurrent=1, report_interval_s=interval
        )
        uri = f"sqlite:///{tmp_path / f'mlruns-{interval:g}.db'}"
        result = run_search(spec, tracking_uri=uri, storage=tmp_path / f"runs-{interval:g}", quiet=True)
        records = sorted(result.records, key=lambda r: r.index)
        client = MlflowClient(uri)
        _, by_role = runs_by_role(client, spec.name)
        steps = {
            c.data.tags["hpsearch.trial"]: sorted(m.step for m in client.get_metric_history(c.info.run_id, "val_loss"))
            for c in by_role["trial"]
        }
        assert all(steps[r.name] == list(range(1, r.epochs + 1)) for r in records), steps
        outcomes.append([(r.config, r.state, r.epochs, r.metrics["val_accuracy"]) for r in records])
        # Optuna learnt what its own pruning would record: ASHA's stops as PRUNED, full runs as COMPLETE
        assert result.searcher_states.get("PRUNED", 0) == result.counts["stopped_early"]
        assert result.searcher_states.get("COMPLETE", 0) == result.counts["completed"]
    per_epoch, batched = outcomes
    assert batched == per_epoch
    assert {state for _, state, _, _ in batched} == {"completed", "stopped_early"}
    assert {epochs for _, _, epochs, _ in batched} >= {1, 10}  # stopped at a rung, and ran to the end


def test_epochs_not_yet_sent_when_a_trial_fails_still_reach_mlflow(ray_session, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    space = {"good_epochs": 5}
    spec = make_spec(  # only the rungs (1, 3, 9) and the last epoch would send: epochs 4 and 5 wait
        "it-fail-late",
        1,
        9,
        space=space,
        trainable="tests.integration_tests.helpers:fails_after",
        report_interval_s=60.0,
    )
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    (rec,) = result.records
    assert rec.state == "failed" and "scripted failure after epoch 5" in rec.error and rec.epochs == 5
    client = MlflowClient(uri)
    _, by_role = runs_by_role(client, "it-fail-late")
    (child,) = by_role["trial"]
    history = client.get_metric_history(child.info.run_id, "val_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(e, e / 100) for e in range(1, 6)]


def test_a_trial_trains_without_torch_dynamo_and_with_denormals_flushed(ray_session, tmp_path):
    """Every optimizer imports ``torch._dynamo`` (1.4-2 s of CPU per trial process) unless the trial's
    process has hpsearch's stand-in (``hpsearch.trainables.lazy_dynamo``); the thread that trains flushes
    denormal floats (a converging network's epochs cost 2.5-3x on denormal gradients)."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    space = {"hidden_layers": 1, "units": 16, "optimizer": {"choice": {"adam": {"lr": 0.01}, "sgd": {"lr": 0.05}}}}
    spec = make_spec("it-process", 2, 2, space=space, trainable="tests.integration_tests.helpers:process_probe")
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert {r.state for r in result.records} <= {"completed", "stopped_early"}, result.records
    client = MlflowClient(uri)
    _, by_role = runs_by_role(client, "it-process")
    seen = {
        (m["dynamo_before"], m["dynamo_now"], m["denormals_flushed"])
        for m in (run.data.metrics for run in by_role["trial"])
    }
    assert seen == {(0.0, 0.0, 1.0)}, seen


def test_a_diverging_config_ends_diverged_and_the_search_goes_on(ray_session, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    space = {
        "hidden_layers": 2,  # (one ReLU layer at lr=10 tends to die with a finite loss instead)
        "grad_clip": "none",
        "optimizer": {"choice": {"sgd": {"lr": {"choice": [10.0, 0.05]}, "momentum": 0.9}}},
    }
    # grace period = max epochs: ASHA stops nothing, so every lr=10 trial runs until it diverges
    spec = make_spec("it-diverge", num_trials=6, max_epochs=3, space=space, n_startup=6, grace_period=3)
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    lrs = {r.trial_id: r.config["optimizer.lr"] for r in result.records}
    assert 10.0 in lrs.values() and 0.05 in lrs.values()
    for rec in result.records:
        if rec.config["optimizer.lr"] == 10.0:
            assert rec.state == "diverged" and "non-finite" in rec.error
        else:
            assert rec.state == "completed"
    assert result.searcher_states["PRUNED"] == result.counts["diverged"] >= 1  # steers TPE away (not FAIL)
    assert result.searcher_states["COMPLETE"] == 6 - result.counts["diverged"]
    assert "FAIL" not in result.searcher_states
    client = MlflowClient(uri)
    _, by_role = runs_by_role(client, "it-diverge")
    diverged = [c for c in by_role["trial"] if c.data.tags["hpsearch.trial_state"] == "diverged"]
    assert len(diverged) == result.counts["diverged"] and all(c.info.status == "FAILED" for c in diverged)


def test_seed_practices_mlp_search_on_digits(ray_session, tmp_path):
    """The whole technique space, 40 trials: every trial ends in a known state, the best is good."""
    from hpsearch.spec import load_spec
    from tests.helpers import ROOT

    spec = load_spec(ROOT / "examples" / "seed_practices_digits.yaml")
    assert spec.search.num_trials >= 40
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    result = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    assert sum(result.counts[s] for s in ("completed", "stopped_early", "diverged", "failed")) == 40
    assert result.counts["failed"] == 0 and result.counts["stopped_early"] >= 10
    assert result.best is not None and result.best.metrics["val_accuracy"] > 0.93
    client = MlflowClient(uri)
    _, by_role = runs_by_role(client, spec.name)
    children = by_role["trial"]
    assert len(children) == 40
    for child in children:
        params = child.data.params
        # the config as trained: defaults filled in, only the chosen optimizer's options
        assert {"init", "batch_norm", "optimizer.lr", "schedule", "l1", "max_norm"} <= set(params)
        if params["activation"] == "selu":
            assert params["init"] == "lecun_normal" and params["batch_norm"] == "none"
        if params["optimizer"] != "sgd":
            assert "optimizer.nesterov" not in params


def test_warm_start_seeds_the_study_from_an_earlier_search_and_enqueued_configs_run_first(ray_session, tmp_path):
    """A second search (another experiment, a narrower space) starts from the first one's finished trials
    read back from MLflow: those in today's space seed its study, the others are skipped and counted; the
    parent run says where they came from; its enqueued configs are its first trials."""
    from hpsearch import spaces

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    first = run_search(make_spec("it-warm-a", 10, 3), tracking_uri=uri, storage=tmp_path / "runs", quiet=True)
    narrow = {**SPACE, "optimizer": {"choice": {"adam": {"lr": {"float": [1e-3, 1e-2], "log": True}}}}}
    enqueued = [{"optimizer": "adam", "optimizer.lr": 0.005, "activation": "elu"}, {"units": 32}]
    spec = make_spec("it-warm-b", 5, 3, space=narrow, warm_start="it-warm-a", enqueue=enqueued)
    second = run_search(spec, tracking_uri=uri, storage=tmp_path / "runs", quiet=True)

    client = MlflowClient(uri)
    _, earlier = runs_by_role(client, "it-warm-a")
    fits, outside = [], []
    for child in earlier["trial"]:
        config = json.loads(child.data.tags["hpsearch.config"])
        (fits if config["optimizer"] == "adam" else outside).append(child)
    assert fits and outside, "the first search tried both optimizers (seeded TPE): the test needs both"
    warm = second.warm_start
    assert warm is not None and warm.experiment == "it-warm-a"
    assert warm.trials == len(fits) and warm.outside_space == len(outside) and warm.not_finished == 0
    assert all("optimizer" in why for why in warm.outside_examples)
    states = {c.data.tags["hpsearch.trial_state"] for c in fits}
    assert set(warm.used) == {"COMPLETE" if s == "completed" else "PRUNED" for s in states}
    assert warm.searches == [earlier["search"][0].info.run_id]
    assert first.counts["completed"] + first.counts["stopped_early"] == len(fits) + len(outside)

    _, later = runs_by_role(client, "it-warm-b")
    (parent,) = later["search"]
    assert parent.data.tags["hpsearch.warm_start"] == "it-warm-a"
    assert parent.data.tags["hpsearch.warm_start_trials"] == str(len(fits))
    assert parent.data.params["search.warm_start"] == "it-warm-a"
    with open(client.download_artifacts(parent.info.run_id, "warm_start.json", str(tmp_path))) as f:
        recorded = json.load(f)
    assert recorded["trials"] == len(fits) and recorded["skipped"]["outside_space"] == len(outside)

    # this search's own trials: the three best earlier configs again (completed ones by value, then the
    # others by how far they got), then the enqueued ones, in order; Optuna's count leaves the prior out
    def rank(child):
        value = child.data.metrics["val_accuracy"]
        return (
            child.data.tags["hpsearch.trial_state"] != "completed",
            -int(child.data.tags["hpsearch.epochs"]),
            -value,
        )

    best3 = [json.loads(c.data.tags["hpsearch.config"]) for c in sorted(fits, key=rank)[:3]]
    assert warm.rerun == best3
    records = sorted(second.records, key=lambda r: r.index)  # start order (two start at once: either first)
    as_text = lambda configs: sorted(json.dumps(c, sort_keys=True) for c in configs)  # noqa: E731
    assert as_text(r.config for r in records[:3]) == as_text(best3)
    from itertools import permutations

    fits_enqueued = lambda recs: all({k: r.config.get(k) for k in w} == w for r, w in zip(recs, enqueued, strict=True))  # noqa: E731
    assert any(fits_enqueued(order) for order in permutations(records[3:])), records[3:]
    assert sum(second.searcher_states.values()) == 5
    space = spec.search_space
    assert all(spaces.to_optuna(space, r.config) for r in records)  # every trial lies in today's space


def test_no_tune_object_is_alive_when_the_local_ray_begins_to_stop(ray_session, tmp_path, monkeypatch):
    """`hpsearch run` stops its own Ray in a background thread while it writes the results. Tune's objects
    freed while that shutdown runs make Ray end the process with exit 1 ("The core worker has already been
    shutdown"; reproduced by freeing a Tuner 50 ms into a threaded ray.shutdown()): none may be left then."""
    import gc

    from hpsearch import raysetup

    alive = []

    def release_early():  # as the real one does before it stops Ray: collect what is unreachable
        gc.collect()
        alive.extend(type(o).__name__ for o in gc.get_objects() if type(o).__name__ in ("Tuner", "TuneController"))

    monkeypatch.setattr(raysetup, "release_early", release_early)
    spec = make_spec("no-tune-left", num_trials=2, max_epochs=1)
    result = run_search(spec, tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}", storage=tmp_path / "runs", quiet=True)
    assert result.status == "FINISHED"
    assert alive == []
