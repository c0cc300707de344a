"""One writer per search: the run directory's lock (a flock locally, a lease on storage URIs)."""

import json
import signal
import subprocess
import sys
import time

import pytest

from hpsearch import lock as locks
from hpsearch import rundir

HOLD = (
    "import sys, time\n"
    "from hpsearch import lock\n"
    "lock.acquire(sys.argv[1], 'resume')\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


def hold_in_another_process(run_dir, env=None):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_naming_the_first_until_it_is_killed(tmp_path):
    run_dir = str(tmp_path / "search-1")
    other = hold_in_another_process(run_dir)
    try:
        with pytest.raises(locks.SearchLocked) as err:
            locks.acquire(run_dir, "sync")
        message = str(err.value)
        assert f"{run_dir} is in use: `hpsearch resume` (pid {other.pid} on " in message and "since 20" in message
    finally:
        other.send_signal(signal.SIGKILL)  # dies without releasing anything: the kernel drops its flock
        other.wait()
    lock = locks.acquire(run_dir, "sync")
    assert json.loads((tmp_path / "search-1" / locks.LOCK_FILE).read_text())["command"] == "sync"
    again = locks.acquire(run_dir, "sync")  # re-entrant in one process (resume syncs under its own lock)
    assert again is lock
    with pytest.raises(locks.SearchLocked):
        locks.acquire(run_dir, "run", reentrant=False)
    again.release()
    lock.release()
    locks.acquire(run_dir, "run", reentrant=False).release()


def test_two_searches_started_in_the_same_second_get_their_own_run_directories(tmp_path):
    first, first_lock = locks.new_run_dir(str(tmp_path), "digits-20261206-101010", fixed=False)
    second, second_lock = locks.new_run_dir(str(tmp_path), "digits-20261206-101010", fixed=False)
    assert (first, second) == (f"{tmp_path}/digits-20261206-101010", f"{tmp_path}/digits-20261206-101010-2")
    first_lock.release()
    ended = rundir.RunMeta("name: x", "sqlite:///m.db", "1", "abc", status="FINISHED")
    rundir.write_meta(f"{tmp_path}/digits-20261206-101010", ended)  # a search's, ended
    third, third_lock = locks.new_run_dir(str(tmp_path), "digits-20261206-101010", fixed=False)
    assert third == f"{tmp_path}/digits-20261206-101010-3"  # neither a live one nor an ended one's
    with pytest.raises(locks.SearchLocked):
        locks.new_run_dir(str(tmp_path), "digits-20261206-101010-2", fixed=True)
    second_lock.release()
    third_lock.release()


def test_a_lease_on_s3_refuses_a_second_holder_and_expires_when_its_holder_is_gone(monkeypatch):
    import os

    import boto3

    from tests.integration_tests.servers import moto_s3

    with moto_s3(buckets=("runs",)) as aws:
        for name, value in aws.items():
            monkeypatch.setenv(name, value)
        run_dir = "s3://runs/searches/s1"
        other = hold_in_another_process(run_dir, env=dict(os.environ))
        try:
            with pytest.raises(locks.SearchLocked, match=rf"`hpsearch resume` \(pid {other.pid} on "):
                locks.acquire(run_dir, "sync")
        finally:
            other.send_signal(signal.SIGKILL)
            other.wait()
        with pytest.raises(locks.SearchLocked):  # its lease runs on after it died ...
            locks.acquire(run_dir, "sync")
        lease = json.loads(
            boto3.client("s3").get_object(Bucket="runs", Key=f"searches/s1/{locks.LOCK_FILE}")["Body"].read()
        )
        with monkeypatch.context() as later:
            later.setattr(time, "time", lambda: lease["expires"] + 1)  # ... until it expires
            lock = locks.acquire(run_dir, "sync")
        lock.release()
        assert "Contents" not in boto3.client("s3").list_objects_v2(
            Bucket="runs", Prefix=f"searches/s1/{locks.LOCK_FILE}"
        )  # released: the lease is gone


def test_sync_does_not_touch_a_journal_a_live_search_holds(tmp_path):
    from hpsearch.sync import sync
    from hpsearch.tracking.journal import JOURNAL_FILE

    run_dir = tmp_path / "search-1"
    rundir.write_meta(str(run_dir), rundir.RunMeta("name: x", f"sqlite:///{tmp_path / 'm.db'}", "1", "abc"))
    journal = run_dir / JOURNAL_FILE
    journal.write_text('{"kind":"tags","ref":"t1","data":{"tags":{}},"run_id":null}\n')
    other = hold_in_another_process(run_dir)
    try:
        with pytest.raises(locks.SearchLocked, match="is in use: `hpsearch resume`"):
            sync(run_dir)
        assert journal.read_text().count("\n") == 1  # neither replayed nor rewritten
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
