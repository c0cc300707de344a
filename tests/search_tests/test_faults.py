"""Whose fault a failure is, from the errors Ray really raises (built as Ray builds them)."""

import os

from ray.core.generated.common_pb2 import ActorDiedErrorContext
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from hpsearch import faults
from hpsearch.protocol import fault_file


def died(message="The actor is dead because its worker process has died.", pid=4242):
    return ActorDiedError(
        ActorDiedErrorContext(actor_id=b"\x01" * 16, pid=pid, node_ip_address="10.0.0.7", error_message=message)
    )


def test_an_exception_in_the_trainable_is_its_own():
    exc = RayTaskError("train", "Traceback ...", ValueError("bad"))
    assert faults.classify(exc, "t1").kind == faults.RAISED


def test_a_diverged_config_and_an_out_of_memory_config_blame_the_config_other_failures_do_not():
    from hpsearch.protocol import TrialDiverged

    class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError's name (CUDA out of memory)
        pass

    diverged = faults.classify(RayTaskError("train", "Traceback ...", TrialDiverged("non-finite loss")), "t1")
    assert diverged.kind == faults.DIVERGED and diverged.blames_config
    cuda_oom = faults.classify(RayTaskError("train", "Traceback ...", OutOfMemoryError("CUDA out of memory")), "t1")
    assert cuda_oom.kind == faults.RAISED and cuda_oom.blames_config
    host_oom = faults.classify(died("Worker exit type: NODE_OUT_OF_MEMORY Task was killed."), "t1")
    assert host_oom.kind == faults.PROCESS_DIED and host_oom.blames_config
    assert not faults.classify(RayTaskError("train", "Traceback ...", ValueError("bad")), "t1").blames_config
    assert not faults.classify(died("The actor died because its node has died."), "t1").blames_config
    assert not faults.classify(died(pid=999999), "t1").blames_config  # killed: says nothing about the config


def test_an_unreachable_actor_is_a_lost_node():
    exc = ActorUnavailableError("The actor is temporarily unavailable: RpcError: Socket closed", b"\x02" * 16)
    failure = faults.classify(exc, "t1")
    assert failure.kind == faults.NODE_LOST and "Socket closed" in failure.text


def test_a_dead_node_is_a_lost_node():
    failure = faults.classify(died("The actor died because its node has died. Node Id: abc"), "t1")
    assert failure.kind == faults.NODE_LOST


def test_a_process_that_died_on_a_live_node_is_the_trainables_doing(tmp_path, monkeypatch):
    failure = faults.classify(died(pid=999999), "t1")
    assert failure.kind == faults.PROCESS_DIED and "SIGKILL" in failure.text and "999999" in failure.text
    oom = faults.classify(
        died("Worker exit type: NODE_OUT_OF_MEMORY Task was killed due to the node running low on memory."), "t1"
    )
    assert oom.kind == faults.PROCESS_DIED and "too much memory" in oom.text
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    path = fault_file(4243)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write('Fatal Python error: Segmentation fault\n\nCurrent thread:\n  File "/u/model.py", line 7 in forward\n')
    seg = faults.classify(died(pid=4243), "t1")
    assert seg.text == (
        'the trial\'s process died of a fatal signal: Fatal Python error: Segmentation fault (File "/u/model.py", line 7 in forward)'
    )
    assert not os.path.exists(path)  # read once


def test_within_the_limit_a_lost_node_is_not_counted_and_beyond_it_the_trial_gives_up(monkeypatch):
    from ray.tune.experiment import Trial

    monkeypatch.setattr(Trial, "local_path", property(lambda self: None))  # no error files (no Ray session)

    def new_trial(name):
        trial = Trial("PG", config={}, stub=True)
        trial.max_failures = 0
        return trial

    faults.install(max_node_restarts=2)
    trial = new_trial("a")
    lost = ActorUnavailableError("Socket closed", b"\x02" * 16)
    for _ in range(2):
        trial.handle_error(lost)
        assert trial.run_metadata.num_failures == 0 and trial.should_recover()
    trial.handle_error(lost)
    assert not trial.should_recover()
    assert "gave up after its node was lost 3 times" in faults.failure_of(trial).text
    other = new_trial("b")
    other.handle_error(died(pid=999999))  # its own process: counted as ever
    assert other.run_metadata.num_failures == 1 and not other.should_recover()
    # the searcher, which Tune tells only the trial id, gets each failure once
    assert faults.take_failure(other.trial_id).kind == faults.PROCESS_DIED
    assert faults.take_failure(other.trial_id) is None
    assert faults.take_failure(trial.trial_id).kind == faults.NODE_LOST


def test_rays_out_of_memory_error_becomes_an_actor_death_tune_handles():
    from ray.exceptions import OutOfMemoryError, RayActorError

    oom = OutOfMemoryError(
        "1 worker(s) were killed due to the node running low on memory.\n"
        "Memory on the node (IP: 10.0.0.7, ID: abc) was 5.85GB used / 23.54GB limit (0.248662)\n"
    )
    died = faults.as_actor_death(oom)
    assert isinstance(died, RayActorError)  # Tune's actor manager takes it (it raised on OutOfMemoryError)
    failure = faults.classify(died, "t1")
    assert failure.kind == faults.PROCESS_DIED
    assert failure.text == (
        "the trial's process was killed for using too much memory: "
        "Memory on the node (IP: 10.0.0.7, ID: abc) was 5.85GB used / 23.54GB limit (0.248662)"
    )
    other = ValueError("x")
    assert faults.as_actor_death(other) is other


def test_fault_files_of_processes_that_are_gone_are_swept(tmp_path, monkeypatch):
    import subprocess
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    gone = subprocess.Popen(["true"])
    gone.wait()
    for pid in (os.getpid(), gone.pid):
        os.makedirs(os.path.dirname(fault_file(pid)), exist_ok=True)
        open(fault_file(pid), "w").close()
    assert faults.sweep() == 1
    assert os.path.exists(fault_file(os.getpid())) and not os.path.exists(fault_file(gone.pid))


def test_a_death_on_another_node_says_where_a_fatal_signals_stack_would_be(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    failure = faults.classify(died(pid=31337), "t1")  # no fault file here: the process ran on another node
    assert failure.kind == faults.PROCESS_DIED
    assert failure.text.endswith(f"; or a fatal signal: then {fault_file(31337)} on 10.0.0.7 has its Python stack")
    os.makedirs(os.path.dirname(fault_file(31338)), exist_ok=True)
    open(fault_file(31338), "w").close()  # here, empty: SIGKILL on this node
    here = faults.classify(died(pid=31338), "t1").text
    assert "SIGKILL" in here and "or a fatal signal" not in here
