"""Contract between turnbench and the role: real `turnbench run` logs (stdout and stderr
merged, as a pod's log is) go through the role's own tasks/parse_results.yml, and what
reaches agnosticd_user_info (a test double that records its arguments) must be the
block turnbench printed, unchanged. Failure paths: no block, a failed Job, a time-out,
each reported in the user info (the play goes on) and, with fail_on_error, fatal."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from role_support import (
    DUMMY_KEY,
    TESTS_DIR,
    BEGIN_MARKER,
    END_MARKER,
    Simulator,
    copy_playbook_outside_agnosticd,
    cut_block,
    free_loopback_port,
    render_templates,
    run_playbook,
    run_turnbench,
    turnbench_bin,
)

# The data keys of the block (DESIGN.md, Output), after the prefix.
DATA_KEYS = {
    "p50_ms", "p95_ms", "p99_ms", "mean_ms", "speedup_ratio", "status", "cache_status",
    "total_time_seconds", "total_requests", "failed_requests", "requests_per_second",
    "p95_threshold_ms", "p95_threshold", "speedup_threshold", "model", "seed",
}
# What the role saves before a run (and reports again with a failure), for parse_results.yml's guid.
BASE_DATA = {"litemaas_benchmark_namespace": "test-guid", "litemaas_benchmark_job_name": "litemaas-benchmark",
             "litemaas_benchmark_conversations": "20", "litemaas_benchmark_turns": "10"}
RULE = "═" * 64
QUICK = ["--warmup", "1", "--min-delay", "0", "--max-delay", "0"]


@pytest.fixture(scope="module")
def sim_log() -> str:
    """A finished run against the built-in simulator."""
    run = run_turnbench(["run", "--conversations", "3", "--turns", "2", "--seed", "7", *QUICK])
    assert run.rc == 0, run.log
    return run.log


@pytest.fixture(scope="module")
def unusable_log() -> str:
    """A run against a closed loopback port: exit code 3, and a report that says why."""
    url = f"http://127.0.0.1:{free_loopback_port()}/v1"
    run = run_turnbench(["run", url, "--conversations", "2", "--turns", "2", "--warmup", "0"])
    assert run.rc == 3, run.log
    return run.log


def parse(tmp_path: Path, log: str, job_state: str, exit_code: str = "", job_reason: str = "",
          playbook: Path | None = None, **extra):
    log_file = tmp_path / "pod.log"
    log_file.write_text(log)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    run = run_playbook(playbook or TESTS_DIR / "parse_results.yml", tmp_path, {
        "output_dir": str(out), "log_file": str(log_file), "job_state": job_state,
        "exit_code": exit_code, "job_reason": job_reason, **extra})
    records_file = out / "agnosticd_user_info.jsonl"
    records = [json.loads(line) for line in records_file.read_text().splitlines()] if records_file.exists() else []
    facts = json.loads((out / "facts.json").read_text())
    return run, records, facts


def troubleshooting(run) -> list[str]:
    return run.task("Show what to look at")["msg"]


def failure_reported(records: list[dict], why: str, status: str = "FAIL") -> dict:
    """The one call that reports a failure: the failure's section in the message (the
    reason, the seed's troubleshooting commands), the data with why, and its status
    (turnbench's when the log had a report: a partial run's figures may pass)."""
    assert len(records) == 1, records
    rec = records[0]
    section = rec["msg"][rec["msg"].index(RULE + "\nLiteMaaS Benchmark Failed\n" + RULE):]
    assert why in section, section
    for command in ("oc get job litemaas-benchmark -n test-guid", "oc logs -n test-guid -l app=litemaas-benchmark",
                    "oc describe pod -n test-guid -l app=litemaas-benchmark"):
        assert command in section, section
    assert why in rec["data"]["litemaas_benchmark_error"]
    assert rec["data"]["litemaas_benchmark_status"].startswith(status)
    assert BASE_DATA.items() <= rec["data"].items()
    assert rec["msg_is_str"] and rec["data_values_are_str"]
    return rec


def test_a_finished_run_reaches_agnosticd_user_info_unchanged(sim_log, tmp_path):
    run, records, facts = parse(tmp_path, sim_log, "succeeded", "0")
    assert run.rc == 0, run.stdout[-3000:]
    block = cut_block(sim_log)["agnosticd_user_info"]
    assert len(records) == 1, records
    rec = records[0]
    assert rec["msg"] == block["msg"]
    assert rec["data"] == block["data"]
    assert rec["user"] is None and rec["body"] is None
    assert rec["msg_is_str"] and rec["data_is_dict"] and rec["data_values_are_str"]
    # The binary's side of the contract: the keys and a few values.
    # The documented keys, at least: turnbench adds more (salt, warnings, server figures).
    assert {f"litemaas_benchmark_{k}" for k in DATA_KEYS} <= set(block["data"])
    assert block["data"]["litemaas_benchmark_seed"] == "7"
    assert block["data"]["litemaas_benchmark_total_requests"] == "6"
    # The LiteMaaS role's name of the threshold, beside ours.
    assert block["data"]["litemaas_benchmark_p95_threshold"] == block["data"]["litemaas_benchmark_p95_threshold_ms"]
    # The msg is the LiteMaaS role's card; the full summary stays above the block.
    card = block["msg"].splitlines()
    assert card[:3] == [RULE, "LiteMaaS Benchmark Results", RULE] and card[-1] == RULE
    for label in ("  • Mean:", "  • P50 (Median):", "  • P95:", "  • P99:", "  • Speedup Ratio:", "  • Status:",
                  "  • Total Time:", "  • Total Requests: 6", "  • Requests/sec:", "Overall Status: PASS ✓"):
        assert any(line.startswith(label) for line in card), (label, card)
    assert "TARGET: the built-in simulator" in card[3]
    assert len(card) <= 24
    assert "BENCHMARK SUMMARY" in sim_log[:sim_log.index(BEGIN_MARKER)]
    # The facts that later tasks (or a plain playbook) use.
    assert facts["results"] == block["data"]
    assert facts["report"] == block["msg"]
    assert facts["outcome"] == {"job_state": "succeeded", "exit_code": "0", "complete": True,
                                "partial": False, "reason": ""}
    assert not run.ran("Report the results as user.info lines")
    assert not run.ran("Fail with the reason")
    # Printed without --print-results (as an older image does): no results block, so
    # nothing to publish, and the report above is all there is.
    assert "# BEGIN TURNBENCH RESULTS" not in sim_log
    assert (tmp_path / "out" / "results.log").read_text() == ""


def test_agnosticd_s_channel_is_what_babylon_reads(sim_log, tmp_path):
    """Beside the test playbook, agnosticd_user_info resolves (as in AgnosticD v1): the
    task is written with that action, which Babylon reads from the job's events."""
    run, records, facts = parse(tmp_path, sim_log, "succeeded", "0")
    block = cut_block(sim_log)["agnosticd_user_info"]
    info = run.babylon()
    assert info.data == block["data"]
    assert info.messages == [block["msg"]]
    assert [e["task_action"] for e in run.events if e["task"].endswith("Report the benchmark to AgnosticD")] == \
        ["agnosticd_user_info"]


