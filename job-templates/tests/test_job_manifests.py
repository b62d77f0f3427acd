"""The manifests of job-templates/: valid Kubernetes objects (checked offline against the
schemas that kubernetes-validate bundles), applied whole by `oc apply -k`, and the
security and Job settings that OpenShift's restricted-v2 SCC and Pod Security
"restricted" ask for."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest

from jobtemplates_support import (
    JOB_DIR,
    REPO,
    cargo_package,
    cpu_millis,
    job_env,
    kustomization_dirs,
    load_docs,
    manifest_files,
    mem_bytes,
    pod_containers,
    pod_spec,
    render_kustomization,
    split_image,
)

# Pinned schema versions (bundled in the pinned kubernetes-validate, no download):
# 1.29 is OpenShift 4.16, the oldest release we claim; 1.33 is OpenShift 4.20.
K8S_SCHEMA_VERSIONS = ("1.29.0", "1.33.0")

PSA_RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def all_docs() -> list[tuple[Path, dict]]:
    return [(p, d) for p in manifest_files() for d in load_docs(p)]


def jobs() -> list[tuple[str, dict]]:
    """(kustomization dir, Job) for every Job that `oc apply -k` would create."""
    out = []
    for d in kustomization_dirs():
        for doc in render_kustomization(d):
            if doc["kind"] == "Job":
                out.append((str(d.relative_to(REPO)), doc))
    assert len(out) >= 3, "expected the benchmark Job, its Indexed variant and the smoke-test Job"
    return out


def job_id(item) -> str:
    return f"{item[0]}:{item[1]['metadata']['name']}"


JOBS = jobs()


# --- schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_SCHEMA_VERSIONS)
@pytest.mark.parametrize(
    "path,doc", all_docs(), ids=lambda x: str(x.relative_to(JOB_DIR)) if isinstance(x, Path) else x.get("kind")
)
def test_manifest_is_valid_against_the_kubernetes_schema(path, doc, version):
    # strict: an unknown or misspelt field is an error, as `oc apply --validate=strict`.
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_validation_catches_mistakes():
    """The validator really validates: a misspelt field and a wrongly typed value fail."""
    job = copy.deepcopy(JOBS[0][1])
    job["spec"]["backofflimit"] = 0
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_SCHEMA_VERSIONS[0], strict=True)
    job = copy.deepcopy(JOBS[0][1])
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_SCHEMA_VERSIONS[0], strict=True)


# --- one command ------------------------------------------------------------------


def test_every_manifest_is_applied_by_a_kustomization():
    listed = set()
    for d in kustomization_dirs():
        kust = load_docs(d / "kustomization.yaml")[0]
        listed |= {(d / r).resolve() for r in kust["resources"]}
    assert listed == {p.resolve() for p in manifest_files()}


def test_main_kustomization_holds_secret_configmap_and_job():
    kinds = sorted(d["kind"] for d in render_kustomization(JOB_DIR))
    assert kinds == ["ConfigMap", "Job", "Secret"]


def test_smoke_test_is_a_job_alone():
    docs = render_kustomization(JOB_DIR / "smoke-test")
    assert [d["kind"] for d in docs] == ["Job"]


@pytest.mark.parametrize("kdir", kustomization_dirs(), ids=lambda d: str(d.relative_to(REPO)))
def test_image_is_this_version_and_kustomize_can_change_it(kdir):
    """The Job files name the image at the crate's version (so `oc apply -f` works), and
    the kustomization's `images` entry matches that name (else `kustomize edit set image`
    would silently change nothing)."""
    version = cargo_package()["version"]
    kust = load_docs(kdir / "kustomization.yaml")[0]
    (entry,) = kust["images"]
    assert entry["newTag"] == version
    raw = [c for r in kust["resources"] for d in load_docs(kdir / r) for c in pod_containers(d)]
    rendered = [c for d in render_kustomization(kdir) for c in pod_containers(d)]
    assert raw and len(raw) == len(rendered)
    for c in raw:
        repo, tag = split_image(c["image"])
        assert (repo, tag) == (entry["name"], version), c["image"]
    for c in rendered:
        assert c["image"] == f"{entry['newName']}:{version}"


# --- the Job ------------------------------------------------------------------------


@pytest.mark.parametrize("item", JOBS, ids=job_id)
def test_job_runs_once_and_cleans_up(item):
    job = item[1]
    spec = job["spec"]
    if spec.get("completionMode") == "Indexed":
        # No retry per shard, and one failed shard does not fail the Job at once (which
        # would delete the other pods and their logs): only the per-index limit applies
        # (backoffLimit, unset, then defaults to unlimited).
        assert spec["backoffLimitPerIndex"] == 0
        assert "backoffLimit" not in spec
    else:
        assert spec["backoffLimit"] == 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["ttlSecondsAfterFinished"] > 0
    assert 0 < spec["activeDeadlineSeconds"] <= 24 * 3600
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == "turnbench"
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "turnbench"


@pytest.mark.parametrize("item", JOBS, ids=job_id)
def test_the_pod_deadline_comes_first_and_leaves_time_for_the_report(item):
    """The pod's deadline (kubelet: SIGTERM, pod and log kept) passes before the Job's
    (controller: pod deleted, log lost), and the grace period covers turnbench's own."""
    job = item[1]
    pod = pod_spec(job)
    assert 0 < pod["activeDeadlineSeconds"] < job["spec"]["activeDeadlineSeconds"]
    env = job_env(REPO / item[0], job["metadata"]["name"])
    turnbench_grace = float(env.get("TURNBENCH_GRACE_PERIOD", 5))
    assert pod["terminationGracePeriodSeconds"] >= turnbench_grace + 10


