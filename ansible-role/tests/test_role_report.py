"""The published HTML report, without a cluster: a real `turnbench run --print-results`
log goes through the role's own tasks/read_results_block.yml (what the role stores in
the results ConfigMap) and tasks/parse_results.yml (the URL into the user data and the
message); then the Deployment's command, as the role renders it, serves that ConfigMap
file over loopback: `turnbench report <file> --serve`."""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from role_support import (
    DUMMY_KEY,
    REPORT_CHART_IDS,
    RESULTS_BEGIN,
    RESULTS_END,
    TESTS_DIR,
    cut_block,
    render_templates,
    run_playbook,
    run_turnbench,
    turnbench_bin,
)

QUICK = ["--warmup", "1", "--min-delay", "0", "--max-delay", "0"]
URL = "https://turnbench-report-abc12.apps.cluster.example.com/"
BASE64_LINE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def decode(block: str) -> dict:
    """The reference reading of a RESULTS block, independent of turnbench and the role."""
    lines = block.splitlines()
    start = max(i for i, line in enumerate(lines) if line.strip() == RESULTS_BEGIN)
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == RESULTS_END)
    return json.loads(gzip.decompress(base64.b64decode("".join(lines[start + 1:end]))))


def same(a, b) -> bool:
    """JSON values equal, floats to 12 significant digits (turnbench's JSON parser may
    read a float back one unit in the last place off)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def run_with_results(seed: int) -> str:
    """A finished run against the built-in simulator, its results printed in the log as
    the role's ConfigMap asks (TURNBENCH_PRINT_RESULTS)."""
    run = run_turnbench(["run", "--conversations", "3", "--turns", "3", "--seed", str(seed), *QUICK],
                        {"TURNBENCH_PRINT_RESULTS": "true"})
    assert run.rc == 0, run.log
    assert run.log.index(RESULTS_END) < run.log.index("# BEGIN TURNBENCH USER INFO"), \
        "the results come before the user-info block"
    return run.log


@pytest.fixture(scope="module")
def results_log() -> str:
    return run_with_results(5)


def parse(tmp_path: Path, log: str, job_state: str = "succeeded", exit_code: str = "0", **extra):
    """tests/parse_results.yml: the role's read_results_block.yml and parse_results.yml."""
    (tmp_path / "pod.log").write_text(log)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    run = run_playbook(TESTS_DIR / "parse_results.yml", tmp_path, {
        "output_dir": str(out), "log_file": str(tmp_path / "pod.log"), "job_state": job_state,
        "exit_code": exit_code, **extra})
    records_file = out / "agnosticd_user_info.jsonl"
    records = [json.loads(line) for line in records_file.read_text().splitlines()] if records_file.exists() else []
    return run, records, json.loads((out / "facts.json").read_text()), (out / "results.log").read_text()


