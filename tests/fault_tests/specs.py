"""The job spec every fault test writes: digits, each epoch sent as it ends, no trial stopped early."""

from pathlib import Path

from tests.helpers import write_spec


def fault_spec(folder: Path, name: str, trainable: str, space: dict, trials: int, epochs: int, **search) -> Path:
    """``tests.fault_tests.trainables:TRAINABLE`` over ``space``; ``search`` overrides (max_concurrent: 2)."""
    return write_spec(
        folder / f"{name}.yaml",
        {
            "name": name,
            "trainable": f"tests.fault_tests.trainables:{trainable}",
            "data": {"dataset": "digits"},
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