@pytest.mark.parametrize("where, report_with", [("plain", "auto"), ("agnosticd", "debug")])
def test_outside_agnosticd_the_report_is_user_info_and_user_data_lines(sim_log, tmp_path, where, report_with):
    playbook = (copy_playbook_outside_agnosticd("parse_results.yml", tmp_path) if where == "plain"
                else TESTS_DIR / "parse_results.yml")
    run, records, facts = parse(tmp_path, sim_log, "succeeded", "0", playbook=playbook,
                                ocp4_workload_litemaas_benchmark_report_with=report_with)
    assert run.rc == 0, run.stdout[-3000:]
    assert records == [], "agnosticd_user_info must not be called"
    block = cut_block(sim_log)["agnosticd_user_info"]
    shown = run.task("Report the benchmark as user.info and user.data lines")["msg"]
    assert shown[:-1] == ["user.info: " + line for line in block["msg"].splitlines()]
    assert shown[-1].startswith("user.data: {")
    # Babylon reads only tasks whose action is written `debug`: this one is.
    (event,) = [e for e in run.events if e["task"].endswith("Report the benchmark as user.info and user.data lines")]
    assert event["task_action"] == "debug"
    info = run.babylon()
    assert info.data == block["data"]
    # (Babylon drops the spaces after "user.info:", so a line's indentation with them)
    assert info.messages == [line.lstrip() for line in block["msg"].splitlines()]
    assert facts["results"] == block["data"]
    assert facts["report"] == block["msg"]


