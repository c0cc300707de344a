"""The benchmarks are not tests; these only check that they run, on a tiny size, and print their
machine-readable last lines."""

import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT, cli_env

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _run(*args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


LAST_LINE = (
    r"ratio_vs_tuned_raytune=(\S+) ratio_vs_optuna=(\S+) ratio_vs_optuna_threads=(\S+) "
    r"summary_ratio_vs_optuna_threads=(\S+) command_ratio_vs_optuna_threads=(\S+) first_epoch_a=(\S+) "
    r"utilisation_a=(\S+)"
)


def _check_rows(out: str, variants: str) -> None:
    rows = {line[0]: line for line in out.splitlines() if re.match(r"[a-e]  \S", line)}
    assert sorted(rows) == sorted(variants), out
    for row in rows.values():
        wall, summary, command, first = (float(x) for x in row[47:].split()[:4])
        assert 0 < first < summary <= command and 0 < wall < summary, row  # the summary comes after the search
    reported = re.search(r"(\d+)/(\d+)", rows["a"])
    assert reported and reported.group(1) == reported.group(2)  # every metric point reached MLflow


def test_overhead_benchmark_compares_the_five_variants():
    out = _run("benchmarks.overhead", "--trials", "3")
    names = ("hpsearch run (MLflow on)", "Ray Tune defaults", "reuse_actors", "in-process Optuna", "n_jobs threads")
    assert all(name in out for name in names)
    _check_rows(out, "abcde")
    match = re.fullmatch(LAST_LINE, out.strip().splitlines()[-1])
    assert match and all(float(v) > 0 for v in match.groups()), out


def test_overhead_benchmark_realistic_workload_against_threaded_optuna():
    out = _run("benchmarks.overhead", "--workload", "realistic", "--trials", "2", "--variants", "ae")
    assert "realistic workload, 2 trials" in out
    _check_rows(out, "ae")
    match = re.fullmatch(LAST_LINE, out.strip().splitlines()[-1])
    assert match, out
    assert all(float(match.group(i)) > 0 for i in (3, 4, 5)) and match.group(1) == "nan", out


def test_overhead_benchmark_scale_mode():
    out = _run("benchmarks.overhead", "--scale", "12")
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"scale_overhead_ratio=\d+\.\d+ driver_max_rss_mb=\d+", last), last


def test_epoch_cost_benchmark_sets_a_trial_epoch_beside_a_plain_ray_task_epoch():
    out = _run("benchmarks.epoch_cost", "--rounds", "1", "--trials", "2", "--epochs", "4")
    row = next(line for line in out.splitlines() if re.match(r"\s+0\s", line))
    trial_s, task_s = (float(x) for x in row.split()[1:3])
    assert 0 < trial_s < 5 and 0 < task_s < 5, out
    trial_epochs, task_epochs = (int(x) for x in row.split()[-2].split("/"))
    assert trial_epochs == 2 * (4 - 1) and task_epochs >= 2, out  # every epoch after each trial's first
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(
        r"epoch_cpu_ratio_trial_vs_task=(\S+) quartiles=(\S+)-(\S+) pairs=(\d+) rounds=(\S+) "
        r"orchestration_ms_per_epoch=(\S+)",
        last,
    )
    assert match and float(match.group(1)) > 0 and int(match.group(4)) >= 2, last


def test_throughput_benchmark():
    out = _run("benchmarks.throughput", "--repeats", "1", "--mlp-samples", "512", "--cnn-samples", "96")
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"mlp_speedup=(\S+) cnn_speedup=(\S+)", last)
    assert match and all(float(v) > 0 for v in match.groups()), last


def test_quality_benchmark_compares_the_four_methods_and_warm_start(tmp_path):
    out = _run("benchmarks.quality", "--workloads", "digits", "--seeds", "1", "--trials", "4", "--out", str(tmp_path))
    rows = {line.split()[0]: line for line in out.splitlines() if re.match(r"  [abcd] ", line)}
    assert sorted(rows) == ["a", "b", "c", "d"], out
    for row in rows.values():  # best at 25 %, 50 %, 100 % of the budget never falls; a test accuracy
        values = [float(x) for x in re.findall(r"(\d\.\d{4}) ±", row)]
        assert len(values) == 4 and values[0] <= values[1] <= values[2] and 0 < values[3] <= 1, row
    assert re.search(r"warm start, digits seed 0: first search best 0\.\d+ after \d+ of \d+ epochs", out), out
    assert re.fullmatch(r"quality digits=(ahead|behind)", out.strip().splitlines()[-1]), out
    import json

    results = json.loads((tmp_path / "quality.json").read_text())
    (seed,) = results["workloads"]["digits"]["seeds"]
    assert all(m["epochs_spent"] >= seed["budget"] > 0 for m in seed["methods"].values())
    assert (tmp_path / "quality.png").read_bytes()[:4] == b"\x89PNG"


def test_data_memory_runs_and_prints_its_ratios():
    out = _run(
        "benchmarks.data_memory", "--gb", "0.02", "--reference-gb", "0.01", "--speed-gb", "0.005", "--repeats", "1"
    )
    last = out.strip().splitlines()[-1]
    assert last.startswith("memory_ratio=") and "streamed_vs_plain=" in last, out[-2000:]
