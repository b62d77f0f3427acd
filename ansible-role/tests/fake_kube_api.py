"""A small in-memory Kubernetes API server on loopback, enough for the role's
kubernetes.core calls: discovery, namespaces, secrets, configmaps, services, pods (and
their logs), batch/v1 jobs, apps/v1 deployments and (OpenShift) route.openshift.io/v1
routes; get, list (label selectors), create, merge-patch, delete.

A Job that is created is "run" the way a kubelet would run its pod: the container's
environment is built from envFrom ConfigMaps, literal values and secretKeyRefs, an
emptyDir mount becomes a temporary directory, a configMap or projected volume one
holding the ConfigMaps' keys (or their `items`) as files, and the real turnbench binary
runs with the container's args (paths under a mount rewritten to its directory). Its
merged stdout/stderr is the pod's log; its exit code sets the pod's phase, and the
Job's status follows from its pods as the Job controller derives it. An Indexed Job
(completionMode Indexed) gets one pod per index, up to `parallelism` at once, each with
the annotation and label batch.kubernetes.io/job-completion-index and
JOB_COMPLETION_INDEX in its environment; with backoffLimitPerIndex a failed index is
listed in failedIndexes and the Job fails (FailedIndexes) once every index has ended,
without it the Job fails when more pods failed than backoffLimit (BackoffLimitExceeded)
and its running pods are deleted. Pods are never retried (the role's Jobs allow none).
Deleting a running pod stops its process with SIGTERM, as the kubelet does. The API
server is Kubernetes 1.`kubernetes_minor` (31 unless told): below 29 it drops
backoffLimitPerIndex, as an API server whose JobBackoffLimitPerIndex feature is off does.

A Deployment that is created gets one pod, "run" the same way as a server: its
configMap volumes become temporary directories holding the ConfigMap's keys as files
(rewritten when the ConfigMap changes, as the kubelet refreshes them), and the real
turnbench runs with the container's args, except that it listens on a free loopback
port (`--host 127.0.0.1 --port 0`, as a port-forward would reach it): `served(ns, name)`
is its URL. Once it listens the Deployment is available. Deleting the Deployment (or
its namespace) stops it. A Route gets the host that OpenShift would make,
<name>-<namespace>.<APPS_DOMAIN>; `FakeKubeAPI(openshift=False)` has no Route API, as
plain Kubernetes has none. Objects beyond the API server's size limits (annotations,
ConfigMap data) are refused as they would be.

Like the garbage collector, deleting an object deletes what its uid owns (ownerReferences),
and what those own in turn. Label selectors may be equality- or set-based.
On OpenShift the cluster Ingress config holds the apps domain. For the tests of what
the role does when the cluster misbehaves: `faults[(method, plural)] = (code, message)`
answers such requests with that error; `slow_deletes[plural] = seconds` keeps a deleted
object (with a deletionTimestamp) that long; a container image containing
"does-not-exist" never pulls (ImagePullBackOff); and `routes_to_loopback` has the
"kubelet" reach a host under APPS_DOMAIN at 127.0.0.1, as the cluster's DNS leads a
route's host to the router."""

from __future__ import annotations

import base64
import copy
import itertools
import json
import os
import re
import subprocess
import tempfile
import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

RESOURCES = {
    "v1": {
        "namespaces": ("Namespace", False),
        "pods": ("Pod", True),
        "secrets": ("Secret", True),
        "configmaps": ("ConfigMap", True),
        "services": ("Service", True),
    },
    "batch/v1": {
        "jobs": ("Job", True),
    },
    "apps/v1": {
        "deployments": ("Deployment", True),
    },
    "route.openshift.io/v1": {
        "routes": ("Route", True),
    },
    "config.openshift.io/v1": {
        "ingresses": ("Ingress", False),
    },
}
OPENSHIFT_ONLY = {"route.openshift.io/v1", "config.openshift.io/v1"}
APPS_DOMAIN = "apps.cluster.fake.example.com"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def _merge(base, patch):
    """JSON merge patch (RFC 7386): what the role's patches need."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _invalid(obj: dict) -> str:
    """What the API server refuses that the role must avoid: annotations over 256 KiB in
    all, a ConfigMap's data over 1 MiB, an Indexed Job without completions and
    backoffLimitPerIndex on a Job that is not Indexed."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > 256 * 1024:
        return "metadata.annotations: Too long: must have at most 262144 bytes"
    if obj.get("kind") == "ConfigMap":
        data = obj.get("data") or {}
        if sum(len(k) + len(str(v).encode()) for k, v in data.items()) > 1024 * 1024:
            return "data: Too long: must have at most 1048576 bytes"
    if obj.get("kind") == "Job":
        spec = obj.get("spec") or {}
        indexed = spec.get("completionMode") == "Indexed"
        if indexed and spec.get("completions") is None:
            return "spec.completions: Required value: when completion mode is Indexed"
        if spec.get("backoffLimitPerIndex") is not None and not indexed:
            return "spec.backoffLimitPerIndex: Invalid value: requires indexed completion mode"
    return ""