@pytest.mark.parametrize("item", JOBS, ids=job_id)
def test_job_has_requests_and_limits(item):
    for c in pod_containers(item[1]):
        res = c["resources"]
        for kind, parse in (("cpu", cpu_millis), ("memory", mem_bytes)):
            req, lim = res["requests"][kind], res["limits"][kind]
            assert 0 < parse(req) <= parse(lim), f"{c['name']}: {kind} request {req} vs limit {lim}"


@pytest.mark.parametrize("item", JOBS, ids=job_id)
def test_job_meets_restricted_v2_and_pod_security_restricted(item):
    pod = pod_spec(item[1])
    for key in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        assert not pod.get(key), key
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    # OpenShift assigns the UID (and GID 0): a fixed runAsUser/fsGroup would be
    # refused by restricted-v2 outside the namespace's range.
    for key in ("runAsUser", "runAsGroup", "fsGroup", "supplementalGroups"):
        assert key not in psc, f"pod securityContext.{key} would clash with OpenShift's UID range"
    for vol in pod.get("volumes", []):
        types = set(vol) - {"name"}
        assert types <= PSA_RESTRICTED_VOLUME_TYPES, f"volume {vol['name']}: {types}"
    for c in pod_containers(item[1]):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not sc.get("privileged")
        assert "runAsUser" not in sc and "runAsGroup" not in sc
        assert all("hostPort" not in p for p in c.get("ports", []))
    # No service account token, no TURNBENCH_<SERVICE>_* variables from Service links.
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False


@pytest.mark.parametrize("item", JOBS, ids=job_id)
def test_results_go_to_an_empty_dir_at_the_output_dir(item):
    kdir, job = REPO / item[0], item[1]
    env = job_env(kdir, job["metadata"]["name"])
    out = env["TURNBENCH_OUTPUT_DIR"]
    (c,) = job["spec"]["template"]["spec"]["containers"]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == out]
    (vol,) = [v for v in pod_spec(job)["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in vol
    assert not mount.get("readOnly")


def test_api_key_comes_from_the_secret_only():
    docs = render_kustomization(JOB_DIR)
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    env = job_env(JOB_DIR, "turnbench")
    ref = re.fullmatch(r"<secret:([^/]+)/(.+)>", env["TURNBENCH_API_KEY"])
    assert ref, "TURNBENCH_API_KEY must come from a secretKeyRef"
    secret = secrets[ref[1]]
    value = {**secret.get("stringData", {}), **secret.get("data", {})}[ref[2]]
    # A placeholder, never a key.
    assert "REPLACE" in value and not value.startswith("sk-")
    # No literal value for anything secret-looking, in any container or ConfigMap.
    for _, doc in all_docs():
        for c in pod_containers(doc):
            for e in c.get("env", []):
                if re.search(r"(KEY|TOKEN|PASSWORD|SECRET)$", e["name"]):
                    assert "value" not in e, f"{e['name']} has a literal value"
        if doc["kind"] == "ConfigMap":
            for k in doc["data"]:
                assert not re.search(r"(KEY|TOKEN|PASSWORD|SECRET)$", k), f"ConfigMap key {k}"


def test_smoke_test_benchmarks_the_simulator():
    env = job_env(JOB_DIR / "smoke-test", "turnbench-smoke-test")
    assert "TURNBENCH_URL" not in env
    assert not any(v.startswith("<secret:") for v in env.values())
    assert env["TURNBENCH_STRICT"] == "true"


def test_benchmark_job_points_at_an_endpoint():
    env = job_env(JOB_DIR, "turnbench")
    assert env["TURNBENCH_URL"].endswith("/v1")


def turnbench_bin() -> Path:
    p = Path(os.environ.get("TURNBENCH_BIN", REPO / "target/release/turnbench"))
    if not p.is_file():
        pytest.skip(f"no turnbench binary at {p}: run scripts/test.sh, or set TURNBENCH_BIN")
    return p


@pytest.mark.parametrize("item", JOBS, ids=job_id)
def test_every_variable_names_a_turnbench_flag(item):
    """Each TURNBENCH_* variable is the upper snake case of a flag of `turnbench run`
    (a misspelt one would be ignored with only a warning)."""
    help_text = subprocess.run(
        [turnbench_bin(), "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    flags = {f.replace("-", "_").upper() for f in re.findall(r"--([a-z][a-z0-9-]+)", help_text)}
    assert {"URL", "API_KEY", "OUTPUT_DIR", "MAX_TOKENS"} <= flags
    env = job_env(REPO / item[0], item[1]["metadata"]["name"])
    for name in env:
        assert name.startswith("TURNBENCH_"), name
        assert name[len("TURNBENCH_") :] in flags, f"{name}: no flag --{name[10:].lower().replace('_', '-')}"
