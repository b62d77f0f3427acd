"""Shared by the tests of the Ansible role (a plain module, not conftest.py, so that its
name cannot clash with another directory's conftest): paths, the tools of the test virtualenv,
running ansible-playbook hermetically, and turnbench runs against the simulator.

Nothing here needs a cluster. Every Kubernetes call that a test lets the role make is
pointed at a closed loopback port, so no real cluster can ever be touched."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

TESTS_DIR = Path(__file__).resolve().parent
ROLE_ROOT = TESTS_DIR.parent  # ansible-role/: the collection turnbench.litemaas
ROLES = ROLE_ROOT / "roles"
ROLE = ROLES / "ocp4_workload_litemaas_benchmark"
PLAYBOOKS = ROLE_ROOT / "playbooks"
REPO = ROLE_ROOT.parent
DOUBLES = TESTS_DIR / "doubles"  # AgnosticD's agnosticd.core collection, test doubles
# The ansible-core under test: this virtualenv's, or another one's (scripts/test.sh
# runs the layout and contract tests again under other ansible-core and
# kubernetes.core versions, with ANSIBLE_TEST_BIN and ANSIBLE_TEST_COLLECTIONS).
VENV_BIN = Path(os.environ.get("ANSIBLE_TEST_BIN") or Path(sys.executable).parent)
ANSIBLE_PYTHON = VENV_BIN / "python"
# Where kubernetes.core comes from when not from the `ansible` package of this venv.
EXTRA_COLLECTIONS = [p for p in os.environ.get("ANSIBLE_TEST_COLLECTIONS", "").split(os.pathsep) if p]

BEGIN_MARKER = "# BEGIN TURNBENCH USER INFO"
END_MARKER = "# END TURNBENCH USER INFO"
RESULTS_BEGIN = "# BEGIN TURNBENCH RESULTS"
RESULTS_END = "# END TURNBENCH RESULTS"
# The ids of the charts of turnbench's HTML report.
REPORT_CHART_IDS = ("chart-ttft-by-turn", "chart-ttft-cdf", "chart-ttft-over-time", "chart-e2e-over-time",
                    "chart-tokens-per-second", "chart-cached-by-turn", "chart-errors-over-time")

# A made-up key: the tests check that it reaches turnbench and never the output.
DUMMY_KEY = "sk-turnbench-test-not-a-real-key-5f2c"


def venv_tool(name: str) -> Path:
    """A command installed in the virtualenv that runs pytest (scripts/test.sh installs
    them from requirements.txt); missing is a failure, not a skip."""
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}: run scripts/test.sh, "
                    f"or pip install -r ansible-role/tests/requirements.txt")
    return path


def turnbench_bin() -> Path:
    path = Path(os.environ.get("TURNBENCH_BIN", REPO / "target" / "release" / "turnbench"))
    if not path.is_file():
        pytest.fail(f"turnbench binary not found at {path}: cargo build --release, or set TURNBENCH_BIN")
    return path


def free_loopback_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ansible_env(tmp_path: Path) -> dict[str, str]:
    """The environment of ansible-playbook/ansible-lint: no ANSIBLE_*/K8S_* settings of
    the machine, its own home and temp, the role on the roles path, and any Kubernetes
    client aimed at a closed loopback port."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANSIBLE_", "K8S_AUTH_", "KUBECONFIG"))}
    home = tmp_path / "ansible-home"
    home.mkdir(exist_ok=True)
    closed = free_loopback_port()
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(tmp_path / "no-ansible.cfg"),
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_ROLES_PATH=str(ROLES),
        ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([*EXTRA_COLLECTIONS, str(home / "collections")]),
        # The user info as Babylon reads it: every task's action and result.
        ANSIBLE_CALLBACK_PLUGINS=str(TESTS_DIR / "callback_plugins"),
        ANSIBLE_CALLBACKS_ENABLED="babylon_events",
        TURNBENCH_TEST_EVENTS=str(tmp_path / "job-events.jsonl"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_PIPELINING="1",
        ANSIBLE_PYTHON_INTERPRETER=str(ANSIBLE_PYTHON),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        KUBECONFIG=str(tmp_path / "no-kubeconfig"),
        K8S_AUTH_KUBECONFIG=str(tmp_path / "no-kubeconfig"),
        K8S_AUTH_HOST=f"https://127.0.0.1:{closed}",
        K8S_AUTH_VERIFY_SSL="false",
    )
    return env


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    output: dict = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)

    def babylon(self) -> "ProvisionInfo":
        return babylon_provision_info(self.events)

    def tasks(self) -> list[tuple[str, dict]]:
        """(task name, result on localhost) in the order they ran."""
        out = []
        for play in self.output.get("plays", []):
            for task in play.get("tasks", []):
                out.append((task["task"]["name"], task["hosts"].get("localhost", {})))
        return out

    def task(self, name: str) -> dict:
        """The result of the last task whose name ends with `name` (role tasks are
        shown as 'role : name')."""
        found = [r for n, r in self.tasks() if n == name or n.endswith(" : " + name)]
        assert found, f"task {name!r} did not run; tasks: {[n for n, _ in self.tasks()]}"
        return found[-1]

    def ran(self, name: str) -> bool:
        return any((n == name or n.endswith(" : " + name)) and not r.get("skipped")
                   for n, r in self.tasks())

    def last_failed(self) -> tuple[str, dict]:
        """The last task that failed: the one that ended the play when rc != 0."""
        failed = [(n, r) for n, r in self.tasks() if r.get("failed")]
        assert failed, f"no task failed; rc={self.rc}; tasks: {[n for n, _ in self.tasks()]}"
        return failed[-1]


