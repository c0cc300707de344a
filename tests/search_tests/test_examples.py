"""Every example spec in examples/ is valid as it is (what a user copies first)."""

from pathlib import Path

import pytest

from hpsearch.spec import load_spec
from tests.helpers import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 5 and ROOT / "examples" / "cifar10_multi_gpu.yaml" in EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: Path(p).name)
def test_an_example_spec_is_valid(path):
    spec = load_spec(path)
    assert spec.name and spec.search.num_trials >= 1
    if path.name == "cifar10_multi_gpu.yaml":
        assert (spec.resources.workers, spec.resources.gpu) == (2, 1)
