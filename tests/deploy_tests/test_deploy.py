"""deploy/: the kustomize overlays render, every manifest validates, and what runs is hpsearch's own CLI."""

from __future__ import annotations

import copy
import re
import shlex

import jsonschema
import pytest
import ray
import yaml

from hpsearch.cli import build_parser
from hpsearch.spec import load_spec_text

from .checks import DEPLOY, KUSTOMIZATIONS, ROOT, pinned, pod_templates, render, validate

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def all_docs():
    return [(k, d) for k in KUSTOMIZATIONS for d in render(k)]


def of_kind(kustomization: str, kind: str) -> list[dict]:
    return [d for d in render(kustomization) if d["kind"] == kind]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_manifest_validates_against_the_kubernetes_and_kuberay_schemas(kustomization):
    docs = render(kustomization)
    assert docs
    for doc in docs:
        try:
            validate(doc)
        except jsonschema.ValidationError as exc:
            pytest.fail(
                f"{kustomization}: {doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}"
            )


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplica=3), "maxReplica"),  # typo'd KubeRay field
        (lambda d: d["spec"]["authOptions"].update(mode="on"), "mode"),
        (
            lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(imagePullPolcy="Always"),
            "imagePullPolcy",
        ),
        (lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}), "num-cpus"),  # not a string
    ],
)
def test_the_kuberay_check_rejects_a_wrong_field(mutate, field):
    cluster = copy.deepcopy(of_kind("overlays/gpu-cluster", "RayCluster")[0])
    mutate(cluster)
    with pytest.raises(jsonschema.ValidationError) as exc:
        validate(cluster)
    assert field in str(exc.value)


