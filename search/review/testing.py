"""How a retrained model is tested: the data it trains on (train + validation), the training, and the
test split's metrics for the task, or the user's own ``evaluate`` (:class:`hpsearch.trainables.Trained`)."""

from __future__ import annotations

from typing import Any

from hpsearch.trainables.device import denormals_flushed_while  # no torch until it is used


def retrain_data(spec: Any, device: str, plan: Any = None) -> Any:
    """The spec's data for a final retrain (train + validation merged), as the trainable takes it, placed
    as a search's trial places it (:func:`hpsearch.trainables.tune_adapter._data_for`'s rule): on the GPU
    when it fits in half of what the GPU has free, else in host memory, batches copied over; the test
    split stays in host memory (it is tested batch by batch)."""
    if spec.data is None:
        return None  # the trainable reads its own (TrialContext.final says: train on train + validation)
    from hpsearch.trainables import BUILTIN
    from hpsearch.trainables import device as device_plan
    from hpsearch.trainables.data import Splits
    from hpsearch.trainables.feeds import Streamed, streamed_from

    data = spec.data.load(merge_val=True)
    if spec.trainable in BUILTIN and not isinstance(data, (Splits, Streamed)):
        from hpsearch.trainables.userdata import for_builtin

        data = for_builtin(data, spec.task == "regression")
    if not isinstance(data, Splits) or device == "cpu":
        return data
    plan = plan or device_plan.DevicePlan(device)
    if device_plan.data_fits(data.search_bytes, plan):
        return data.to(device, test=False)
    return streamed_from(data)


def test_batch_size(sample_bytes: int, config: dict[str, Any]) -> int:
    """Test batches of the size a trial's validation uses (:func:`~hpsearch.trainables.device.eval_batch_size`):
    224x224 images are tested a training batch at a time, not 4096 at once."""
    from hpsearch.trainables.device import eval_batch_size

    return eval_batch_size(sample_bytes, int(config.get("batch_size", 1) or 1))


@denormals_flushed_while()
def fit_and_test(
    fn: Any,
    trainable: str,
    config: dict[str, Any],
    data: Any,
    epochs: int,
    seed: int,
    report: Any,
    mc_dropout: int = 0,
    device: str = "cpu",
    name: str = "retrain",
) -> tuple[Any, dict[str, float], str | None]:
    """Train ``config`` with ``fn`` on ``data`` (train + validation merged) and test it once: the model, its
    test metrics (``test_loss`` and ``test_accuracy``, or ``test_mae`` and ``test_r2`` for a regression; a
    user's ``evaluate``'s own), and why it was not tested when it could not be (else ``None``). What
    retrain does per config and seed (the quality benchmark uses it too). The CPU arithmetic is the
    search's trials' (denormals flushed), and the caller's thread is left as it was."""
    import inspect
    import tempfile

    import torch

    from hpsearch.trainables import BUILTIN, Trained, TrialContext
    from hpsearch.trainables.data import Splits
    from hpsearch.trainables.evaluation import evaluate_batches
    from hpsearch.trainables.feeds import Streamed, eval_batches, tensor_batches

    kwargs: dict[str, Any] = {}
    parameters = inspect.signature(fn).parameters
    if trainable in BUILTIN or "device" in parameters:
        kwargs["device"] = device
    with tempfile.TemporaryDirectory(prefix=f"hpsearch-{name}-") as scratch:
        if "context" in parameters:
            kwargs["context"] = TrialContext(name, scratch, {}, device, final=True)
        returned = fn(config, data, epochs, report, seed=seed, **kwargs)
    if isinstance(returned, tuple) and len(returned) == 2 and callable(returned[1]):
        model, evaluate = Trained(*returned)
        scores = {k if k.startswith("test_") else f"test_{k}": float(v) for k, v in dict(evaluate(model)).items()}
        return model, scores, None
    model = returned
    if not isinstance(model, torch.nn.Module):
        return (
            model,
            {},
            (
                f"trainable {trainable!r} returned {type(model).__name__}: to be tested it returns "
                "hpsearch.trainables.Trained(model, evaluate) (or the torch.nn.Module, on a data source with a test split)"
            ),
        )
    if isinstance(data, Splits) and len(data.test_y):
        sample = data.test_x[0]
        size = test_batch_size(sample.numel() * sample.element_size(), config)
        batches = tensor_batches(data.test_x, data.test_y, size, torch.device(device))
        regression = data.regression
    elif isinstance(data, Streamed) and data.test is not None and len(data.test):
        size = test_batch_size(data.sample_bytes or 4, config)
        batches, regression = eval_batches(data, data.test, size, torch.device(device)), data.regression
    else:
        return (
            model,
            {},
            "the data has no test split: give the loader's Data a test split, or return Trained(model, evaluate)",
        )
    scores = evaluate_batches(model, batches, regression, mc_samples=mc_dropout, device=torch.device(device))
    return model, {f"test_{k}": v for k, v in scores.items()}, None


def example_input(data: Any) -> Any:
    """Two test inputs, as the model takes them (what MLflow traces the model with), or ``None``."""
    import torch

    from hpsearch.trainables.data import Splits
    from hpsearch.trainables.feeds import Streamed, eval_batches

    if isinstance(data, Splits) and len(data.test_x):
        return data.test_x[:2].cpu().numpy()
    if isinstance(data, Streamed) and data.test is not None and len(data.test):
        return next(iter(eval_batches(data, data.test, 2, torch.device("cpu"))))[0].numpy()
    return None
