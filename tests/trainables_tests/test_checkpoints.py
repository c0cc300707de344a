"""Trial checkpoints are data: loaded with ``weights_only=True`` (no code runs from the storage), and a
newest checkpoint that cannot be read (truncated when its node died, damaged, not data) gives way to the
previous one, which the trial says it resumed from."""

import copy
import os
import pickle

import pytest
import torch
from ray import tune

from hpsearch.sources import load_data
from hpsearch.trainables import loop
from hpsearch.trainables.tune_adapter import CheckpointUnreadable, load_checkpoint, restore_checkpoint


@pytest.fixture(scope="module")
def states():
    data = load_data({"dataset": "synthetic", "samples": 300, "shape": [12], "classes": 3, "seed": 0})
    out = []
    loop.train_model(
        "mlp", {"units": 16, "batch_size": 32}, data, 3, lambda m, s=None: out.append(copy.deepcopy(s)), 0, None, 1
    )
    return out


def trial_dir(tmp_path, states):
    """A trial's folder as Tune keeps it: checkpoint_000000 .. checkpoint_000002, one per epoch."""
    for i, state in enumerate(states):
        folder = tmp_path / "trial" / f"checkpoint_{i:06d}"
        folder.mkdir(parents=True)
        torch.save(state, folder / "state.pt")
    return tmp_path / "trial"


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_trials_state_with_rng_streams_loads_as_data(states, tmp_path):
    torch.save(states[0], tmp_path / "state.pt")
    loaded = load_checkpoint(str(tmp_path / "state.pt"))
    assert loaded["epoch"] == 1 and set(loaded["rng"]) >= {"torch", "generator"}
    assert torch.equal(loaded["model"][next(iter(loaded["model"]))], states[0]["model"][next(iter(states[0]["model"]))])


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"epoch": 1, "model": RunsCode()}, tmp_path / "state.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(str(tmp_path / "state.pt"))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "runs_code"])
def test_an_unreadable_newest_checkpoint_falls_back_to_the_previous_one(states, tmp_path, monkeypatch, damage):
    monkeypatch.chdir(tmp_path)
    folder = trial_dir(tmp_path, states)
    newest = folder / "checkpoint_000002" / "state.pt"
    if damage == "truncated":  # the node died mid-write
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    elif damage == "empty":
        newest.write_bytes(b"")
    else:
        torch.save({"epoch": 3, "model": RunsCode()}, newest)
    state, note, _ = restore_checkpoint(tune.Checkpoint(str(folder / "checkpoint_000002")))
    assert state["epoch"] == 2
    assert note.startswith("resumed from checkpoint_000001 (epoch 2): newer unreadable: checkpoint_000002: "), note
    assert not (tmp_path / "pwned").exists()


def test_the_newest_readable_one_is_used_and_none_readable_is_said(states, tmp_path):
    folder = trial_dir(tmp_path, states)
    state, note, _ = restore_checkpoint(tune.Checkpoint(str(folder / "checkpoint_000002")))
    assert state["epoch"] == 3 and note is None
    for i in range(3):
        (folder / f"checkpoint_{i:06d}" / "state.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(CheckpointUnreadable) as err:
        restore_checkpoint(tune.Checkpoint(str(folder / "checkpoint_000002")))
    assert all(f"checkpoint_00000{i}" in str(err.value) for i in range(3))


def test_a_checkpoint_gives_back_the_metrics_of_its_epoch(states, tmp_path):
    """What a restored trial reports again first (the search keeps each epoch once): a group's checkpoint
    may be written and its result lost with a killed driver, so the checkpoint carries that result."""
    import json

    from hpsearch.trainables.tune_adapter import RESULT_FILE

    folder = trial_dir(tmp_path, states)
    assert restore_checkpoint(tune.Checkpoint(str(folder / "checkpoint_000002")))[2] is None  # written without
    (folder / "checkpoint_000002" / RESULT_FILE).write_text(json.dumps({"epoch": 3, "val_loss": 0.25}))
    assert restore_checkpoint(tune.Checkpoint(str(folder / "checkpoint_000002")))[2] == {"epoch": 3, "val_loss": 0.25}
