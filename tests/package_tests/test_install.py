"""hpsearch installs as one import package, `hpsearch`, and lives beside packages that own the generic
names its folders have (`spaces`, `search`, `trainables`): Hugging Face's `spaces`, say."""

import os
import subprocess
import sys
import textwrap
import zipfile

from tests.helpers import ROOT


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    # Only what the venv holds: no PYTHONPATH (the integration tests point it at this checkout).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, env=env, **kwargs)
    assert out.returncode == 0, f"{args}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_the_wheel_installs_beside_a_top_level_spaces_package(tmp_path):
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", ROOT)
    (wheel,) = (tmp_path / "dist").glob("hpsearch-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"hpsearch"}

    # Someone else's distribution that owns the top-level name `spaces` (as Hugging Face's does).
    other = tmp_path / "other"
    (other / "spaces").mkdir(parents=True)
    (other / "spaces" / "__init__.py").write_text("WHO = 'the other spaces'\n")
    (other / "pyproject.toml").write_text(
        textwrap.dedent("""\
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "spaces"
            version = "9.9"
            [tool.setuptools]
            packages = ["spaces"]
        """)
    )
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    py = venv / "bin" / "python"
    # hpsearch's own modules import at most PyYAML at import time (torch, Ray, MLflow only when used).
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", other)
    (other_wheel,) = (tmp_path / "dist").glob("spaces-*.whl")
    run(py, "-m", "pip", "install", "--quiet", "--no-deps", wheel, other_wheel, "PyYAML")
    check = textwrap.dedent("""\
        import spaces, hpsearch, hpsearch.spaces, hpsearch.trainables, hpsearch.cli, hpsearch.protocol
        assert spaces.WHO == "the other spaces", spaces.__file__
        assert hpsearch.spaces.preset_names(), "presets are package data of hpsearch.spaces"
        assert hpsearch.trainables.BUILTIN["mlp"] == "hpsearch.trainables.loop:train_mlp"
        import importlib.util
        for name in ("search", "trainables"):
            assert importlib.util.find_spec(name) is None, f"hpsearch installed a top-level {name}"
        print("ok", hpsearch.__version__)
    """)
    out = run(py, "-c", check, cwd=tmp_path)  # not the checkout: only what the venv holds
    assert out.stdout.startswith("ok 0.1.0")
    helped = run(venv / "bin" / "hpsearch", "--help", cwd=tmp_path)
    assert "usage: hpsearch" in helped.stdout
    assert "usage: hpsearch" in run(py, "-m", "hpsearch", "--help", cwd=tmp_path).stdout