def test_the_kubernetes_check_rejects_a_wrong_field():
    deployment = copy.deepcopy(of_kind("overlays/dev", "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["port"] = 5000
    with pytest.raises(jsonschema.ValidationError):
        validate(deployment)


def test_yamllint_is_clean():
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "yamllint",
            "-c",
            str(ROOT / ".yamllint.yaml"),
            "-f",
            "parsable",
            "docker",
            "deploy",
            "examples",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_everything_lands_in_the_hpsearch_namespace():
    for k, doc in all_docs():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "hpsearch", f"{k}: {doc['kind']}/{doc['metadata']['name']}"


def test_images_are_pinned_and_the_project_image_matches_the_overlay():
    for k, doc in all_docs():
        for where, template in pod_templates(doc):
            for c in template["spec"]["containers"] + template["spec"].get("initContainers", []):
                assert pinned(c["image"]), f"{k}: {where}: {c['image']}"
                if c["name"].startswith("ray-"):
                    variant = "gpu" if "gpu-cluster" in k else "cpu"
                    assert c["image"].endswith(f"hpsearch:0.1.0-{variant}"), (k, c["image"])


def test_ray_clusters_use_token_auth_the_installed_ray_and_a_clusterip_dashboard():
    for k, doc in all_docs():
        if doc["kind"] not in ("RayCluster", "RayJob"):
            continue
        spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
        assert spec["authOptions"] == {"mode": "token", "secretName": "hpsearch-ray-token"}, k
        assert spec["rayVersion"] == ray.__version__, k
        head = spec["headGroupSpec"]
        assert head["serviceType"] == "ClusterIP" and not head.get("enableIngress"), k
        for where, template in pod_templates(doc):
            pod = template["spec"]
            assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001, where
            assert not pod.get("hostNetwork"), where
            for c in pod["containers"]:
                assert not any("hostPort" in p for p in c.get("ports", [])), where
    # No Service of any overlay is exposed outside the cluster; the only ingress is MLflow's.
    for k, doc in all_docs():
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", (k, doc["metadata"]["name"])
        if doc["kind"] == "Ingress":
            backends = {p["backend"]["service"]["name"] for r in doc["spec"]["rules"] for p in r["http"]["paths"]}
            assert backends == {"mlflow"}, k


def test_gpu_workers_ask_for_gpus_and_autoscale_within_bounds():
    for k in ("overlays/gpu-cluster", "overlays/gpu-cluster/job", "overlays/dev", "overlays/dev/job"):
        (doc,) = [d for d in render(k) if d["kind"] in ("RayCluster", "RayJob")]
        spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
        assert spec["enableInTreeAutoscaling"] is True
        for group in spec["workerGroupSpecs"]:
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], (k, group["groupName"])
            resources = group["template"]["spec"]["containers"][0]["resources"]
            if "gpu-cluster" in k:
                assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
                assert group["maxReplicas"] == 8
            else:
                assert "nvidia.com/gpu" not in resources["limits"], k


def test_ray_start_params_are_options_of_the_installed_ray_start():
    from ray.scripts.scripts import start

    for _k, doc in all_docs():
        if doc["kind"] not in ("RayCluster", "RayJob"):
            continue
        spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
        for params, head in [(spec["headGroupSpec"]["rayStartParams"], True)] + [
            (w["rayStartParams"], False) for w in spec["workerGroupSpecs"]
        ]:
            argv = [f"--{key}={value}" for key, value in params.items()] + (
                ["--head"] if head else ["--address=h:6379"]
            )
            start.make_context("start", argv)  # raises click.UsageError on an unknown option or a bad value


def test_the_rayjob_runs_hpsearch_on_the_spec_from_its_configmap():
    parser = build_parser()
    for k in ("overlays/dev/job", "overlays/gpu-cluster/job"):
        (job,) = of_kind(k, "RayJob")
        (config_map,) = of_kind(k, "ConfigMap")
        argv = shlex.split(job["spec"]["entrypoint"])
        assert argv[0] == "hpsearch", "the job runs the hpsearch console script"
        args = parser.parse_args(argv[1:])
        assert args.command == "run" and args.address == "auto"
        assert args.storage.startswith("s3://"), "every node of the job's cluster must see the search state"
        assert args.tracking_uri == "http://mlflow:5000"
        head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        (mount,) = [m for m in head["containers"][0]["volumeMounts"] if m["name"] == "spec"]
        (volume,) = [v for v in head["volumes"] if v["name"] == "spec"]
        assert volume["configMap"]["name"] == config_map["metadata"]["name"]
        assert str(args.spec) == f"{mount['mountPath']}/spec.yaml"
        spec = load_spec_text(config_map["data"]["spec.yaml"], source=f"{k} spec.yaml")  # raises SpecError if invalid
        gpu = "gpu-cluster" in k
        assert (spec.resources.gpu > 0) == gpu, "GPU trials on the GPU cluster, CPU trials on dev"
    dev_spec = (DEPLOY / "overlays/dev/job/spec.yaml").read_text()
    assert dev_spec == (ROOT / "examples/quickstart.yaml").read_text(), "the dev job searches the quickstart"


def test_mlflow_serves_artifacts_from_s3_on_postgresql_and_only_ray_pods_and_the_ingress_reach_it():
    from mlflow.cli import server

    for k in ("overlays/dev", "overlays/gpu-cluster"):
        (deployment,) = [d for d in of_kind(k, "Deployment") if d["metadata"]["name"] == "mlflow"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        server.make_context("server", list(container["args"]))  # every flag exists in the pinned MLflow
        assert "--serve-artifacts" in container["args"]
        assert "--artifacts-destination=s3://mlflow/artifacts" in container["args"]
        env = {e["name"]: e for e in container["env"]}
        dsn = env["MLFLOW_BACKEND_STORE_URI"]
        assert (
            dsn.get("value", "").startswith("postgresql+psycopg://")
            or dsn["valueFrom"]["secretKeyRef"]["name"] == "mlflow-db"
        )
        assert ("--app-name=basic-auth" in container["args"]) == ("gpu-cluster" in k)
        allowed = next(a for a in container["args"] if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
        assert {"mlflow", "mlflow:*"} <= set(allowed), "the Ray pods reach it as mlflow:5000"
        for ingress in of_kind(k, "Ingress"):  # MLflow's DNS-rebinding guard must admit the ingress host
            assert {rule["host"] for rule in ingress["spec"]["rules"]} <= set(allowed)
        (policy,) = [d for d in of_kind(k, "NetworkPolicy") if d["metadata"]["name"] == "mlflow"]
        assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        sources = [src for rule in policy["spec"]["ingress"] for src in rule["from"]]
        assert {"key": "ray.io/cluster", "operator": "Exists"} in sources[0]["podSelector"]["matchExpressions"]
        assert sources[1]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
        assert len(sources) == 2


def test_every_secret_the_manifests_use_is_created_in_the_readme():
    readme = (DEPLOY / "README.md").read_text().replace("\\\n", " ")
    created: dict[str, str] = {}
    for name, rest in re.findall(r"^\s*kubectl -n hpsearch create secret (?:generic|tls) (\S+)(.*)$", readme, re.M):
        created[name] = created.get(name, "") + rest
    for k, doc in all_docs():
        text = yaml.safe_dump(doc)
        names = set(re.findall(r"secretName: (\S+)", text))
        names |= {m for m in re.findall(r"secretKeyRef:\n\s+key: \S+\n\s+name: (\S+)", text)}
        names |= set(re.findall(r"secretRef:\n\s+name: (\S+)", text))
        for name in names:
            assert name in created, f"{k}: Secret {name} is used but deploy/README.md does not create it"
        for key, name in re.findall(r"secretKeyRef:\n\s+key: (\S+)\n\s+name: (\S+)", text):
            assert key in created[name], f"{k}: Secret {name} needs key {key}; the README does not set it"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_head_declares_the_worker_groups_the_autoscaler_adds(kustomization):
    """`hpsearch run` on a cluster that scales its workers from zero checks trials against these
    (HPSEARCH_NODE_GROUPS): they must be the workerGroupSpecs' groups and resources."""
    from hpsearch.raysetup import parse_node_groups

    for doc in render(kustomization):
        spec = doc["spec"].get("rayClusterSpec", doc["spec"]) if doc["kind"] in ("RayCluster", "RayJob") else None
        if spec is None:
            continue
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        declared = {
            g.name: g.resources
            for g in parse_node_groups(next(e["value"] for e in head["env"] if e["name"] == "HPSEARCH_NODE_GROUPS"))
        }
        actual = {}
        for group in spec["workerGroupSpecs"]:
            limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
            actual[group["groupName"]] = {
                "CPU": float(limits["cpu"]),
                **({"GPU": float(limits["nvidia.com/gpu"])} if "nvidia.com/gpu" in limits else {}),
            }
        assert declared == actual, f"{kustomization}: {doc['kind']}/{doc['metadata']['name']}"


def test_every_pod_meets_the_restricted_pod_security_level_and_mounts_no_api_token():
    """Pod Security "restricted": non-root, no privilege escalation, every capability dropped, the
    runtime's seccomp profile. No pod mounts its service-account token; the Ray head's autoscaler
    sidecar (it scales workers through the Kubernetes API) mounts it alone, through autoscalerOptions."""
    for k, doc in all_docs():
        for where, template in pod_templates(doc):
            pod = template["spec"]
            assert pod.get("automountServiceAccountToken") is False, (k, where)
            security = pod["securityContext"]
            assert security["runAsNonRoot"] and security["seccompProfile"] == {"type": "RuntimeDefault"}, (k, where)
            for c in pod["containers"] + pod.get("initContainers", []):
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, (k, where, c["name"])
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], (k, where, c["name"])
                mounted = {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounted, (k, where, c["name"])
        if doc["kind"] in ("RayCluster", "RayJob"):
            spec = doc["spec"].get("rayClusterSpec", doc["spec"])
            mounts = spec["autoscalerOptions"]["volumeMounts"]
            assert mounts == [
                {
                    "name": "kube-api-access",
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                    "readOnly": True,
                }
            ]
            volumes = {v["name"]: v for v in spec["headGroupSpec"]["template"]["spec"]["volumes"]}
            sources = volumes["kube-api-access"]["projected"]["sources"]
            assert sources[0]["serviceAccountToken"]["path"] == "token", k


def test_each_secret_is_only_where_it_is_used():
    """MLflow's admin login goes to the Ray head (the searches' drivers write to MLflow), never to the
    workers, where trial code runs; the tracking store's password and Redis's likewise stay off workers."""
    head_only = {"mlflow-auth", "hpsearch-tracking", "hpsearch-redis"}
    for k, doc in all_docs():
        if doc["kind"] not in ("RayCluster", "RayJob"):
            continue
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        for group in spec["workerGroupSpecs"]:
            text = yaml.safe_dump(group["template"])
            assert not any(name in text for name in head_only), (k, group["groupName"])
            names = {e["name"] for c in group["template"]["spec"]["containers"] for e in c.get("env", [])}
            assert not names & {"MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_USERNAME"}, (k, names)


def test_ray_pods_and_redis_are_reachable_only_from_where_they_must_be():
    for k in ("overlays/dev", "overlays/gpu-cluster"):
        policies = {d["metadata"]["name"]: d["spec"] for d in of_kind(k, "NetworkPolicy")}
        ray_policy = policies["ray"]
        assert ray_policy["podSelector"] == {"matchExpressions": [{"key": "ray.io/cluster", "operator": "Exists"}]}
        among_ray, dashboard = ray_policy["ingress"]
        assert among_ray["from"] == [{"podSelector": ray_policy["podSelector"]}] and "ports" not in among_ray
        assert dashboard["ports"] == [{"port": 8265, "protocol": "TCP"}]  # not the GCS, not the client port
        assert policies["redis"]["ingress"] == [
            {
                "from": [{"podSelector": {"matchLabels": {"ray.io/node-type": "head"}}}],
                "ports": [{"port": 6379, "protocol": "TCP"}],
            }
        ]


def test_a_lost_head_or_driver_continues_the_search():
    """The long-lived cluster keeps its state in Redis (GCS fault tolerance); a RayJob retries on a new
    cluster, and its entrypoint continues the search of its own run name (the RayJob's) from storage."""
    for k in ("overlays/dev", "overlays/gpu-cluster"):
        (cluster,) = of_kind(k, "RayCluster")
        ft = cluster["spec"]["gcsFaultToleranceOptions"]
        (redis,) = [d for d in of_kind(k, "Service") if d["metadata"]["name"] == "redis"]
        assert ft["redisAddress"] == f"redis:{redis['spec']['ports'][0]['port']}"
        assert ft["redisPassword"]["valueFrom"]["secretKeyRef"] == {"name": "hpsearch-redis", "key": "password"}
    for k in ("overlays/dev/job", "overlays/gpu-cluster/job"):
        (job,) = of_kind(k, "RayJob")
        assert job["spec"]["backoffLimit"] >= 1, k
        args = build_parser().parse_args(shlex.split(job["spec"]["entrypoint"])[1:])
        assert args.continue_search and args.driver_restarts >= 1, k
        assert args.run_name == job["metadata"]["name"], f"{k}: --run-name must be the RayJob's name"