def test_log_lines_that_land_inside_the_block_are_left_out(sim_log, tmp_path):
    lines = sim_log.splitlines()
    stderr_line = next(line for line in lines if "WARN" in line and not line.startswith(" "))
    begin = lines.index(BEGIN_MARKER)
    mangled = lines[:begin + 5] + [stderr_line, "turnbench: progress 6/6 requests"] + lines[begin + 5:]
    run, records, facts = parse(tmp_path, "\n".join(mangled) + "\n", "succeeded", "0")
    assert run.rc == 0, run.stdout[-3000:]
    block = cut_block(sim_log)["agnosticd_user_info"]
    assert records[0]["msg"] == block["msg"]
    assert records[0]["data"] == block["data"]


def test_a_log_without_the_block_is_reported_with_the_reason_and_the_last_lines(tmp_path):
    bad = run_turnbench(["run", *QUICK], {"TURNBENCH_TURNS": "zero"})
    assert bad.rc == 2 and BEGIN_MARKER not in bad.log, bad.log
    # By default the play goes on, and the user info says why.
    run, records, facts = parse(tmp_path, bad.log, "failed", "2", "BackoffLimitExceeded")
    assert run.rc == 0, run.stdout[-3000:]
    assert not run.ran("Fail with the reason")
    rec = failure_reported(records, "exit code 2")
    assert "rejected its configuration" in rec["msg"] and "no complete user-info block" in rec["msg"]
    assert 'TURNBENCH_TURNS="zero"' in rec["msg"], "the last lines of the log, without a report"
    # Every data key of a report, N/A, so that info templates still render.
    assert {k: v for k, v in rec["data"].items() if k[len("litemaas_benchmark_"):] in DATA_KEYS} == \
        {f"litemaas_benchmark_{k}": ("FAIL ✗" if k == "status" else "N/A") for k in DATA_KEYS}
    assert run.babylon().data == rec["data"]

    (tmp_path / "again").mkdir()
    run, records, facts = parse(tmp_path / "again", bad.log, "failed", "2", "BackoffLimitExceeded",
                                ocp4_workload_litemaas_benchmark_fail_on_error=True)
    assert run.rc != 0
    name, failed = run.last_failed()
    assert name.endswith("Fail with the reason")
    assert "exit code 2" in failed["msg"]
    assert "rejected its configuration" in failed["msg"]
    assert "no complete user-info block" in failed["msg"]
    assert "BackoffLimitExceeded" in failed["msg"]
    text = "\n".join(troubleshooting(run))
    assert 'TURNBENCH_TURNS="zero"' in text, "the last log lines must be shown"
    assert "oc -n test-guid logs job/litemaas-benchmark" in text
    failure_reported(records, "exit code 2")
    assert facts["results"] == {} and facts["report"] == ""
    assert facts["outcome"]["complete"] is False and facts["outcome"]["partial"] is False


def test_a_succeeded_job_whose_log_has_no_block_still_fails(tmp_path):
    version = subprocess.run([str(turnbench_bin()), "--version"], capture_output=True, text=True)
    assert version.returncode == 0
    run, records, facts = parse(tmp_path, version.stdout, "succeeded", "0",
                                ocp4_workload_litemaas_benchmark_fail_on_error=True)
    assert run.rc != 0
    _, failed = run.last_failed()
    assert "Job succeeded" in failed["msg"] and "no complete user-info block" in failed["msg"]
    assert version.stdout.strip() in "\n".join(troubleshooting(run))
    failure_reported(records, "no complete user-info block")


def test_a_block_cut_short_is_no_block(sim_log, tmp_path):
    truncated = sim_log[: sim_log.index(END_MARKER)]
    run, records, facts = parse(tmp_path, truncated, "succeeded", "0")
    assert run.rc == 0
    failure_reported(records, "no complete user-info block")


def test_a_block_that_is_not_turnbench_yaml_fails_clearly(sim_log, tmp_path):
    broken = sim_log.replace("\n  data:\n", "\n  data: [\n", 1)
    assert broken != sim_log
    run, records, facts = parse(tmp_path, broken, "succeeded", "0", ocp4_workload_litemaas_benchmark_fail_on_error=True)
    assert run.rc != 0
    assert "not the YAML that turnbench prints" in run.last_failed()[1]["msg"]
    failure_reported(records, "not the YAML that turnbench prints")
    assert facts["results"] == {}


