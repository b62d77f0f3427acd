"""The Kubernetes objects of the role, rendered by Ansible's template engine from the
role's templates, checked against the Kubernetes JSON schema (offline, bundled by
kubernetes-validate) and against what the role and job-templates/ rely on."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from role_support import DUMMY_KEY, REPO, render_templates

# OpenShift 4.14 is Kubernetes 1.27; the newest schema the package bundles.
K8S_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]

PEM = """-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUFakeTestCertificateForTemplatesOnly0wCgYIKoZIzj0EAwIw
-----END CERTIFICATE-----"""

CASES = {
    "defaults": {
        "ocp4_workload_litemaas_benchmark_url": "https://litellm.apps.example.com/v1",
        "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY,
    },
    "customized": {
        "guid": "abc12",
        "ocp4_workload_litemaas_benchmark_url": "https://litellm.apps.example.com/v1",
        "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY,
        "ocp4_workload_litemaas_benchmark_namespace": "litemaas-benchmark-abc12",
        "ocp4_workload_litemaas_benchmark_job_name": "bench-granite",
        "ocp4_workload_litemaas_benchmark_model": "granite-3-2-8b-instruct",
        "ocp4_workload_litemaas_benchmark_seed": 42,
        "ocp4_workload_litemaas_benchmark_ca_cert": PEM,
        "ocp4_workload_litemaas_benchmark_insecure": True,
        "ocp4_workload_litemaas_benchmark_keep_alive": True,
        "ocp4_workload_litemaas_benchmark_strict": True,
        "ocp4_workload_litemaas_benchmark_timeout_seconds": 900,
        "ocp4_workload_litemaas_benchmark_ttl_seconds_after_finished": 600,
        "ocp4_workload_litemaas_benchmark_image": "registry.example.com/me/turnbench:dev",
        "ocp4_workload_litemaas_benchmark_resources": {
            "requests": {"cpu": "500m", "memory": "128Mi"},
            "limits": {"cpu": "2", "memory": "512Mi"},
        },
    },
}


@pytest.fixture(scope="module", params=list(CASES))
def rendered(request, tmp_path_factory):
    overrides = CASES[request.param]
    return request.param, overrides, render_templates(tmp_path_factory.mktemp(request.param), overrides)


def manifests(docs: dict, overrides: dict) -> list[dict]:
    out = [docs["job.yaml"], docs["configmap.yaml"], docs["secret.yaml"]]
    if overrides.get("ocp4_workload_litemaas_benchmark_ca_cert"):
        out.append(docs["ca-configmap.yaml"])
    return out


def pod(docs):
    return docs["job.yaml"]["spec"]["template"]["spec"]


def container(docs):
    containers = pod(docs)["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rendered_objects_are_valid_kubernetes(rendered, version):
    _, overrides, docs = rendered
    for doc in manifests(docs, overrides):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_catches_mistakes(rendered):
    _, _, docs = rendered
    typo = copy.deepcopy(docs["job.yaml"])
    typo["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalaton"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSIONS[-1], strict=True)
    wrong_type = copy.deepcopy(docs["job.yaml"])
    wrong_type["spec"]["backoffLimit"] = "none"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, K8S_VERSIONS[-1], strict=True)


def test_the_job_runs_with_the_restricted_security_context(rendered):
    _, _, docs = rendered
    spec = pod(docs)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "runAsUser" not in spec["securityContext"], "OpenShift picks the UID"
    assert spec["automountServiceAccountToken"] is False
    sc = container(docs)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert "runAsUser" not in sc and "privileged" not in sc


def test_the_security_context_matches_job_templates(rendered):
    _, _, docs = rendered
    manual = REPO / "job-templates" / "job.yaml"
    if not manual.is_file():
        pytest.skip("job-templates/job.yaml is not there")
    theirs = yaml.safe_load(manual.read_text())
    their_pod = theirs["spec"]["template"]["spec"]
    assert pod(docs)["securityContext"] == their_pod["securityContext"]
    assert container(docs)["securityContext"] == their_pod["containers"][0]["securityContext"]
    for key in ("restartPolicy", "automountServiceAccountToken", "enableServiceLinks"):
        assert pod(docs)[key] == their_pod[key], key
    assert docs["job.yaml"]["spec"]["backoffLimit"] == theirs["spec"]["backoffLimit"]
    assert (docs["job.yaml"]["metadata"]["labels"]["app.kubernetes.io/name"]
            == theirs["metadata"]["labels"]["app.kubernetes.io/name"])
    their_env = {e["name"]: e for e in their_pod["containers"][0]["env"]}
    ours_env = {e["name"]: e for e in container(docs)["env"]}
    assert ours_env["TURNBENCH_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == \
        their_env["TURNBENCH_API_KEY"]["valueFrom"]["secretKeyRef"]["key"]


def test_the_job_runs_once_within_its_deadlines(rendered):
    _, overrides, docs = rendered
    job = docs["job.yaml"]
    timeout = overrides.get("ocp4_workload_litemaas_benchmark_timeout_seconds", 1800)
    ttl = overrides.get("ocp4_workload_litemaas_benchmark_ttl_seconds_after_finished", 86400)
    assert job["spec"]["backoffLimit"] == 0
    assert pod(docs)["restartPolicy"] == "Never"
    assert job["spec"]["ttlSecondsAfterFinished"] == ttl
    assert job["spec"]["activeDeadlineSeconds"] == timeout
    # The pod is stopped (SIGTERM, partial report kept in its log) a minute before.
    assert pod(docs)["activeDeadlineSeconds"] == timeout - 60
    assert pod(docs)["terminationGracePeriodSeconds"] >= 10


def test_the_objects_are_wired_together(rendered):
    _, overrides, docs = rendered
    job, config, secret, ca = (docs[n] for n in ("job.yaml", "configmap.yaml", "secret.yaml", "ca-configmap.yaml"))
    namespace = overrides.get("ocp4_workload_litemaas_benchmark_namespace", overrides.get("guid", "test-guid"))
    name = overrides.get("ocp4_workload_litemaas_benchmark_job_name", "turnbench")
    for doc in (job, config, secret, ca):
        assert doc["metadata"]["namespace"] == namespace
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "turnbench"
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == name
    assert job["metadata"]["name"] == name
    # The role finds the pod with app.kubernetes.io/instance=<job name>.
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] == name
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "turnbench"
    c = container(docs)
    assert c["image"] == overrides.get("ocp4_workload_litemaas_benchmark_image", "quay.io/turnbench/turnbench:0.1.0")
    assert c["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    env = {e["name"]: e for e in c["env"]}
    ref = env["TURNBENCH_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert secret["stringData"][ref["key"]] == DUMMY_KEY
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(docs)["volumes"]}
    assert mounts["results"]["mountPath"] == env["TURNBENCH_OUTPUT_DIR"]["value"]
    assert "emptyDir" in volumes["results"]
    if "ocp4_workload_litemaas_benchmark_resources" in overrides:
        assert c["resources"] == overrides["ocp4_workload_litemaas_benchmark_resources"]
    else:
        assert set(c["resources"]) == {"requests", "limits"}


def test_a_ca_is_mounted_where_turnbench_looks_for_it(rendered):
    case, overrides, docs = rendered
    data = docs["configmap.yaml"]["data"]
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(docs)["volumes"]}
    if case == "defaults":
        assert "TURNBENCH_CA_CERT" not in data and "ca" not in mounts and "ca" not in volumes
        return
    ca = docs["ca-configmap.yaml"]
    assert volumes["ca"]["configMap"]["name"] == ca["metadata"]["name"]
    assert mounts["ca"]["readOnly"] is True
    directory, _, filename = data["TURNBENCH_CA_CERT"].rpartition("/")
    assert directory == mounts["ca"]["mountPath"]
    assert ca["data"][filename] == PEM


def test_the_settings_are_turnbench_environment_variables(rendered):
    case, overrides, docs = rendered
    data = docs["configmap.yaml"]["data"]
    assert all(k.startswith("TURNBENCH_") and isinstance(v, str) and v for k, v in data.items()), data
    assert "TURNBENCH_API_KEY" not in data
    assert data["TURNBENCH_URL"] == "https://litellm.apps.example.com/v1"
    if case == "defaults":
        # The role's defaults are turnbench's (and the tool it replaces).
        assert {k: data[k] for k in (
            "TURNBENCH_CONVERSATIONS", "TURNBENCH_TURNS", "TURNBENCH_PARALLEL", "TURNBENCH_MAX_TOKENS",
            "TURNBENCH_MIN_DELAY", "TURNBENCH_MAX_DELAY", "TURNBENCH_TTFT_P95_THRESHOLD_MS",
            "TURNBENCH_SPEEDUP_THRESHOLD", "TURNBENCH_WARMUP")} == {
            "TURNBENCH_CONVERSATIONS": "20", "TURNBENCH_TURNS": "10", "TURNBENCH_PARALLEL": "4",
            "TURNBENCH_MAX_TOKENS": "500", "TURNBENCH_MIN_DELAY": "0.5", "TURNBENCH_MAX_DELAY": "2.0",
            "TURNBENCH_TTFT_P95_THRESHOLD_MS": "500", "TURNBENCH_SPEEDUP_THRESHOLD": "2.0",
            "TURNBENCH_WARMUP": "20"}
        # Unset optional settings are left out, so turnbench's own defaults apply.
        assert "TURNBENCH_MODEL" not in data and "TURNBENCH_SEED" not in data
        assert data["TURNBENCH_INSECURE"] == "false" and data["TURNBENCH_STRICT"] == "false"
    else:
        assert data["TURNBENCH_MODEL"] == "granite-3-2-8b-instruct"
        assert data["TURNBENCH_SEED"] == "42"
        assert data["TURNBENCH_INSECURE"] == "true"
        assert data["TURNBENCH_KEEP_ALIVE"] == "true"
        assert data["TURNBENCH_STRICT"] == "true"


def test_the_key_is_only_in_the_secret(rendered):
    _, _, docs = rendered
    for name in ("job.yaml", "configmap.yaml", "ca-configmap.yaml"):
        assert DUMMY_KEY not in yaml.safe_dump(docs[name]), name
    assert docs["secret.yaml"]["type"] == "Opaque"
