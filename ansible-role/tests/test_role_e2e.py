"""The whole role, provision and destroy, against an in-memory Kubernetes API on loopback
(fake_kube_api.py) whose "kubelet" runs the real turnbench binary from the Job the role
created, against `turnbench sim` on loopback, and the report server from its Deployment.
No cluster, but every kubernetes.core call of workload.yml and remove_workload.yml
really happens."""

from __future__ import annotations

import base64
import json
import urllib.request

import pytest
import yaml

from role_support import (DUMMY_KEY, REPORT_CHART_IDS, RESULTS_BEGIN, RESULTS_END, TESTS_DIR, Simulator,
                          cut_block, run_playbook, turnbench_bin)
from fake_kube_api import APPS_DOMAIN, FakeKubeAPI

GUID = "abc12"
QUICK = {
    "ocp4_workload_litemaas_benchmark_conversations": 2,
    "ocp4_workload_litemaas_benchmark_turns": 2,
    "ocp4_workload_litemaas_benchmark_warmup": 1,
    "ocp4_workload_litemaas_benchmark_min_delay": 0,
    "ocp4_workload_litemaas_benchmark_max_delay": 0,
    "ocp4_workload_litemaas_benchmark_seed": 11,
    "ocp4_workload_litemaas_benchmark_poll_seconds": 1,
    "ocp4_workload_litemaas_benchmark_timeout_seconds": 120,
}


@pytest.fixture
def cluster(tmp_path):
    (tmp_path / "kubelet").mkdir()
    with FakeKubeAPI(turnbench_bin(), tmp_path / "kubelet") as api:
        yield api


@pytest.fixture
def sim():
    s = Simulator(DUMMY_KEY)
    yield s
    s.stop()


class AgnosticD:
    """What AgnosticD gives a workload: output_dir with the user data that earlier
    workloads saved (here: what ocp4_workload_litellm_virtual_keys saves)."""

    def __init__(self, tmp_path, cluster, url, key):
        self.tmp_path, self.cluster = tmp_path, cluster
        self.output_dir = tmp_path / "output_dir"
        self.output_dir.mkdir(exist_ok=True)
        (self.output_dir / "user-data.yaml").write_text(
            yaml.safe_dump({"litellm_api_base_url": url, "litellm_virtual_key": key}))

    def run(self, action: str, **extra):
        return run_playbook(TESTS_DIR / "run_role.yml", self.tmp_path,
                            {"ACTION": action, "guid": GUID, "output_dir": str(self.output_dir), **QUICK, **extra},
                            env_extra=self.cluster.env(self.tmp_path))

    def user_info(self) -> list[dict]:
        path = self.output_dir / "agnosticd_user_info.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def names(cluster, gv, plural, ns):
    return sorted(o["metadata"]["name"] for o in cluster.list(gv, plural, ns))


def component_pods(cluster, ns, component):
    return [p for p in cluster.list("v1", "pods", ns)
            if p["metadata"]["labels"].get("app.kubernetes.io/component") == component]


def results_block(log: str) -> str:
    """The RESULTS block of a log, markers included: what the results ConfigMap holds."""
    block = log[log.rindex(RESULTS_BEGIN):]
    return block[:block.index(RESULTS_END) + len(RESULTS_END)] + "\n"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return resp.read().decode()


REPORT_OBJECTS = (("apps/v1", "deployments", "turnbench-report"), ("v1", "services", "turnbench-report"),
                  ("route.openshift.io/v1", "routes", "turnbench-report"), ("v1", "configmaps", "turnbench-results"))