def _selector_terms(selector: str) -> list[str]:
    """The terms of a label selector: commas inside "in (a,b)" do not split."""
    terms, depth, current = [], 0, ""
    for ch in selector:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += ch
    terms.append(current.strip())
    return [t for t in terms if t]


def _matches(obj: dict, selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in _selector_terms(selector):
        in_set = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term)
        if in_set:
            key, op, values = in_set[1], in_set[2], {v.strip() for v in in_set[3].split(",")}
            if (labels.get(key) in values) != (op == "in"):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("==", 1) if "==" in term else term.split("=", 1)
            if labels.get(k) != v:
                return False
        elif labels.get(term) is None:
            return False
    return True


class FakeKubeAPI:
    def __init__(self, turnbench_bin: Path, workdir: Path, openshift: bool = True, kubernetes_minor: int = 31):
        self.turnbench_bin = Path(turnbench_bin)
        self.kubernetes_minor = kubernetes_minor
        self.workdir = Path(workdir)
        self.groups = [gv for gv in RESOURCES if openshift or gv not in OPENSHIFT_ONLY]
        # (ns, deployment) -> (process, URL); (ns, configmap) -> directories it is mounted at
        self.servers: dict[tuple[str, str], tuple[subprocess.Popen, str]] = {}
        self.mounts: dict[tuple[str, str], list[Path]] = {}
        self.objects: dict[tuple[str, str, str, str], dict] = {}  # (gv, plural, ns, name)
        self.logs: dict[tuple[str, str], str] = {}  # (ns, pod name) -> log
        self.processes: dict[tuple[str, str], subprocess.Popen] = {}  # (ns, pod name) -> its container
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self.clock = itertools.count()
        self.runs: list[threading.Thread] = []
        self.faults: dict[tuple[str, str], tuple[int, str]] = {}
        self.slow_deletes: dict[str, float] = {}
        self.routes_to_loopback = False
        if openshift:
            self.objects[("config.openshift.io/v1", "ingresses", "", "cluster")] = {
                "apiVersion": "config.openshift.io/v1", "kind": "Ingress",
                "metadata": {"name": "cluster", "uid": str(uuid.uuid4()), "resourceVersion": "1"},
                "spec": {"domain": APPS_DOMAIN}}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        for run in self.runs:
            run.join(timeout=60)
        with self.lock:
            for key in list(self.servers):
                self._stop_server(*key)

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for this server (plain HTTP on loopback, a made-up token)."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))
        return path

    def env(self, tmp_path: Path) -> dict[str, str]:
        """Environment for ansible-playbook: kubernetes.core talks to this server."""
        config = str(self.kubeconfig(tmp_path / "fake-kubeconfig"))
        return {"KUBECONFIG": config, "K8S_AUTH_KUBECONFIG": config, "K8S_AUTH_HOST": self.url,
                "TMPDIR": str(self.workdir)}

    # --- what the tests look at -------------------------------------------------
    def get(self, gv: str, plural: str, ns: str, name: str) -> dict | None:
        with self.lock:
            return copy.deepcopy(self.objects.get((gv, plural, ns, name)))

    def list(self, gv: str, plural: str, ns: str = "") -> list[dict]:
        with self.lock:
            return [copy.deepcopy(o) for (g, p, n, _), o in self.objects.items()
                    if g == gv and p == plural and n == ns]

    def served(self, ns: str, deployment: str) -> str | None:
        """The loopback URL of a Deployment's running server, None when none runs."""
        with self.lock:
            entry = self.servers.get((ns, deployment))
            return entry[1] if entry and entry[0].poll() is None else None

    def server_process(self, ns: str, deployment: str) -> subprocess.Popen | None:
        with self.lock:
            entry = self.servers.get((ns, deployment))
            return entry[0] if entry else None

    def put(self, gv: str, plural: str, obj: dict) -> None:
        """Store an object as if someone had created it before the role ran."""
        with self.lock:
            self._create(gv, plural, obj["metadata"].get("namespace", ""), copy.deepcopy(obj))

    # --- the API ------------------------------------------------------------------
    def _now(self) -> str:
        t = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=next(self.clock))
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _create(self, gv, plural, ns, obj):
        kind, namespaced = RESOURCES[gv][plural]
        meta = obj.setdefault("metadata", {})
        invalid = _invalid({**obj, "kind": kind})
        if invalid:
            return 422, _status(422, "Invalid", f'{kind} "{meta.get("name")}" is invalid: {invalid}')
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        key = (gv, plural, ns if namespaced else "", meta["name"])
        if key in self.objects:
            return 409, _status(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists')
        if namespaced:
            if ("v1", "namespaces", "", ns) not in self.objects:
                return 404, _status(404, "NotFound", f'namespaces "{ns}" not found')
            meta["namespace"] = ns
        obj["apiVersion"], obj["kind"] = gv, kind
        meta.update(uid=str(uuid.uuid4()), resourceVersion=str(next(self.clock)), creationTimestamp=self._now())
        if kind == "Namespace":
            obj["status"] = {"phase": "Active"}
        if kind == "Secret" and "stringData" in obj:
            data = obj.setdefault("data", {})
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
        if kind == "Route" and not (obj.get("spec") or {}).get("host"):
            host = f'{meta["name"]}-{ns}.{APPS_DOMAIN}'
            obj.setdefault("spec", {})["host"] = host
            obj["status"] = {"ingress": [{"host": host, "routerName": "default", "wildcardPolicy": "None",
                                          "conditions": [{"type": "Admitted", "status": "True"}]}]}
        if kind == "Job":
            self._default_job(obj.setdefault("spec", {}))
        if kind == "Deployment":
            meta["generation"] = 1
            obj["status"] = {"observedGeneration": 1, "replicas": 1, "unavailableReplicas": 1}
        self.objects[key] = obj
        if kind == "ConfigMap":
            self._sync_mounts(ns, meta["name"])
        # (Objects that tests put as bare records, without a pod template, do not run.)
        if kind == "Deployment" and (obj.get("spec") or {}).get("template"):
            run = threading.Thread(target=self._run_deployment, args=(copy.deepcopy(obj),), daemon=True)
            self.runs.append(run)
            run.start()
        if kind == "Job" and (obj.get("spec") or {}).get("template"):
            obj["status"] = {"active": 0, "startTime": self._now()}
            run = threading.Thread(target=self._run_job, args=(copy.deepcopy(obj),), daemon=True)
            self.runs.append(run)
            run.start()
        return 201, obj

    def _default_job(self, spec: dict) -> None:
        """What the API server fills in, and drops, on a Job it stores."""
        if self.kubernetes_minor < 29:
            spec.pop("backoffLimitPerIndex", None)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("parallelism", 1)
        if spec["completionMode"] == "NonIndexed" and spec["parallelism"] == 1:
            spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6)
        spec.setdefault("suspend", False)

    def _delete(self, gv, plural, ns, name):
        key = (gv, plural, ns, name)
        if plural in self.slow_deletes and key in self.objects:
            obj = self.objects[key]
            if "deletionTimestamp" not in obj["metadata"]:
                obj["metadata"]["deletionTimestamp"] = self._now()
                timer = threading.Timer(self.slow_deletes[plural], self._finish_delete, args=(key, obj["metadata"]["uid"]))
                timer.daemon = True
                timer.start()
            return 200, obj
        obj = self.objects.pop(key, None)
        if obj is None:
            return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
        if plural == "pods":
            self._stop_container(ns, name)
        if plural == "deployments":
            self._stop_server(ns, name)
        # The garbage collector: what this owned goes, and what that owned.
        for k, o in list(self.objects.items()):
            refs = o.get("metadata", {}).get("ownerReferences") or []
            if k[2] == ns and k in self.objects and any(r.get("uid") == obj["metadata"]["uid"] for r in refs):
                self._delete(*k)
        if plural == "namespaces":
            for k in [k for k in self.objects if k[2] == name]:
                del self.objects[k]
                if k[1] == "pods":
                    self._stop_container(name, k[3])
            for server_ns, deployment in list(self.servers):
                if server_ns == name:
                    self._stop_server(server_ns, deployment)
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": {"name": name, "kind": plural, "uid": obj["metadata"]["uid"]}}

    def _finish_delete(self, key, uid):
        with self.lock:
            obj = self.objects.get(key)
            if obj is not None and obj["metadata"]["uid"] == uid:
                self.slow_deletes.pop(key[1], None)
                self._delete(*key)

    def handle(self, method: str, raw_path: str, body: bytes):
        url = urlparse(raw_path)
        query = parse_qs(url.query)
        path = url.path.rstrip("/")
        self.requests.append((method, raw_path))
        for (fault_method, plural), (code, message) in self.faults.items():
            if method == fault_method and f"/{plural}" in path:
                return code, _status(code, "InternalError" if code >= 500 else "Forbidden", message)
        if path == "/version":
            return 200, {"major": "1", "minor": str(self.kubernetes_minor),
                         "gitVersion": f"v1.{self.kubernetes_minor}.0", "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                 "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}}
                for gv in self.groups if gv != "v1"]}
        for gv in self.groups:
            prefix = "/api/v1" if gv == "v1" else f"/apis/{gv}"
            if path == prefix:
                resources = []
                for plural, (kind, namespaced) in RESOURCES[gv].items():
                    resources.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced,
                                      "kind": kind, "verbs": VERBS})
                    if plural == "pods":
                        resources.append({"name": "pods/log", "singularName": "", "namespaced": True,
                                          "kind": "Pod", "verbs": ["get"]})
                return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                             "resources": resources}
            if path.startswith(prefix + "/"):
                return self._resource(method, gv, path[len(prefix) + 1:].split("/"), query, body)
        return 404, _status(404, "NotFound", f"the server could not find the requested resource {path}")

    def _resource(self, method, gv, parts, query, body):
        ns = ""
        if parts[0] == "namespaces" and len(parts) >= 3:
            ns, parts = parts[1], parts[2:]
        plural = parts[0]
        if plural not in RESOURCES[gv]:
            return 404, _status(404, "NotFound", f"no resource {plural}")
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
        payload = json.loads(body) if body else {}
        with self.lock:
            if sub == "log" and plural == "pods" and method == "GET":
                if (gv, plural, ns, name) not in self.objects:
                    return 404, _status(404, "NotFound", f'pods "{name}" not found')
                log = self.logs.get((ns, name))
                if log is None:
                    return 400, _status(400, "BadRequest",
                                        f'container "turnbench" in pod "{name}" is waiting to start')
                return 200, log
            if name is None:
                if method == "GET":
                    selector = query.get("labelSelector", [""])[0]
                    items = [o for (g, p, n, _), o in sorted(self.objects.items())
                             if g == gv and p == plural and (n == ns or not ns) and _matches(o, selector)]
                    kind = RESOURCES[gv][plural][0]
                    return 200, {"kind": kind + "List", "apiVersion": gv,
                                 "metadata": {"resourceVersion": str(next(self.clock))}, "items": items}
                if method == "POST":
                    return self._create(gv, plural, ns, payload)
            else:
                key = (gv, plural, ns, name)
                if method == "GET":
                    obj = self.objects.get(key)
                    return (200, obj) if obj else (404, _status(404, "NotFound", f'{plural} "{name}" not found'))
                if method == "DELETE":
                    return self._delete(gv, plural, ns, name)
                if method in ("PATCH", "PUT"):
                    obj = self.objects.get(key)
                    if obj is None:
                        return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
                    new = _merge(obj, payload) if method == "PATCH" else payload
                    invalid = _invalid(new)
                    if invalid:
                        return 422, _status(422, "Invalid", f'{plural} "{name}" is invalid: {invalid}')
                    if "stringData" in new:
                        for k, v in new.pop("stringData").items():
                            new.setdefault("data", {})[k] = base64.b64encode(str(v).encode()).decode()
                    new["metadata"]["resourceVersion"] = str(next(self.clock))
                    self.objects[key] = new
                    if plural == "configmaps":
                        self._sync_mounts(ns, name)
                    return 200, new
        return 405, _status(405, "MethodNotAllowed", f"{method} not supported here")

    # --- the kubelet ------------------------------------------------------------
    def _run_job(self, job: dict) -> None:
        """The Job controller and the kubelet: one pod (NonIndexed), or one per index,
        `parallelism` at a time (Indexed)."""
        spec = job["spec"]
        if spec.get("completionMode") != "Indexed":
            self._run_pod(job, None)
            return
        slots = threading.Semaphore(max(int(spec.get("parallelism", 1)), 1))

        def one(index):
            with slots:
                self._run_pod(job, index)

        pods = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(int(spec["completions"]))]
        for pod in pods:
            pod.start()
        for pod in pods:
            pod.join()

    def _run_pod(self, job: dict, index: int | None) -> None:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        template = job["spec"]["template"]
        spec = template["spec"]
        container = spec["containers"][0]
        with self.lock:
            live_job = self.objects.get(("batch/v1", "jobs", ns, name))
            if live_job is None or live_job["metadata"]["uid"] != job["metadata"]["uid"] or \
                    any(c.get("type") == "Failed" for c in (live_job.get("status") or {}).get("conditions", [])):
                return  # deleted, or failed: the controller creates no more pods
        pod_name = f"{name}-{uuid.uuid4().hex[:5]}" if index is None else f"{name}-{index}-{uuid.uuid4().hex[:5]}"
        labels = dict(template.get("metadata", {}).get("labels") or {})
        labels.update({"job-name": name, "batch.kubernetes.io/job-name": name,
                       "controller-uid": job["metadata"]["uid"]})
        annotations = dict(template.get("metadata", {}).get("annotations") or {})
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
        pod = {"metadata": {"name": pod_name, "labels": labels, "annotations": annotations, "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"],
             "controller": True}]}, "spec": copy.deepcopy(spec),
               "status": {"phase": "Running", "containerStatuses": [
                   {"name": container["name"], "ready": True, "restartCount": 0, "state": {"running": {}}}]}}
        with self.lock:
            self._create("v1", "pods", ns, pod)
            self._update_job(ns, name)
        if "does-not-exist" in str(container.get("image", "")):
            with self.lock:
                live = self.objects.get(("v1", "pods", ns, pod_name))
                if live is not None:
                    live["status"] = {"phase": "Pending", "containerStatuses": [
                        {"name": container["name"], "ready": False, "restartCount": 0, "image": container["image"],
                         "state": {"waiting": {"reason": "ImagePullBackOff",
                                               "message": f'Back-off pulling image "{container["image"]}"'}}}]}
            return
        env, args, error = self._container_env(ns, spec, container)
        if error:
            self._finish(ns, name, pod_name, None, error)
            return
        if index is not None:
            env["JOB_COMPLETION_INDEX"] = str(index)
        if self.routes_to_loopback and env.get("TURNBENCH_URL"):
            route = urlparse(env["TURNBENCH_URL"])
            if route.hostname and route.hostname.endswith("." + APPS_DOMAIN):
                env["TURNBENCH_URL"] = route._replace(netloc=f"127.0.0.1:{route.port or 443}").geturl()
        with self.lock:
            if ("v1", "pods", ns, pod_name) not in self.objects:
                return  # deleted before its container started
            proc = subprocess.Popen([str(self.turnbench_bin), *args], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.processes[(ns, pod_name)] = proc
        try:
            log, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            log, _ = proc.communicate()
        with self.lock:
            self.processes.pop((ns, pod_name), None)
        self._finish(ns, name, pod_name, proc.returncode, log)

    def _stop_container(self, ns: str, pod_name: str) -> None:
        """SIGTERM to a deleted pod's container, as the kubelet sends it."""
        proc = self.processes.get((ns, pod_name))
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def _mount(self, ns: str, volume: dict) -> tuple[str | None, str | None]:
        """A volume as a local directory: (path, None), (None, why it cannot be mounted),
        or (None, None) for a kind not modelled."""
        if "emptyDir" in volume:
            return tempfile.mkdtemp(prefix="emptydir-", dir=self.workdir), None
        if "configMap" in volume:
            sources = [volume["configMap"]]
        elif "projected" in volume:
            sources = [s["configMap"] for s in volume["projected"].get("sources", []) if "configMap" in s]
        else:
            return None, None
        files = {}
        with self.lock:
            for source in sources:
                cm = self.objects.get(("v1", "configmaps", ns, source["name"]))
                if cm is None:
                    return None, f'configmap "{source["name"]}" not found'
                data = cm.get("data") or {}
                for item in source.get("items") or [{"key": k, "path": k} for k in data]:
                    if item["key"] not in data:
                        return None, f'configmap "{source["name"]}" has no key "{item["key"]}"'
                    files[item["path"]] = data[item["key"]]
        local = tempfile.mkdtemp(prefix="configmap-", dir=self.workdir)
        for path, value in files.items():
            Path(local, path).write_text(value)
        return local, None

    def _container_env(self, ns, spec, container):
        """The container's environment and args, with the paths of its mounts made
        local; or the reason it cannot start."""
        env: dict[str, str] = {"PATH": "/usr/bin:/bin", "HOME": str(self.workdir)}
        args = [str(a) for a in container.get("args", [])]
        with self.lock:
            for source in container.get("envFrom", []):
                cm = self.objects.get(("v1", "configmaps", ns, source["configMapRef"]["name"]))
                if cm is None:
                    return None, None, f'configmap "{source["configMapRef"]["name"]}" not found'
                env.update(cm.get("data") or {})
            for var in container.get("env", []):
                if "value" in var:
                    env[var["name"]] = var["value"]
                    continue
                ref = var["valueFrom"]["secretKeyRef"]
                secret = self.objects.get(("v1", "secrets", ns, ref["name"]))
                if secret is None or ref["key"] not in (secret.get("data") or {}):
                    return None, None, f'secret "{ref["name"]}" not found'
                env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            local, error = self._mount(ns, volumes[mount["name"]])
            if error:
                return None, None, error
            if local is None:
                continue
            root = mount["mountPath"]
            for k, v in env.items():
                if v == root or v.startswith(root + "/"):
                    env[k] = local + v[len(root):]
            args = [local + a[len(root):] if a == root or a.startswith(root + "/") else a for a in args]
        return env, args, None

    def _sync_mounts(self, ns: str, configmap: str) -> None:
        """Write a ConfigMap's keys as files into every directory it is mounted at
        (atomically, as the kubelet swaps a symlink)."""
        cm = self.objects.get(("v1", "configmaps", ns, configmap))
        if cm is None:
            return
        for directory in self.mounts.get((ns, configmap), []):
            for key, value in (cm.get("data") or {}).items():
                tmp = directory / f".{key}.tmp"
                tmp.write_text(value)
                os.replace(tmp, directory / key)

    def _run_deployment(self, deployment: dict) -> None:
        ns, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        spec = template["spec"]
        container = spec["containers"][0]
        args = [str(a) for a in container.get("args", [])]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        with self.lock:
            pod = {"metadata": {"name": f"{name}-{uuid.uuid4().hex[:10]}-{uuid.uuid4().hex[:5]}",
                                "labels": dict(template.get("metadata", {}).get("labels") or {}),
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                                     "uid": deployment["metadata"]["uid"]}]},
                   "spec": copy.deepcopy(spec), "status": {"phase": "Pending"}}
            self._create("v1", "pods", ns, pod)
            for mount in container.get("volumeMounts", []):
                source = volumes[mount["name"]].get("configMap")
                if source is None:
                    continue
                if ("v1", "configmaps", ns, source["name"]) not in self.objects:
                    return  # the pod waits for its volume, as it would on a cluster
                local = Path(tempfile.mkdtemp(prefix="configmap-", dir=self.workdir))
                self.mounts.setdefault((ns, source["name"]), []).append(local)
                self._sync_mounts(ns, source["name"])
                args = [str(local) + a[len(mount["mountPath"]):]
                        if a == mount["mountPath"] or a.startswith(mount["mountPath"] + "/") else a
                        for a in args]
        for flag, value in (("--port", "0"), ("--host", "127.0.0.1")):
            if flag in args:
                args[args.index(flag) + 1] = value
            else:
                args += [flag, value]
        proc = subprocess.Popen([str(self.turnbench_bin), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True,
                                env={"PATH": "/usr/bin:/bin", "HOME": str(self.workdir)})
        assert proc.stdout is not None
        first = proc.stdout.readline()
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # never let the pipe fill
        m = re.search(r"on (http://127\.0\.0\.1:\d+/)", first)
        with self.lock:
            current = self.objects.get(("apps/v1", "deployments", ns, name))
            if current is None or current["metadata"]["uid"] != deployment["metadata"]["uid"] or not m:
                proc.terminate()
                proc.wait(timeout=10)
                return
            self.servers[(ns, name)] = (proc, m.group(1))
            live = self.objects.get(("v1", "pods", ns, pod["metadata"]["name"]))
            if live is not None:
                live["status"] = {"phase": "Running", "containerStatuses": [
                    {"name": container["name"], "ready": True, "restartCount": 0, "state": {"running": {}}}]}
            current["status"] = {"observedGeneration": current["metadata"].get("generation", 1), "replicas": 1,
                                 "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                                 "conditions": [{"type": "Available", "status": "True"}]}

    def _stop_server(self, ns: str, deployment: str) -> None:
        entry = self.servers.pop((ns, deployment), None)
        if entry is None:
            return
        proc = entry[0]
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _finish(self, ns, job_name, pod_name, code, log):
        with self.lock:
            self.logs[(ns, pod_name)] = log if code is not None else ""
            pod = self.objects.get(("v1", "pods", ns, pod_name))
            if pod is not None:
                if code is None:
                    pod["status"] = {"phase": "Pending", "containerStatuses": [
                        {"name": "turnbench", "ready": False, "restartCount": 0,
                         "state": {"waiting": {"reason": "CreateContainerConfigError", "message": log}}}]}
                else:
                    pod["status"] = {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": [
                        {"name": "turnbench", "ready": False, "restartCount": 0,
                         "state": {"terminated": {"exitCode": code,
                                                  "reason": "Completed" if code == 0 else "Error"}}}]}
            if code is not None:
                self._update_job(ns, job_name)

    def _update_job(self, ns: str, job_name: str) -> None:
        """The Job's status as the Job controller derives it from its pods."""
        job = self.objects.get(("batch/v1", "jobs", ns, job_name))
        if job is None or "status" not in job:
            return
        spec, status = job["spec"], job["status"]
        if any(c.get("type") in ("Complete", "Failed") for c in status.get("conditions", [])):
            return
        pods = [o for (g, p, n, _), o in self.objects.items() if g == "v1" and p == "pods" and n == ns
                and any(r.get("uid") == job["metadata"]["uid"] for r in o["metadata"].get("ownerReferences") or [])]
        phase = {o["metadata"]["name"]: o["status"].get("phase") for o in pods}
        index = {o["metadata"]["name"]: (o["metadata"].get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
                 for o in pods}
        succeeded = [n for n, ph in phase.items() if ph == "Succeeded"]
        failed = [n for n, ph in phase.items() if ph == "Failed"]
        now = self._now()
        new = {"startTime": status["startTime"], "active": len(phase) - len(succeeded) - len(failed)}
        if succeeded:
            new["succeeded"] = len(succeeded)
        if failed:
            new["failed"] = len(failed)
        indexed = spec.get("completionMode") == "Indexed"
        if indexed:
            def ranges(names):
                nums = sorted({int(index[n]) for n in names})
                out, i = [], 0
                while i < len(nums):
                    j = i
                    while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
                        j += 1
                    out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
                    i = j + 1
                return ",".join(out)
            if succeeded:
                new["completedIndexes"] = ranges(succeeded)
            if failed and spec.get("backoffLimitPerIndex") is not None:
                new["failedIndexes"] = ranges(failed)
        completions = int(spec.get("completions") or 1)
        per_index = indexed and spec.get("backoffLimitPerIndex") is not None
        if len(succeeded) >= completions:
            new.update(active=0, completionTime=now,
                       conditions=[{"type": "Complete", "status": "True", "lastTransitionTime": now}])
        elif per_index and failed and len(succeeded) + len(failed) >= completions:
            new.update(conditions=[{"type": "Failed", "status": "True", "reason": "FailedIndexes",
                                    "message": "Job has failed indexes", "lastTransitionTime": now}])
        elif not per_index and len(failed) > int(spec.get("backoffLimit", 6)):
            new.update(active=0, conditions=[
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit", "lastTransitionTime": now}])
            # The controller deletes the pods still running (SIGTERM, and their logs go).
            for n, ph in phase.items():
                if ph not in ("Succeeded", "Failed"):
                    self._delete("v1", "pods", ns, n)
        job["status"] = new

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code, payload = api.handle(self.command, self.path, body)
                if isinstance(payload, str):
                    data, ctype = payload.encode(), "text/plain; charset=utf-8"
                else:
                    data, ctype = json.dumps(payload).encode(), "application/json"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, *args):
                pass

        return Handler
