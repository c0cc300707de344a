"""docker/: the Dockerfiles pass hadolint and pin what they pull, the compose stack is complete and safe,
and the commands its containers run are the hpsearch / ray / mlflow command lines the tests exercise."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hpsearch.cli import build_parser

from .checks import DOCKER, ROOT, compose_variables, dockerfile_images, env_file, interpolate, load_compose, pinned

DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "mlflow.Dockerfile"]
HADOLINT = Path(sys.executable).with_name("hadolint")


def constraint_pins() -> dict[str, str]:
    """The versions hpsearch is tested with (constraints.txt, what `make` installs)."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(r"([A-Za-z0-9_.-]+)==([^\s;,]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    out = hadolint(dockerfile)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_really_runs(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install -y curl\n")
    out = hadolint(bad)
    assert out.returncode != 0 and "DL3006" in out.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_image_pulled_is_pinned(dockerfile):
    images = dockerfile_images(dockerfile)
    assert images
    for image in images:
        assert pinned(image), f"{dockerfile.name}: {image}"


def test_the_gpu_image_is_a_cuda_runtime_matching_torch_and_cpu_is_a_build_arg():
    import torch

    text = (DOCKER / "Dockerfile").read_text()
    stages = {name: image for image, name in re.findall(r"^FROM (\S+) AS (base-\S+)$", text, re.M)}
    assert set(stages) == {"base-gpu", "base-gpu-cu126", "base-cpu"}, stages
    cuda = stages["base-gpu"]
    assert all("-runtime-" in stages[s] for s in ("base-gpu", "base-gpu-cu126"))
    if torch.version.cuda:  # the CUDA build of torch on PyPI (the GPU image's): same CUDA major.minor
        assert cuda.split(":")[1].startswith(torch.version.cuda + "."), (cuda, torch.version.cuda)
    # GPUs older than Turing (V100, P100) have no kernels in CUDA 13 builds: a CUDA 12.6 variant for them
    assert stages["base-gpu-cu126"].startswith("nvidia/cuda:12.6.")
    assert re.search(r"^ARG VARIANT=gpu$", text, re.M) and "FROM base-${VARIANT} AS base" in text
    for index in ("cpu", "cu130", "cu126"):
        assert f"download.pytorch.org/whl/{index}" in text


def test_the_runtime_image_has_the_cpp_compiler_torch_compile_needs(tmp_path):
    text = (DOCKER / "Dockerfile").read_text()
    runtime = text[text.index("AS runtime") :]
    assert re.search(r"apt-get install -y --no-install-recommends g\+\+ libc6-dev", runtime), "compile: true needs g++"
    # Why g++ and not gcc: Inductor's CPU backend finds no compiler where there is gcc alone.
    import shutil
    import subprocess
    import sys

    gcc = shutil.which("gcc")
    if gcc is None or shutil.which("g++") is None:
        pytest.skip("needs gcc and g++ on this machine")
    (tmp_path / "gcc").symlink_to(gcc)
    probe = "from torch._inductor import cpp_builder as b\ntry:\n print(b.get_cpp_compiler())\nexcept Exception as e:\n print(type(e).__name__)"
    only_gcc = subprocess.run(
        [sys.executable, "-c", probe], env={"PATH": str(tmp_path)}, capture_output=True, text=True
    )
    assert only_gcc.stdout.strip() == "InvalidCxxCompiler", only_gcc.stdout + only_gcc.stderr
    with_gxx = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert with_gxx.stdout.strip().endswith("g++"), with_gxx.stdout + with_gxx.stderr


def test_python_pins_in_the_images_are_the_projects():
    pins = constraint_pins()
    main = (DOCKER / "Dockerfile").read_text()
    assert f"torch=={pins['torch']}" in main and f"torchvision=={pins['torchvision']}" in main
    assert "pip install --no-cache-dir -c /tmp/constraints.txt /src" in main  # the rest at the tested versions
    assert "ARG PYTHON_VERSION=3.11." in main
    mlflow = (DOCKER / "mlflow.Dockerfile").read_text()
    for package in ("mlflow", "psycopg"):
        assert re.search(rf'"{package}(\[[^\]]*\])?=={re.escape(pins[package])}"', mlflow), package
    assert re.search(r'"boto3==\d+\.\d+\.\d+"', mlflow)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_as_a_non_root_user_with_no_secret_baked_in(dockerfile):
    text = dockerfile.read_text()
    final_stage = text[text.rfind("\nFROM ") :]
    users = re.findall(r"^USER (\S+)", final_stage, re.M)
    assert users and not users[-1].startswith(("0", "root")), users
    assert "HEALTHCHECK" in final_stage
    for name in re.findall(r"^(?:ENV|ARG)\s+(\w+)", text, re.M) + re.findall(r"^\s+(\w+)=", text, re.M):
        assert not re.search(r"TOKEN|PASSWORD|SECRET|ACCESS_KEY", name), f"{dockerfile.name} sets {name}"


def test_what_the_image_copies_is_in_the_build_context():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    text = (DOCKER / "Dockerfile").read_text()
    sources = [part for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M) for part in line.split()[:-1]]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") in kept, f".dockerignore leaves {source} out of the build context"
    assert not list(DOCKER.glob("*.sh")), "containers run hpsearch / ray / mlflow themselves, no wrapper scripts"


def test_the_image_command_is_the_hpsearch_console_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["hpsearch"] == "hpsearch.cli:entry"
    assert 'CMD ["hpsearch", "--help"]' in (DOCKER / "Dockerfile").read_text()


# ---- compose ----


@pytest.fixture(scope="module")
def env():
    return env_file(DOCKER / ".env.example")


@pytest.fixture(scope="module")
def compose(env):
    return load_compose(env)


def test_every_variable_is_documented_in_the_example_env_file_and_secrets_are_not_committed(env):
    used = compose_variables((DOCKER / "compose.yaml").read_text())
    assert used == set(env), f"only in compose.yaml: {used - set(env)}; only in .env.example: {set(env) - used}"
    assert "docker/.env" in (ROOT / ".gitignore").read_text().splitlines()
    for key, value in env.items():
        if re.search(r"TOKEN|PASSWORD|SECRET", key):
            # a placeholder to replace, or empty for an optional one (HPSEARCH_TRACKING_PASSWORD)
            assert value == "" or value.startswith("replace-with-"), f".env.example must not hold a real {key}"


def test_the_stack_refuses_to_start_without_its_secrets(env):
    for key in (
        "RAY_AUTH_TOKEN",
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "S3_SECRET_KEY",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SECRET_KEY",
    ):
        with pytest.raises(KeyError, match=key):
            load_compose({k: v for k, v in env.items() if k != key})
    assert interpolate("${A:-x} ${B:?no} $$HOME", {"B": "b"}) == "x b $HOME"


def test_services_health_checks_and_volumes(compose):
    services = compose["services"]
    assert set(services) == {
        "ray-head",
        "ray-worker",
        "ray-worker-cpu",
        "mlflow",
        "postgres",
        "minio",
        "minio-init",
        "hpsearch",
    }
    for name in ("ray-head", "mlflow", "postgres", "minio"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    # The workers' health check is the image's HEALTHCHECK (ray health-check).
    for name in ("ray-worker", "ray-worker-cpu"):
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile" and "healthcheck" not in services[name]
        assert services[name]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "minio-init": {"condition": "service_completed_successfully"},
    }
    named = set(compose["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("..") or source in named, (name, volume)
    assert {"postgres-data", "minio-data"} <= named


def test_no_port_is_published_beyond_this_host_and_ray_internals_not_at_all(compose):
    published = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond 127.0.0.1"
            published[name] = port
    assert published == {"ray-head": "127.0.0.1:8265:8265", "mlflow": "127.0.0.1:5000:5000"}


def test_gpu_worker_reserves_gpus_and_cpu_worker_does_not(compose):
    services = compose["services"]
    (device,) = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"] and device["count"] == "all"
    assert services["ray-worker"]["profiles"] == ["gpu"] and services["ray-worker-cpu"]["profiles"] == ["cpu"]
    assert "deploy" not in services["ray-worker-cpu"]


def test_every_ray_container_uses_token_auth_from_the_env_file(compose, env):
    for name in ("ray-head", "ray-worker", "ray-worker-cpu", "hpsearch"):
        environment = compose["services"][name]["environment"]
        assert environment["RAY_AUTH_MODE"] == "token"
        assert environment["RAY_AUTH_TOKEN"] == env["RAY_AUTH_TOKEN"]  # interpolated, never a literal
    raw = (DOCKER / "compose.yaml").read_text()
    assert "RAY_AUTH_TOKEN: ${RAY_AUTH_TOKEN:?" in raw


def test_ray_commands_are_options_of_the_installed_ray_start(compose):
    from ray.scripts.scripts import start

    for name in ("ray-head", "ray-worker", "ray-worker-cpu"):
        command = compose["services"][name]["command"]
        assert command[:2] == ["ray", "start"]
        start.make_context("start", command[2:])  # raises on an unknown option / bad value
    head = compose["services"]["ray-head"]["command"]
    assert "--dashboard-host=0.0.0.0" in head and "--port=6379" in head  # inside the network; published on loopback


def test_mlflow_command_is_the_pinned_mlflow_server(compose):
    from mlflow.cli import server

    service = compose["services"]["mlflow"]
    server.make_context("server", list(service["command"]))  # (click consumes the list)
    assert "--artifacts-destination=s3://mlflow/artifacts" in service["command"]
    assert service["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://")
    assert service["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert 'ENTRYPOINT ["mlflow", "server"]' in (DOCKER / "mlflow.Dockerfile").read_text()


def test_cli_service_and_documented_commands_are_hpsearch_command_lines(compose):
    parser = build_parser()
    service = compose["services"]["hpsearch"]
    assert service["entrypoint"] == ["hpsearch"]
    assert service["command"] == ["--help"]
    readme = (DOCKER / "README.md").read_text().replace("\\\n", " ")
    commands = re.findall(r"^\s*(?:[A-Z_]+=\S+ )*(?:\.venv/bin/)?hpsearch (\w.*)$", readme, re.M)
    commands += re.findall(r"docker compose [^\n]*? run --rm hpsearch (.*)$", readme, re.M)
    assert len(commands) >= 3, commands
    for line in commands:
        argv = shlex.split(line.split("  #")[0])
        parser.parse_args(argv)  # SystemExit(2) on a command line hpsearch would refuse


def test_the_build_context_the_dockerfile_copies_makes_a_complete_hpsearch_wheel(tmp_path):
    """What `pip install /src` does in the image, on exactly the files the Dockerfile copies to /src."""
    import shutil
    import zipfile

    text = (DOCKER / "Dockerfile").read_text()
    src = tmp_path / "src"
    src.mkdir()
    for line in re.findall(r"^COPY (?!--from)(.+) /src/?(\S*)$", text, re.M):
        sources, target = line[0].split(), line[1]
        for source in sources:
            origin = ROOT / source
            dest = src / (target or origin.name)
            if origin.is_dir():
                shutil.copytree(origin, dest, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(origin, dest)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("hpsearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("hpsearch", "hpsearch/spaces", "hpsearch/trainables", "hpsearch/tracking", "hpsearch/review"):
        assert f"{package}/__init__.py" in names
    assert "hpsearch/py.typed" in names
    assert not [n for n in names if n.split("/")[0] in ("search", "spaces", "trainables")], "one top-level package"
    presets = {p.name for p in (ROOT / "spaces" / "presets").glob("*.yaml")}
    assert presets and presets <= {Path(n).name for n in names if n.startswith("hpsearch/spaces/presets/")}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hpsearch = hpsearch.cli:entry" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_mlflow_asks_for_a_login_and_only_the_head_and_the_cli_have_it(compose, env):
    services = compose["services"]
    mlflow = services["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == env["MLFLOW_ADMIN_PASSWORD"]
    assert "mlflow-auth:/home/mlflow/auth" in mlflow["volumes"] and mlflow["working_dir"] == "/home/mlflow/auth"
    for name in ("ray-head", "hpsearch"):
        login = services[name]["environment"]
        assert (login["MLFLOW_TRACKING_USERNAME"], login["MLFLOW_TRACKING_PASSWORD"]) == (
            "admin",
            env["MLFLOW_ADMIN_PASSWORD"],
        ), name
    for name in ("ray-worker", "ray-worker-cpu"):  # trial code runs there
        assert not {"MLFLOW_TRACKING_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD"} & set(services[name]["environment"])