class ReportServer:
    """The report Deployment's container command, as the role renders it, on loopback:
    its ConfigMap mount path is `directory` and it listens on a free loopback port."""

    def __init__(self, args: list[str], mount_path: str, directory: Path):
        args = [str(directory) + a[len(mount_path):] if a.startswith(mount_path + "/") else a for a in args]
        assert args[-2] == "--port"
        args = args[:-1] + ["0", "--host", "127.0.0.1"]
        self.proc = subprocess.Popen([str(turnbench_bin()), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.first_line = self.proc.stdout.readline()
        m = re.search(r"^turnbench report serving (\S+) on (http://127\.0\.0\.1:\d+/)$", self.first_line.strip())
        if not m:
            self.stop()
            pytest.fail(f"turnbench report --serve did not start: {self.first_line!r} {self.proc.stderr.read()}")
        self.path, self.url = m.group(1), m.group(2)

    def get(self, path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=10) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def test_the_role_cuts_the_results_block_and_adds_the_report_url(results_log, tmp_path):
    run, records, facts, block = parse(tmp_path, results_log, report_url=URL)
    assert run.rc == 0, run.stdout[-3000:]
    # The ConfigMap's content: the block with its markers, base64 lines only.
    lines = block.splitlines()
    assert lines[0] == RESULTS_BEGIN and lines[-1] == RESULTS_END and block.endswith("\n")
    assert all(BASE64_LINE.match(line) for line in lines[1:-1])
    expected = results_log[results_log.rindex(RESULTS_BEGIN):]
    assert block == expected[:expected.index(RESULTS_END) + len(RESULTS_END)] + "\n"
    results = decode(block)
    meta = results["run"]["meta"]
    assert meta["seed"] == 5 and meta["settings"]["print_results"] is True
    assert len(results["requests"]["rows"]) == 9
    # The user data: the block's data plus <prefix>_report_url; the message plus a last line.
    info = cut_block(results_log)["agnosticd_user_info"]
    assert len(records) == 1
    assert records[0]["data"] == {**info["data"], "litemaas_benchmark_report_url": URL}
    assert records[0]["msg"] == info["msg"] + "\nReport: " + URL
    assert records[0]["data_values_are_str"] and records[0]["msg_is_str"]
    assert facts["results"] == records[0]["data"] and facts["report"] == records[0]["msg"]
    assert facts["outcome"]["complete"] is True


def test_log_lines_inside_the_results_block_are_left_out(results_log, tmp_path):
    lines = results_log.splitlines()
    begin = lines.index(RESULTS_BEGIN)
    intruders = ["2026-01-01T00:00:00.000000Z  WARN turnbench: a log line from stderr",
                 "turnbench: progress 9/9 requests"]
    mangled = lines[:begin + 2] + intruders + lines[begin + 2:begin + 3] + intruders[:1] + lines[begin + 3:]
    run, records, facts, block = parse(tmp_path, "\n".join(mangled) + "\n")
    assert run.rc == 0, run.stdout[-3000:]
    assert not any(i in block for i in intruders)
    assert decode(block) == decode(results_log)
    # Not published (no URL): the user info is the block's, unchanged.
    info = cut_block(results_log)["agnosticd_user_info"]
    assert records[0]["data"] == info["data"] and records[0]["msg"] == info["msg"]


def test_a_results_block_cut_short_is_nothing_to_publish(results_log, tmp_path):
    """(A log without the block at all, from an image older than --print-results, is
    test_role_contract.py's: its logs are printed without it.)"""
    run, records, facts, block = parse(tmp_path, results_log[:results_log.index(RESULTS_END)])
    assert block == ""
    # No user-info block either: a failure, reported (the play goes on).
    assert run.rc == 0 and len(records) == 1
    assert "no complete user-info block" in records[0]["data"]["litemaas_benchmark_error"]
    assert "litemaas_benchmark_report_url" not in records[0]["data"]


def test_the_deployments_command_serves_the_configmap_over_loopback(results_log, tmp_path):
    """What the role stores and what the Deployment runs: the role's block in a file named
    as the ConfigMap key, served by the rendered container's args; GET /, /results.json,
    /healthz; a new run in the file shows without a restart; SIGTERM ends it with 0."""
    _, _, _, block = parse(tmp_path, results_log)
    docs = render_templates(tmp_path, {
        "ocp4_workload_litemaas_benchmark_url": "https://litellm.apps.example.com/v1",
        "ocp4_workload_litemaas_benchmark_key": DUMMY_KEY,
        "__ocp4_workload_litemaas_benchmark_results_block": block,
    })
    configmap = docs["results-configmap.yaml"]
    container = docs["report-deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    (mount,) = container["volumeMounts"]
    assert configmap["data"] == {"results.log": block}
    mounted = tmp_path / "mounted-configmap"
    mounted.mkdir()
    for key, value in configmap["data"].items():
        (mounted / key).write_text(value)

    server = ReportServer(container["args"], mount["mountPath"], mounted)
    try:
        assert Path(server.path) == mounted / "results.log"
        status, ctype, body = server.get("/healthz")
        assert (status, body.strip()) == (200, "ok")
        status, ctype, html = server.get("/")
        assert status == 200 and ctype.startswith("text/html")
        missing = [c for c in REPORT_CHART_IDS if f'id="{c}"' not in html]
        assert missing == [], missing
        status, ctype, body = server.get("/results.json")
        assert status == 200 and ctype.startswith("application/json")
        assert same(json.loads(body), decode(block))
        assert DUMMY_KEY not in html + body

        # The next run updates the ConfigMap; the kubelet rewrites the file in place.
        newer_log = run_with_results(6)
        newer = newer_log[newer_log.rindex(RESULTS_BEGIN):]
        newer = newer[:newer.index(RESULTS_END) + len(RESULTS_END)] + "\n"
        assert decode(newer) != decode(block)
        (mounted / ".tmp").write_text(newer)
        (mounted / ".tmp").replace(mounted / "results.log")
        assert same(json.loads(server.get("/results.json")[2]), decode(newer))

        # Read-only: nothing but GET.
        req = urllib.request.Request(server.url + "results.json", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code in (404, 405)
        assert (mounted / "results.log").read_text() == newer
    finally:
        code = server.stop()
    assert code == 0, server.proc.stderr.read()


def test_the_report_server_refuses_to_start_without_results(tmp_path):
    """A ConfigMap without a usable block (which the role never publishes) makes the pod
    fail at start, visibly, rather than serve an empty page."""
    (tmp_path / "results.log").write_text("no results here\n")
    proc = subprocess.run([str(turnbench_bin()), "report", str(tmp_path / "results.log"), "--serve",
                           "--host", "127.0.0.1", "--port", "0"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
