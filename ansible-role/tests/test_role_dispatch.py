"""The whole role as AgnosticD (or a plain playbook) applies it: ACTION dispatch, the
disabled switch, and the checks that run before the first Kubernetes call. Without a
cluster a run that gets that far fails at its first Kubernetes task (aimed at a closed
loopback port), which tells which task file was chosen; that failure is reported in
the user info and, with fail_on_error, fails the play."""

from __future__ import annotations

import json

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
    (out / "agnosticd_user_info.jsonl").unlink(missing_ok=True)
    if user_data is not None:
        (out / "provision-user-data.yaml").write_text(yaml.safe_dump(user_data))
    return run_playbook(playbook or TESTS_DIR / "run_role.yml", tmp_path,
                        {"guid": "abc12", "output_dir": str(out), **extra})


def user_info(tmp_path) -> list[dict]:
    path = tmp_path / "output_dir" / "agnosticd_user_info.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def first_failed(run) -> str:
    failed = [n for n, r in run.tasks() if r.get("failed")]
    assert failed, f"no task failed; tasks: {[n for n, _ in run.tasks()]}"
    return failed[0]


@pytest.mark.parametrize("action", [{"ACTION": "provision"}, {"ACTION": "create"},
                                    {"agnosticd_action": "provision"}, {}])
def test_provision_reads_url_and_key_from_the_virtual_keys_user_data(tmp_path, action):
    run = apply_role(tmp_path, {**action, "ocp4_workload_litemaas_benchmark_fail_on_error": True},
                     {"litellm_api_base_url": URL, "litellm_virtual_key": DUMMY_KEY})
    assert run.rc != 0, "no cluster: the first Kubernetes call must fail"
    assert not run.task("Check that the endpoint URL and key are known").get("failed")
    assert not run.task("Check the other settings").get("failed")
    assert first_failed(run).endswith(FIRST_WORKLOAD_K8S_TASK)
    assert not run.ran(FIRST_REMOVAL_K8S_TASK)
    assert DUMMY_KEY not in run.stdout + run.stderr, "the key must never be shown"
    # Before any Kubernetes call, where the benchmark runs is in the user data.
    assert user_info(tmp_path)[0]["data"] == {
        "litemaas_benchmark_namespace": "abc12", "litemaas_benchmark_job_name": "litemaas-benchmark",
        "litemaas_benchmark_conversations": "20", "litemaas_benchmark_turns": "10"}


def test_a_failure_is_reported_and_the_play_goes_on_unless_fail_on_error(tmp_path):
    """AgnosticD runs with any_errors_fatal: by default a failed benchmark is reported
    (why, where to look) and the catalog item is still provisioned."""
    data = {"litellm_api_base_url": URL, "litellm_virtual_key": DUMMY_KEY}
    run = apply_role(tmp_path, {"ACTION": "provision"}, data)
    assert run.rc == 0, run.stdout[-3000:]
    assert first_failed(run).endswith(FIRST_WORKLOAD_K8S_TASK)
    assert not run.ran("Fail with the reason")
    saved, failure = user_info(tmp_path)
    assert failure["msg"].splitlines()[1] == "LiteMaaS Benchmark Failed"
    assert "Look for the namespace: " in failure["msg"]
    assert failure["data"]["litemaas_benchmark_status"] == "FAIL ✗"
    assert failure["data"]["litemaas_benchmark_p95_ms"] == "N/A"
    assert "Look for the namespace" in failure["data"]["litemaas_benchmark_error"]
    assert saved["data"].items() <= failure["data"].items()
    assert DUMMY_KEY not in run.stdout + run.stderr + json.dumps(user_info(tmp_path))

    run = apply_role(tmp_path, {"ACTION": "provision", "ocp4_workload_litemaas_benchmark_fail_on_error": True}, data)
    assert run.rc != 0
    name, failed = run.last_failed()
    assert name.endswith("Fail with the reason")
    assert failed["msg"].startswith("LiteMaaS benchmark failed: Look for the namespace: ")
    assert len(user_info(tmp_path)) == 2, "reported before failing"


