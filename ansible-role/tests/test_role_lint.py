"""ansible-lint (production profile) and ansible-playbook --syntax-check on the
collection (galaxy.yml, meta/runtime.yml, the role and the example playbook), with the
kubernetes.core collection that the `ansible` package bundles (pinned in
requirements.txt), so module arguments are checked too."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from role_support import DOUBLES, EXTRA_COLLECTIONS, PLAYBOOKS, ROLE, ROLE_ROOT, TESTS_DIR, ansible_env, venv_tool


def lint(cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """ansible-lint on the collection at cwd, as a whole (it finds the role, the
    playbook and the collection's metadata; tests/ is excluded by its configuration)."""
    env = ansible_env(tmp_path)
    env["ANSIBLE_ROLES_PATH"] = str(cwd / "roles")
    return subprocess.run(
        [str(venv_tool("ansible-lint")), "--offline", "--nocolor", "-c", str(cwd / ".ansible-lint")],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_ansible_lint_production_profile_passes(tmp_path):
    proc = lint(ROLE_ROOT, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Profile 'production' was required, and it passed" in out, out


def test_ansible_lint_would_catch_a_violation(tmp_path):
    """The same lint run on a copy of the role with one bad task must fail: the lint
    test above is not passing by looking at nothing."""
    copy = tmp_path / "ansible-role"
    shutil.copytree(ROLE_ROOT, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    with open(copy / "roles" / ROLE.name / "tasks" / "workload.yml", "a") as f:
        f.write("\n- name: A task written carelessly\n  shell: oc get pods\n")
    proc = lint(copy, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "fqcn" in out and "tasks/workload.yml" in out, out

    # The one short-name debug task (Babylon reads only `debug`) is exempt by its noqa,
    # which the lint does read: without it, the same rule fires.
    copy = tmp_path / "without-noqa"
    shutil.copytree(ROLE_ROOT, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    debug = copy / "roles" / ROLE.name / "tasks" / "report_debug.yml"
    text = debug.read_text()
    assert "debug:  # noqa: fqcn[action-core]" in text
    debug.write_text(text.replace("  # noqa: fqcn[action-core]", ""))
    proc = lint(copy, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "fqcn[action-core]" in out and "report_debug.yml" in out, out


def syntax_check(playbook: Path, tmp_path: Path, **env_extra) -> subprocess.CompletedProcess:
    env = ansible_env(tmp_path)
    env.update(env_extra)
    return subprocess.run([str(venv_tool("ansible-playbook")), "--syntax-check", "-i", "localhost,", str(playbook)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_syntax_check_of_the_example_playbook(tmp_path):
    proc = syntax_check(PLAYBOOKS / "litemaas_benchmark.yml", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_syntax_check_of_every_task_file(tmp_path):
    """--syntax-check does not follow include_tasks: import every task file statically.
    agnosticd_user_info and agnosticd.core.agnosticd_user_info resolve to the test
    doubles, as they resolve to AgnosticD's plugins."""
    task_files = sorted(p.name for p in (ROLE / "tasks").glob("*.yml"))
    assert {"main.yml", "workload.yml", "remove_workload.yml", "parse_results.yml"} <= set(task_files)
    tasks = "".join(
        f"    - name: Import {name}\n"
        f"      ansible.builtin.import_role:\n"
        f"        name: {ROLE.name}\n"
        f"        tasks_from: {name}\n"
        for name in task_files)
    playbook = tmp_path / "every_task_file.yml"
    playbook.write_text("- name: Every task file of the role\n  hosts: localhost\n  gather_facts: false\n"
                        f"  tasks:\n{tasks}")
    doubles = {"ANSIBLE_ACTION_PLUGINS": str(TESTS_DIR / "action_plugins"),
               "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join([str(DOUBLES), *EXTRA_COLLECTIONS])}
    proc = syntax_check(playbook, tmp_path, **doubles)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    broken = tmp_path / "broken"
    shutil.copytree(ROLE, broken / ROLE.name)
    with open(broken / ROLE.name / "tasks" / "parse_results.yml", "a") as f:
        f.write("\n- name: Not a module\n  ansible.builtin.no_such_module:\n    x: 1\n")
    proc = syntax_check(playbook, tmp_path, **doubles, ANSIBLE_ROLES_PATH=str(broken))
    assert proc.returncode != 0 and "no_such_module" in proc.stdout + proc.stderr


def test_the_readme_documents_every_variable_with_its_default():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    readme = (ROLE / "README.md").read_text()
    section = readme.split("\n## Variables\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.replace("\\|", "\x00").split("|")]
        if len(cells) > 3 and cells[1].startswith("`ocp4_workload_litemaas_benchmark_"):
            rows[cells[1].strip("`")] = cells[2].replace("\x00", "|")
    assert set(defaults) - set(rows) == set(), "variables missing from the README's table"
    assert set(rows) - set(defaults) == set(), "the README documents variables that do not exist"
    for name, value in defaults.items():
        cell = rows[name]
        if isinstance(value, dict):
            for part in value.values():
                for k, v in part.items():
                    assert f"{k}: {v}" in cell or f'{k}: "{v}"' in cell, (name, cell)
            continue
        shown = {True: "true", False: "false"}.get(value, value) if isinstance(value, bool) else value
        expected = '""' if shown == "" else str(shown)
        assert cell.strip("`") in (expected, f'"{expected}"'), (name, cell, expected)
