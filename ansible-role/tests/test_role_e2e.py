"""The whole role, provision and destroy, against an in-memory Kubernetes API on loopback
(fake_kube_api.py) whose "kubelet" runs the real turnbench binary from the Job the role
created, against `turnbench sim` on loopback, and the report server from its Deployment.
No cluster, but every kubernetes.core call of workload.yml and remove_workload.yml
really happens."""

from __future__ import annotations

import base64
import copy
import json
import re
import urllib.parse
import urllib.request

import pytest
import yaml

from role_support import (DUMMY_KEY, REPORT_CHART_IDS, RESULTS_BEGIN, RESULTS_END, TESTS_DIR, Simulator, TlsProxy,
                          cut_block, run_playbook, run_turnbench, turnbench_bin)
from fake_kube_api import APPS_DOMAIN, FakeKubeAPI

GUID = "abc12"
JOB = "litemaas-benchmark"
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
BASE_DATA = {"litemaas_benchmark_namespace": GUID, "litemaas_benchmark_job_name": JOB,
             "litemaas_benchmark_conversations": "2", "litemaas_benchmark_turns": "2"}
REPORT_URL = f"https://{JOB}-report-{GUID}.{APPS_DOMAIN}/"


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
        (self.output_dir / "provision-user-data.yaml").write_text(
            yaml.safe_dump({"litellm_api_base_url": url, "litellm_virtual_key": key}))

    def run(self, action: str, **extra):
        # (A provision makes some twenty Kubernetes calls, a module run each: minutes on a
        # busy machine.)
        return run_playbook(TESTS_DIR / "run_role.yml", self.tmp_path,
                            {"ACTION": action, "guid": GUID, "output_dir": str(self.output_dir), **QUICK, **extra},
                            env_extra=self.cluster.env(self.tmp_path), timeout=900)

    def user_info(self) -> list[dict]:
        path = self.output_dir / "agnosticd_user_info.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def reports(self) -> list[dict]:
        """The calls with a message (the pre-run call saves data alone)."""
        return [r for r in self.user_info() if r["msg"] is not None]


def names(cluster, gv, plural, ns):
    return sorted(o["metadata"]["name"] for o in cluster.list(gv, plural, ns))


def component_pods(cluster, ns, component):
    return [p for p in cluster.list("v1", "pods", ns)
            if p["metadata"]["labels"].get("app.kubernetes.io/component") == component]


def api_get(cluster, path: str, **query) -> dict:
    """A request as oc sends it, to the fake API server."""
    url = cluster.url + path + (("?" + urllib.parse.urlencode(query)) if query else "")
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def results_block(log: str) -> str:
    """The RESULTS block of a log, markers included: what the results ConfigMap holds."""
    block = log[log.rindex(RESULTS_BEGIN):]
    return block[:block.index(RESULTS_END) + len(RESULTS_END)] + "\n"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return resp.read().decode()


REPORT_OBJECTS = (("apps/v1", "deployments", f"{JOB}-report"), ("v1", "services", f"{JOB}-report"),
                  ("route.openshift.io/v1", "routes", f"{JOB}-report"), ("v1", "configmaps", f"{JOB}-results"))