def test_without_the_virtual_keys_workload_the_message_says_so(tmp_path):
    run = apply_role(tmp_path, {"ACTION": "provision"}, {"litellm_api_base_url": URL})
    assert run.rc == 0
    assert first_failed(run).endswith("Check that the endpoint URL and key are known")
    (failure,) = user_info(tmp_path)
    msg = failure["msg"]
    assert "the key (ocp4_workload_litemaas_benchmark_key) is empty" in msg
    assert "the URL (" not in msg
    assert "ocp4_workload_litellm_virtual_keys" in msg
    # No Job: no commands that would look at one.
    assert "oc get job" not in msg
    assert not run.ran(FIRST_WORKLOAD_K8S_TASK)

    run = apply_role(tmp_path, {"ACTION": "provision", "ocp4_workload_litemaas_benchmark_fail_on_error": True}, {})
    _, result = run.last_failed()
    assert ("the URL (ocp4_workload_litemaas_benchmark_url) and the key "
            "(ocp4_workload_litemaas_benchmark_key) is empty") in result["msg"]


def test_a_url_without_scheme_is_refused_before_any_kubernetes_call(tmp_path):
    run = apply_role(tmp_path, {"ocp4_workload_litemaas_benchmark_url": "litellm.example.com/v1",
                                "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY,
                                "ocp4_workload_litemaas_benchmark_fail_on_error": True})
    assert first_failed(run).endswith("Check the other settings")
    assert "must start with http:// or https://" in run.last_failed()[1]["msg"]
    assert not run.ran(FIRST_WORKLOAD_K8S_TASK)


def test_the_python_benchmarks_image_is_refused(tmp_path):
    """A catalog item that copied the LiteMaaS role's `image` would run its Python tool
    with turnbench's settings."""
    run = apply_role(tmp_path, {"ocp4_workload_litemaas_benchmark_url": URL,
                                "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY,
                                "ocp4_workload_litemaas_benchmark_image": "quay.io/hayesphilip/multi-turn-benchmark:0.0.1"})
    assert run.rc == 0
    assert first_failed(run).endswith("Refuse the image of the Python benchmark")
    (failure,) = user_info(tmp_path)
    assert "the image of the Python benchmark that this role replaces" in failure["msg"]
    assert "Remove the variable from the catalog item" in failure["data"]["litemaas_benchmark_error"]
    assert not run.ran(FIRST_WORKLOAD_K8S_TASK)


def test_a_forced_reporting_action_that_does_not_resolve_is_refused(tmp_path):
    """agnosticd.core.agnosticd_user_info does not resolve beside the test playbook: the
    setting is refused, and that is said with the action that does work."""
    run = apply_role(tmp_path, {"ocp4_workload_litemaas_benchmark_url": URL,
                                "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY,
                                "ocp4_workload_litemaas_benchmark_report_with": "agnosticd.core.agnosticd_user_info"})
    assert run.rc == 0, run.stdout[-3000:]
    assert first_failed(run).endswith("Check the other settings")
    info = run.babylon()
    assert any("report_with is agnosticd.core.agnosticd_user_info, which does not resolve here" in m
               for m in info.messages), info.messages
    assert info.data["litemaas_benchmark_status"] == "FAIL ✗"
    assert user_info(tmp_path) == [], "reported with debug lines, not through a plugin that was not asked for"


def test_outside_agnosticd_without_url_and_key_the_message_says_what_to_set(tmp_path):
    playbook = copy_playbook_outside_agnosticd("run_role.yml", tmp_path)
    run = apply_role(tmp_path, {}, None, playbook)
    assert run.rc == 0
    assert run.task("Explain where the URL and key come from")["failed"]
    # No AgnosticD plugin here: the failure comes as the debug lines Babylon reads.
    info = run.babylon()
    text = "\n".join(info.messages)
    assert "exists only inside AgnosticD" in text and "ocp4_workload_litemaas_benchmark_url" in text
    assert info.data["litemaas_benchmark_status"] == "FAIL ✗"

    run = apply_role(tmp_path, {"ocp4_workload_litemaas_benchmark_url": URL,
                                "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY,
                                "ocp4_workload_litemaas_benchmark_fail_on_error": True}, None, playbook)
    assert first_failed(run).endswith(FIRST_WORKLOAD_K8S_TASK)
    assert run.rc != 0


