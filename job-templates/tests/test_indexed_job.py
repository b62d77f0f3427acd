"""The Indexed Job of job-templates/indexed/: one run split over N pods, merged from their
logs with `turnbench merge`.

The manifest is checked against the single Job (same pod, plus the shard settings) and
the README's recipe for the start time is run as written. Then the pods are played by
the real binary: N processes with the environment the manifest gives each pod
(ConfigMap edited to a small workload, as a user edits it; JOB_COMPLETION_INDEX as
Kubernetes sets it), against `turnbench sim` on 127.0.0.1; their stdout and stderr
together are the pod logs, which `turnbench merge` joins.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from jobtemplates_support import (
    BEGIN_MARKER,
    JOB_DIR,
    REPO,
    container_env,
    extract_user_info,
    job_env,
    namespace_configmaps,
    render_kustomization,
    set_env,
)

INDEXED_DIR = JOB_DIR / "indexed"
NAME = "turnbench-indexed"
START_PLACEHOLDER = "REPLACE-WITH-START-TIME"
README_TEXT = (JOB_DIR / "README.md").read_text()
TEST_API_KEY = "tb-indexed-test-key-8e24b7c1"  # made up for this test; must never be printed
RESULTS_BEGIN = "# BEGIN TURNBENCH RESULTS"

# What a user would put in the ConfigMap for a short run. 7 conversations over 3 pods:
# shards of 3, 2 and 2, so an uneven split is covered.
SMALL_WORKLOAD = {
    "TURNBENCH_CONVERSATIONS": "7",
    "TURNBENCH_TURNS": "3",
    "TURNBENCH_MAX_TOKENS": "16",
    "TURNBENCH_MIN_DELAY": "0",
    "TURNBENCH_MAX_DELAY": "0.05",
    "TURNBENCH_WARMUP": "1",
}
# The shards' measured phases begin at the start time, within this.
START_TOLERANCE_S = 1.0


def rendered() -> list[dict]:
    return render_kustomization(INDEXED_DIR)


def the_job(docs: list[dict], name: str = NAME) -> dict:
    (job,) = [d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == name]
    return job


def single_job() -> dict:
    return the_job(render_kustomization(JOB_DIR), "turnbench")


def readme_start_recipe() -> tuple[str, str]:
    """The README's two lines that pick the start time and apply the Job with it."""
    start = re.search(r"^\s*(start=\$\(date [^\n]*\))\s*$", README_TEXT, re.M)
    apply = re.search(r"^\s*(oc kustomize job-templates/indexed/ \| oc set env [^\n]*\| oc apply -f -)\s*$", README_TEXT, re.M)
    assert start and apply, "job-templates/README.md gives the start-time recipe for the Indexed Job"
    return start[1], apply[1]


# Stands in for `oc` in the recipe: the three subcommands it uses, on this test's
# rendering of the kustomization and its model of `oc set env` (set_env).
FAKE_OC = """#!{python}
import sys
sys.path.insert(0, {tests!r})
import yaml
from pathlib import Path
from jobtemplates_support import REPO, render_kustomization, set_env

args = sys.argv[1:]
if args[:1] == ["kustomize"] and len(args) == 2:
    print(yaml.safe_dump_all(render_kustomization(REPO / args[1])), end="")
elif args[:5] == ["set", "env", "--local", "-f", "-"] and args[-2:] == ["-o", "yaml"]:
    pairs = dict(a.split("=", 1) for a in args[5:-2])
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    print(yaml.safe_dump_all(set_env(docs, pairs)), end="")
elif args == ["apply", "-f", "-"]:
    Path({applied!r}).write_text(sys.stdin.read())
else:
    sys.exit("fake oc: unexpected arguments %r" % (args,))
"""


