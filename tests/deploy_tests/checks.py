"""Checks for docker/ and deploy/ that run without a Docker engine or a Kubernetes cluster.

- Kubernetes built-in kinds: the Kubernetes OpenAPI schemas shipped by ``kubernetes-validate``
  (strict: unknown fields are errors, as with ``kubectl apply``'s strict field validation).
- KubeRay kinds (RayCluster, RayJob): KubeRay's ray.io/v1 fields checked one by one against the
  schema below, written from the KubeRay v1.6 API reference (the published CRDs are ~700 kB each);
  the pod templates inside them are validated against the real Kubernetes PodTemplateSpec schema.
- Manifests are rendered with the real kustomize (``kubectl kustomize``, kustomize v5).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.33"  # the oldest Kubernetes the manifests target (KubeRay 1.6 supports it)
KUSTOMIZATIONS = ["overlays/dev", "overlays/dev/job", "overlays/gpu-cluster", "overlays/gpu-cluster/job"]
K8S_DEFS = "https://kubernetes.io/api/_definitions.json"

# ---- Kubernetes schemas (kubernetes-validate's files) ----


def _schema_dir() -> Path:
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = sorted(
        (p for p in base.glob("v*-local-strict")),
        key=lambda p: tuple(int(x) for x in p.name[1:].split("-")[0].split(".")),
    )
    wanted = tuple(int(x) for x in K8S_VERSION.split("."))
    fitting = [p for p in versions if tuple(int(x) for x in p.name[1:].split("-")[0].split("."))[:2] <= wanted]
    return fitting[-1]


@cache
def _registry() -> Registry:
    defs = json.loads((_schema_dir() / "_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


def validate_builtin(doc: dict) -> None:
    """Raise jsonschema.ValidationError (or KeyError for an unknown kind) for a built-in kind."""
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# ---- KubeRay ray.io/v1, field by field (KubeRay v1.6 API reference) ----

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_POD_TEMPLATE = {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.api.core.v1.PodTemplateSpec"}
_INT = {"type": "integer", "minimum": 0}
_ENV_SOURCE = {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.api.core.v1.EnvVarSource"}


def _obj(props: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


_HEAD = _obj(
    {
        "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
        "headService": {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.api.core.v1.Service"},
        "enableIngress": {"type": "boolean"},
        "rayStartParams": _STR_MAP,
        "template": _POD_TEMPLATE,
    },
    ("template",),
)
_WORKER = _obj(
    {
        "groupName": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "replicas": _INT,
        "minReplicas": _INT,
        "maxReplicas": _INT,
        "numOfHosts": {"type": "integer", "minimum": 1},
        "idleTimeoutSeconds": _INT,
        "suspend": {"type": "boolean"},
        "rayStartParams": _STR_MAP,
        "template": _POD_TEMPLATE,
        "scaleStrategy": _obj({"workersToDelete": {"type": "array", "items": {"type": "string"}}}),
    },
    ("groupName", "template"),
)
RAY_CLUSTER_SPEC = _obj(
    {
        "rayVersion": {"type": "string"},
        "authOptions": _obj(
            {
                "mode": {"enum": ["disabled", "token"]},
                "secretName": {"type": "string"},
                "enableK8sTokenAuth": {"type": "boolean"},
            }
        ),
        "enableInTreeAutoscaling": {"type": "boolean"},
        "autoscalerOptions": _obj(
            {
                "version": {"enum": ["v1", "v2"]},
                "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                "idleTimeoutSeconds": _INT,
                "image": {"type": "string"},
                "imagePullPolicy": {"enum": ["Always", "Never", "IfNotPresent"]},
                "resources": {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.api.core.v1.ResourceRequirements"},
                "env": {"type": "array", "items": {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.api.core.v1.EnvVar"}},
                "envFrom": {"type": "array", "items": {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.api.core.v1.EnvFromSource"}},
                "volumeMounts": {
                    "type": "array",
                    "items": {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.api.core.v1.VolumeMount"},
                },
                "securityContext": {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.api.core.v1.SecurityContext"},
            }
        ),
        "gcsFaultToleranceOptions": _obj(
            {
                "redisAddress": {"type": "string", "minLength": 1},
                "redisUsername": _obj({"value": {"type": "string"}, "valueFrom": _ENV_SOURCE}),
                "redisPassword": _obj({"value": {"type": "string"}, "valueFrom": _ENV_SOURCE}),
                "externalStorageNamespace": {"type": "string"},
            },
            ("redisAddress",),
        ),
        "headServiceAnnotations": _STR_MAP,
        "suspend": {"type": "boolean"},
        "managedBy": {"type": "string"},
        "headGroupSpec": _HEAD,
        "workerGroupSpecs": {"type": "array", "items": _WORKER},
    },
    ("headGroupSpec",),
)
RAY_JOB_SPEC = _obj(
    {
        "entrypoint": {"type": "string", "minLength": 1},
        "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
        "shutdownAfterJobFinishes": {"type": "boolean"},
        "ttlSecondsAfterFinished": _INT,
        "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
        "backoffLimit": _INT,
        "runtimeEnvYAML": {"type": "string"},
        "jobId": {"type": "string"},
        "metadata": _STR_MAP,
        "entrypointNumCpus": {"type": "number", "minimum": 0},
        "entrypointNumGpus": {"type": "number", "minimum": 0},
        "entrypointResources": {"type": "string"},
        "clusterSelector": _STR_MAP,
        "rayClusterSpec": RAY_CLUSTER_SPEC,
        "submitterPodTemplate": _POD_TEMPLATE,
        "suspend": {"type": "boolean"},
        "managedBy": {"type": "string"},
    }
)
_META = {"$ref": f"{K8S_DEFS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
KUBERAY = {
    "RayCluster": _obj(
        {
            "apiVersion": {"const": "ray.io/v1"},
            "kind": {"const": "RayCluster"},
            "metadata": _META,
            "spec": RAY_CLUSTER_SPEC,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    ),
    "RayJob": _obj(
        {"apiVersion": {"const": "ray.io/v1"}, "kind": {"const": "RayJob"}, "metadata": _META, "spec": RAY_JOB_SPEC},
        ("apiVersion", "kind", "metadata", "spec"),
    ),
}


def validate_kuberay(doc: dict) -> None:
    schema = KUBERAY[doc["kind"]]
    jsonschema.Draft202012Validator(schema, registry=_registry()).validate(doc)


def validate(doc: dict) -> None:
    if doc.get("apiVersion", "").startswith("ray.io/"):
        validate_kuberay(doc)
    else:
        validate_builtin(doc)


# ---- kustomize ----


def kubectl() -> str:
    path = shutil.which("kubectl")
    if not path:
        raise AssertionError("kubectl (>= 1.27, kustomize v5 inside) is needed to render deploy/ (kubectl kustomize)")
    return path


@cache
def render(kustomization: str) -> tuple[dict, ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / kustomization)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"kubectl kustomize {kustomization}: {out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """(where, PodTemplateSpec) of every pod a resource makes."""
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
        return [(doc["metadata"]["name"], spec["template"])]
    if doc["kind"] == "RayJob":
        spec = spec["rayClusterSpec"]
    if doc["kind"] in ("RayCluster", "RayJob"):
        found = [(f"{doc['metadata']['name']}/head", spec["headGroupSpec"]["template"])]
        found += [
            (f"{doc['metadata']['name']}/{w['groupName']}", w["template"]) for w in spec.get("workerGroupSpecs", [])
        ]
        return found
    return []


# ---- compose ----

_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})")


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def compose_variables(text: str) -> set[str]:
    return {m.group(1) for m in _VAR.finditer(text) if m.group(1)}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $$."""

    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name is None:
            return "$"
        value = env.get(name)
        if op in (":-", ":?") and not value or op in ("-", "?") and value is None:
            if op.endswith("?"):
                raise KeyError(f"${{{name}}}: {arg}")
            return arg
        return value or ""

    return _VAR.sub(sub, text)


def load_compose(env: dict[str, str]) -> dict:
    return yaml.safe_load(interpolate((DOCKER / "compose.yaml").read_text(), env))


# ---- Dockerfiles ----


def dockerfile_images(path: Path) -> list[str]:
    """Every image a Dockerfile pulls (FROM and COPY --from=IMAGE), global ARG defaults applied;
    references to its own stages are left out."""
    text = path.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    stages, images = set(), []
    for line in text.splitlines():
        m = re.match(r"(?:FROM|COPY\s+--from=)\s*(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if not m:
            continue
        ref = re.sub(r"\$\{(\w+)\}", lambda a: args.get(a.group(1), a.group(0)), m.group(1))
        if ref not in stages:
            images.append(ref)
        if line.upper().startswith("FROM") and m.group(2):
            stages.add(m.group(2))
    return images


def pinned(image: str) -> bool:
    """A version tag (not latest / a moving major) or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    versioned = re.search(r"\d+\.\d+", tag) or re.search(r"\d{4}-\d\d-\d\dT", tag)  # 1.2.3 or a dated release
    return bool(name) and "/" not in tag and tag != "latest" and bool(versioned)