def test_provision_runs_the_job_and_reports_then_destroy_cleans_up(tmp_path, cluster, sim):
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    run = agd.run("provision")
    assert run.rc == 0, run.stdout[-4000:]
    assert DUMMY_KEY not in run.stdout + run.stderr

    ns = cluster.get("v1", "namespaces", "", GUID)
    assert ns["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "ocp4_workload_litemaas_benchmark",
                                        "guid": GUID, "workload": "ocp4_workload_litemaas_benchmark"}
    secret = cluster.get("v1", "secrets", GUID, f"{JOB}-api-key")
    assert base64.b64decode(secret["data"]["api-key"]).decode() == DUMMY_KEY
    config = cluster.get("v1", "configmaps", GUID, f"{JOB}-config")
    assert config["data"]["TURNBENCH_URL"] == sim.url and config["data"]["TURNBENCH_PRINT_RESULTS"] == "true"
    job = cluster.get("batch/v1", "jobs", GUID, JOB)
    assert job["status"]["succeeded"] == 1
    (pod,) = component_pods(cluster, GUID, "benchmark")
    log = cluster.logs[(GUID, pod["metadata"]["name"])]

    # Created, not applied: no last-applied annotation (it would hold the key in clear);
    # owned by the Job, so that its TTL takes them along. The key is nowhere else.
    for obj in (secret, config):
        assert "kubectl.kubernetes.io/last-applied-configuration" not in (obj["metadata"].get("annotations") or {})
        assert obj["metadata"]["ownerReferences"] == [
            {"apiVersion": "batch/v1", "kind": "Job", "name": JOB, "uid": job["metadata"]["uid"]}]
    everything = [o for k, o in cluster.objects.items() if k[:2] != ("v1", "secrets")]
    assert DUMMY_KEY not in json.dumps(everything) + log
    assert base64.b64encode(DUMMY_KEY.encode()).decode() not in json.dumps(everything)

    # The LiteMaaS role's documented commands find the benchmark, and only it:
    #   oc get job litemaas-benchmark -n <ns>; oc logs -n <ns> -l app=litemaas-benchmark -f;
    #   oc delete all -l app=litemaas-benchmark -n <ns>
    assert api_get(cluster, f"/apis/batch/v1/namespaces/{GUID}/jobs/{JOB}")["metadata"]["uid"] == job["metadata"]["uid"]
    pods = api_get(cluster, f"/api/v1/namespaces/{GUID}/pods", labelSelector=f"app={JOB}")["items"]
    assert [p["metadata"]["name"] for p in pods] == [pod["metadata"]["name"]]
    jobs = api_get(cluster, f"/apis/batch/v1/namespaces/{GUID}/jobs", labelSelector=f"app={JOB}")["items"]
    assert [j["metadata"]["name"] for j in jobs] == [JOB]
    assert api_get(cluster, f"/apis/batch/v1/namespaces/{GUID}/jobs",
                   labelSelector=f"guid={GUID},workload=ocp4_workload_litemaas_benchmark")["items"] == jobs
    assert api_get(cluster, f"/apis/apps/v1/namespaces/{GUID}/deployments", labelSelector=f"app={JOB}")["items"] == []

    # The report: the results in a ConfigMap, served by the Deployment, behind the Route.
    results = cluster.get("v1", "configmaps", GUID, f"{JOB}-results")
    assert results["data"] == {"results.log": results_block(log)}
    # Not a second copy in a last-applied annotation: annotations hold 256 KiB at most,
    # a results block can be larger. Not owned by the Job: the report outlives it.
    assert "kubectl.kubernetes.io/last-applied-configuration" not in (results["metadata"].get("annotations") or {})
    assert "ownerReferences" not in results["metadata"]
    route = cluster.get("route.openshift.io/v1", "routes", GUID, f"{JOB}-report")
    assert route["spec"]["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    deployment = cluster.get("apps/v1", "deployments", GUID, f"{JOB}-report")
    assert deployment["status"]["availableReplicas"] == 1
    served = cluster.served(GUID, f"{JOB}-report")
    html = fetch(served)
    assert all(f'id="{c}"' in html for c in REPORT_CHART_IDS)
    assert json.loads(fetch(served + "results.json"))["run"]["meta"]["seed"] == 11

    # User info: where it runs, saved first; then the card and the data, unchanged.
    block = cut_block(log)["agnosticd_user_info"]
    saved, report = agd.user_info()
    assert saved["msg"] is None and saved["data"] == BASE_DATA
    assert report == {"msg": block["msg"] + "\nReport: " + REPORT_URL, "body": None, "user": None,
                      "data": {**block["data"], "litemaas_benchmark_report_url": REPORT_URL}, "data_prefix": None,
                      "msg_is_str": True, "data_is_dict": True, "data_values_are_str": True}
    assert report["msg"].splitlines()[1] == "LiteMaaS Benchmark Results"
    assert block["data"]["litemaas_benchmark_total_requests"] == "4"
    assert block["data"]["litemaas_benchmark_model"] == "turnbench-sim"
    # AgnosticD's own files, which later workloads and the catalog read.
    saved_data = yaml.safe_load((agd.output_dir / "provision-user-data.yaml").read_text())
    assert {**BASE_DATA, **report["data"]}.items() <= saved_data.items()

    # Provisioning again replaces the finished Job (a Job's pod template is immutable)
    # and its Secret and ConfigMaps; the same report server, at the same URL, now shows
    # the new run.
    run = agd.run("provision", ocp4_workload_litemaas_benchmark_seed=12)
    assert run.rc == 0, run.stdout[-4000:]
    new_job = cluster.get("batch/v1", "jobs", GUID, JOB)
    assert new_job["metadata"]["uid"] != job["metadata"]["uid"]
    assert cluster.get("v1", "secrets", GUID, f"{JOB}-api-key")["metadata"]["ownerReferences"][0]["uid"] == \
        new_job["metadata"]["uid"]
    assert cluster.get("v1", "configmaps", GUID, f"{JOB}-config")["data"]["TURNBENCH_SEED"] == "12"
    assert len(component_pods(cluster, GUID, "benchmark")) == 1
    assert [r["data"]["litemaas_benchmark_seed"] for r in agd.reports()] == ["11", "12"]
    assert cluster.served(GUID, f"{JOB}-report") == served
    assert json.loads(fetch(served + "results.json"))["run"]["meta"]["seed"] == 12
    server = cluster.server_process(GUID, f"{JOB}-report")

    # Kubernetes deletes a finished Job after ttlSecondsAfterFinished; the garbage
    # collector then deletes what it owns: the key's Secret and the settings, not the report.
    with cluster.lock:
        cluster._delete("batch/v1", "jobs", GUID, JOB)  # what the TTL controller does
    assert names(cluster, "v1", "secrets", GUID) == []
    assert names(cluster, "v1", "configmaps", GUID) == [f"{JOB}-results"]
    assert component_pods(cluster, GUID, "benchmark") == []

    run = agd.run("destroy")
    assert run.rc == 0, run.stdout[-4000:]
    assert not run.ran("Say what could not be removed")
    for gv, plural in (("batch/v1", "jobs"), ("v1", "pods"), ("v1", "secrets"), ("v1", "configmaps")):
        assert names(cluster, gv, plural, GUID) == [], plural
    for gv, plural, _ in REPORT_OBJECTS:
        assert names(cluster, gv, plural, GUID) == [], plural
    assert server.wait(timeout=10) == 0, "the report server stops cleanly on SIGTERM"
    assert cluster.get("v1", "namespaces", "", GUID) is not None, "the guid namespace is shared: it stays"

    run = agd.run("destroy")
    assert run.rc == 0, "removing what is already gone succeeds"
    assert not run.ran("Say what could not be removed")


def test_a_dedicated_namespace_is_created_and_removed_and_the_job_not_kept(tmp_path, cluster, sim):
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    ns = f"litemaas-benchmark-{GUID}"
    dedicated = {"ocp4_workload_litemaas_benchmark_namespace": ns,
                 "ocp4_workload_litemaas_benchmark_keep_job": False}
    run = agd.run("provision", **dedicated)
    assert run.rc == 0, run.stdout[-4000:]
    assert len(agd.reports()) == 1
    # keep_job false: the results are read, then the run's objects go; the report stays.
    for gv, plural in (("batch/v1", "jobs"), ("v1", "secrets")):
        assert names(cluster, gv, plural, ns) == [], plural
    assert names(cluster, "v1", "configmaps", ns) == [f"{JOB}-results"]
    assert component_pods(cluster, ns, "benchmark") == []
    assert len(component_pods(cluster, ns, "report")) == 1
    url = agd.reports()[0]["data"]["litemaas_benchmark_report_url"]
    assert url == f"https://{JOB}-report-{ns}.{APPS_DOMAIN}/"
    assert agd.run("destroy", **dedicated).rc == 0
    assert cluster.get("v1", "namespaces", "", ns) is None
    assert cluster.served(ns, f"{JOB}-report") is None

    # A namespace that the role did not create is never deleted, even when it is not guid.
    cluster.put("v1", "namespaces", {"metadata": {"name": "team-tools", "labels": {"team": "ai"}}})
    cluster.put("v1", "configmaps", {"metadata": {"name": f"{JOB}-config", "namespace": "team-tools"},
                                     "data": {"TURNBENCH_URL": sim.url}})
    assert agd.run("destroy", ocp4_workload_litemaas_benchmark_namespace="team-tools").rc == 0
    assert cluster.get("v1", "namespaces", "", "team-tools") is not None
    assert names(cluster, "v1", "configmaps", "team-tools") == []


def test_destroy_removes_what_the_litemaas_role_left(tmp_path, cluster, sim):
    """An environment provisioned by the Python role and destroyed by this one: its Job,
    pods and report objects go, and its dedicated namespace (labelled with its guid and
    workload labels) too; objects of others with the same names but not its labels stay."""
    ns = "litemaas-bench-old"
    cluster.put("v1", "namespaces", {"metadata": {"name": ns, "labels": {
        "guid": GUID, "workload": "ocp4_workload_litemaas_benchmark"}}})
    old = {"app": "litemaas-benchmark", "guid": GUID, "workload": "ocp4_workload_litemaas_benchmark"}
    cluster.put("batch/v1", "jobs", {"metadata": {"name": "litemaas-benchmark", "namespace": ns, "labels": old}})
    cluster.put("v1", "pods", {"metadata": {"name": "litemaas-benchmark-x7k2p", "namespace": ns,
                                            "labels": {"app": "litemaas-benchmark", "guid": GUID}}})
    report = {"app": "benchmark-report", "guid": GUID}
    for gv, plural in (("v1", "configmaps"), ("v1", "services"), ("apps/v1", "deployments"),
                       ("route.openshift.io/v1", "routes")):
        cluster.put(gv, plural, {"metadata": {"name": "benchmark-report", "namespace": ns, "labels": report}})
    cluster.put("v1", "namespaces", {"metadata": {"name": "shared"}})
    cluster.put("v1", "configmaps", {"metadata": {"name": "benchmark-report", "namespace": "shared",
                                                  "labels": {"app": "someone-else"}}})

    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    # A job name of its own, so that the original's Job is not deleted as ours.
    run = agd.run("destroy", ocp4_workload_litemaas_benchmark_namespace="shared",
                  ocp4_workload_litemaas_benchmark_job_name="bench")
    assert run.rc == 0
    assert names(cluster, "v1", "configmaps", "shared") == ["benchmark-report"], "not the LiteMaaS role's"

    run = agd.run("destroy", ocp4_workload_litemaas_benchmark_namespace=ns,
                  ocp4_workload_litemaas_benchmark_job_name="bench")
    assert run.rc == 0, run.stdout[-4000:]
    assert not run.ran("Say what could not be removed")
    assert cluster.get("v1", "namespaces", "", ns) is None, "its workload label is taken as ownership"


def test_destroy_only_warns_about_api_errors_and_slow_deletions(tmp_path, cluster, sim):
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    ns = f"bench-{GUID}"
    assert agd.run("provision", ocp4_workload_litemaas_benchmark_namespace=ns).rc == 0
    cluster.faults[("DELETE", "jobs")] = (500, "etcdserver: request timed out")
    cluster.slow_deletes["namespaces"] = 30
    run = agd.run("destroy", ocp4_workload_litemaas_benchmark_namespace=ns,
                  __ocp4_workload_litemaas_benchmark_namespace_wait_seconds=2)
    assert run.rc == 0, run.stdout[-4000:]
    warnings = run.task("Say what could not be removed")["msg"]
    assert any(w.startswith(f"Job {JOB}: ") and "etcdserver: request timed out" in w for w in warnings), warnings
    assert any(w.startswith(f"the namespace {ns}: ") for w in warnings), warnings
    # What could be deleted was: the report, the Secret, the ConfigMaps.
    assert cluster.get("apps/v1", "deployments", ns, f"{JOB}-report") is None
    assert cluster.get("v1", "namespaces", "", ns)["metadata"].get("deletionTimestamp")


def test_a_refused_key_is_reported_and_fails_the_play_only_with_fail_on_error(tmp_path, cluster, sim):
    agd = AgnosticD(tmp_path, cluster, sim.url, "sk-wrong-key")
    run = agd.run("provision", ocp4_workload_litemaas_benchmark_keep_job=False)
    assert run.rc == 0, run.stdout[-4000:]
    (record,) = agd.reports()
    msg, data = record["msg"], record["data"]
    # turnbench's card of the failed run, its report's URL, then why and where to look.
    assert msg.splitlines()[1] == "LiteMaaS Benchmark Results"
    assert "ENDPOINT NOT USABLE" in msg and "401" in msg
    assert f"Report: {REPORT_URL}" in msg
    failure = msg[msg.index("LiteMaaS Benchmark Failed"):]
    assert "exit code 3" in failure and "the endpoint could not be used at all" in failure
    assert f"oc logs -n {GUID} -l app={JOB}" in failure
    assert data["litemaas_benchmark_status"].startswith("FAIL")
    assert "exit code 3" in data["litemaas_benchmark_error"]
    assert data["litemaas_benchmark_report_url"] == REPORT_URL
    assert BASE_DATA.items() <= data.items()
    # The report of a failed run is published too: its errors are worth seeing.
    served = cluster.served(GUID, f"{JOB}-report")
    assert json.loads(fetch(served + "results.json"))["run"]["endpoint_unusable"]
    # After a failure everything stays for troubleshooting, whatever keep_job says.
    assert cluster.get("batch/v1", "jobs", GUID, JOB)["status"]["failed"] == 1
    assert len(component_pods(cluster, GUID, "benchmark")) == 1
    assert "sk-wrong-key" not in run.stdout + json.dumps(agd.user_info())

    run = agd.run("provision", ocp4_workload_litemaas_benchmark_fail_on_error=True)
    assert run.rc != 0
    name, failed = run.last_failed()
    assert name.endswith("Fail with the reason")
    assert "exit code 3" in failed["msg"] and "BackoffLimitExceeded" in failed["msg"]
    assert len(agd.reports()) == 2, "reported before the play failed"


def test_a_pod_that_cannot_start_ends_the_wait_within_a_few_polls(tmp_path, cluster, sim):
    """An image that cannot be pulled: the pod waits in ImagePullBackOff for ever. After
    stuck_polls polls (of 1 s here) the role stops waiting, with the reason, instead of
    at its time limit (20 minutes here)."""
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    run = agd.run("provision", ocp4_workload_litemaas_benchmark_image="registry.example.com/does-not-exist:1",
                  ocp4_workload_litemaas_benchmark_timeout_seconds=1200)
    assert run.rc == 0, run.stdout[-4000:]
    # The poll that saw it stuck, then two more: three in a row, of the 1230 allowed.
    (watched,) = [r for n, r in run.tasks()
                  if n.endswith("Watch the pod that cannot start for a few more polls") and not r.get("skipped")]
    assert watched["attempts"] == 2
    polls = [r.get("attempts", 0) for n, r in run.tasks()
             if n.endswith("Wait until the benchmark pod finishes, or cannot start") and not r.get("skipped")]
    assert len(polls) == 1 and polls[0] < 20, polls
    (record,) = agd.reports()
    assert "the benchmark pod could not start (ImagePullBackOff: Back-off pulling image" in record["msg"]
    assert "for 3 polls in a row" in record["data"]["litemaas_benchmark_error"]
    assert record["data"]["litemaas_benchmark_p95_ms"] == "N/A"
    assert "no complete TURNBENCH RESULTS block" in run.task("Say that there is no report to publish")["msg"]
    for gv, plural, name in REPORT_OBJECTS:
        assert cluster.get(gv, plural, GUID, name) is None, plural


def test_a_missing_secret_is_a_pod_that_cannot_start_too(tmp_path, cluster, sim):
    """The Secret is deleted between the role's creation of it and the pod's start: the
    pod waits with CreateContainerConfigError."""
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    original = cluster._container_env

    def without_secret(ns, spec, container):
        with cluster.lock:
            cluster.objects.pop(("v1", "secrets", ns, f"{JOB}-api-key"), None)
        return original(ns, spec, container)

    cluster._container_env = without_secret
    run = agd.run("provision", ocp4_workload_litemaas_benchmark_fail_on_error=True,
                  ocp4_workload_litemaas_benchmark_timeout_seconds=1200)
    assert run.rc != 0
    _, failed = run.last_failed()
    assert "could not start (CreateContainerConfigError" in failed["msg"]
    assert "CreateContainerConfigError" in agd.reports()[0]["msg"]


def test_the_clusters_ingress_ca_is_trusted_for_a_route_of_the_cluster(tmp_path, cluster, sim):
    """The endpoint is a route of this cluster (its host under the apps domain) whose
    certificate the ingress CA signed: the role finds the CA in
    openshift-config-managed/default-ingress-cert, turnbench verifies TLS with it, and
    the message says so. Without it (trust_cluster_ca false) the same endpoint is refused."""
    host = f"litellm.{APPS_DOMAIN}"
    proxy = TlsProxy(int(sim.url.rsplit(":", 1)[1].split("/")[0]), host)
    try:
        cluster.routes_to_loopback = True
        cluster.put("v1", "namespaces", {"metadata": {"name": "openshift-config-managed"}})
        cluster.put("v1", "configmaps", {"metadata": {"name": "default-ingress-cert",
                                                      "namespace": "openshift-config-managed"},
                                         "data": {"ca-bundle.crt": proxy.ca_pem}})
        agd = AgnosticD(tmp_path, cluster, f"https://{host}:{proxy.port}/v1", DUMMY_KEY)
        run = agd.run("provision", ocp4_workload_litemaas_benchmark_publish_report=False)
        assert run.rc == 0, run.stdout[-4000:]
        (record,) = agd.reports()
        assert record["data"]["litemaas_benchmark_status"] == "PASS ✓", record
        assert (f"TLS: {host} is a route of this cluster: its ingress CA "
                "(openshift-config-managed/default-ingress-cert) was trusted.") in record["msg"].splitlines()
        ca = cluster.get("v1", "configmaps", GUID, f"{JOB}-ca")
        assert ca["data"]["ca.crt"] == proxy.ca_pem
        assert cluster.get("v1", "configmaps", GUID, f"{JOB}-config")["data"]["TURNBENCH_CA_CERT"].endswith("/ca.crt")

        run = agd.run("provision", ocp4_workload_litemaas_benchmark_publish_report=False,
                      ocp4_workload_litemaas_benchmark_trust_cluster_ca=False)
        assert run.rc == 0
        record = agd.reports()[-1]
        assert "exit code 3" in record["data"]["litemaas_benchmark_error"]
        assert f"TLS: {host}" not in record["msg"]
        assert proxy.handshake_failures >= 1
    finally:
        proxy.stop()


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
        (record,) = agd.reports()
        assert record["msg"] == block["msg"] and record["data"] == block["data"]
        # The objects before the Route are there (kubectl port-forward reaches the report).
        assert cluster.get("apps/v1", "deployments", GUID, f"{JOB}-report") is not None
        assert cluster.served(GUID, f"{JOB}-report") is not None

        run = agd.run("provision", ocp4_workload_litemaas_benchmark_publish_report=False)
        assert run.rc == 0, run.stdout[-4000:]
        assert "TURNBENCH_PRINT_RESULTS" not in cluster.get("v1", "configmaps", GUID, f"{JOB}-config")["data"]
        (pod,) = component_pods(cluster, GUID, "benchmark")
        log = cluster.logs[(GUID, pod["metadata"]["name"])]
        assert RESULTS_BEGIN not in log
        block = cut_block(log)["agnosticd_user_info"]
        record = agd.reports()[-1]
        assert record["msg"] == block["msg"] and record["data"] == block["data"]
        assert not any(k.endswith("_report_url") for k in record["data"])
        for gv, plural, name in REPORT_OBJECTS[:2] + REPORT_OBJECTS[3:]:
            assert cluster.get(gv, plural, GUID, name) is None, plural
        assert component_pods(cluster, GUID, "report") == []
        assert cluster.served(GUID, f"{JOB}-report") is None
        assert not run.ran("Store the results and start the report server, its Service and Route")
        assert not run.ran("Say that there is no report to publish")
        assert not run.ran("Say what could not be cleaned up"), "no Route API is not an error"


# --- pods > 1: an Indexed Job, merged by turnbench -----------------------------------

SHARDED = {"ocp4_workload_litemaas_benchmark_pods": 3, "ocp4_workload_litemaas_benchmark_conversations": 5,
           "ocp4_workload_litemaas_benchmark_start_delay_seconds": 4}


def shard_pods(cluster, ns=GUID):
    """The Indexed Job's pods by completion index."""
    pods = component_pods(cluster, ns, "benchmark")
    return {int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]): p for p in pods}