def test_provision_runs_the_job_and_reports_then_destroy_cleans_up(tmp_path, cluster, sim):
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    run = agd.run("provision")
    assert run.rc == 0, run.stdout[-4000:]
    assert DUMMY_KEY not in run.stdout + run.stderr

    ns = cluster.get("v1", "namespaces", "", GUID)
    assert ns["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ocp4_workload_litemaas_benchmark"
    secret = cluster.get("v1", "secrets", GUID, "turnbench-api-key")
    assert base64.b64decode(secret["data"]["api-key"]).decode() == DUMMY_KEY
    config = cluster.get("v1", "configmaps", GUID, "turnbench-config")["data"]
    assert config["TURNBENCH_URL"] == sim.url and config["TURNBENCH_PRINT_RESULTS"] == "true"
    job = cluster.get("batch/v1", "jobs", GUID, "turnbench")
    assert job["status"]["succeeded"] == 1
    (pod,) = component_pods(cluster, GUID, "benchmark")
    log = cluster.logs[(GUID, pod["metadata"]["name"])]

    # The report: the results in a ConfigMap, served by the Deployment, behind the Route.
    url = f"https://turnbench-report-{GUID}.{APPS_DOMAIN}/"
    results = cluster.get("v1", "configmaps", GUID, "turnbench-results")
    assert results["data"] == {"results.log": results_block(log)}
    # Not a second copy in a last-applied annotation: annotations hold 256 KiB at most,
    # a results block can be larger.
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (results["metadata"].get("annotations") or {})
    route = cluster.get("route.openshift.io/v1", "routes", GUID, "turnbench-report")
    assert route["spec"]["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    assert route["spec"]["to"]["name"] == cluster.get("v1", "services", GUID, "turnbench-report")["metadata"]["name"]
    deployment = cluster.get("apps/v1", "deployments", GUID, "turnbench-report")
    assert deployment["status"]["availableReplicas"] == 1
    served = cluster.served(GUID, "turnbench-report")
    html = fetch(served)
    assert all(f'id="{c}"' in html for c in REPORT_CHART_IDS)
    assert json.loads(fetch(served + "results.json"))["seed"] == 11
    assert fetch(served + "healthz").strip() == "ok"

    block = cut_block(log)["agnosticd_user_info"]
    assert agd.user_info() == [{"msg": block["msg"] + "\nReport: " + url, "body": None, "user": None,
                                "data": {**block["data"], "litemaas_benchmark_report_url": url},
                                "msg_is_str": True, "data_is_dict": True, "data_values_are_str": True}]
    assert block["data"]["litemaas_benchmark_total_requests"] == "4"
    assert block["data"]["litemaas_benchmark_seed"] == "11"
    assert block["data"]["litemaas_benchmark_model"] == "turnbench-sim"

    # Provisioning again replaces the finished Job (a Job's pod template is immutable)
    # and updates the Secret and ConfigMaps in place; the same report server, at the same
    # URL, now shows the new run.
    run = agd.run("provision", ocp4_workload_litemaas_benchmark_seed=12)
    assert run.rc == 0, run.stdout[-4000:]
    assert cluster.get("batch/v1", "jobs", GUID, "turnbench")["metadata"]["uid"] != job["metadata"]["uid"]
    assert cluster.get("v1", "configmaps", GUID, "turnbench-config")["data"]["TURNBENCH_SEED"] == "12"
    assert len(component_pods(cluster, GUID, "benchmark")) == 1
    assert len(component_pods(cluster, GUID, "report")) == 1
    assert [r["data"]["litemaas_benchmark_seed"] for r in agd.user_info()] == ["11", "12"]
    assert agd.user_info()[-1]["data"]["litemaas_benchmark_report_url"] == url
    assert cluster.get("apps/v1", "deployments", GUID, "turnbench-report")["metadata"]["uid"] == \
        deployment["metadata"]["uid"]
    assert cluster.served(GUID, "turnbench-report") == served
    assert json.loads(fetch(served + "results.json"))["seed"] == 12
    server = cluster.server_process(GUID, "turnbench-report")

    run = agd.run("destroy")
    assert run.rc == 0, run.stdout[-4000:]
    assert names(cluster, "batch/v1", "jobs", GUID) == []
    assert names(cluster, "v1", "pods", GUID) == []
    assert names(cluster, "v1", "secrets", GUID) == []
    assert names(cluster, "v1", "configmaps", GUID) == []
    for gv, plural, _ in REPORT_OBJECTS:
        assert names(cluster, gv, plural, GUID) == [], plural
    assert server.wait(timeout=10) == 0, "the report server stops cleanly on SIGTERM"
    assert cluster.get("v1", "namespaces", "", GUID) is not None, "the guid namespace is shared: it stays"

    run = agd.run("destroy")
    assert run.rc == 0, "removing what is already gone succeeds"


def test_a_dedicated_namespace_is_created_and_removed_and_the_job_not_kept(tmp_path, cluster, sim):
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    ns = f"litemaas-benchmark-{GUID}"
    dedicated = {"ocp4_workload_litemaas_benchmark_namespace": ns,
                 "ocp4_workload_litemaas_benchmark_keep_job": False}
    run = agd.run("provision", **dedicated)
    assert run.rc == 0, run.stdout[-4000:]
    assert len(agd.user_info()) == 1
    # keep_job false: the results are read, then the run's objects go; the report stays.
    for gv, plural in (("batch/v1", "jobs"), ("v1", "secrets")):
        assert names(cluster, gv, plural, ns) == [], plural
    assert names(cluster, "v1", "configmaps", ns) == ["turnbench-results"]
    assert component_pods(cluster, ns, "benchmark") == []
    assert len(component_pods(cluster, ns, "report")) == 1
    url = agd.user_info()[0]["data"]["litemaas_benchmark_report_url"]
    assert url == f"https://turnbench-report-{ns}.{APPS_DOMAIN}/"
    assert cluster.get("v1", "namespaces", "", ns) is not None
    assert agd.run("destroy", **dedicated).rc == 0
    assert cluster.get("v1", "namespaces", "", ns) is None
    assert cluster.served(ns, "turnbench-report") is None

    # A namespace that the role did not create is never deleted, even when it is not guid.
    cluster.put("v1", "namespaces", {"metadata": {"name": "team-tools", "labels": {"team": "ai"}}})
    cluster.put("v1", "configmaps", {"metadata": {"name": "turnbench-config", "namespace": "team-tools"},
                                     "data": {"TURNBENCH_URL": sim.url}})
    assert agd.run("destroy", ocp4_workload_litemaas_benchmark_namespace="team-tools").rc == 0
    assert cluster.get("v1", "namespaces", "", "team-tools") is not None
    assert names(cluster, "v1", "configmaps", "team-tools") == []


def test_a_refused_key_fails_the_job_and_the_play_with_the_report_kept(tmp_path, cluster, sim):
    agd = AgnosticD(tmp_path, cluster, sim.url, "sk-wrong-key")
    run = agd.run("provision", ocp4_workload_litemaas_benchmark_keep_job=False)
    assert run.rc != 0
    name, failed = run.last_failed()
    assert name.endswith("Fail with the reason")
    assert "exit code 3" in failed["msg"]
    assert "BackoffLimitExceeded" in failed["msg"]
    (record,) = agd.user_info()
    assert record["data"]["litemaas_benchmark_status"].startswith("FAIL")
    # The report of a failed run is published too: its errors are worth seeing.
    assert record["data"]["litemaas_benchmark_report_url"] == f"https://turnbench-report-{GUID}.{APPS_DOMAIN}/"
    served = cluster.served(GUID, "turnbench-report")
    assert json.loads(fetch(served + "results.json"))["endpoint_unusable"]
    lines = run.task("Show what to look at")["msg"]
    assert any("401" in line or "refused" in line.lower() for line in lines), lines
    # After a failure everything stays for troubleshooting, whatever keep_job says.
    assert cluster.get("batch/v1", "jobs", GUID, "turnbench")["status"]["failed"] == 1
    assert len(component_pods(cluster, GUID, "benchmark")) == 1


def test_a_pod_that_cannot_start_is_reported_with_the_kubernetes_reason(tmp_path, cluster, sim):
    """The Secret is deleted between the role's creation of it and the pod's start:
    the pod waits with CreateContainerConfigError and never logs. The role gives up at
    its time limit and says why. (The internal wait is cut to 3 s through an extra var,
    which outranks role vars, so that the test does not wait the real 90 s.)"""
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    original = cluster._container_env

    def without_secret(ns, spec, container):
        with cluster.lock:
            cluster.objects.pop(("v1", "secrets", ns, "turnbench-api-key"), None)
        return original(ns, spec, container)

    cluster._container_env = without_secret
    run = agd.run("provision", ocp4_workload_litemaas_benchmark_timeout_seconds=60,
                  __ocp4_workload_litemaas_benchmark_wait_seconds=3)
    assert run.rc != 0
    _, failed = run.last_failed()
    assert "did not finish within 3 seconds" in failed["msg"]
    assert "CreateContainerConfigError" in failed["msg"]
    assert agd.user_info() == []
    assert "no complete TURNBENCH RESULTS block" in run.task("Say that there is no report to publish")["msg"]
    for gv, plural, name in REPORT_OBJECTS:
        assert cluster.get(gv, plural, GUID, name) is None, plural


def test_without_routes_the_results_are_still_reported_and_publish_report_false_cleans_up(tmp_path, sim):
    """Plain Kubernetes has no Route API: the role warns, reports the results without a
    URL, and does not fail. Then publish_report false: no results in the log, no report,
    and what the first run created is removed (the missing Route API is fine)."""
    (tmp_path / "kubelet").mkdir()
    with FakeKubeAPI(turnbench_bin(), tmp_path / "kubelet", openshift=False) as cluster:
        agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
        run = agd.run("provision")
        assert run.rc == 0, run.stdout[-4000:]
        warning = run.task("Say that the report could not be published")["msg"]
        assert "could not be published" in warning and "route.openshift.io/v1" in warning
        (pod,) = component_pods(cluster, GUID, "benchmark")
        block = cut_block(cluster.logs[(GUID, pod["metadata"]["name"])])["agnosticd_user_info"]
        (record,) = agd.user_info()
        assert record["msg"] == block["msg"] and record["data"] == block["data"]
        # The objects before the Route are there (kubectl port-forward reaches the report).
        assert cluster.get("apps/v1", "deployments", GUID, "turnbench-report") is not None
        assert cluster.served(GUID, "turnbench-report") is not None

        run = agd.run("provision", ocp4_workload_litemaas_benchmark_publish_report=False)
        assert run.rc == 0, run.stdout[-4000:]
        assert "TURNBENCH_PRINT_RESULTS" not in cluster.get("v1", "configmaps", GUID, "turnbench-config")["data"]
        (pod,) = component_pods(cluster, GUID, "benchmark")
        log = cluster.logs[(GUID, pod["metadata"]["name"])]
        assert RESULTS_BEGIN not in log
        block = cut_block(log)["agnosticd_user_info"]
        record = agd.user_info()[-1]
        assert record["msg"] == block["msg"] and record["data"] == block["data"]
        assert not any(k.endswith("_report_url") for k in record["data"])
        for gv, plural, name in REPORT_OBJECTS[:2] + REPORT_OBJECTS[3:]:
            assert cluster.get(gv, plural, GUID, name) is None, plural
        assert component_pods(cluster, GUID, "report") == []
        assert cluster.served(GUID, "turnbench-report") is None
        assert not run.ran("Store the results and start the report server, its Service and Route")
        assert not run.ran("Say that there is no report to publish")
