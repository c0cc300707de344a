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


def test_overhead_benchmark_compares_the_four_variants():
    out = _run("benchmarks.overhead", "--trials", "3")
    for name in ("hpsearch run (MLflow on)", "Ray Tune defaults", "reuse_actors", "in-process Optuna"):
        assert name in out
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"ratio_vs_tuned_raytune=(\S+) ratio_vs_optuna=(\S+) utilisation_a=(\S+)", last)
    assert match and all(float(v) > 0 for v in match.groups()), last
    row = next(line for line in out.splitlines() if line.startswith("a  hpsearch run"))
    reported = re.search(r"(\d+)/(\d+)", row)
    assert reported and reported.group(1) == reported.group(2)  # every metric point reached MLflow


def test_overhead_benchmark_scale_mode():
    out = _run("benchmarks.overhead", "--scale", "12")
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"scale_overhead_ratio=\d+\.\d+ driver_max_rss_mb=\d+", last), last


def test_throughput_benchmark():
    out = _run("benchmarks.throughput", "--repeats", "1", "--mlp-samples", "512", "--cnn-samples", "96")
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"mlp_speedup=(\S+) cnn_speedup=(\S+)", last)
    assert match and all(float(v) > 0 for v in match.groups()), last
