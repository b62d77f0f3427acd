"""The Kubernetes objects of the role, rendered by Ansible's template engine from the
role's templates, checked against the Kubernetes JSON schema (offline, bundled by
kubernetes-validate) and against what the role and job-templates/ rely on. The Route
(OpenShift's, not in those schemas) is checked field by field."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from role_support import DUMMY_KEY, REPO, ROLE, render_templates

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
        "ocp4_workload_litemaas_benchmark_report_resources": {
            "requests": {"cpu": "20m", "memory": "48Mi"},
            "limits": {"cpu": "1", "memory": "192Mi"},
        },
        "__ocp4_workload_litemaas_benchmark_results_block":
            "# BEGIN TURNBENCH RESULTS\nH4sIABpPB2sC/6uuBQBDv6ajAgAAAA==\n# END TURNBENCH RESULTS\n",
    },
}


@pytest.fixture(scope="module", params=list(CASES))
def rendered(request, tmp_path_factory):
    overrides = CASES[request.param]
    return request.param, overrides, render_templates(tmp_path_factory.mktemp(request.param), overrides)


def manifests(docs: dict, overrides: dict) -> list[dict]:
    """The objects in the Kubernetes schemas (all but the Route)."""
    out = [docs["job.yaml"], docs["configmap.yaml"], docs["secret.yaml"], docs["results-configmap.yaml"],
           docs["report-deployment.yaml"], docs["report-service.yaml"]]
    if overrides.get("ocp4_workload_litemaas_benchmark_ca_cert"):
        out.append(docs["ca-configmap.yaml"])
    return out


def report_pod(docs):
    return docs["report-deployment.yaml"]["spec"]["template"]["spec"]


def report_container(docs):
    containers = report_pod(docs)["containers"]
    assert len(containers) == 1
    return containers[0]


def selects(selector: str, labels: dict) -> bool:
    """Whether an equality-based label selector ("a=b,c=d") selects these labels."""
    return all(labels.get(k) == v for k, v in (t.split("=", 1) for t in selector.split(",") if t))


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
    typo = copy.deepcopy(docs["report-deployment.yaml"])
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSIONS[-1], strict=True)
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
    # Unset, the timeout comes from the workload: (ceil(20 x 10 / 4) + 20 warm-up) x 30 s.
    timeout = overrides.get("ocp4_workload_litemaas_benchmark_timeout_seconds", (50 + 20) * 30)
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
    name = overrides.get("ocp4_workload_litemaas_benchmark_job_name", "litemaas-benchmark")
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


# --- the published report -----------------------------------------------------------

def test_the_report_server_runs_with_the_jobs_restricted_security_context(rendered):
    _, _, docs = rendered
    spec = report_pod(docs)
    assert spec["securityContext"] == pod(docs)["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    sc = report_container(docs)["securityContext"]
    assert sc == container(docs)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert "runAsUser" not in sc and "privileged" not in sc and "runAsUser" not in spec["securityContext"]
    # Nothing to write: the results come read-only from the ConfigMap.
    assert all(m.get("readOnly") is True for m in report_container(docs)["volumeMounts"])
    assert all("emptyDir" not in v and "hostPath" not in v for v in spec["volumes"])


def test_the_report_server_serves_the_results_configmap(rendered):
    _, overrides, docs = rendered
    deployment, results = docs["report-deployment.yaml"], docs["results-configmap.yaml"]
    c = report_container(docs)
    assert c["image"] == container(docs)["image"], "the same image as the Job"
    assert c["imagePullPolicy"] == container(docs)["imagePullPolicy"]
    assert deployment["spec"]["replicas"] == 1
    # turnbench report <file in the mounted ConfigMap> --serve --port 8080
    assert c["args"][0] == "report" and c["args"][2:] == ["--serve", "--port", "8080"]
    assert all(isinstance(a, str) for a in c["args"])
    mount, = c["volumeMounts"]
    volume, = report_pod(docs)["volumes"]
    assert mount["name"] == volume["name"]
    assert volume["configMap"]["name"] == results["metadata"]["name"]
    directory, _, key = c["args"][1].rpartition("/")
    assert directory == mount["mountPath"] == "/results"
    assert key in results["data"]
    assert results["data"][key] == overrides.get(
        "__ocp4_workload_litemaas_benchmark_results_block",
        "# BEGIN TURNBENCH RESULTS\nH4sIAAAAAAAA/6uuBQBDv6ajAgAAAA==\n# END TURNBENCH RESULTS\n")
    port, = c["ports"]
    assert port == {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    expected = overrides.get("ocp4_workload_litemaas_benchmark_report_resources", {
        "requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}})
    assert c["resources"] == expected


def test_the_report_objects_are_wired_together(rendered):
    _, overrides, docs = rendered
    namespace = overrides.get("ocp4_workload_litemaas_benchmark_namespace", overrides.get("guid", "test-guid"))
    name = overrides.get("ocp4_workload_litemaas_benchmark_job_name", "litemaas-benchmark")
    deployment, service, route, results = (docs[n] for n in (
        "report-deployment.yaml", "report-service.yaml", "report-route.yaml", "results-configmap.yaml"))
    for doc in (deployment, service, route, results):
        assert doc["metadata"]["namespace"] == namespace
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "turnbench"
        assert labels["app.kubernetes.io/instance"] == name
        assert labels["app.kubernetes.io/component"] == "report"
        assert labels["app.kubernetes.io/managed-by"] == "ocp4_workload_litemaas_benchmark"
    assert results["metadata"]["name"] == f"{name}-results"
    for doc in (deployment, service, route):
        assert doc["metadata"]["name"] == f"{name}-report"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"] == {"matchLabels": pod_labels}
    assert pod_labels["app.kubernetes.io/component"] == "report"
    assert service["spec"]["selector"] == pod_labels
    port, = service["spec"]["ports"]
    assert port["port"] == 8080 and port["targetPort"] == report_container(docs)["ports"][0]["name"]
    assert route["spec"]["to"]["name"] == service["metadata"]["name"]
    assert route["spec"]["port"]["targetPort"] in (port["name"], port["port"])
    # The role finds the benchmark's pod by a selector that must not pick the report's.
    raw = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__ocp4_workload_litemaas_benchmark_selector"]
    selector = raw.replace("{{ ocp4_workload_litemaas_benchmark_job_name }}", name).strip()
    assert selects(selector, docs["job.yaml"]["spec"]["template"]["metadata"]["labels"])
    assert not selects(selector, pod_labels)
    assert not selects(",".join(f"{k}={v}" for k, v in pod_labels.items()),
                       docs["job.yaml"]["spec"]["template"]["metadata"]["labels"]), "the Service must not pick the Job"


def check_route(route: dict) -> None:
    """The fields of an OpenShift Route (route.openshift.io/v1) that the role relies on;
    kubernetes-validate has no schema for it."""
    assert route["apiVersion"] == "route.openshift.io/v1"
    assert route["kind"] == "Route"
    assert set(route) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(route["metadata"]) == {"name", "namespace", "labels"}
    spec = route["spec"]
    assert set(spec) <= {"host", "path", "to", "port", "tls", "wildcardPolicy"}, spec
    assert "host" not in spec, "OpenShift makes the host; the role reads it back"
    assert set(spec["to"]) == {"kind", "name", "weight"}
    assert spec["to"]["kind"] == "Service" and isinstance(spec["to"]["name"], str)
    assert isinstance(spec["to"]["weight"], int) and 0 <= spec["to"]["weight"] <= 256
    assert set(spec["port"]) == {"targetPort"} and isinstance(spec["port"]["targetPort"], (str, int))
    assert spec["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    assert spec["wildcardPolicy"] == "None"
    for key in ("name", "namespace"):
        value = route["metadata"][key]
        assert isinstance(value, str) and len(value) <= 63 and value[0].isalnum() and value[-1].isalnum()
    assert all(isinstance(v, str) for v in route["metadata"]["labels"].values())


def test_the_route_is_edge_tls_with_http_redirected(rendered):
    _, _, docs = rendered
    check_route(docs["report-route.yaml"])
    broken = copy.deepcopy(docs["report-route.yaml"])
    broken["spec"]["tls"]["insecureEdgeTerminationPolicy"] = "Allow"
    with pytest.raises(AssertionError):
        check_route(broken)


def test_the_job_prints_its_results_only_for_the_report(rendered, tmp_path):
    case, overrides, docs = rendered
    assert docs["configmap.yaml"]["data"]["TURNBENCH_PRINT_RESULTS"] == "true"
    if case != "defaults":
        return
    off = render_templates(tmp_path, {**overrides, "ocp4_workload_litemaas_benchmark_publish_report": False})
    assert "TURNBENCH_PRINT_RESULTS" not in off["configmap.yaml"]["data"]
    kubernetes_validate.validate(off["configmap.yaml"], K8S_VERSIONS[-1], strict=True)


def test_the_objects_carry_the_litemaas_roles_labels(rendered):
    """Besides ours, the LiteMaaS role's labels: app=<job> (its documented commands select
    on app=litemaas-benchmark), guid and workload, on the Job, its pods, the Secret and the
    ConfigMaps; the report's objects say app=<job>-report, so app=<job> is the benchmark."""
    _, overrides, docs = rendered
    name = overrides.get("ocp4_workload_litemaas_benchmark_job_name", "litemaas-benchmark")
    guid = overrides.get("guid", "test-guid")
    seed = {"app": name, "guid": guid, "workload": "ocp4_workload_litemaas_benchmark"}
    job = docs["job.yaml"]
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"],
                   docs["secret.yaml"]["metadata"]["labels"], docs["configmap.yaml"]["metadata"]["labels"],
                   docs["ca-configmap.yaml"]["metadata"]["labels"]):
        assert seed.items() <= labels.items(), labels
    for doc in ("report-deployment.yaml", "report-service.yaml", "report-route.yaml", "results-configmap.yaml"):
        labels = docs[doc]["metadata"]["labels"]
        assert labels["app"] == f"{name}-report" and labels["guid"] == guid, (doc, labels)
    # The report's pods are not the benchmark's: `oc logs -l app=<job>` shows turnbench's log only.
    assert "app" not in docs["report-deployment.yaml"]["spec"]["template"]["metadata"]["labels"]


