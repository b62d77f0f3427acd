"""The whole role as AgnosticD (or a plain playbook) applies it: ACTION dispatch, the
disabled switch, and the checks that run before the first Kubernetes call. Without a
cluster a run that gets that far fails at its first Kubernetes task (aimed at a closed
loopback port), which tells which task file was chosen."""

from __future__ import annotations

import yaml
import pytest

from role_support import DUMMY_KEY, TESTS_DIR, copy_playbook_outside_agnosticd, run_playbook

URL = "https://litellm-rhpds.apps.cluster.example.com/v1"
FIRST_WORKLOAD_K8S_TASK = "Look for the namespace"
FIRST_REMOVAL_K8S_TASK = "Delete the benchmark Job and wait until its pods are gone"


def apply_role(tmp_path, extra: dict, user_data: dict | None = None, playbook=None):
    """Applies the role with AgnosticD's user data (what earlier workloads saved)."""
    out = tmp_path / "output_dir"
    out.mkdir(exist_ok=True)
    if user_data is not None:
        (out / "user-data.yaml").write_text(yaml.safe_dump(user_data))
    return run_playbook(playbook or TESTS_DIR / "run_role.yml", tmp_path,
                        {"guid": "abc12", "output_dir": str(out), **extra})


@pytest.mark.parametrize("action", [{"ACTION": "provision"}, {"ACTION": "create"},
                                    {"agnosticd_action": "provision"}, {}])
def test_provision_reads_url_and_key_from_the_virtual_keys_user_data(tmp_path, action):
    run = apply_role(tmp_path, action, {"litellm_api_base_url": URL, "litellm_virtual_key": DUMMY_KEY})
    assert run.rc != 0, "no cluster: the first Kubernetes call must fail"
    assert not run.task("Check that the endpoint URL and key are known").get("failed")
    assert not run.task("Check the other settings").get("failed")
    name, _ = run.last_failed()
    assert name.endswith(FIRST_WORKLOAD_K8S_TASK)
    assert not run.ran(FIRST_REMOVAL_K8S_TASK)
    assert DUMMY_KEY not in run.stdout + run.stderr, "the key must never be shown"


def test_without_the_virtual_keys_workload_the_message_says_so(tmp_path):
    run = apply_role(tmp_path, {"ACTION": "provision"}, {"litellm_api_base_url": URL})
    assert run.rc != 0
    name, result = run.last_failed()
    assert name.endswith("Check that the endpoint URL and key are known")
    assert "the key (ocp4_workload_litemaas_benchmark_key) is empty" in result["msg"]
    assert "the URL" not in result["msg"]
    assert "ocp4_workload_litellm_virtual_keys" in result["msg"]
    assert not run.ran(FIRST_WORKLOAD_K8S_TASK)

    run = apply_role(tmp_path, {"ACTION": "provision"}, {})
    _, result = run.last_failed()
    assert ("the URL (ocp4_workload_litemaas_benchmark_url) and the key "
            "(ocp4_workload_litemaas_benchmark_key) is empty") in result["msg"]


def test_a_url_without_scheme_is_refused_before_any_kubernetes_call(tmp_path):
    run = apply_role(tmp_path, {"ocp4_workload_litemaas_benchmark_url": "litellm.example.com/v1",
                                "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY})
    name, result = run.last_failed()
    assert name.endswith("Check the other settings")
    assert "must start with http:// or https://" in result["msg"]
    assert not run.ran(FIRST_WORKLOAD_K8S_TASK)


def test_outside_agnosticd_without_url_and_key_the_message_says_what_to_set(tmp_path):
    playbook = copy_playbook_outside_agnosticd("run_role.yml", tmp_path)
    run = apply_role(tmp_path, {}, None, playbook)
    assert run.rc != 0
    name, result = run.last_failed()
    assert name.endswith("Explain where the URL and key come from")
    assert "exists only inside AgnosticD" in result["msg"]
    assert "ocp4_workload_litemaas_benchmark_url" in result["msg"]

    run = apply_role(tmp_path, {"ocp4_workload_litemaas_benchmark_url": URL,
                                "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY}, None, playbook)
    assert run.last_failed()[0].endswith(FIRST_WORKLOAD_K8S_TASK)


@pytest.mark.parametrize("action", [{"ACTION": "destroy"}, {"ACTION": "remove"},
                                    {"agnosticd_action": "destroy"}, {"ACTION": "Destroy "}])
def test_destroy_runs_the_removal(tmp_path, action):
    run = apply_role(tmp_path, action)
    assert run.rc != 0, "no cluster: the first Kubernetes call must fail"
    assert run.last_failed()[0].endswith(FIRST_REMOVAL_K8S_TASK)
    assert not run.ran("Check that the endpoint URL and key are known")


def test_disabled_does_nothing_but_say_so(tmp_path):
    for action in ("provision", "destroy"):
        run = apply_role(tmp_path, {"ACTION": action, "ocp4_workload_litemaas_benchmark_enabled": False})
        assert run.rc == 0, run.stdout[-3000:]
        assert "is disabled" in run.task("Say that the LiteMaaS benchmark is disabled")["msg"]
        assert not run.ran("Run the LiteMaaS benchmark")
        assert not run.ran("Remove the LiteMaaS benchmark")


def test_other_actions_have_nothing_to_do(tmp_path):
    run = apply_role(tmp_path, {"ACTION": "status"})
    assert run.rc == 0, run.stdout[-3000:]
    assert "nothing to do for ACTION 'status'" in run.task("Say that this action has nothing to do")["msg"]
    assert not run.ran("Run the LiteMaaS benchmark") and not run.ran("Remove the LiteMaaS benchmark")
