import copy

import pytest
import yaml

from tests.helpers import QUICKSTART


@pytest.fixture
def quickstart_data():
    """The quickstart spec as a fresh mutable mapping."""
    return copy.deepcopy(yaml.safe_load(QUICKSTART.read_text()))


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need a CUDA device: they run where there is one and are skipped elsewhere."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
