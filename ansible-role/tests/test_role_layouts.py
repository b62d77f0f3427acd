"""The collection as a catalog gets it, and the workload run from it where catalogs run
it: installed by ansible-galaxy from a git clone of this repository (as AgnosticD
installs a catalog's requirements_content), then applied by a playbook laid out as
AgnosticD v2 lays its own (an imported config playbook, agnosticd.core only as a
collection, the deployer's data_prefix through module_defaults, any_errors_fatal), as
v1 does (the plugin in action_plugins/ beside main.yml) and by a plain playbook. Each
delivers the card and the data through the channel that works there, and Babylon's
reading of the job's events finds both. The runs go against tests/fake_kube_api.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fake_kube_api import FakeKubeAPI
from role_support import (DOUBLES, DUMMY_KEY, EXTRA_COLLECTIONS, REPO, ROLE, TESTS_DIR, Simulator, ansible_env,
                          cut_block, render_templates, run_playbook, turnbench_bin, venv_tool)

WORKLOAD = "turnbench.litemaas.ocp4_workload_litemaas_benchmark"
GUID = "lay01"
QUICK = {
    "ocp4_workload_litemaas_benchmark_conversations": 2,
    "ocp4_workload_litemaas_benchmark_turns": 2,
    "ocp4_workload_litemaas_benchmark_warmup": 1,
    "ocp4_workload_litemaas_benchmark_min_delay": 0,
    "ocp4_workload_litemaas_benchmark_max_delay": 0,
    "ocp4_workload_litemaas_benchmark_poll_seconds": 1,
    "ocp4_workload_litemaas_benchmark_publish_report": False,
}
AGNOSTICD_CFG = """[defaults]
roles_path = ansible/dynamic_roles:ansible/roles
collections_path = {collections}
any_errors_fatal = True
"""


def git(*args, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=turnbench tests", "-c", "user.email=tests@turnbench.invalid",
                           *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A clone of this repository whose ansible-role/ is the working tree's (so that
    uncommitted changes are what is tested), committed on a branch of the clone."""
    path = tmp_path_factory.mktemp("repo") / "turnbench"
    git("clone", "--quiet", "--no-checkout", str(REPO), str(path), cwd=REPO)
    git("checkout", "--quiet", "-B", "catalog", cwd=path)
    files = git("ls-files", "--cached", "--others", "--exclude-standard", "-z", "ansible-role", cwd=REPO).split("\0")
    shutil.rmtree(path / "ansible-role", ignore_errors=True)
    for name in filter(None, files):
        src = REPO / name
        if src.is_file() or src.is_symlink():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, path / name, follow_symlinks=False)
    git("add", "-A", cwd=path)
    git("commit", "--quiet", "--allow-empty", "-m", "the working tree's collection", cwd=path)
    return path


def kubernetes_core() -> Path:
    """The kubernetes.core that the tests run with (the execution environment's)."""
    for base in [*map(Path, EXTRA_COLLECTIONS), *map(Path, __import__("sys").path)]:
        candidate = base / "ansible_collections" / "kubernetes" / "core"
        if (candidate / "MANIFEST.json").is_file():
            return candidate
    pytest.fail("kubernetes.core not found")