def run_playbook(playbook: Path, tmp_path: Path, extra_vars: dict, timeout: int = 180,
                 env_extra: dict[str, str] | None = None, cwd: Path | None = None) -> PlaybookRun:
    """ansible-playbook on localhost (local connection) with the JSON callback."""
    vars_file = tmp_path / f"extra-vars-{time.monotonic_ns()}.json"
    vars_file.write_text(json.dumps(extra_vars))
    cmd = [str(venv_tool("ansible-playbook")), "-i", "localhost,", "-c", "local",
           str(playbook), "-e", f"@{vars_file}"]
    env = ansible_env(tmp_path)
    for name, value in (env_extra or {}).items():  # None: not set at all
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    events_file = Path(env["TURNBENCH_TEST_EVENTS"])
    events_file.unlink(missing_ok=True)
    proc = subprocess.run(cmd, cwd=cwd or tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    try:
        output = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook did not print JSON (rc {proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    events = ([json.loads(line) for line in events_file.read_text().splitlines()]
              if events_file.exists() else [])
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, output, events)


@dataclass
class ProvisionInfo:
    data: dict
    messages: list[str]


USER_INFO = re.compile(r"^user\.info:\s*")
USER_DATA = re.compile(r"^user\.data:\s*")


def babylon_provision_info(events: list[dict]) -> ProvisionInfo:
    """The provision data and messages that Babylon's governor gathers from a job's
    events (what the catalog shows): results of tasks whose action is written
    `agnosticd_user_info` or `<collection>.agnosticd_user_info` (their msg without the
    "user.info: " prefix, their data), and of tasks whose action is exactly `debug`
    ("user.info: " lines, and "user.data: " lines parsed as YAML). Any other action,
    ansible.builtin.debug included, is not read."""
    data: dict = {}
    messages: list[str] = []
    for event in events:
        if event.get("event") != "runner_on_ok":
            continue
        action, res = event.get("task_action") or "", event.get("res") or {}
        if action == "agnosticd_user_info" or action.endswith(".agnosticd_user_info"):
            msg = res.get("msg")
            if msg:
                messages.extend(USER_INFO.sub("", m) for m in ([msg] if isinstance(msg, str) else msg))
            if res.get("data"):
                data.update(res["data"])
        elif action == "debug":
            msg = res.get("msg")
            for m in ([msg] if isinstance(msg, str) else msg or []):
                if not isinstance(m, str):
                    continue
                if USER_DATA.search(m):
                    data.update(yaml.safe_load(USER_DATA.sub("", m)))
                elif USER_INFO.search(m):
                    messages.append(USER_INFO.sub("", m))
    return ProvisionInfo(data, messages)


@dataclass
class TurnbenchRun:
    rc: int
    log: str  # stdout and stderr merged, as `oc logs` shows a pod's log


def run_turnbench(args: list[str], env_extra: dict[str, str] | None = None, timeout: int = 120,
                  with_stdout: bool = True) -> TurnbenchRun:
    """`turnbench` with a clean environment (no TURNBENCH_* of the machine) plus env_extra.
    The log merges stdout and stderr in the order they were written, like a pod's log;
    with_stdout=False keeps stderr only (what a pod's log shows before the report)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TURNBENCH_") and k not in ("OPENAI_API_KEY", "RUST_LOG")}
    env.update(env_extra or {})
    if with_stdout:
        proc = subprocess.run([str(turnbench_bin()), *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
        return TurnbenchRun(proc.returncode, proc.stdout)
    proc = subprocess.run([str(turnbench_bin()), *args], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)
    return TurnbenchRun(proc.returncode, proc.stderr)


def cut_block(log: str) -> dict:
    """The reference reading of the block, independent of the role: the lines between
    the last pair of markers, parsed by PyYAML."""
    lines = log.splitlines()
    start = max(i for i, line in enumerate(lines) if line.strip() == BEGIN_MARKER)
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == END_MARKER)
    return yaml.safe_load("\n".join(lines[start + 1:end]))


class Simulator:
    """`turnbench sim` on a free loopback port, requiring `api_key`."""

    def __init__(self, api_key: str):
        self.proc = subprocess.Popen(
            [str(turnbench_bin()), "sim", "--host", "127.0.0.1", "--port", "0", "--api-key", api_key],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if "listening on" in line or not line:
                break
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+/v1)", line)
        if not m:
            self.stop()
            pytest.fail(f"turnbench sim did not start: {line!r}")
        self.url = m.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def render_templates(tmp_path: Path, overrides: dict) -> dict[str, dict]:
    """The role's templates rendered by Ansible with the role's defaults plus
    `overrides`, parsed: {'job.yaml': {...}, ...}; 'shards-configmaps.yaml', one
    ConfigMap per shard, is a list."""
    out = tmp_path / "rendered"
    out.mkdir(exist_ok=True)
    run = run_playbook(TESTS_DIR / "render_templates.yml", tmp_path,
                       {"output_dir": str(out), **overrides})
    assert run.rc == 0, f"rendering failed:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
    docs = {}
    rendered = json.loads((out / "rendered.json").read_text())
    assert set(rendered) == {"job.yaml", "configmap.yaml", "secret.yaml", "ca-configmap.yaml", "results-configmap.yaml",
                             "report-deployment.yaml", "report-service.yaml", "report-route.yaml", "merge-job.yaml",
                             "shards-configmaps.yaml"}
    for name, text in rendered.items():
        loaded = [d for d in yaml.safe_load_all(text) if d is not None]
        if name == "shards-configmaps.yaml":
            docs[name] = loaded
            continue
        assert len(loaded) == 1, f"{name} renders to {len(loaded)} documents"
        docs[name] = loaded[0]
    return docs


def copy_playbook_outside_agnosticd(name: str, tmp_path: Path) -> Path:
    """A copy of a test playbook in a directory without AgnosticD's plugins beside it,
    as a plain Ansible project is."""
    plain = tmp_path / "plain-project"
    plain.mkdir(exist_ok=True)
    dest = plain / name
    shutil.copy(TESTS_DIR / name, dest)
    return dest


class TlsProxy:
    """TLS in front of a loopback server, with a certificate for `host` (and 127.0.0.1)
    signed by a CA of its own: a route of a cluster, signed by its ingress CA. `ca_pem`
    is that CA, as openshift-config-managed/default-ingress-cert holds it."""

    def __init__(self, upstream_port: int, host: str):
        import datetime
        import ipaddress
        import ssl
        import tempfile
        import threading

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ingress-operator@test")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host),
                                                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
        self._dir = tempfile.TemporaryDirectory()
        cert_file, key_file = Path(self._dir.name, "tls.crt"), Path(self._dir.name, "tls.key")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert_file, key_file)
        self._upstream = upstream_port
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.handshake_failures = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        import threading
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        import ssl
        import threading
        try:
            tls = self._ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshake_failures += 1
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self._upstream))

        def pipe(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pipe, args=(upstream, tls), daemon=True).start()
        pipe(tls, upstream)

    def stop(self):
        self._stop = True
        self._listener.close()
        self._dir.cleanup()
