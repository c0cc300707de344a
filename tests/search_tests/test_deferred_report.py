"""The end-of-search report is off the path to the summary: `hpsearch run` writes the results, prints the
summary, then makes the report (plots, importances). Real MLflow on SQLite; the report is a recorder.
And the command ends without Python's slow teardown, but with everything an exit does."""

import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from hpsearch.run import SearchResult
from hpsearch.tracking.records import TrialRecord
from hpsearch.tracking.tags import STATUS
from hpsearch.tracking.tracker import MlflowTracker


def tracker_with_a_trial(tmp_path: Path, report) -> tuple[MlflowTracker, MlflowClient]:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = MlflowTracker(uri, "deferred", report=report)
    tracker.start("search", {"space": "inline"}, {}, {})
    tracker.wait_ready()
    rec = TrialRecord(1, "trial-a", {"lr": 0.1})
    tracker.trial_started(rec)
    tracker.trial_result(rec, 1, {"val_accuracy": 0.5})
    rec.state, rec.epochs = "completed", 1
    tracker.trial_ended(rec)
    return tracker, MlflowClient(uri)


def test_a_deferred_report_comes_after_the_results_and_is_made_once(tmp_path):
    seen = []

    def report(client, run_id):  # what the store holds when the report is made
        run = client.get_run(run_id)
        seen.append((run.info.status, run.data.tags.get(STATUS), run.data.metrics.get("best_val_accuracy")))

    tracker, client = tracker_with_a_trial(tmp_path, report)
    assert tracker.finish("FINISHED", {"best_val_accuracy": 0.5}, {}, {STATUS: "FINISHED"}, {}, defer_report=True) == []
    parent = client.get_run(tracker.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_val_accuracy"] == 0.5
    assert seen == []  # the results are written; the report is not made yet
    assert tracker.write_report() == []
    assert seen == [("FINISHED", "FINISHED", 0.5)]
    assert tracker.write_report() == [] and len(seen) == 1  # once


def test_without_deferring_the_report_is_made_before_finish_returns(tmp_path):
    seen = []
    tracker, _ = tracker_with_a_trial(tmp_path, lambda client, run_id: seen.append(run_id))
    assert tracker.finish("FINISHED", {}, {}, {}, {}) == []
    assert seen == [tracker.parent_run_id]
    assert tracker.write_report() == [] and len(seen) == 1


def test_a_deferred_report_that_fails_is_reported_not_raised(tmp_path):
    def report(client, run_id):
        raise RuntimeError("matplotlib is broken")

    tracker, _ = tracker_with_a_trial(tmp_path, report)
    assert tracker.finish("FINISHED", {}, {}, {}, {}, defer_report=True) == []
    (error,) = tracker.write_report()
    assert "matplotlib is broken" in error


def test_the_report_imports_wait_until_every_trial_has_started(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = MlflowTracker(uri, "warm", report=lambda client, run_id: None)
    warmed = []
    tracker.report_job.warm_up = lambda: warmed.append(len(started))  # type: ignore[method-assign]
    started: list[TrialRecord] = []
    tracker.report_job.warm_up_when = lambda: len(started) >= 3  # the search: every one of its 3 trials has started
    tracker.start("search", {}, {}, {})
    tracker.wait_ready()
    for i in range(1, 4):
        rec = TrialRecord(i, f"trial-{i}", {"lr": 0.1})
        started.append(rec)
        tracker.trial_started(rec)
        if i == 2:  # trial 1 ends while trial 2 runs and trial 3 has not started: every core still trains
            first = started[0]
            first.state, first.epochs = "completed", 1
            tracker.trial_ended(first)
            assert tracker.report_job.thread is None
    for rec in started[1:]:
        rec.state, rec.epochs = "completed", 1
        tracker.trial_ended(rec)
    tracker.finish("FINISHED", {}, {}, {}, {})
    assert tracker.report_job.thread is not None and tracker.report_job.thread.name == "hpsearch-report-imports"
    tracker.report_job.thread.join(10)
    assert warmed == [3]  # once, at the first trial that ended after the last one started


def result_with(report_writer, pending: int = 0) -> SearchResult:
    return SearchResult(
        spec_name="deferred",
        status="FINISHED",
        metric="val_accuracy",
        mode="max",
        tracking_uri="sqlite:///mlruns.db",
        experiment_id="1",
        parent_run_id="abc123",
        run_dir=Path("runs/deferred"),
        wall_time_s=1.0,
        counts={"completed": 1},
        best=None,
        num_trials=1,
        pending_writes=pending,
        journal="runs/deferred/mlflow-journal.jsonl",
        report_writer=report_writer,
    )


def test_hpsearch_run_prints_the_summary_before_it_makes_the_report(capsys):
    from hpsearch import cli
    from hpsearch.cli import searches

    printed_before = []

    def make_report():
        printed_before.append(capsys.readouterr().out)
        return [], 0

    result = result_with(make_report)
    assert searches.outcome(result) == cli.EXIT_OK
    (before,) = printed_before
    assert "hpsearch: deferred" in before and "Report: hpsearch report deferred" in before  # the summary
    assert "report written: report/ of parent run abc123" in capsys.readouterr().out
    assert result.report_writer is None and result.write_report() == []  # made once


def test_a_report_that_fails_or_waits_for_the_store_is_said_after_the_summary(capsys):
    from hpsearch.cli import searches

    failed = result_with(lambda: (["RuntimeError: no disk"], 0))
    searches.outcome(failed)
    assert "the search's report was not written: RuntimeError: no disk" in capsys.readouterr().out
    assert failed.tracking_errors == ["RuntimeError: no disk"]

    waits = result_with(lambda: ([], 3), pending=2)  # the store went away: the report joined the journal
    searches.outcome(waits)
    out = capsys.readouterr().out
    assert "the search's report waits in runs/deferred/mlflow-journal.jsonl" in out
    assert "hpsearch sync runs/deferred" in out and waits.pending_writes == 3


def test_the_command_exit_waits_for_threads_runs_exit_handlers_and_flushes(tmp_path):
    script = """
import atexit, sys, threading, time
from hpsearch import cli
atexit.register(lambda: print("exit handler ran", flush=True))
def late():
    time.sleep(0.5)
    (out / "thread.txt").write_text("done")
from pathlib import Path
out = Path(sys.argv[1])
threading.Thread(target=late, name="not-a-daemon").start()
sys.stdout.write("buffered, not flushed")
cli.main = lambda argv=None: 3
cli.entry()
print("never")
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "buffered, not flushedexit handler ran\n"
    assert (tmp_path / "thread.txt").read_text() == "done"  # the thread was waited for
