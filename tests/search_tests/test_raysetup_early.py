"""`raysetup.start_early`: what the background start raised is raised where the search waits for Ray."""

import pytest

from hpsearch import raysetup
from hpsearch.errors import HpsearchError


def test_an_early_start_that_failed_raises_its_error_in_init_ray(monkeypatch):
    calls = []

    def failing(address, num_cpus, log_to_driver):
        calls.append(address)
        raise HpsearchError(f"cannot join the Ray cluster at {address}: refused")

    monkeypatch.setattr(raysetup, "_init", failing)
    raysetup.start_early("127.0.0.1:1")
    with pytest.raises(HpsearchError, match="cannot join the Ray cluster at 127.0.0.1:1"):
        raysetup.init_ray("127.0.0.1:1")
    assert calls == ["127.0.0.1:1"]  # the wait did not start Ray a second time after the failure


def test_init_ray_without_an_early_start_starts_it_itself(monkeypatch):
    calls = []
    monkeypatch.setattr(raysetup, "_init", lambda *args: calls.append(args))
    raysetup.init_ray("127.0.0.1:6379", None, True)
    assert calls == [("127.0.0.1:6379", None, True)]


def test_an_early_start_is_waited_for_once(monkeypatch):
    calls = []
    monkeypatch.setattr(raysetup, "_init", lambda *args: calls.append(args))
    raysetup.start_early(None, 2, False)
    raysetup.init_ray(None, 2, False)  # waits for the thread's start, then _init (which finds Ray up)
    assert calls == [(None, 2, False)] * 2
    raysetup.init_ray(None, 2, False)  # nothing pending any more: _init alone
    assert calls == [(None, 2, False)] * 3


def test_init_ray_in_the_main_thread_keeps_the_sigterm_handler(monkeypatch):
    """``ray.init`` sets SIGTERM to ``sys.exit`` (a stopped search would end FAILED, without its
    summary): the handler the CLI set is put back."""
    import signal
    import sys

    def ray_init_like(*args):  # what ray.init does to SIGTERM in the main thread
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))

    def ours(signum, frame):
        pass

    monkeypatch.setattr(raysetup, "_connect", ray_init_like)
    previous = signal.signal(signal.SIGTERM, ours)
    try:
        raysetup.init_ray(None)
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_release_stops_only_the_ray_a_command_started_itself(monkeypatch):
    """A Ray the caller started (tests, a notebook) or a cluster the search joined stays up; the local
    Ray a command started early is shut down once, in a thread."""
    import threading

    import ray

    stopped = []
    monkeypatch.setattr(raysetup, "_init", lambda *args: None)
    monkeypatch.setattr(ray, "shutdown", lambda: stopped.append(threading.current_thread().name))

    def released() -> list[str]:
        for t in threading.enumerate():
            if t.name == "hpsearch-ray-shutdown":
                t.join(timeout=10)
        return stopped

    raysetup._early.clear()
    raysetup.release_early()  # nothing started early: nothing to stop
    raysetup.start_early("127.0.0.1:6379")
    raysetup.init_ray("127.0.0.1:6379")
    raysetup.release_early()  # a cluster: the driver only leaves it at exit, as before
    assert released() == []
    raysetup.start_early(None)
    raysetup.init_ray(None)
    raysetup.release_early()
    raysetup.release_early()  # once only
    assert released() == ["hpsearch-ray-shutdown"]


def test_release_frees_garbage_cycles_before_ray_stops(monkeypatch):
    """Tune's objects the search dropped sit in reference cycles; freed during the background shutdown
    they would make Ray end the process, so the shutdown thread collects them first."""
    import gc
    import threading

    import ray

    events = []

    class Held:  # stands for a Tune object in a cycle whose finaliser touches Ray
        def __del__(self):
            events.append("freed")

    monkeypatch.setattr(raysetup, "_init", lambda *args: None)
    monkeypatch.setattr(ray, "shutdown", lambda: events.append("shutdown"))
    raysetup._early.clear()
    raysetup.start_early(None)
    raysetup.init_ray(None)
    gc.disable()  # no automatic collection may free it first
    try:
        held = Held()
        held.me = held
        del held
        raysetup.release_early()
        for t in threading.enumerate():
            if t.name == "hpsearch-ray-shutdown":
                t.join(timeout=10)
    finally:
        gc.enable()
    assert events == ["freed", "shutdown"]