@pytest.fixture(scope="module")
def installed(clone, tmp_path_factory) -> Path:
    """The collection installed as AgnosticD installs requirements_content: its
    requirements written to a file, `ansible-galaxy collection install -r` into the
    collections path, where the execution environment's kubernetes.core already is."""
    root = tmp_path_factory.mktemp("collections")
    target = root / "ansible_collections" / "kubernetes"
    target.mkdir(parents=True)
    shutil.copytree(kubernetes_core(), target / "core", symlinks=True)
    requirements = root / "requirements.yml"
    # The catalog's requirements_content, with the clone in place of the repository's URL.
    requirements.write_text(yaml.safe_dump({"collections": [
        {"name": f"file://{clone}", "type": "git", "version": "catalog"}]}))
    env = ansible_env(tmp_path_factory.mktemp("galaxy"))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(root)
    proc = subprocess.run([str(venv_tool("ansible-galaxy")), "collection", "install", "--requirements-file",
                           str(requirements), "--collections-path", str(root)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "turnbench.litemaas:0.1.0 was installed successfully" in proc.stdout, proc.stdout
    assert "kubernetes.core" in proc.stdout and "is already installed" in proc.stdout, proc.stdout
    return root


def test_the_collection_installs_from_a_clone_with_the_role_and_its_metadata(installed):
    collection = installed / "ansible_collections" / "turnbench" / "litemaas"
    manifest = json.loads((collection / "MANIFEST.json").read_text())["collection_info"]
    assert (manifest["namespace"], manifest["name"]) == ("turnbench", "litemaas")
    assert manifest["dependencies"] == {"kubernetes.core": ">=5.0.0"}
    runtime = yaml.safe_load((collection / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"] == ">=2.15.0"
    role = collection / "roles" / ROLE.name
    assert (collection / "plugins" / "lookup" / "litemaas_benchmark_resolves.py").is_file()
    for sub in ("tasks/main.yml", "defaults/main.yml", "vars/main.yml", "templates/job.yaml.j2", "README.md"):
        assert (role / sub).is_file(), sub
    assert {p.name for p in (role / "tasks").iterdir()} == {p.name for p in (ROLE / "tasks").iterdir()}
    assert not (collection / "tests").exists(), "the tests stay out of the collection"
    assert (collection / "playbooks" / "litemaas_benchmark.yml").is_file()


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


def agnosticd_tree(tmp_path: Path, installed: Path, version: int) -> Path:
    """The parts of an AgnosticD checkout that decide how a workload reports: v2 vendors
    agnosticd.core under ansible/collections/ (no action_plugins/ at all) and runs
    workloads from configs/<config>/ through its deployer; v1 keeps agnosticd_user_info in
    ansible/action_plugins/. Both run with any_errors_fatal."""
    root = tmp_path / f"agnosticd-v{version}"
    ansible = root / "ansible"
    config = ansible / "configs" / "test-config"
    config.mkdir(parents=True)
    (root / "ansible.cfg").write_text(AGNOSTICD_CFG.format(collections=os.pathsep.join([str(installed),
                                                                                        *EXTRA_COLLECTIONS])))
    core = DOUBLES / "ansible_collections" / "agnosticd" / "core" / "plugins"
    if version == 2:
        shutil.copytree(DOUBLES / "ansible_collections", ansible / "collections" / "ansible_collections")
        (ansible / "lookup_plugins").symlink_to("collections/ansible_collections/agnosticd/core/plugins/lookup")
        workloads = """
- name: Deploy workloads
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Deploy workload {{ workload_item.name }}
      ansible.builtin.include_role:
        name: "{{ workload_item.name }}"
        apply:
          module_defaults:
            agnosticd.core.agnosticd_user_info:
              data_prefix: "{{ _workload_data_prefix }}"
      vars:
        _workload_data_prefix: "{{ workload_item.data_prefix | default('') }}"
      loop: "{{ openshift_workload_deployer_workloads }}"
      loop_control:
        loop_var: workload_item
"""
    else:
        (ansible / "action_plugins").mkdir()
        shutil.copy(core / "action" / "agnosticd_user_info.py", ansible / "action_plugins")
        (ansible / "lookup_plugins").mkdir()
        shutil.copy(core / "lookup" / "agnosticd_user_data.py", ansible / "lookup_plugins")
        workloads = """
- name: Install workloads
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Install workload
      ansible.builtin.include_role:
        name: "{{ workload_loop_var }}"
      vars:
        ACTION: provision
      loop: "{{ workloads }}"
      loop_control:
        loop_var: workload_loop_var
"""
    (config / "workloads.yml").write_text("---" + workloads)
    (ansible / "main.yml").write_text("""---
- name: Set Action
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Set ACTION to provision when undefined
      when: ACTION is undefined
      ansible.builtin.set_fact:
        ACTION: provision

- name: Workloads of the config
  ansible.builtin.import_playbook: "configs/{{ config }}/workloads.yml"
""")
    return root


def run_agnosticd(tree: Path, tmp_path: Path, cluster, extra: dict):
    output_dir = tmp_path / "output_dir"
    env = cluster.env(tmp_path)
    env["ANSIBLE_CONFIG"] = str(tree / "ansible.cfg")
    for name in ("ANSIBLE_ROLES_PATH", "ANSIBLE_COLLECTIONS_PATH"):
        env[name] = None  # as AgnosticD: its ansible.cfg says where
    return run_playbook(tree / "ansible" / "main.yml", tmp_path,
                        {"config": "test-config", "guid": GUID, "output_dir": str(output_dir), **QUICK, **extra},
                        env_extra=env, cwd=tree, timeout=900)


def prepare_output_dir(tmp_path: Path, url: str, key: str) -> Path:
    output_dir = tmp_path / "output_dir"
    output_dir.mkdir()
    (output_dir / "provision-user-data.yaml").write_text(yaml.safe_dump(
        {"litellm_api_base_url": url, "litellm_virtual_key": key}))
    return output_dir


def records(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "agnosticd_user_info.jsonl").read_text().splitlines()]


def the_block(cluster) -> dict:
    (pod,) = [p for p in cluster.list("v1", "pods", GUID)
              if p["metadata"]["labels"].get("app.kubernetes.io/component") == "benchmark"]
    return cut_block(cluster.logs[(GUID, pod["metadata"]["name"])])["agnosticd_user_info"]


def test_agnosticd_v2_gets_the_card_and_data_through_agnosticd_core(installed, tmp_path, cluster, sim):
    tree = agnosticd_tree(tmp_path, installed, 2)
    output_dir = prepare_output_dir(tmp_path, sim.url, DUMMY_KEY)
    run = run_agnosticd(tree, tmp_path, cluster, {
        "openshift_workload_deployer_workloads": [{"name": WORKLOAD, "data_prefix": "bench_"}]})
    assert run.rc == 0, run.stdout[-4000:]
    block = the_block(cluster)
    calls = records(output_dir)
    # Through the FQCN, which receives the deployer's data_prefix.
    assert [c["data_prefix"] for c in calls] == ["bench_", "bench_"]
    assert calls[-1]["msg"] == block["msg"]
    assert calls[-1]["data"] == {"bench_" + k: v for k, v in block["data"].items()}
    saved = yaml.safe_load((output_dir / "provision-user-data.yaml").read_text())
    assert saved["bench_litemaas_benchmark_status"] == "PASS ✓"
    assert saved["bench_litemaas_benchmark_namespace"] == GUID
    assert yaml.safe_load((output_dir / "provision-user-info.yaml").read_text()) == [block["msg"]]
    actions = {e["task_action"] for e in run.events if e["task"].endswith("Report the benchmark to AgnosticD")}
    assert actions == {"agnosticd.core.agnosticd_user_info"}
    info = run.babylon()
    assert info.messages == [block["msg"]]
    assert block["data"].items() <= info.data.items()
    assert DUMMY_KEY not in run.stdout + run.stderr


def test_agnosticd_v1_gets_them_through_agnosticd_user_info(installed, tmp_path, cluster, sim):
    tree = agnosticd_tree(tmp_path, installed, 1)
    output_dir = prepare_output_dir(tmp_path, sim.url, DUMMY_KEY)
    run = run_agnosticd(tree, tmp_path, cluster, {"env_type": "ocp4-cluster", "workloads": [WORKLOAD]})
    assert run.rc == 0, run.stdout[-4000:]
    block = the_block(cluster)
    calls = records(output_dir)
    assert [c["data_prefix"] for c in calls] == [None, None], "v1's plugin takes no data_prefix"
    assert calls[-1]["msg"] == block["msg"] and calls[-1]["data"] == block["data"]
    actions = {e["task_action"] for e in run.events if e["task"].endswith("Report the benchmark to AgnosticD")}
    assert actions == {"agnosticd_user_info"}
    info = run.babylon()
    assert info.messages == [block["msg"]] and block["data"].items() <= info.data.items()


def test_a_plain_playbook_prints_the_lines_that_babylon_reads(installed, tmp_path, cluster, sim):
    project = tmp_path / "project"
    project.mkdir()
    (project / "site.yml").write_text(f"""---
- name: Benchmark a LiteMaaS endpoint
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: {WORKLOAD}
""")
    env = cluster.env(tmp_path)
    env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join([str(installed), *EXTRA_COLLECTIONS])
    env["ANSIBLE_ROLES_PATH"] = None
    run = run_playbook(project / "site.yml", tmp_path, {
        "ocp4_workload_litemaas_benchmark_url": sim.url, "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY,
        "ocp4_workload_litemaas_benchmark_namespace": GUID, **QUICK}, env_extra=env, cwd=project, timeout=900)
    assert run.rc == 0, run.stdout[-4000:]
    block = the_block(cluster)
    reports = [e for e in run.events if e["task_action"] == "debug" and e["event"] == "runner_on_ok"]
    assert len(reports) == 2, "the data saved before the run, then the report"
    lines = reports[-1]["res"]["msg"]
    assert lines[:-1] == ["user.info: " + line for line in block["msg"].splitlines()]
    assert lines[-1] == "user.data: " + json.dumps(block["data"], ensure_ascii=False)
    info = run.babylon()
    assert block["data"].items() <= info.data.items()
    assert info.data["litemaas_benchmark_namespace"] == GUID
    assert info.messages == [line.lstrip() for line in block["msg"].splitlines()]
    assert DUMMY_KEY not in run.stdout + run.stderr


def test_a_refused_key_in_agnosticd_v2_is_reported_and_any_errors_fatal_is_not_triggered(
        installed, tmp_path, cluster, sim):
    tree = agnosticd_tree(tmp_path, installed, 2)
    output_dir = prepare_output_dir(tmp_path, sim.url, "sk-not-the-key")
    run = run_agnosticd(tree, tmp_path, cluster, {"openshift_workload_deployer_workloads": [{"name": WORKLOAD}]})
    assert run.rc == 0, run.stdout[-4000:]
    saved = yaml.safe_load((output_dir / "provision-user-data.yaml").read_text())
    assert "exit code 3" in saved["litemaas_benchmark_error"]
    assert "LiteMaaS Benchmark Failed" in run.babylon().messages[-1]
    run = run_agnosticd(tree, tmp_path, cluster, {"openshift_workload_deployer_workloads": [{"name": WORKLOAD}],
                                                  "ocp4_workload_litemaas_benchmark_fail_on_error": True})
    assert run.rc != 0


def readme_block(title: str) -> dict:
    """A YAML example of the role README's migration section, by the line before it."""
    readme = (ROLE / "README.md").read_text()
    section = readme[readme.index("## Migrating from the Python benchmark role"):]
    after = section[section.index(title):]
    body = after[after.index("```yaml\n") + len("```yaml\n"):]
    return yaml.safe_load(body[:body.index("```")])


def test_the_litemaas_roles_catalog_example_works_as_written(tmp_path):
    """The LiteMaaS role's AgnosticV example, copied into the README unchanged but for
    the collection's name: its workloads and remove_workloads name the workload, its
    variables (and its catalog parameters) mean what they meant."""
    common = readme_block("In AgnosticV Catalog (common.yaml)")
    assert common["workloads"] == ["rhpds.litellm_virtual_keys.ocp4_workload_litellm_virtual_keys", WORKLOAD]
    removal = readme_block("Remove Workload Configuration")
    assert removal["remove_workloads"] == [WORKLOAD, "rhpds.litellm_virtual_keys.ocp4_workload_litellm_virtual_keys"]
    requirements = readme_block("requirements_content")
    assert requirements["requirements_content"]["collections"][0] == {
        "name": "https://github.com/turnbench/turnbench.git", "type": "git", "version": "main"}

    base = {"ocp4_workload_litemaas_benchmark_url": "https://litellm.apps.example.com/v1",
            "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY}
    variables = {k: v for k, v in common.items() if k.startswith("ocp4_workload_litemaas_benchmark_")}
    (tmp_path / "common").mkdir()
    docs = render_templates(tmp_path / "common", {**base, **variables})
    assert (docs["configmap.yaml"]["data"]["TURNBENCH_CONVERSATIONS"], docs["configmap.yaml"]["data"]["TURNBENCH_TURNS"]) \
        == ("50", "10")

    # The catalog parameters, as the form fills them in.
    parameters = readme_block("In variables")
    (tmp_path / "parameters").mkdir()
    docs = render_templates(tmp_path / "parameters", {**base, **parameters, "benchmark_conversations": 30,
                                                      "run_benchmark": True})
    assert docs["configmap.yaml"]["data"]["TURNBENCH_CONVERSATIONS"] == "30"
    (tmp_path / "disabled").mkdir()
    run = run_playbook(TESTS_DIR / "run_role.yml", tmp_path / "disabled",
                       {"guid": GUID, **base, **parameters, "run_benchmark": False})
    assert run.rc == 0 and run.ran("Say that the LiteMaaS benchmark is disabled")
