"""The job spec every fault test writes: digits, each epoch sent as it ends, no trial stopped early."""

from pathlib import Path

from tests.helpers import write_spec

OWN = {"task": "regression", "trainable": "tests.integration_tests.own_training:csv_regression"}
"""A team's own trainable that reads the CSV files it is given (``root`` in the space), with no data section."""


def fault_spec(
    folder: Path, name: str, trainable: str, space: dict, trials: int, epochs: int, own: bool = False, **search
) -> Path:
    """``tests.fault_tests.trainables:TRAINABLE`` over ``space`` (``own``: the CSV-reading trainable of
    :data:`OWN`, ``val_mse`` minimised); ``search`` overrides (max_concurrent: 2)."""
    if own:
        search = {"metric": "val_mse", "mode": "min", **search}
    return write_spec(
        folder / f"{name}.yaml",
        {
            "name": name,
            **(
                {**OWN}
                if own
                else {"trainable": f"tests.fault_tests.trainables:{trainable}", "data": {"dataset": "digits"}}
            ),
            "space": space,
            "search": {
                "num_trials": trials,
                "max_concurrent": 2,
                "report_interval_s": 0,  # every epoch reaches the search as it ends
                "sampler": {"seed": 0},
                "scheduler": {"max_epochs": epochs, "grace_period": epochs, "reduction_factor": 2},
                **search,
            },
        },
    )
