"""A user-style custom trainable for integration tests: it ends the way its config says."""

from hpsearch.trainables.loop import TrialDiverged, train_mlp


def scripted(config, data, epochs, report, seed=0):
    outcome = config["outcome"]
    mlp_config = {k: v for k, v in config.items() if k != "outcome"}
    if outcome == "fail":
        report({"val_accuracy": 0.1, "val_loss": 2.3})
        raise RuntimeError("scripted failure in epoch 2")
    if outcome == "diverge":
        raise TrialDiverged("loss became non-finite in epoch 1 (scripted)")
    train_mlp(mlp_config, data, epochs, report, seed)


def fails_after(config, data, epochs, report, seed=0):
    """Reports ``config["good_epochs"]`` epochs (no ``epoch`` key: hpsearch counts them), then fails."""
    for epoch in range(1, config["good_epochs"] + 1):
        report({"val_accuracy": epoch / 100, "val_loss": 1.0 / epoch})
    raise RuntimeError(f"scripted failure after epoch {config['good_epochs']}")


def process_probe(config, data, epochs, report, seed=0):
    """The built-in MLP's training, each epoch also saying whether this trial process had imported
    ``torch._dynamo`` when the trial began and now (``1.0``: imported), and whether the thread that trains
    flushes denormal floats to zero (``1.0``: it does)."""
    import torch

    from hpsearch.trainables import lazy_dynamo

    before = float(lazy_dynamo.loaded() is not None)

    def probed(metrics, state=None):
        flushed = float((torch.tensor([1e-39]) * 1.0).item() == 0.0)
        metrics = {**metrics, "dynamo_before": before, "dynamo_now": float(lazy_dynamo.loaded() is not None)}
        metrics["denormals_flushed"] = flushed
        report(metrics) if state is None else report(metrics, state)

    train_mlp(config, data, epochs, probed, seed)
