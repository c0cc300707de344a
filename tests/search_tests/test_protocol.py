"""Batched epochs: which epochs go to Tune together, and that ASHA still decides on its own epochs."""

import pytest

from hpsearch.protocol import EARLIER, EpochBatch
from hpsearch.schedulers.asha import asha_milestones


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def sent_epochs(batch, epochs, seconds_per_epoch=0.01, clock=None):
    sent = []
    for epoch in epochs:
        if clock is not None:
            clock.now += seconds_per_epoch
        if batch.add({"epoch": epoch, "val_accuracy": epoch / 10}):
            result = batch.take()
            sent.append([m["epoch"] for m in result.get(EARLIER, [])] + [result["epoch"]])
    return sent


@pytest.mark.parametrize(
    "max_t, grace, rf",
    [(10, 1, 3), (9, 1, 3), (27, 1, 3), (6, 1, 3), (20, 2, 2), (100, 1, 4), (12, 3, 2.5), (5, 5, 3), (1, 1, 3)],
)
def test_milestones_are_the_rungs_of_rays_asha(max_t, grace, rf):
    from ray.tune.schedulers import ASHAScheduler

    asha = ASHAScheduler(
        time_attr="epoch", metric="m", mode="max", max_t=max_t, grace_period=grace, reduction_factor=rf
    )
    rays = sorted(milestone for milestone, _ in asha._brackets[0]._rungs)  # Ray's own rungs (private: a guard)
    assert asha_milestones(max_t, grace, rf) == pytest.approx(rays)


def test_short_epochs_go_at_rungs_and_the_last_epoch_with_the_epochs_before_them():
    clock = Clock()
    batch = EpochBatch(10, asha_milestones(10, 1, 3), interval_s=1.0, clock=clock)
    assert sent_epochs(batch, range(1, 11), clock=clock) == [[1], [2, 3], [4, 5, 6, 7, 8, 9], [10]]


def test_long_epochs_each_go_on_their_own_and_interval_zero_sends_every_epoch():
    clock = Clock()
    batch = EpochBatch(6, [1, 3], interval_s=1.0, clock=clock)
    assert sent_epochs(batch, range(1, 7), seconds_per_epoch=1.5, clock=clock) == [[e] for e in range(1, 7)]
    assert sent_epochs(EpochBatch(4, [1, 3], interval_s=0.0), range(1, 5)) == [[1], [2], [3], [4]]


def test_the_interval_sends_between_rungs():
    clock = Clock()
    batch = EpochBatch(27, asha_milestones(27, 1, 3), interval_s=1.0, clock=clock)
    sent = sent_epochs(batch, range(1, 28), seconds_per_epoch=0.3, clock=clock)
    assert [s[-1] for s in sent] == [1, 3, 7, 9, 13, 17, 21, 25, 27]  # rungs 1, 3, 9, every 4th epoch (1.2 s), 27
    assert [e for s in sent for e in s] == list(range(1, 28))  # every epoch once, in order


def test_a_skipped_rung_epoch_sends_at_the_first_epoch_past_it_and_a_restored_trial_starts_after_its_checkpoint():
    assert sent_epochs(EpochBatch(10, [1, 3, 9], interval_s=60), [2, 4, 6, 8, 10]) == [[2], [4], [6, 8, 10]]
    assert sent_epochs(EpochBatch(10, [1, 3, 9], interval_s=60, sent_epoch=4), range(5, 11)) == [[5, 6, 7, 8, 9], [10]]
    assert sent_epochs(EpochBatch(12, [1, 2.5, 6.25], interval_s=60), range(1, 13)) == [
        [1],
        [2, 3],
        [4, 5, 6, 7],
        list(range(8, 13)),
    ]
