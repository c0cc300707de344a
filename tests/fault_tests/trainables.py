"""User-style trainables for the fault tests: each ends the way its config says, for real."""

import os
import signal
import time

from hpsearch.trainables.loop import train_mlp


def ends_itself(config, data, epochs, report, seed=0):
    """One epoch reported, then the process ends as ``config["outcome"]`` says (or trains normally)."""
    outcome = config["outcome"]
    if outcome == "ok":
        return train_mlp({}, data, epochs, report, seed)
    report({"val_accuracy": 0.1, "val_loss": 2.3})
    time.sleep(0.3)  # the epoch reaches the driver before the process goes
    if outcome == "exit":
        os._exit(3)
    if outcome == "abort":
        os.abort()
    if outcome == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if outcome == "segfault":  # a real one: a native library reading address 0
        import ctypes

        ctypes.string_at(0)
    raise ValueError(f"unknown outcome {outcome!r}")


def slow_mlp(config, data, epochs, report, seed=0, resume=None, checkpoint_every=1, device=None):
    """The built-in MLP, each epoch made to last ``config["epoch_s"]`` seconds (time to lose a node
    mid-trial). With ``config["hold"]`` (a path), a trial's last epoch waits while that file exists: a
    test holds the search open until it has done what it needs."""
    mlp = {k: v for k, v in config.items() if k not in ("epoch_s", "hold")}

    def slow_report(metrics, state=None):
        time.sleep(config["epoch_s"])
        if config.get("hold") and metrics.get("epoch") == epochs:
            while os.path.exists(config["hold"]):
                time.sleep(0.2)
        report(metrics, state)

    return train_mlp(
        mlp, data, epochs, slow_report, seed, resume=resume, checkpoint_every=checkpoint_every, device=device
    )


def eats_memory(config, data, epochs, report, seed=0):
    """One epoch reported, then it allocates (and touches) ``config["gib"]`` GiB, 256 MiB at a time,
    until something kills it (Ray's memory monitor, set to a threshold the test chose)."""
    report({"val_accuracy": 0.1, "val_loss": 2.3})
    time.sleep(0.3)
    held = []
    for _ in range(int(config["gib"] * 4)):
        block = bytearray(256 * 1024 * 1024)
        block[::4096] = b"\x01" * len(block[::4096])
        held.append(block)
        time.sleep(0.05)
    raise RuntimeError(f"allocated {config['gib']} GiB and was not stopped")
