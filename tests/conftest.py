import copy

import pytest
import yaml

from tests.helpers import QUICKSTART


@pytest.fixture
def quickstart_data():
    """The quickstart spec as a fresh mutable mapping."""
    return copy.deepcopy(yaml.safe_load(QUICKSTART.read_text()))