def apply_start_recipe(tmp: Path) -> tuple[list[dict], str]:
    """What `oc apply` gets from the README's `start=...` and apply lines, run by bash."""
    start_cmd, apply_cmd = readme_start_recipe()
    bindir = tmp / "bin"
    bindir.mkdir()
    applied = tmp / "applied.yaml"
    oc = bindir / "oc"
    oc.write_text(FAKE_OC.format(python=sys.executable, tests=str(Path(__file__).parent), applied=str(applied)))
    oc.chmod(0o755)
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f'{start_cmd}\n{apply_cmd}\necho "$start"'],
        cwd=REPO,
        env={"PATH": f"{bindir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(applied.read_text()) if d], out.stdout.strip()


def parse_rfc3339(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


# --- the manifest -------------------------------------------------------------------


def test_one_pod_per_shard_all_at_once():
    job = the_job(rendered())
    spec = job["spec"]
    env = job_env(INDEXED_DIR, NAME)
    n = int(env["TURNBENCH_SHARD_COUNT"])
    assert spec["completionMode"] == "Indexed"
    # Every shard at once: with fewer in parallel, the last would start after the
    # start time, and the run's wall time would span them all.
    assert spec["completions"] == spec["parallelism"] == n >= 2
    # The index comes from JOB_COMPLETION_INDEX, which differs per pod; a fixed one
    # would run the same shard N times.
    assert "TURNBENCH_SHARD_INDEX" not in env
    for e in job["spec"]["template"]["spec"]["containers"][0]["env"]:
        assert "fieldRef" not in e.get("valueFrom", {}), "a setting that depends on the pod"


def test_the_pod_is_the_single_jobs_pod_plus_the_shard_settings():
    """Same image, security context, resources, volumes, deadlines, ConfigMap and
    Secret as job.yaml: only the env entries for sharding are added."""
    single, indexed = single_job(), the_job(rendered())
    a, b = copy.deepcopy(single["spec"]), copy.deepcopy(indexed["spec"])
    (ca,) = a["template"]["spec"]["containers"]
    (cb,) = b["template"]["spec"]["containers"]
    env_a, env_b = ca.pop("env"), cb.pop("env")
    assert cb == ca
    assert b["template"] == a["template"]
    for key in ("activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        assert b[key] == a[key], key
    assert indexed["metadata"]["labels"] == single["metadata"]["labels"]
    # The API key, from the same Secret, and nothing else from the single Job changed.
    by_name = {e["name"]: e for e in env_b}
    for e in env_a:
        assert by_name[e["name"]] == e
    added = set(by_name) - {e["name"] for e in env_a}
    assert added == {
        "TURNBENCH_SHARD_COUNT",
        "TURNBENCH_START_AT",
        "TURNBENCH_SEED",
        "TURNBENCH_SALT",
        "TURNBENCH_PRINT_RESULTS",
    }
    assert by_name["TURNBENCH_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "turnbench-api-key", "key": "api-key"}


def test_every_pod_draws_the_same_plan_and_prints_its_results():
    env = job_env(INDEXED_DIR, NAME)
    # Unset, each pod would draw its own seed and salt and merge would refuse them.
    assert re.fullmatch(r"\d+", env["TURNBENCH_SEED"])
    # The salt is the start time: the same in all pods, new with every run.
    assert env["TURNBENCH_SALT"] == env["TURNBENCH_START_AT"] == START_PLACEHOLDER
    assert env["TURNBENCH_PRINT_RESULTS"] == "true"


def test_the_readme_recipe_sets_a_start_time_ahead_and_the_salt_with_it(tmp_path):
    before = dt.datetime.now(dt.timezone.utc)
    applied, start = apply_start_recipe(tmp_path)
    at = parse_rfc3339(start)
    assert start.endswith("Z") and at.tzinfo is not None
    # A couple of minutes ahead: time for every pod to be scheduled and pull the image.
    assert dt.timedelta(minutes=1) < at - before < dt.timedelta(minutes=10)
    job = the_job(applied)
    kubernetes_validate.validate(job, "1.29.0", strict=True)
    env = container_env(job, namespace_configmaps())
    assert env["TURNBENCH_START_AT"] == env["TURNBENCH_SALT"] == start


def test_the_strict_schema_checks_the_indexed_fields():
    job = the_job(rendered())
    for version in ("1.29.0", "1.33.0"):
        kubernetes_validate.validate(job, version, strict=True)
    bad = copy.deepcopy(job)
    bad["spec"]["backoffLimitPerindex"] = 0
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.29.0", strict=True)
    bad = copy.deepcopy(job)
    bad["spec"]["completions"] = "3"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.29.0", strict=True)


def test_the_readme_merges_every_pods_full_log():
    """`oc logs -l` prints only the last 10 lines of each pod unless told otherwise:
    the recipe must ask for the whole log, one file per completion index."""
    cmds = [line for line in README_TEXT.splitlines() if "oc logs" in line and "job-completion-index" in line]
    assert cmds, "job-templates/README.md collects each pod's log by its completion index"
    for c in cmds:
        assert "--tail=-1" in c, c
        assert f"job-name={NAME}" in c, c
    assert re.search(r"^\s*turnbench merge [^\n]*pod-\*\.log", README_TEXT, re.M)


# --- the pods, played by the real binary ----------------------------------------------


def turnbench_bin() -> Path:
    p = Path(os.environ.get("TURNBENCH_BIN", REPO / "target/release/turnbench"))
    if not p.is_file():
        pytest.skip(f"no turnbench binary at {p}: run scripts/test.sh, or set TURNBENCH_BIN")
    return p


class Sim:
    def __init__(self, exe: Path):
        self.proc = subprocess.Popen(
            [exe, "sim", "--port", "0", "--api-key", TEST_API_KEY],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+/v1)", line)
        assert m, f"turnbench sim printed {line!r}"
        self.url = m[1]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pod_env(url: str, start: str, results_dir: Path) -> dict[str, str]:
    """Each pod's environment from the manifests: the ConfigMap as a user edits it
    (endpoint, small workload), the Secret's key, the start time from the recipe."""
    configmaps = copy.deepcopy(namespace_configmaps())
    data = configmaps["turnbench-config"]["data"]
    data.update(SMALL_WORKLOAD, TURNBENCH_URL=url)
    # The emptyDir at TURNBENCH_OUTPUT_DIR, here a directory of the pod's own.
    data["TURNBENCH_OUTPUT_DIR"] = str(results_dir)
    (job,) = set_env([the_job(rendered())], {"TURNBENCH_START_AT": start})
    env = container_env(job, configmaps)
    return {k: (TEST_API_KEY if v == "<secret:turnbench-api-key/api-key>" else v) for k, v in env.items()}


class Pods:
    def __init__(self, tmp: Path, exe: Path, sim: Sim):
        self.exe = exe
        self.n = int(job_env(INDEXED_DIR, NAME)["TURNBENCH_SHARD_COUNT"])
        # Whole seconds, as the recipe's date prints; far enough ahead for N processes
        # to start and warm up.
        self.start_at = dt.datetime.fromtimestamp(int(time.time()) + 3, dt.timezone.utc)
        self.start = self.start_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.logs: list[Path] = []
        procs = []
        for i in range(self.n):
            results = tmp / f"results-{i}"
            results.mkdir()
            env = {
                **pod_env(sim.url, self.start, results),
                # What the kubelet and the image add; nothing else of this test's own.
                "JOB_COMPLETION_INDEX": str(i),
                "HOSTNAME": f"{NAME}-{i}-x7k2q",
                "NO_COLOR": "1",
            }
            self.env = env
            log = tmp / f"pod-{i}.log"
            self.logs.append(log)
            # Kubernetes keeps stdout and stderr of a container in one log.
            with open(log, "w") as f:
                procs.append(subprocess.Popen([exe, "run"], env=env, stdout=f, stderr=subprocess.STDOUT))
        self.rcs = []
        for p in procs:
            try:
                self.rcs.append(p.wait(timeout=60))
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                pytest.fail("a pod did not finish within 60 s")
        self.text = [log.read_text() for log in self.logs]

    def merge(self, *logs: Path, out: Path | None = None) -> subprocess.CompletedProcess:
        args = [self.exe, "merge", *logs]
        if out:
            args += ["--output-dir", out]
        return subprocess.run(args, capture_output=True, text=True, timeout=60, env={"NO_COLOR": "1"})


def user_info(text: str) -> dict:
    assert text.count(BEGIN_MARKER) == 1, "one user-info block"
    return yaml.safe_load(extract_user_info(text))["agnosticd_user_info"]


def total(text: str) -> int:
    return int(user_info(text)["data"]["litemaas_benchmark_total_requests"])


def measured_start(text: str) -> dt.datetime:
    m = re.search(r"^Measured: (\S+) to (\S+)$", text, re.M)
    assert m, "the summary's Measured: line"
    return parse_rfc3339(m[1])


@pytest.fixture(scope="module")
def pods(tmp_path_factory):
    exe = turnbench_bin()
    sim = Sim(exe)
    try:
        yield Pods(tmp_path_factory.mktemp("indexed"), exe, sim)
    finally:
        sim.stop()


def test_each_pod_runs_its_shard_from_the_common_start(pods):
    plan = int(SMALL_WORKLOAD["TURNBENCH_CONVERSATIONS"])
    turns = int(SMALL_WORKLOAD["TURNBENCH_TURNS"])
    for i, (rc, text) in enumerate(zip(pods.rcs, pods.text)):
        assert rc == 0, text
        assert "unknown environment variable" not in text, text
        assert TEST_API_KEY not in text
        assert "\x1b[" not in text
        assert text.count(RESULTS_BEGIN) == 1
        # Conversations i with i % N == index: 3, 2, 2 of 7.
        mine = len(range(i, plan, pods.n))
        assert total(text) == mine * turns, f"pod {i}"
        assert f"Shards: 1 of {pods.n} ({i})" in text
        assert f"Salt: {pods.start}" in text
        # Held until the start time, then began at once (warm-up before it).
        began = measured_start(text)
        assert pods.start_at <= began < pods.start_at + dt.timedelta(seconds=START_TOLERANCE_S), (i, began)
        assert "starting now" not in text, "a pod started late"


def test_the_logs_merge_into_one_report_of_the_whole_plan(pods, tmp_path):
    out = tmp_path / "merged"
    r = pods.merge(*pods.logs, out=out)
    assert r.returncode == 0, r.stderr
    assert "missing" not in r.stderr
    info = user_info(r.stdout)
    # The block is last, as in a pod's log, so consumers cut it the same way.
    assert r.stdout.rstrip().endswith("# END TURNBENCH USER INFO")
    data = info["data"]
    conversations = int(SMALL_WORKLOAD["TURNBENCH_CONVERSATIONS"])
    turns = int(SMALL_WORKLOAD["TURNBENCH_TURNS"])
    assert int(data["litemaas_benchmark_total_requests"]) == sum(map(total, pods.text)) == conversations * turns
    assert data["litemaas_benchmark_failed_requests"] == "0"
    assert re.match(r"(PASS|WARN|FAIL) ", data["litemaas_benchmark_status"])
    assert data["litemaas_benchmark_seed"] == pods.env["TURNBENCH_SEED"]
    assert data["litemaas_benchmark_salt"] == pods.start
    assert f"Shards: {pods.n} of {pods.n} ({', '.join(map(str, range(pods.n)))})" in r.stdout
    assert f"Completed conversations: {conversations}/{conversations}" in r.stdout
    # The union of the shards is the plan: every conversation, every turn, once.
    with open(out / "requests.csv") as f:
        rows = list(csv.DictReader(f))
    seen = sorted((int(r["conversation"]), int(r["turn"])) for r in rows)
    assert seen == [(c, t) for c in range(conversations) for t in range(1, turns + 1)]
    for name in ("results.json", "requests.csv", "report.html"):
        assert TEST_API_KEY not in (out / name).read_text()
    assert TEST_API_KEY not in r.stdout + r.stderr


def test_merge_refuses_a_shard_index_given_twice(pods, tmp_path):
    """A pod's log collected twice (a retried pod, a copy-paste) would count its
    requests twice: refused, exit 2, no report."""
    again = tmp_path / "pod-1-again.log"
    shutil.copy(pods.logs[1], again)
    r = pods.merge(*pods.logs, again)
    assert r.returncode == 2, r.stdout + r.stderr
    assert BEGIN_MARKER not in r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "shard 1" in lines[0], r.stderr


def test_a_missing_shard_is_a_partial_report(pods):
    r = pods.merge(pods.logs[0], pods.logs[2])
    assert r.returncode == 0, r.stderr
    assert f"1 of {pods.n} shards are missing" in r.stderr
    info = user_info(r.stdout)
    assert int(info["data"]["litemaas_benchmark_total_requests"]) == total(pods.text[0]) + total(pods.text[2])
    assert f"Shards: 2 of {pods.n} (0, 2)" in r.stdout
    assert f"PARTIAL RESULTS: 2 of {pods.n} shards merged (1 missing)" in info["msg"]


def test_a_start_time_left_unset_stops_the_pod_at_once(tmp_path):
    """Applied without the recipe's sed, every pod exits 2 naming the variable."""
    exe = turnbench_bin()
    env = pod_env("http://127.0.0.1:9/v1", START_PLACEHOLDER, tmp_path)
    r = subprocess.run(
        [exe, "run"],
        env={**env, "JOB_COMPLETION_INDEX": "0", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert f'TURNBENCH_START_AT="{START_PLACEHOLDER}"' in r.stderr