def test_without_a_guid_the_label_is_left_out(tmp_path):
    docs = render_templates(tmp_path, {**CASES["defaults"], "guid": "",
                                       "ocp4_workload_litemaas_benchmark_namespace": "bench"})
    labels = docs["job.yaml"]["metadata"]["labels"]
    assert "guid" not in labels and labels["app"] == "litemaas-benchmark"
    kubernetes_validate.validate(docs["job.yaml"], K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("workload, expected", [
    ({}, 2100),
    # The LiteMaaS role's "100 expected attendees": ceil(100 x 10 / 4) + 20 warm-up.
    ({"ocp4_workload_litemaas_benchmark_conversations": 100}, (250 + 20) * 30),
    # Fewer conversations than parallel: they set the pace, one turn in flight each
    # (200 requests / 8 would be 25 rounds, under the floor; 2 at a time are 100).
    ({"ocp4_workload_litemaas_benchmark_conversations": 2, "ocp4_workload_litemaas_benchmark_parallel_workers": 8,
      "ocp4_workload_litemaas_benchmark_turns": 100}, (100 + 20) * 30),
    ({"ocp4_workload_litemaas_benchmark_conversations": 2, "ocp4_workload_litemaas_benchmark_parallel_workers": 8,
      "ocp4_workload_litemaas_benchmark_turns": 100, "ocp4_workload_litemaas_benchmark_request_allowance_seconds": 60},
     (100 + 20) * 60),
    # The floor, and an explicit timeout.
    ({"ocp4_workload_litemaas_benchmark_conversations": 1, "ocp4_workload_litemaas_benchmark_turns": 1}, 1800),
    ({"ocp4_workload_litemaas_benchmark_timeout_seconds": 600, "ocp4_workload_litemaas_benchmark_conversations": 100},
     600),
    # The LiteMaaS role's catalog parameters are the defaults.
    ({"benchmark_conversations_count": 100, "benchmark_turns_count": 10, "benchmark_parallel": 5}, (200 + 20) * 30),
])
def test_the_timeout_follows_the_workload_unless_set(tmp_path, workload, expected):
    docs = render_templates(tmp_path, {**CASES["defaults"], **workload})
    assert docs["job.yaml"]["spec"]["activeDeadlineSeconds"] == expected
    assert docs["job.yaml"]["spec"]["template"]["spec"]["activeDeadlineSeconds"] == expected - 60


def test_the_litemaas_roles_catalog_parameters_are_the_defaults(tmp_path):
    docs = render_templates(tmp_path, {**CASES["defaults"], "benchmark_conversations_count": 50,
                                       "benchmark_turns_count": 6, "benchmark_parallel": 8,
                                       "benchmark_max_tokens_count": 300})
    data = docs["configmap.yaml"]["data"]
    assert (data["TURNBENCH_CONVERSATIONS"], data["TURNBENCH_TURNS"], data["TURNBENCH_PARALLEL"],
            data["TURNBENCH_MAX_TOKENS"]) == ("50", "6", "8", "300")
    # Ours, when set, win.
    docs = render_templates(tmp_path, {**CASES["defaults"], "benchmark_conversations_count": 50,
                                       "ocp4_workload_litemaas_benchmark_conversations": 7})
    assert docs["configmap.yaml"]["data"]["TURNBENCH_CONVERSATIONS"] == "7"


# --- pods > 1: the Indexed Job, the shards' ConfigMaps and the merge Job ----------------

# backoffLimitPerIndex is beta (on by default) from Kubernetes 1.29, OpenShift 4.16; the
# role refuses a cluster that drops it.
INDEXED_K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
SHARDED = {**CASES["customized"], "ocp4_workload_litemaas_benchmark_pods": 3,
           "ocp4_workload_litemaas_benchmark_publish_report": False,
           # What provision.yml chooses for the shards.
           "__ocp4_workload_litemaas_benchmark_start_at": "2026-01-01T00:02:00Z",
           "__ocp4_workload_litemaas_benchmark_shared_seed": "4328183607906873470",
           "__ocp4_workload_litemaas_benchmark_shared_salt": "5f2c0a9e71b4"}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return render_templates(tmp_path_factory.mktemp("sharded"), SHARDED)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return render_templates(tmp_path_factory.mktemp("single"), CASES["customized"])


@pytest.mark.parametrize("version", INDEXED_K8S_VERSIONS)
def test_the_indexed_job_is_valid_kubernetes(sharded, version):
    kubernetes_validate.validate(sharded["job.yaml"], version, strict=True)
    kubernetes_validate.validate(sharded["configmap.yaml"], version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_merge_job_and_the_shards_configmaps_are_valid_kubernetes(sharded, version):
    kubernetes_validate.validate(sharded["merge-job.yaml"], version, strict=True)
    assert len(sharded["shards-configmaps.yaml"]) == 2
    for doc in sharded["shards-configmaps.yaml"]:
        kubernetes_validate.validate(doc, version, strict=True)


def test_before_kubernetes_1_29_the_indexed_job_would_not_be_what_the_role_asks(sharded):
    """Why provision.yml checks the created Job: 1.27's API has no backoffLimitPerIndex."""
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sharded["job.yaml"], "1.27.0", strict=True)


def test_the_indexed_job_is_the_single_jobs_pod_one_per_shard_as_job_templates_indexed(sharded, single):
    job, spec = sharded["job.yaml"], sharded["job.yaml"]["spec"]
    assert {k: spec[k] for k in ("completionMode", "completions", "parallelism", "backoffLimitPerIndex")} == \
        {"completionMode": "Indexed", "completions": 3, "parallelism": 3, "backoffLimitPerIndex": 0}
    # Beside backoffLimitPerIndex, backoffLimit defaults to unlimited: set, it would fail
    # the whole Job at the first failed shard.
    assert "backoffLimit" not in spec
    indexed = yaml.safe_load((REPO / "job-templates" / "indexed" / "job.yaml").read_text())["spec"]
    assert {k: indexed[k] for k in ("completionMode", "backoffLimitPerIndex")} == \
        {k: spec[k] for k in ("completionMode", "backoffLimitPerIndex")}
    assert "backoffLimit" not in indexed and indexed["completions"] == indexed["parallelism"]
    # The same pod as with pods 1 (image, security context, settings, key, volumes), its
    # deadline counted from before the start time.
    ours, theirs = copy.deepcopy(spec["template"]), copy.deepcopy(single["job.yaml"]["spec"]["template"])
    assert ours["spec"].pop("activeDeadlineSeconds") == theirs["spec"].pop("activeDeadlineSeconds") + 120
    assert ours == theirs
    assert spec["activeDeadlineSeconds"] == single["job.yaml"]["spec"]["activeDeadlineSeconds"] + 120
    assert job["metadata"] == single["job.yaml"]["metadata"]
    # The shard index comes from JOB_COMPLETION_INDEX, which Kubernetes sets per pod.
    env = {e["name"] for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert "TURNBENCH_SHARD_INDEX" not in env and "TURNBENCH_SHARD_INDEX" not in sharded["configmap.yaml"]["data"]


def test_the_shards_share_count_start_seed_and_salt_and_always_print_their_results(sharded):
    data = sharded["configmap.yaml"]["data"]
    assert data["TURNBENCH_SHARD_COUNT"] == "3"
    assert data["TURNBENCH_START_AT"] == "2026-01-01T00:02:00Z"
    assert data["TURNBENCH_SEED"] == "4328183607906873470" and data["TURNBENCH_SALT"] == "5f2c0a9e71b4"
    # merge needs them even without the published report.
    assert data["TURNBENCH_PRINT_RESULTS"] == "true"
    # strict applies to the merged verdict (merge --strict), not to a shard's.
    assert data["TURNBENCH_STRICT"] == "false"
    assert "--strict" in sharded["merge-job.yaml"]["spec"]["template"]["spec"]["containers"][0]["args"]



def test_pods_1_sets_nothing_of_shards_or_capacity(rendered):
    _, _, docs = rendered
    for key in ("TURNBENCH_SHARD_COUNT", "TURNBENCH_START_AT", "TURNBENCH_SALT", "TURNBENCH_MAX_USERS"):
        assert key not in docs["configmap.yaml"]["data"], key
    assert docs["job.yaml"]["spec"]["backoffLimit"] == 0 and "completionMode" not in docs["job.yaml"]["spec"]


def test_the_merge_job_reads_each_shards_configmap_and_runs_like_the_benchmark(sharded):
    merge, shards, job = sharded["merge-job.yaml"], sharded["shards-configmaps.yaml"], sharded["job.yaml"]
    owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": "bench-granite",
              "uid": "6a1c2b8e-0f3d-4e59-9d7a-2b5c8e1f4a90"}]
    spec = merge["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    bench = job["spec"]["template"]["spec"]
    (bc,) = bench["containers"]
    assert merge["metadata"]["name"] == "bench-granite-merge" and merge["metadata"]["ownerReferences"] == owner
    assert merge["spec"]["backoffLimit"] == 0 and spec["restartPolicy"] == "Never"
    for key in ("securityContext", "automountServiceAccountToken", "enableServiceLinks"):
        assert spec[key] == bench[key], key
    for key in ("image", "imagePullPolicy", "securityContext", "resources"):
        assert c[key] == bc[key], key
    # No key, no settings: merge reads files only.
    assert "env" not in c and "envFrom" not in c
    # merge, no --print-results without the published report, --strict with strict, the files.
    assert c["args"] == ["merge", "--strict", "/shards/shard-0.log", "/shards/shard-2.log"]
    (mount,) = c["volumeMounts"]
    (volume,) = spec["volumes"]
    assert mount == {"name": volume["name"], "mountPath": "/shards", "readOnly": True}
    sources = [s["configMap"] for s in volume["projected"]["sources"]]
    assert [s["name"] for s in sources] == [cm["metadata"]["name"] for cm in shards] == \
        ["bench-granite-shard-0", "bench-granite-shard-2"]
    files = [f"{mount['mountPath']}/{s['items'][0]['path']}" for s in sources]
    assert files == c["args"][2:]
    for source, cm, index in zip(sources, shards, (0, 2)):
        assert list(cm["data"]) == [source["items"][0]["key"]]
        assert cm["data"]["results.log"].startswith("# BEGIN TURNBENCH RESULTS\n")
        assert cm["metadata"]["ownerReferences"] == owner
        assert cm["metadata"]["labels"]["app.kubernetes.io/component"] == "shard-results"
    # The merge's pod is not the benchmark's (app=<job> and the role's selector pick the
    # benchmark alone), and it has deadlines of its own.
    labels = merge["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "bench-granite-merge" and labels["app.kubernetes.io/component"] == "merge"
    raw = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__ocp4_workload_litemaas_benchmark_selector"]
    assert not selects(raw.replace("{{ ocp4_workload_litemaas_benchmark_job_name }}", "bench-granite").strip(), labels)
    assert merge["spec"]["activeDeadlineSeconds"] > spec["activeDeadlineSeconds"] > 0
    assert DUMMY_KEY not in yaml.safe_dump(merge) + yaml.safe_dump(shards)


def test_with_pods_the_deadlines_follow_the_largest_shard_and_the_start_delay(tmp_path):
    # 100 conversations over 4 pods: 25 each, 4 in flight: ceil(25 x 10 / 4) + 20 warm-up.
    docs = render_templates(tmp_path, {**CASES["defaults"], "ocp4_workload_litemaas_benchmark_pods": 4,
                                       "ocp4_workload_litemaas_benchmark_conversations": 100})
    timeout = (63 + 20) * 30
    assert docs["job.yaml"]["spec"]["activeDeadlineSeconds"] == timeout + 120
    assert docs["job.yaml"]["spec"]["template"]["spec"]["activeDeadlineSeconds"] == timeout - 60 + 120
    docs = render_templates(tmp_path, {**CASES["defaults"], "ocp4_workload_litemaas_benchmark_pods": 4,
                                       "ocp4_workload_litemaas_benchmark_timeout_seconds": 600,
                                       "ocp4_workload_litemaas_benchmark_start_delay_seconds": 300})
    assert docs["job.yaml"]["spec"]["activeDeadlineSeconds"] == 900
    assert docs["job.yaml"]["spec"]["template"]["spec"]["activeDeadlineSeconds"] == 840


# --- mode capacity ---------------------------------------------------------------------

@pytest.mark.parametrize("max_users, turns, expected", [
    # At most 2 x ceil(log2(max_users)) probes, each its users' conversations at once:
    # (probes x turns + warm-up) x 30 s, at least 1800.
    (128, 10, (14 * 10 + 20) * 30),
    (1000, 10, (20 * 10 + 20) * 30),
    (100, 5, (14 * 5 + 20) * 30),
    (1, 10, 1800),
])
def test_capacity_runs_turnbench_capacity_with_a_deadline_for_its_probes(tmp_path, max_users, turns, expected):
    docs = render_templates(tmp_path, {**CASES["defaults"], "ocp4_workload_litemaas_benchmark_mode": "capacity",
                                       "ocp4_workload_litemaas_benchmark_max_users": max_users,
                                       "ocp4_workload_litemaas_benchmark_turns": turns})
    job, data = docs["job.yaml"], docs["configmap.yaml"]["data"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["capacity"]
    assert job["spec"]["backoffLimit"] == 0 and "completionMode" not in job["spec"]
    assert job["spec"]["activeDeadlineSeconds"] == expected
    assert data["TURNBENCH_MAX_USERS"] == str(max_users) and data["TURNBENCH_TURNS"] == str(turns)
    # Each probe sets conversations = parallel = its users.
    assert "TURNBENCH_CONVERSATIONS" not in data and "TURNBENCH_PARALLEL" not in data
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
        kubernetes_validate.validate(docs["configmap.yaml"], version, strict=True)
