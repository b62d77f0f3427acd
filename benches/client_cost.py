#!/usr/bin/env python3
"""What turnbench itself costs, measured against `turnbench sim` in its own process.

Prints one table: TTFT measurement error at several loads, requests per second with
and without keep-alive (with the CPU each side spends), peak memory of a large run,
time from process start to the first request, and the binary size.

    python3 benches/client_cost.py            # builds the release binary first
    python3 benches/client_cost.py --quick    # smaller runs, for a first look

A benchmark, not a test: figures depend on the machine; compare them as ratios
within one run. Only loopback is used.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def binary() -> str:
    env_bin = os.environ.get("TURNBENCH_BIN")
    if env_bin:
        return env_bin
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return str(ROOT / "target" / "release" / "turnbench")


class Sim:
    """`turnbench sim` on a free port; its CPU time is read when it stops."""

    def __init__(self, exe, *flags):
        self.proc = subprocess.Popen(
            [exe, "sim", "--port", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        self.url = line.split("listening on ")[1].split()[0]
        self.rusage = None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        _, _, self.rusage = os.wait4(self.proc.pid, 0)
        return self.rusage.ru_utime + self.rusage.ru_stime


def run(exe, url, *flags, files=True, max_delay=0.0):
    """Run turnbench to completion; returns (results, cpu seconds, peak RSS bytes).

    With files=False nothing is written and the results are the user-info data read
    from stdout: the peak memory is then the run's own, without results.json, the CSV
    and report.html being built at the end."""
    with tempfile.TemporaryDirectory() as out:
        args = [exe, "run", url, "--warmup", "0", "--min-delay", "0", "--max-delay", str(max_delay),
                "--seed", "1", *flags]
        if files:
            args += ["--output-dir", out]
        stdout_path = Path(out) / "stdout.txt"
        err_path = Path(out) / "stderr.txt"
        # Spawned through a small Python of its own: a child's peak RSS counts the pages
        # of the process it was forked from, and this harness grows large.
        with open(stdout_path, "w") as so, open(err_path, "w") as se:
            probe = subprocess.run([sys.executable, "-c", WAIT4, *args], stdout=so, stderr=se)
        status, cpu, rss = json.loads(err_path.read_text().rsplit("\n", 2)[-2])
        if probe.returncode != 0 or status != 0:
            sys.exit(f"turnbench failed: {' '.join(args)}\n{err_path.read_text()[-3000:]}")
        if files:
            with open(Path(out) / "results.json") as f:
                results = json.load(f)
        else:
            results = user_info_data(stdout_path.read_text())
    return results, cpu, rss


# Runs argv, then prints [exit code, CPU seconds, peak RSS bytes] of that child alone as
# the last line of stderr.
WAIT4 = """
import json, os, subprocess, sys
p = subprocess.Popen(sys.argv[1:])
_, status, ru = os.wait4(p.pid, 0)
sys.stderr.write(json.dumps([os.waitstatus_to_exitcode(status), ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024]) + "\\n")
"""


def user_info_data(stdout):
    """The data of the user-info block (simple `key: "value"` lines)."""
    block = stdout.split("# BEGIN TURNBENCH USER INFO")[1].split("# END TURNBENCH USER INFO")[0]
    data = block.split("  data:")[1]
    pairs = (line.strip().split(": ", 1) for line in data.strip().splitlines())
    return {k.split("_benchmark_")[-1]: json.loads(v) for k, v in pairs}


def sim_stats(url):
    import urllib.request
    with urllib.request.urlopen(url.removesuffix("/v1") + "/sim/stats", timeout=10) as r:
        return json.load(r)


def ttft_error(exe, in_flight, requests, ttft_ms):
    """Up to `in_flight` requests at once, from 2x as many conversations whose think
    time spreads the arrivals (no synchronized bursts, as with real users)."""
    sim = Sim(exe, "--base-ttft-ms", str(ttft_ms), "--prefill-us-per-token", "0",
              "--itl-ms", "5", "--output-tokens", "10")
    conversations = 2 * in_flight
    turns = max(3, requests // conversations)
    # a request lasts ~100 ms (50 ms TTFT + 10 tokens at 5 ms): think 0-200 ms keeps
    # about half the conversations in flight
    res, _, _ = run(exe, sim.url, "--conversations", str(conversations), "--turns", str(turns),
                    "--parallel", str(in_flight), "--documents", "synthetic:1k", max_delay=0.2)
    own = sim_stats(sim.url)["first_token_lateness_us"]
    sim.stop()
    st = res["stats"]
    t = st["ttft"]
    lag = st["client_lag"]
    avg_in_flight = st["e2e"]["mean_ms"] * st["total_requests"] / (st["total_time_s"] * 1000)
    return (t["p50_ms"] - ttft_ms, t["p99_ms"] - ttft_ms, own["p50"] / 1000, own["p99"] / 1000,
            st["total_requests"], avg_in_flight, lag["p50_ms"], lag["p99_ms"])


def throughput(exe, keep_alive, requests, parallel):
    sim = Sim(exe, "--base-ttft-ms", "0", "--prefill-us-per-token", "0", "--itl-ms", "0",
              "--output-tokens", "4")
    # Many short conversations: a conversation of hundreds of turns would measure the
    # cost of its ever longer prompt, not of a request.
    turns = 10
    conversations = max(parallel * 2, requests // turns)
    flags = ["--conversations", str(conversations), "--turns", str(turns), "--parallel", str(parallel),
             "--documents", "synthetic:512", "--max-tokens", "4"]
    if keep_alive:
        flags.append("--keep-alive")
    res, cpu, _ = run(exe, sim.url, *flags)
    sim_cpu = sim.stop()
    n = res["stats"]["total_requests"]
    assert res["stats"]["failed_requests"] == 0, res["stats"]["errors"]
    return res["stats"]["requests_per_second"], cpu / n * 1000, sim_cpu / n * 1000, n


def memory(exe, conversations, turns):
    sim = Sim(exe, "--base-ttft-ms", "1", "--prefill-us-per-token", "0", "--itl-ms", "0",
              "--output-tokens", "16", "--cache-capacity-tokens", "1000")
    _, _, small_rss = run(exe, sim.url, "--conversations", "1", "--turns", str(turns), "--parallel", "1",
                          files=False)
    big = ["--conversations", str(conversations), "--turns", str(turns), "--parallel", "500", "--keep-alive"]
    res, _, rss = run(exe, sim.url, *big, files=False)
    _, _, rss_files = run(exe, sim.url, *big)
    sim.stop()
    return rss, rss_files, small_rss, int(res["total_requests"])


def long_conversation_memory(exe, turns):
    """Peak memory of one conversation of many turns: per-turn detail is kept for the
    first turns only, so it must not grow with the turn count."""
    sim = Sim(exe, "--base-ttft-ms", "0", "--prefill-us-per-token", "0", "--itl-ms", "0",
              "--output-tokens", "4", "--cache-capacity-tokens", "1000")
    flags = ["--conversations", "1", "--parallel", "1", "--documents", "synthetic:512", "--max-tokens", "4"]
    _, _, short = run(exe, sim.url, *flags, "--turns", "10", files=False)
    res, _, rss = run(exe, sim.url, *flags, "--turns", str(turns), files=False)
    sim.stop()
    return rss, short, int(res["total_requests"])


def start_to_first_request(exe, repeats):
    """Time from just before spawning to the first connection turnbench opens."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    samples = []
    for _ in range(repeats):
        got = {}

        def accept():
            conn, _ = srv.accept()
            got["t"] = time.monotonic()
            conn.close()

        th = threading.Thread(target=accept)
        th.start()
        t0 = time.monotonic()
        p = subprocess.Popen([exe, "run", f"http://127.0.0.1:{port}/v1", "--model", "m"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        th.join(timeout=10)
        p.wait(timeout=30)
        samples.append((got["t"] - t0) * 1000)
    srv.close()
    return statistics.median(samples), max(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    a = ap.parse_args()
    exe = binary()
    q = 4 if a.quick else 1
    rows = []

    ttft_ms = 50
    for n in (1, 64, 256, 1024):
        p50, p99, sim50, sim99, reqs, avg, lag50, lag99 = ttft_error(exe, n, max(300, 8 * n) // q, ttft_ms)
        rows.append((f"TTFT error, up to {n} in flight (avg {avg:.0f}; {reqs} requests; configured {ttft_ms} ms)",
                     f"P50 {p50:+.3f} ms, P99 {p99:+.3f} ms"))
        rows.append(("  of which the simulator's own lateness (first token vs plan)",
                     f"P50 {sim50:.3f} ms, P99 {sim99:.3f} ms"))
        rows.append(("  client lag the run reports (its own timer lateness)",
                     f"P50 {lag50:.3f} ms, P99 {lag99:.3f} ms"))

    for ka in (False, True):
        rps, cpu_k, sim_cpu_k, n = throughput(exe, ka, 60000 // q, 64)
        label = "keep-alive" if ka else "new connection per request"
        sim_capacity = 2 * 1000 / sim_cpu_k if sim_cpu_k > 0 else float("inf")
        rows.append((f"requests/s, {label} ({n} streamed requests, 64 in flight)", f"{rps:,.0f}"))
        rows.append((f"  CPU s per 1,000 requests: turnbench / simulator ({label})",
                     f"{cpu_k:.3f} / {sim_cpu_k:.3f}"))
        rows.append((f"  simulator capacity alone on 2 cores ({label})", f"~{sim_capacity:,.0f} requests/s"))

    convs = 10000 // q
    rss, rss_files, small_rss, reqs = memory(exe, convs, 10)
    rows.append((f"peak memory, {convs:,} conversations x 10 turns, bundled documents ({reqs:,} requests)",
                 f"{rss / 2**20:.1f} MiB"))
    rows.append(("  the same with --output-dir (results.json, requests.csv, report.html built at the end)",
                 f"{rss_files / 2**20:.1f} MiB"))
    rows.append(("  peak memory of 1 conversation (baseline)", f"{small_rss / 2**20:.1f} MiB"))
    rows.append(("  per conversation above the baseline", f"{(rss - small_rss) / convs / 1024:.1f} KiB"))

    turns = 5000 // q
    rss_long, rss_short, reqs = long_conversation_memory(exe, turns)
    rows.append((f"peak memory, 1 conversation x {turns:,} turns ({reqs:,} requests)", f"{rss_long / 2**20:.1f} MiB"))
    rows.append(("  the same conversation with 10 turns", f"{rss_short / 2**20:.1f} MiB"))

    med, worst = start_to_first_request(exe, 20 // q)
    rows.append(("process start to first request sent (median / max of runs)", f"{med:.1f} / {worst:.1f} ms"))
    rows.append(("stripped binary size", f"{os.path.getsize(exe) / 2**20:.1f} MiB"))

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  figure")
    print(f"{'-' * width}  {'-' * 30}")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