def turnbench_merge(tmp_path, logs: dict[int, str]) -> str:
    """What `turnbench merge` makes of these pod logs: the reference for the role's figures."""
    files = []
    for index, log in sorted(logs.items()):
        f = tmp_path / f"reference-pod-{index}.log"
        f.write_text(log)
        files.append(str(f))
    run = run_turnbench(["merge", *files])
    assert run.rc == 0, run.log
    return run.log


def test_pods_split_the_run_over_an_indexed_job_whose_shards_turnbench_merges(tmp_path, cluster, sim):
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    run = agd.run("provision", **SHARDED)
    assert run.rc == 0, run.stdout[-4000:]
    assert DUMMY_KEY not in run.stdout + run.stderr

    # One Indexed Job of 3 pods, all at once, no shard retried; each pod its own index.
    job = cluster.get("batch/v1", "jobs", GUID, JOB)
    assert {k: job["spec"][k] for k in ("completionMode", "completions", "parallelism", "backoffLimitPerIndex")} == \
        {"completionMode": "Indexed", "completions": 3, "parallelism": 3, "backoffLimitPerIndex": 0}
    assert job["status"]["succeeded"] == 3 and job["status"]["completedIndexes"] == "0-2"
    pods = shard_pods(cluster)
    assert sorted(pods) == [0, 1, 2]
    logs = {i: cluster.logs[(GUID, p["metadata"]["name"])] for i, p in pods.items()}
    # The shards share the shard count, start time, seed and salt through the settings.
    config = cluster.get("v1", "configmaps", GUID, f"{JOB}-config")["data"]
    assert config["TURNBENCH_SHARD_COUNT"] == "3" and config["TURNBENCH_PRINT_RESULTS"] == "true"
    assert config["TURNBENCH_SEED"] == "11" and re.fullmatch(r"[0-9a-f]{12}", config["TURNBENCH_SALT"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", config["TURNBENCH_START_AT"])
    for i, log in logs.items():
        shard = cut_block(log)["agnosticd_user_info"]["data"]
        assert shard["litemaas_benchmark_salt"] == config["TURNBENCH_SALT"], i
        assert RESULTS_BEGIN in log and RESULTS_END in log, i
    # Shard i ran the conversations i % 3 == i of 5: 2, 2 and 1 of them, 2 turns each.
    assert [cut_block(logs[i])["agnosticd_user_info"]["data"]["litemaas_benchmark_total_requests"]
            for i in range(3)] == ["4", "4", "2"]

    # The merge: a second Job of the same image, its input one ConfigMap per shard (its
    # results block), all owned by the Indexed Job.
    owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": JOB, "uid": job["metadata"]["uid"]}]
    merge = cluster.get("batch/v1", "jobs", GUID, f"{JOB}-merge")
    assert merge["status"]["succeeded"] == 1 and merge["metadata"]["ownerReferences"] == owner
    (merge_container,) = merge["spec"]["template"]["spec"]["containers"]
    assert merge_container["args"] == ["merge", "--print-results"] + [f"/shards/shard-{i}.log" for i in range(3)]
    assert "env" not in merge_container and "envFrom" not in merge_container, "no key, no settings"
    for i in range(3):
        cm = cluster.get("v1", "configmaps", GUID, f"{JOB}-shard-{i}")
        assert cm["data"] == {"results.log": results_block(logs[i])}
        assert cm["metadata"]["ownerReferences"] == owner
    (merge_pod,) = component_pods(cluster, GUID, "merge")
    merged_log = cluster.logs[(GUID, merge_pod["metadata"]["name"])]

    # Exactly one report: turnbench merge's of the pods' logs, with the report's URL, as a
    # single run reports its own; its figures are the merge's (10 requests in all).
    expected = cut_block(turnbench_merge(tmp_path, logs))["agnosticd_user_info"]
    saved, report = agd.user_info()
    assert saved["data"] == {**BASE_DATA, "litemaas_benchmark_conversations": "5"}
    assert report["msg"] == expected["msg"] + "\nReport: " + REPORT_URL
    assert report["data"] == {**expected["data"], "litemaas_benchmark_report_url": REPORT_URL}
    assert report["data"]["litemaas_benchmark_total_requests"] == "10"
    assert cut_block(merged_log)["agnosticd_user_info"] == expected
    assert "PARTIAL" not in report["msg"]
    facts = run.task("Sum up the shards and the merge")["ansible_facts"]
    assert [(s["index"], s["phase"], s["merged"]) for s in facts["ocp4_workload_litemaas_benchmark_shards"]] == \
        [(0, "Succeeded", True), (1, "Succeeded", True), (2, "Succeeded", True)]
    # The published report is the merged run's.
    assert cluster.get("v1", "configmaps", GUID, f"{JOB}-results")["data"] == {"results.log": results_block(merged_log)}
    served = json.loads(fetch(cluster.served(GUID, f"{JOB}-report") + "results.json"))
    assert served["stats"]["total_requests"] == 10
    # The key is in the Secret alone.
    everything = [o for k, o in cluster.objects.items() if k[:2] != ("v1", "secrets")]
    assert DUMMY_KEY not in json.dumps(everything) + "".join(cluster.logs.values())

    # Destroy removes all of it: both Jobs, their pods, the Secret and every ConfigMap.
    run = agd.run("destroy")
    assert run.rc == 0, run.stdout[-4000:]
    assert not run.ran("Say what could not be removed")
    for gv, plural in (("batch/v1", "jobs"), ("v1", "pods"), ("v1", "secrets"), ("v1", "configmaps")):
        assert names(cluster, gv, plural, GUID) == [], plural
    for gv, plural, _ in REPORT_OBJECTS:
        assert names(cluster, gv, plural, GUID) == [], plural


def test_a_failed_shard_leaves_it_out_and_the_merged_report_says_partial(tmp_path, cluster, sim):
    """Shard 1 stops at once (a setting it rejects: exit 2, no results); the others run
    and merge. One report: the merged card of shards 0 and 2, which says partial, then
    why the run failed; everything stays for troubleshooting."""
    original = cluster._run_pod

    def shard_1_rejects_its_settings(job, index):
        if index == 1:
            job = copy.deepcopy(job)
            job["spec"]["template"]["spec"]["containers"][0].setdefault("env", []).append(
                {"name": "TURNBENCH_TURNS", "value": "0"})
        return original(job, index)

    cluster._run_pod = shard_1_rejects_its_settings
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    run = agd.run("provision", **SHARDED, ocp4_workload_litemaas_benchmark_keep_job=False)
    assert run.rc == 0, run.stdout[-4000:]
    job = cluster.get("batch/v1", "jobs", GUID, JOB)
    assert job["status"]["failedIndexes"] == "1" and job["status"]["completedIndexes"] == "0,2"
    assert job["status"]["conditions"][0]["reason"] == "FailedIndexes"
    pods = shard_pods(cluster)
    logs = {i: cluster.logs[(GUID, pods[i]["metadata"]["name"])] for i in (0, 2)}
    assert names(cluster, "v1", "configmaps", GUID) == sorted(
        [f"{JOB}-config", f"{JOB}-results", f"{JOB}-shard-0", f"{JOB}-shard-2"])

    expected = cut_block(turnbench_merge(tmp_path, logs))["agnosticd_user_info"]
    assert "PARTIAL RESULTS: 2 of 3 shards merged (1 missing)" in expected["msg"]
    (record,) = agd.reports()
    msg, data = record["msg"], record["data"]
    assert msg.startswith(expected["msg"] + "\nReport: " + REPORT_URL + "\n")
    reason = ("2 of 3 shards of the benchmark Job succeeded: shard 1 failed with exit code 2: turnbench rejected its"
              " configuration")
    assert reason in data["litemaas_benchmark_error"]
    assert "(Kubernetes: FailedIndexes; Job has failed indexes" in data["litemaas_benchmark_error"]
    assert data["litemaas_benchmark_error"].endswith(
        "the report merged from shards 0, 2 (2 of 3), partial, was still passed on")
    assert {k: v for k, v in data.items() if k not in ("litemaas_benchmark_error", "litemaas_benchmark_report_url")} \
        == {**BASE_DATA, "litemaas_benchmark_conversations": "5", **expected["data"]}
    assert f"oc logs -n {GUID} job/{JOB}-merge" in msg
    outcome = run.task("Keep the results as facts")["ansible_facts"]["ocp4_workload_litemaas_benchmark_outcome"]
    assert outcome["partial"] is True and outcome["complete"] is False and outcome["exit_code"] == "2"
    # keep_job false, but the run failed: the Jobs, pods and ConfigMaps stay.
    assert cluster.get("batch/v1", "jobs", GUID, f"{JOB}-merge")["status"]["succeeded"] == 1
    assert len(shard_pods(cluster)) == 3

    assert agd.run("destroy").rc == 0
    for gv, plural in (("batch/v1", "jobs"), ("v1", "pods"), ("v1", "secrets"), ("v1", "configmaps")):
        assert names(cluster, gv, plural, GUID) == [], plural


def test_a_cluster_without_per_index_backoff_is_refused_for_pods(tmp_path, sim):
    """Kubernetes 1.28 drops backoffLimitPerIndex: its Job would retry a failed shard.
    The role deletes the Job at once and says what is needed; pods 1 runs there."""
    (tmp_path / "kubelet").mkdir()
    with FakeKubeAPI(turnbench_bin(), tmp_path / "kubelet", kubernetes_minor=28) as cluster:
        agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
        run = agd.run("provision", **SHARDED, ocp4_workload_litemaas_benchmark_publish_report=False)
        assert run.rc == 0, run.stdout[-4000:]
        (record,) = agd.reports()
        assert "needs Kubernetes 1.29 or later (OpenShift 4.16 or later)" in record["data"]["litemaas_benchmark_error"]
        assert "oc get job" not in record["msg"], "no Job to look at"
        assert names(cluster, "batch/v1", "jobs", GUID) == [] and names(cluster, "v1", "secrets", GUID) == []
        assert agd.run("provision", ocp4_workload_litemaas_benchmark_publish_report=False).rc == 0
        assert agd.reports()[-1]["data"]["litemaas_benchmark_status"] == "PASS ✓"


# --- mode capacity --------------------------------------------------------------------

def test_capacity_mode_reports_the_largest_number_of_users_that_passes(tmp_path, cluster, sim):
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    run = agd.run("provision", ocp4_workload_litemaas_benchmark_mode="capacity",
                  ocp4_workload_litemaas_benchmark_max_users=3)
    assert run.rc == 0, run.stdout[-4000:]
    job = cluster.get("batch/v1", "jobs", GUID, JOB)
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["capacity"]
    config = cluster.get("v1", "configmaps", GUID, f"{JOB}-config")["data"]
    assert config["TURNBENCH_MAX_USERS"] == "3"
    assert "TURNBENCH_CONVERSATIONS" not in config and "TURNBENCH_PARALLEL" not in config, "capacity sets users"
    (pod,) = component_pods(cluster, GUID, "benchmark")
    log = cluster.logs[(GUID, pod["metadata"]["name"])]
    block = cut_block(log)["agnosticd_user_info"]
    (record,) = agd.reports()
    assert record["msg"] == block["msg"] + "\nReport: " + REPORT_URL
    assert record["data"] == {**block["data"], "litemaas_benchmark_report_url": REPORT_URL}
    # The simulator has no capacity limit: every level up to max_users passes.
    assert record["data"]["litemaas_benchmark_max_users"] == "3"
    assert record["data"]["litemaas_benchmark_max_users_limit"] == "3"
    assert record["data"]["litemaas_benchmark_capacity_complete"] == "true"
    assert record["msg"].startswith("CAPACITY SEARCH")
    # The published report is the probe's at max_users.
    served = json.loads(fetch(cluster.served(GUID, f"{JOB}-report") + "results.json"))
    assert served["stats"]["total_requests"] == 3 * 2