def test_a_failed_job_with_a_report_passes_it_on_then_fails(unusable_log, tmp_path):
    run, records, facts = parse(tmp_path, unusable_log, "failed", "3",
                                "BackoffLimitExceeded; Job has reached the specified backoff limit",
                                ocp4_workload_litemaas_benchmark_fail_on_error=True)
    assert run.rc != 0
    block = cut_block(unusable_log)["agnosticd_user_info"]
    rec = failure_reported(records, "exit code 3")
    # The card turnbench printed first, then the failure; its data, and why.
    assert rec["msg"].startswith(block["msg"] + "\n")
    assert "ENDPOINT NOT USABLE" in block["msg"]
    assert {k: v for k, v in rec["data"].items() if k in block["data"]} == block["data"]
    assert block["data"]["litemaas_benchmark_status"].startswith("FAIL")
    _, failed = run.last_failed()
    assert "exit code 3" in failed["msg"] and "endpoint could not be used" in failed["msg"]
    assert "report it printed was still passed on" in failed["msg"]
    assert "Kubernetes: BackoffLimitExceeded" in failed["msg"]
    assert any("Check ocp4_workload_litemaas_benchmark_url" in line for line in troubleshooting(run))
    assert facts["outcome"]["partial"] is True and facts["outcome"]["complete"] is False
    assert facts["results"] == block["data"]


