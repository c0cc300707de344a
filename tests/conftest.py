import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


@pytest.fixture
def quickstart_data():
    """The quickstart spec as a fresh mutable mapping."""
    return copy.deepcopy(yaml.safe_load(QUICKSTART.read_text()))


def write_spec(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
