"""The whole role, provision and destroy, against an in-memory Kubernetes API on loopback
(fake_kube_api.py) whose "kubelet" runs the real turnbench binary from the Job the role
created, against `turnbench sim` on loopback. No cluster, but every kubernetes.core call
of workload.yml and remove_workload.yml really happens."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from role_support import DUMMY_KEY, TESTS_DIR, Simulator, cut_block, run_playbook, turnbench_bin
from fake_kube_api import FakeKubeAPI

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


def test_provision_runs_the_job_and_reports_then_destroy_cleans_up(tmp_path, cluster, sim):
    agd = AgnosticD(tmp_path, cluster, sim.url, DUMMY_KEY)
    run = agd.run("provision")
    assert run.rc == 0, run.stdout[-4000:]
    assert DUMMY_KEY not in run.stdout + run.stderr

    ns = cluster.get("v1", "namespaces", "", GUID)
    assert ns["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ocp4_workload_litemaas_benchmark"
    secret = cluster.get("v1", "secrets", GUID, "turnbench-api-key")
    assert base64.b64decode(secret["data"]["api-key"]).decode() == DUMMY_KEY
    assert cluster.get("v1", "configmaps", GUID, "turnbench-config")["data"]["TURNBENCH_URL"] == sim.url
    job = cluster.get("batch/v1", "jobs", GUID, "turnbench")
    assert job["status"]["succeeded"] == 1
    (pod,) = cluster.list("v1", "pods", GUID)
    log = cluster.logs[(GUID, pod["metadata"]["name"])]

    block = cut_block(log)["agnosticd_user_info"]
    assert agd.user_info() == [{"msg": block["msg"], "body": None, "user": None, "data": block["data"],
                                "msg_is_str": True, "data_is_dict": True, "data_values_are_str": True}]
    assert block["data"]["litemaas_benchmark_total_requests"] == "4"
    assert block["data"]["litemaas_benchmark_seed"] == "11"
    assert block["data"]["litemaas_benchmark_model"] == "turnbench-sim"

    # Provisioning again replaces the finished Job (a Job's pod template is immutable)
    # and updates the Secret and ConfigMap in place.
    run = agd.run("provision", ocp4_workload_litemaas_benchmark_seed=12)
    assert run.rc == 0, run.stdout[-4000:]
    assert cluster.get("batch/v1", "jobs", GUID, "turnbench")["metadata"]["uid"] != job["metadata"]["uid"]
    assert cluster.get("v1", "configmaps", GUID, "turnbench-config")["data"]["TURNBENCH_SEED"] == "12"
    assert len(cluster.list("v1", "pods", GUID)) == 1
    assert [r["data"]["litemaas_benchmark_seed"] for r in agd.user_info()] == ["11", "12"]

    run = agd.run("destroy")
    assert run.rc == 0, run.stdout[-4000:]
    assert names(cluster, "batch/v1", "jobs", GUID) == []
    assert names(cluster, "v1", "pods", GUID) == []
    assert names(cluster, "v1", "secrets", GUID) == []
    assert names(cluster, "v1", "configmaps", GUID) == []
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
    # keep_job false: the results are read, then the run's objects go.
    for gv, plural in (("batch/v1", "jobs"), ("v1", "pods"), ("v1", "secrets"), ("v1", "configmaps")):
        assert names(cluster, gv, plural, ns) == [], plural
    assert cluster.get("v1", "namespaces", "", ns) is not None
    assert agd.run("destroy", **dedicated).rc == 0
    assert cluster.get("v1", "namespaces", "", ns) is None

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
    lines = run.task("Show what to look at")["msg"]
    assert any("401" in line or "refused" in line.lower() for line in lines), lines
    # After a failure everything stays for troubleshooting, whatever keep_job says.
    assert cluster.get("batch/v1", "jobs", GUID, "turnbench")["status"]["failed"] == 1
    assert len(cluster.list("v1", "pods", GUID)) == 1


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