def test_a_run_stopped_at_the_deadline_reports_what_it_measured(tmp_path):
    """The pod's activeDeadlineSeconds: the kubelet sends SIGTERM, turnbench prints a
    partial report and exits 143; the role passes the report on and fails."""
    proc = subprocess.Popen(
        [str(turnbench_bin()), "run", "--conversations", "4", "--turns", "6", "--warmup", "0",
         "--min-delay", "0.4", "--max-delay", "0.6", "--seed", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, log
    run, records, facts = parse(tmp_path, log, "failed", "143", "DeadlineExceeded")
    assert run.rc == 0, "reported, not fatal"
    block = cut_block(log)["agnosticd_user_info"]
    rec = failure_reported(records, "exit code 143", status="")
    assert block.items() <= {"msg": rec["msg"][:len(block["msg"])], "data": block["data"]}.items()
    assert "PARTIAL RESULTS: terminated by SIGTERM" in rec["msg"]
    assert {k: rec["data"][k] for k in block["data"]} == block["data"]
    assert int(block["data"]["litemaas_benchmark_total_requests"]) < 24
    assert "partial" in rec["data"]["litemaas_benchmark_error"]
    assert "DeadlineExceeded" in rec["data"]["litemaas_benchmark_error"]


def test_a_job_still_running_at_the_time_limit_fails_with_its_log(tmp_path):
    so_far = run_turnbench(["run", "--conversations", "2", "--turns", "2", *QUICK], with_stdout=False)
    assert so_far.rc == 0 and "BUILT-IN SIMULATOR" in so_far.log and BEGIN_MARKER not in so_far.log
    run, records, facts = parse(tmp_path, so_far.log, "timeout", "",
                                ocp4_workload_litemaas_benchmark_timeout_seconds=600,
                                ocp4_workload_litemaas_benchmark_fail_on_error=True)
    assert run.rc != 0
    _, failed = run.last_failed()
    assert "did not finish within 630 seconds" in failed["msg"]
    text = "\n".join(troubleshooting(run))
    assert "raise ocp4_workload_litemaas_benchmark_timeout_seconds" in text
    # The last lines of what it printed so far, without terminal colour codes.
    assert "no URL given: benchmarking the BUILT-IN SIMULATOR" in text
    assert "\x1b[" not in text
    rec = failure_reported(records, "did not finish within 630 seconds")
    assert "raise ocp4_workload_litemaas_benchmark_timeout_seconds" in rec["msg"]
    assert "BUILT-IN SIMULATOR" in rec["msg"] and "\x1b[" not in rec["msg"]


def test_settings_rendered_by_the_role_drive_turnbench_end_to_end(tmp_path):
    """ConfigMap, Secret and Job as the role renders them, run as the pod would run them
    (env from the ConfigMap, the key from the Secret, the Job's args) against
    `turnbench sim` requiring the key; the log then goes through the role's parser."""
    sim = Simulator(DUMMY_KEY)
    try:
        docs = render_templates(tmp_path, {
            "ocp4_workload_litemaas_benchmark_url": sim.url,
            "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY,
            "ocp4_workload_litemaas_benchmark_model": "turnbench-sim",
            "ocp4_workload_litemaas_benchmark_conversations": 3,
            "ocp4_workload_litemaas_benchmark_turns": 2,
            "ocp4_workload_litemaas_benchmark_parallel_workers": 2,
            "ocp4_workload_litemaas_benchmark_max_tokens": 32,
            "ocp4_workload_litemaas_benchmark_min_delay": 0,
            "ocp4_workload_litemaas_benchmark_max_delay": 0.05,
            "ocp4_workload_litemaas_benchmark_warmup": 1,
            "ocp4_workload_litemaas_benchmark_seed": 42,
            "ocp4_workload_litemaas_benchmark_ttft_p95_threshold_ms": 800,
            "ocp4_workload_litemaas_benchmark_speedup_threshold": 1.5,
            "ocp4_workload_litemaas_benchmark_user_info_prefix": "bench",
        })
        job, config, secret = docs["job.yaml"], docs["configmap.yaml"], docs["secret.yaml"]
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = dict(config["data"])
        for var in container["env"]:
            if "valueFrom" in var:
                ref = var["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"]
                env[var["name"]] = secret["stringData"][ref["key"]]
            else:
                env[var["name"]] = var["value"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert env["TURNBENCH_OUTPUT_DIR"] in mounts  # the root filesystem is read-only
        env["TURNBENCH_OUTPUT_DIR"] = str(tmp_path / "results")
        run = run_turnbench(container["args"], env)
    finally:
        sim.stop()
    assert run.rc == 0, run.log
    assert "unknown environment variable" not in run.log
    assert DUMMY_KEY not in run.log
    assert (tmp_path / "results" / "results.json").is_file()
    block = cut_block(run.log)["agnosticd_user_info"]
    summary = run.log[:run.log.index(BEGIN_MARKER)]
    assert "Workload: 3 conversations x 2 turns, 2 parallel" in summary and "max_tokens 32" in summary
    assert "  • Total Requests: 6" in block["msg"].splitlines()
    assert block["data"]["bench_seed"] == "42"
    assert block["data"]["bench_model"] == "turnbench-sim"
    assert block["data"]["bench_p95_threshold_ms"] == "800.00"
    assert block["data"]["bench_speedup_threshold"] == "1.50"
    assert block["data"]["bench_failed_requests"] == "0"

    # The ConfigMap asks for the results in the log too, for the published report.
    assert config["data"]["TURNBENCH_PRINT_RESULTS"] == "true"
    assert run.log.index("# BEGIN TURNBENCH RESULTS") < run.log.index(BEGIN_MARKER)

    url = "https://turnbench-report-test-guid.apps.example.com/"
    parsed, records, facts = parse(tmp_path, run.log, "succeeded", "0", report_url=url,
                                   ocp4_workload_litemaas_benchmark_user_info_prefix="bench")
    assert parsed.rc == 0, parsed.stdout[-3000:]
    assert records[0]["msg"] == block["msg"] + "\nReport: " + url
    assert records[0]["data"] == {**block["data"], "bench_report_url": url}


def test_text_from_the_endpoint_is_never_evaluated_as_a_template(sim_log, tmp_path):
    """Model ids and error messages come from the server: Jinja in them must reach the
    user info as text, not run on the controller."""
    evil = (sim_log
            .replace("\n    LiteMaaS Benchmark Results\n", '\n    {{ 7 * 6 }} {{ lookup("env", "HOME") }}\n', 1)
            .replace('litemaas_benchmark_model: "turnbench-sim"', 'litemaas_benchmark_model: "{{ 6 * 7 }}"', 1))
    assert evil.count("{{") == 3
    url = "https://turnbench-report-test-guid.apps.example.com/"
    run, records, facts = parse(tmp_path, evil, "succeeded", "0", report_url=url)
    assert run.rc == 0, run.stdout[-3000:]
    block = cut_block(evil)["agnosticd_user_info"]
    # (with the report's URL added, which goes through the same expressions)
    assert records[0]["msg"] == block["msg"] + "\nReport: " + url
    assert records[0]["data"] == {**block["data"], "litemaas_benchmark_report_url": url}
    assert '{{ 7 * 6 }} {{ lookup("env", "HOME") }}' in records[0]["msg"]
    assert records[0]["data"]["litemaas_benchmark_model"] == "{{ 6 * 7 }}"
    assert facts["results"]["litemaas_benchmark_model"] == "{{ 6 * 7 }}"
