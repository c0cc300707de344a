"""The package's seams hold: tracking/ reads and writes MLflow without Ray, MLflow's runs are searched in
one module, imports run one way, and no module outgrows one screenful of concerns (400 lines)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE_DIRS = {"search": "hpsearch", "spaces": "hpsearch.spaces", "trainables": "hpsearch.trainables"}


def modules():
    """(dotted name, path) of every module of the package and of benchmarks/."""
    for folder, package in {**PACKAGE_DIRS, "benchmarks": "benchmarks"}.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if folder == "search" and parts and parts[0] in ("spaces", "trainables"):
                continue
            yield ".".join([package, *parts]), path


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("name, path", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_no_module_is_over_400_lines(name, path):
    assert len(path.read_text().splitlines()) <= 400, f"{name} has grown past 400 lines: split it by job"


def test_mlflow_runs_are_searched_in_one_module():
    callers = sorted(
        name for name, path in modules() if ".search_runs(" in path.read_text() and name.startswith("hpsearch")
    )
    assert callers == ["hpsearch.tracking.reader"]


def test_imports_run_one_way():
    """tracking/ knows nothing of the search's orchestration or its review; review/ does not import run;
    trainables/ knows nothing of the spec, MLflow or the registries; spaces/ imports neither Ray nor torch."""
    rules = {
        "hpsearch.tracking": ("hpsearch.run", "hpsearch.review", "hpsearch.ledger", "hpsearch.searcher", "ray"),
        "hpsearch.review": ("hpsearch.run", "hpsearch.resume", "hpsearch.ledger"),
        "hpsearch.trainables": ("hpsearch.spec", "hpsearch.tracking", "hpsearch.sources", "hpsearch.run", "mlflow"),
        "hpsearch.spaces": ("ray", "torch", "hpsearch.spec"),
        "hpsearch.registry": ("hpsearch.spec",),
        "hpsearch.samplers": ("hpsearch.spec", "hpsearch.run"),
        "hpsearch.schedulers": ("hpsearch.spec", "hpsearch.run"),
        "hpsearch.sources": ("hpsearch.spec", "hpsearch.run"),
    }
    wrong = []
    for name, path in modules():
        for owner, banned in rules.items():
            if name == owner or name.startswith(owner + "."):
                wrong += [
                    f"{name} imports {i}" for i in imports_of(path) for b in banned if i == b or i.startswith(b + ".")
                ]
    assert wrong == []


def test_the_tracking_package_imports_neither_ray_nor_mlflow_nor_torch():
    names = [name for name, _ in modules() if name.startswith("hpsearch.tracking")]
    code = (
        f"import sys; import {', '.join(names)}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'mlflow', 'torch', 'optuna'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
