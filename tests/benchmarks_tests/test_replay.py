"""The replay workloads: the recorded tables hold every config of their spaces, the replay trainable gives
back what was recorded, the virtual-clock driver runs searches as Tune would, and the statistics."""

from __future__ import annotations

import math

import pytest

from benchmarks.replay import Table, TuneMethod, epoch_metrics, load_table, replay_digits_mlp, simulate
from benchmarks.replay_quality import METHODS, compare, hypervolume_within, method_for, mo_method_for, run, verdict
from benchmarks.replay_spaces import WORKLOADS, config_key, configs_of
from hpsearch import spaces
from hpsearch.protocol import TrialDiverged


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_each_table_holds_every_config_of_its_space_with_its_curve(name):
    table = load_table(name)
    assert set(table.configs) == {config_key(c) for c in configs_of(WORKLOADS[name].space)}
    for curve in table.configs.values():
        n = len(curve["epochs"])
        assert n == table.max_epochs if curve["diverged_at"] is None else n == curve["diverged_at"] - 1
        assert all(s > 0 and 0 <= acc <= 1 for s, acc, _ in curve["epochs"])
        if curve["diverged_at"] != 1:  # one that diverged in its first epoch never reported its costs
            assert curve["params"] > 0 and curve["latency_ms"] > 0
    finals = sorted(c["epochs"][-1][1] for c in table.configs.values() if c["diverged_at"] is None)
    assert finals[len(finals) // 10] < finals[-1] - 0.2  # a spread to search in: a tenth of them far from the best


def test_the_replay_trainable_reports_the_recorded_metrics_and_divergence(monkeypatch):
    monkeypatch.setenv("HPSEARCH_REPLAY_TIME_SCALE", "0")
    table = load_table("digits_mlp")
    done = next(c for c in configs_of(WORKLOADS["digits_mlp"].space) if table.curve(c)["diverged_at"] is None)
    got: list = []
    replay_digits_mlp(done, None, table.max_epochs, lambda m, s=None: got.append((m, s)))
    assert [m for m, _ in got] == [epoch_metrics(table.curve(done), e) for e in range(1, table.max_epochs + 1)]
    rest: list = []
    replay_digits_mlp(done, None, table.max_epochs, lambda m, s=None: rest.append(m), resume=got[3][1])
    assert [m["epoch"] for m in rest] == list(range(5, table.max_epochs + 1))
    bad = [c for c in configs_of(WORKLOADS["digits_mlp"].space) if table.curve(c)["diverged_at"]]
    assert bad, "the table records divergences (SGD at rate 1.0)"
    with pytest.raises(TrialDiverged):
        replay_digits_mlp(bad[0], None, table.max_epochs, lambda m, s=None: None)


def _toy() -> Table:
    """Four configs; b's epochs are slow, d diverges at epoch 2."""
    space = spaces.parse_space({"x": {"choice": ["a", "b", "c", "d"]}})
    curves = {
        "a": {"epochs": [[1.0, 0.5, 1], [1.0, 0.6, 1], [1.0, 0.7, 1]], "diverged_at": None},
        "b": {"epochs": [[5.0, 0.9, 1], [5.0, 0.95, 1], [5.0, 0.99, 1]], "diverged_at": None},
        "c": {"epochs": [[1.0, 0.1, 1], [1.0, 0.1, 1], [1.0, 0.1, 1]], "diverged_at": None},
        "d": {"epochs": [[1.0, 0.2, 1]], "diverged_at": 2},
    }
    configs = {config_key({"x": k}): {**v, "params": 1.0, "latency_ms": 1.0} for k, v in curves.items()}
    return Table("toy", space, 3, configs)


class Fixed:
    """A method that proposes a, b, c, d in order and never stops a trial (it records what it was told)."""

    def __init__(self):
        self.order, self.told = iter("abcd"), []

    def start(self, tid):
        x = next(self.order, None)
        return None if x is None else {"x": x}

    def result(self, tid, metrics):
        self.told.append((tid, metrics["epoch"]))
        return True

    def end(self, tid, metrics, stopped, diverged):
        self.told.append((tid, "diverged" if diverged else "end"))


def test_epochs_end_at_their_recorded_times_two_trials_at_a_time():
    method = Fixed()
    timeline = simulate(_toy(), method, budget=100, concurrency=2)
    # t=1,2,3: a's epochs (b's first ends at 5); then c starts at 3: 4, 5 (b), 6; then d: 7 (1), 8 diverges
    assert timeline.trials == ["t0000", "t0000", "t0000", "t0002", "t0001", "t0002", "t0002", "t0003", "t0003",
                               "t0001", "t0001"]  # fmt: skip
    assert timeline.values[7:9] == [0.2, None]
    assert ("t0003", "diverged") in method.told and set(timeline.finished) == {"t0000", "t0001", "t0002"}
    assert timeline.best_within(4) == 0.7 and timeline.best_within(5) == 0.9
    assert len(simulate(_toy(), Fixed(), budget=5).values) == 5  # the budget is epochs spent


def test_the_hpsearch_method_is_the_search_run_builds_and_asha_stops_trials():
    table = load_table("digits_mlp")
    method = method_for("a", table, seed=0)
    assert isinstance(method, TuneMethod) and type(method.searcher).__name__ == "SpaceSearch"
    first = simulate(table, method, budget=60)
    again = simulate(table, method_for("a", table, seed=0), budget=60)
    assert first.values == again.values  # deterministic for a seed
    started = len(set(first.trials))
    assert started > 60 / table.max_epochs + 3  # ASHA stopped most at their first rung
    states = method.searcher.trial_states()
    assert states.get("PRUNED", 0) >= started - len(first.finished) - 2  # stopped ones told as PRUNED


def test_each_method_runs_and_the_comparison_is_a_signed_rank_test():
    table = load_table("images_cnn")
    for key in ("b", "c", "d", "gp", "hyperband", "median", "fifo", "noliar"):
        timeline = simulate(table, method_for(key, table, seed=1), budget=40)
        assert len(timeline.values) == 40 and timeline.best_within(40) > 0.2, key
    mo = simulate(load_table("digits_mlp"), mo_method_for("nsga2", load_table("digits_mlp"), seed=0), budget=60)
    assert hypervolume_within(load_table("digits_mlp"), mo, 60) > 0
    a, b = [0.9 + 0.001 * i for i in range(20)], [0.9 + 0.001 * i - 0.002 for i in range(20)]
    assert compare(a, b)["wins"] == 20 and compare(a, b)["p"] < 1e-3 and verdict(compare(a, b)) == "ahead"
    assert compare(a, a) == {"wins": 0, "ties": 20, "losses": 0, "median_diff": 0.0, "p": 1.0}
    assert verdict(compare(b, a)) == "behind"
    results = run(["images_cnn"], ["a", "d"], seeds=3, objectives=False)
    w = results["workloads"]["images_cnn"]
    assert set(w["methods"]) == {"a", "d"} and len(w["methods"]["d"]["a_vs"]) == 3
    assert all(not math.isnan(v) for v in w["methods"]["a"]["median"])


def test_the_command_writes_its_results_for_one_and_two_objectives(tmp_path, capsys):
    from benchmarks.replay_quality import main

    main(["--workloads", "images_cnn", "--methods", "a", "d", "--seeds", "2", "--out", str(tmp_path)])
    assert "| images_cnn (budget 150" in capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} == {"replay.json", "replay.png"}
    main(["--objectives", "--scheduler", "fifo", "--seeds", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| digits_mlp | a hpsearch (MOTPE)" in out and "nsga2" in out and "random" in out
    import json

    mo = json.loads((tmp_path / "replay_objectives.json").read_text())["workloads"]["digits_mlp"]["methods"]
    assert set(mo) == {"a", "nsga2", "random"} and all(0 < v <= 1 for m in mo.values() for v in m["median"])


def test_every_method_is_the_same_search_for_the_same_seed():
    table = load_table("images_cnn")
    for key in METHODS:  # Ray's Hyperband and Optuna's drew brackets unseeded
        runs = [simulate(table, method_for(key, table, seed=2), budget=60).values for _ in range(2)]
        assert runs[0] == runs[1], key
