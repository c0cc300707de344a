"""A user-style custom trainable for integration tests: it ends the way its config says."""

from trainables.loop import TrialDiverged, train_mlp


def scripted(config, data, epochs, report, seed=0):
    outcome = config["outcome"]
    mlp_config = {k: v for k, v in config.items() if k != "outcome"}
    if outcome == "fail":
        report({"val_accuracy": 0.1, "val_loss": 2.3})
        raise RuntimeError("scripted failure in epoch 2")
    if outcome == "diverge":
        raise TrialDiverged("loss became non-finite in epoch 1 (scripted)")
    train_mlp(mlp_config, data, epochs, report, seed)
