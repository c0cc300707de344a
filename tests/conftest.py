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


@pytest.fixture
def plugins_module():
    """The name of a module that registers a sampler, a scheduler and a data source (a user's plugins);
    the registries are as before once the test ends, so other tests see only the built-ins."""
    import sys

    from hpsearch import samplers, schedulers, sources

    registries = [samplers.REGISTRY, schedulers.REGISTRY, sources.REGISTRY]
    saved = [dict(r._models) for r in registries]
    yield "tests.integration_tests.plugins"
    for registry, models in zip(registries, saved, strict=True):
        registry._models.clear()
        registry._models.update(models)
    sys.modules.pop("tests.integration_tests.plugins", None)  # imported again, it registers again


@pytest.fixture(autouse=True, scope="session")
def data_cache(tmp_path_factory):
    """The node's data cache (one mapped copy of a data set per node) of this test session's own: set
    before any Ray starts, so the trial workers use it too."""
    import os

    from hpsearch.trainables.nodecache import ENV

    os.environ[ENV] = str(tmp_path_factory.mktemp("data-cache"))
    return os.environ[ENV]
