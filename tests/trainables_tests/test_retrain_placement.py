"""``hpsearch retrain`` places data and sizes test batches as a search's trial does (issue 24 b): the data
set on the GPU only when it fits in half of what is free, the test split in host memory, test batches of
the size validation uses. No GPU here: the free-memory query is faked and `meta` stands in for the GPU."""

import torch

from hpsearch.review import testing
from hpsearch.spec import parse_spec
from hpsearch.trainables import device as dev
from hpsearch.trainables.data import Splits
from hpsearch.trainables.feeds import Streamed


def digits_spec():
    return parse_spec({"name": "r", "data": {"dataset": "digits"}, "space": {"units": 16},
                       "search": {"num_trials": 1, "scheduler": {"max_epochs": 1}}})  # fmt: skip


def test_the_data_goes_to_the_gpu_only_when_it_fits_and_the_test_split_stays_on_the_host(monkeypatch):
    free = {"bytes": 8 * 2**30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 16 * 2**30))
    placed = testing.retrain_data(digits_spec(), "meta", dev.DevicePlan("cuda"))
    assert isinstance(placed, Splits) and placed.train_x.device.type == "meta"
    assert placed.test_x.device.type == "cpu"  # tested batch by batch: never all of it on the GPU
    free["bytes"] = 1000  # a GPU whose memory its neighbours hold: batches copied over, as in a trial
    assert isinstance(testing.retrain_data(digits_spec(), "meta", dev.DevicePlan("cuda")), Streamed)


def test_test_batches_have_the_size_validation_uses():
    assert testing.test_batch_size(64 * 4, {"batch_size": 64}) == 4096  # digits
    # 224x224 images: a training batch at a time, not 4096 (~13 GB in the first convolution)
    assert testing.test_batch_size(3 * 224 * 224 * 4, {"batch_size": 32}) == 32