@pytest.mark.parametrize("action", [{"ACTION": "destroy"}, {"ACTION": "remove"},
                                    {"agnosticd_action": "destroy"}, {"ACTION": "Destroy "},
                                    {"ACTION": "provision", "agnosticd_action": "destroy"}])
def test_destroy_runs_the_removal(tmp_path, action):
    """(agnosticd_action, when set, comes before ACTION.) Without a cluster every
    deletion fails: a destroy only warns, so that it can finish where a cluster is gone."""
    run = apply_role(tmp_path, action)
    assert run.rc == 0, run.stdout[-3000:]
    assert first_failed(run).endswith(FIRST_REMOVAL_K8S_TASK)
    warning = run.task("Say what could not be removed")["msg"]
    assert warning[0].startswith("Warning: the LiteMaaS benchmark could not remove everything in abc12")
    assert any(w.startswith("Job litemaas-benchmark: ") for w in warning[1:]), warning
    assert not run.ran("Check that the endpoint URL and key are known")


def test_agnosticd_action_comes_before_action(tmp_path):
    run = apply_role(tmp_path, {"ACTION": "destroy", "agnosticd_action": "provision",
                                "ocp4_workload_litemaas_benchmark_fail_on_error": True},
                     {"litellm_api_base_url": URL, "litellm_virtual_key": DUMMY_KEY})
    assert first_failed(run).endswith(FIRST_WORKLOAD_K8S_TASK)
    assert not run.ran(FIRST_REMOVAL_K8S_TASK)


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


@pytest.mark.parametrize("settings, message", [
    ({"ocp4_workload_litemaas_benchmark_pods": 0},
     "ocp4_workload_litemaas_benchmark_pods must be a whole number of at least 1 (got 0)"),
    ({"ocp4_workload_litemaas_benchmark_pods": "three"},
     "ocp4_workload_litemaas_benchmark_pods must be a whole number of at least 1 (got three)"),
    ({"ocp4_workload_litemaas_benchmark_pods": 2.5},
     "ocp4_workload_litemaas_benchmark_pods must be a whole number of at least 1 (got 2.5)"),
    ({"ocp4_workload_litemaas_benchmark_mode": "sweep"},
     "ocp4_workload_litemaas_benchmark_mode must be run or capacity (got sweep)"),
    ({"ocp4_workload_litemaas_benchmark_mode": "capacity", "ocp4_workload_litemaas_benchmark_max_users": 0},
     "ocp4_workload_litemaas_benchmark_max_users must be a whole number of at least 1 (got 0)"),
    ({"ocp4_workload_litemaas_benchmark_start_delay_seconds": -5},
     "ocp4_workload_litemaas_benchmark_start_delay_seconds must be a whole number of seconds (got -5)"),
    ({"ocp4_workload_litemaas_benchmark_mode": "capacity", "ocp4_workload_litemaas_benchmark_pods": 3},
     "mode capacity runs in one pod, and pods is 3: turnbench capacity cannot be split into shards"),
])
def test_bad_mode_pods_and_capacity_settings_are_refused_before_any_kubernetes_call(tmp_path, settings, message):
    run = apply_role(tmp_path, {"ocp4_workload_litemaas_benchmark_url": URL,
                                "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY, **settings})
    assert run.rc == 0, run.stdout[-3000:]
    assert first_failed(run).endswith("Check the mode, the pods and the capacity settings")
    assert not run.ran(FIRST_WORKLOAD_K8S_TASK)
    (failure,) = user_info(tmp_path)
    assert message in failure["data"]["litemaas_benchmark_error"], failure["data"]["litemaas_benchmark_error"]
    assert failure["data"]["litemaas_benchmark_status"] == "FAIL ✗"
    # Only what is wrong is named.
    assert failure["data"]["litemaas_benchmark_error"].count(" must be ") + \
        failure["data"]["litemaas_benchmark_error"].count("cannot be split") == 1
    if settings.get("ocp4_workload_litemaas_benchmark_mode") == "capacity":
        assert failure["data"]["litemaas_benchmark_max_users"] == "N/A", "capacity's keys render too"
