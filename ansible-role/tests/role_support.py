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
ROLE_ROOT = TESTS_DIR.parent  # ansible-role/
ROLE = ROLE_ROOT / "ocp4_workload_litemaas_benchmark"
PLAYBOOKS = ROLE_ROOT / "playbooks"
REPO = ROLE_ROOT.parent
VENV_BIN = Path(sys.executable).parent

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
        ANSIBLE_ROLES_PATH=str(ROLE_ROOT),
        ANSIBLE_COLLECTIONS_PATH=str(home / "collections"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_PIPELINING="1",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
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
                 env_extra: dict[str, str] | None = None) -> PlaybookRun:
    """ansible-playbook on localhost (local connection) with the JSON callback."""
    vars_file = tmp_path / f"extra-vars-{time.monotonic_ns()}.json"
    vars_file.write_text(json.dumps(extra_vars))
    cmd = [str(venv_tool("ansible-playbook")), "-i", "localhost,", "-c", "local",
           str(playbook), "-e", f"@{vars_file}"]
    env = ansible_env(tmp_path)
    env.update(env_extra or {})
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    try:
        output = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook did not print JSON (rc {proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, output)


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
    `overrides`, parsed: {'job.yaml': {...}, ...}."""
    out = tmp_path / "rendered"
    out.mkdir(exist_ok=True)
    run = run_playbook(TESTS_DIR / "render_templates.yml", tmp_path,
                       {"output_dir": str(out), **overrides})
    assert run.rc == 0, f"rendering failed:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
    docs = {}
    rendered = json.loads((out / "rendered.json").read_text())
    assert set(rendered) == {"job.yaml", "configmap.yaml", "secret.yaml", "ca-configmap.yaml", "results-configmap.yaml",
                             "report-deployment.yaml", "report-service.yaml", "report-route.yaml"}
    for name, text in rendered.items():
        loaded = [d for d in yaml.safe_load_all(text) if d is not None]
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
