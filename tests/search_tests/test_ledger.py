from hpsearch.ledger import Ledger, reported_metrics
from tests.helpers import fake_trial


class Recorder:
    def __init__(self):
        self.events = []

    def trial_started(self, rec):
        self.events.append(("start", rec.name))

    def trial_result(self, rec, step, metrics):
        self.events.append(("result", rec.name, step))

    def trial_ended(self, rec):
        self.events.append(("end", rec.name, rec.state))

    def trial_restarted(self, rec):
        self.events.append(("restart", rec.name, rec.restarts))


def trial(trial_id, **config):
    return fake_trial(trial_id, **config)


def report(ledger, t, epoch, acc):
    ledger.on_trial_result(
        0,
        [],
        t,
        {
            "training_iteration": epoch,
            "val_accuracy": acc,
            "time_total_s": 1.0,
            "pid": 7,
            "done": False,
            "epoch": epoch,
        },
    )


def test_states_best_and_counts():
    recorder = Recorder()
    ledger = Ledger(max_epochs=3, metric="val_accuracy", mode="max", listeners=[recorder])
    a, b, c, d = trial("a", lr=0.1), trial("b", lr=0.2), trial("c", lr=0.3), trial("d", lr=0.4)
    for t in (a, b, c, d):
        ledger.on_trial_start(0, [], t)
    for epoch in (1, 2, 3):
        report(ledger, a, epoch, 0.5 + epoch / 10)
    ledger.on_trial_complete(0, [], a)
    report(ledger, b, 1, 0.3)
    ledger.on_trial_complete(0, [], b)  # stopped by ASHA after one epoch
    report(ledger, c, 1, 0.99)  # still running: not the best yet
    ledger.on_trial_error(0, [], d)

    assert [r.state for r in ledger.records.values()] == ["completed", "stopped_early", "running", "failed"]
    assert ledger.counts() == {"running": 1, "completed": 1, "stopped_early": 1, "diverged": 0, "failed": 1}
    assert ledger.best().name == "t001" and ledger.best().metrics == {"val_accuracy": 0.8}
    assert ledger.records["d"].error.startswith("unknown error")
    ledger.interrupt_running()
    assert ledger.records["c"].state == "failed" and ledger.records["c"].error.startswith("interrupted")
    assert ("end", "t003", "failed") in recorder.events and recorder.events[0] == ("start", "t001")


def test_min_mode_and_reported_metrics():
    ledger = Ledger(max_epochs=1, metric="val_loss", mode="min", listeners=[])
    for name, loss in (("x", 0.5), ("y", 0.2)):
        t = trial(name)
        ledger.on_trial_start(0, [], t)
        ledger.on_trial_result(0, [], t, {"training_iteration": 1, "val_loss": loss})
        ledger.on_trial_complete(0, [], t)
    assert ledger.best().trial_id == "y"
    assert reported_metrics({"val_loss": 1, "flag": True, "name": "x", "training_iteration": 3, "lr": 0.1}) == {
        "val_loss": 1.0,
        "lr": 0.1,
    }


def test_a_result_carrying_several_epochs_is_one_step_each():
    recorder = Recorder()
    ledger = Ledger(max_epochs=9, metric="val_accuracy", mode="max", listeners=[recorder])
    t = trial("a")
    ledger.on_trial_start(0, [], t)
    earlier = [{"epoch": 2, "val_accuracy": 0.2, "lr": 0.1}, {"epoch": 3, "val_accuracy": 0.3, "lr": 0.1}]
    result = {"epoch": 4, "val_accuracy": 0.4, "lr": 0.1, "training_iteration": 2, "earlier_epochs": earlier}
    ledger.on_trial_result(0, [], t, {"epoch": 1, "val_accuracy": 0.1, "training_iteration": 1})
    ledger.on_trial_result(0, [], t, result)
    assert [e[2] for e in recorder.events if e[0] == "result"] == [1, 2, 3, 4]
    rec = ledger.records["a"]
    assert rec.epochs == 4 and rec.metrics == {"val_accuracy": 0.4, "lr": 0.1}


def test_a_restarted_trial_keeps_its_record_and_each_epoch_once():
    from types import SimpleNamespace

    from hpsearch.faults import NODE_LOST, Failure

    recorder = Recorder()
    ledger = Ledger(4, "val_accuracy", "max", listeners=[recorder])
    t = trial("a", lr=0.1)
    ledger.on_trial_start(0, [], t)
    for epoch in (1, 2, 3):
        report(ledger, t, epoch, 0.1 * epoch)
    t = SimpleNamespace(**vars(t), _hpsearch_failure=Failure(NODE_LOST, "its node was lost (Socket closed)"))
    ledger.on_trial_recover(0, [], t)
    ledger.on_trial_start(0, [], t)  # Tune starts it again: the same record
    for epoch in (2, 3, 4):  # from its epoch-1 checkpoint: epochs 2 and 3 again, then 4
        report(ledger, t, epoch, 0.5)
    ledger.on_trial_complete(0, [], t)
    rec = ledger.records["a"]
    assert (rec.restarts, rec.restart_cause, rec.state, rec.epochs) == (
        1,
        "its node was lost (Socket closed)",
        "completed",
        4,
    )
    assert [e for e in recorder.events if e[0] == "result"] == [("result", "t001", s) for s in (1, 2, 3, 4)]
    assert ("restart", "t001", 1) in recorder.events and recorder.events.count(("start", "t001")) == 1
    assert rec.metrics["val_accuracy"] == 0.5


def test_a_process_death_is_a_failure_that_says_how():
    from types import SimpleNamespace

    from hpsearch.faults import PROCESS_DIED, Failure

    ledger = Ledger(4, "val_accuracy", "max", listeners=[])
    t = trial("b")
    ledger.on_trial_start(0, [], t)
    t = SimpleNamespace(
        **vars(t), _hpsearch_failure=Failure(PROCESS_DIED, "the trainable ended its process with os._exit(3)")
    )
    ledger.on_trial_error(0, [], t)
    rec = ledger.records["b"]
    assert rec.state == "failed" and rec.error == "ProcessDied: the trainable ended its process with os._exit(3)"
