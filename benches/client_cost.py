#!/usr/bin/env python3
"""What turnbench itself costs, measured against `turnbench sim` in its own process.

Prints one table: TTFT measurement error at several loads up to 1,000 in flight (the
first wave apart from the steady state, the simulator's own lateness and the client
lag beside it, the CPU per request of each side), requests per second with and without
keep-alive, peak memory of large runs (10,000 users held at once among them), time
from process start to the first request, and the binary size.

    python3 benches/client_cost.py            # builds the release binary first
    python3 benches/client_cost.py --quick    # smaller runs, for a first look
    python3 benches/client_cost.py --compare-with OLD_BINARY   # before/after, below

With --compare-with, only the client's CPU per request at 1,000 in flight is measured,
for that binary, this one, and this one with a single tokio worker, three alternating
runs each against one simulator binary (this one): the ratio of medians is the figure.

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


def pct(values, q):
    """The q-quantile of values (nearest rank), in the values' unit."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q * len(v)) - 1))] if v else float("nan")


def ttft_error(exe, in_flight, requests, ttft_ms, keep_alive=True):
    """Up to `in_flight` requests at once, from 2x as many conversations whose think
    time spreads the arrivals (no synchronized bursts, as with real users): keep-alive,
    ~2 KB prompts, 8 tokens at 5 ms. The first wave (the first `in_flight` requests to
    start, all at once) is reported apart from the steady state after it."""
    sim = Sim(exe, "--base-ttft-ms", str(ttft_ms), "--prefill-us-per-token", "0",
              "--itl-ms", "5", "--output-tokens", "8")
    conversations = 2 * in_flight
    turns = max(3, requests // conversations)
    # a request lasts ~85 ms (50 ms TTFT + 8 tokens at 5 ms): think 0-200 ms keeps
    # about half the conversations in flight
    res, cpu, _ = run(exe, sim.url, "--conversations", str(conversations), "--turns", str(turns),
                      "--parallel", str(in_flight), "--documents", "synthetic:2k", "--max-tokens", "8",
                      *(["--keep-alive"] if keep_alive else []), max_delay=0.2)
    own = sim_stats(sim.url)["first_token_lateness_us"]
    sim_cpu = sim.stop()
    st = res["stats"]
    rows = res["requests"]
    col = {c: i for i, c in enumerate(rows["columns"])}
    done = sorted((r[col["start_ms"]], r[col["ttft_ms"]]) for r in rows["rows"] if r[col["ttft_ms"]] is not None)
    first = [t - ttft_ms for _, t in done[:in_flight]]
    steady = [t - ttft_ms for _, t in done[in_flight:]]
    n = st["total_requests"]
    lag = st["client_lag"]
    return {
        "all": (st["ttft"]["p50_ms"] - ttft_ms, st["ttft"]["p99_ms"] - ttft_ms),
        "first": (pct(first, 0.5), pct(first, 0.99)),
        "steady": (pct(steady, 0.5), pct(steady, 0.99)),
        "sim": (own["p50"] / 1000, own["p99"] / 1000),
        "lag": (lag["p50_ms"], lag["p99_ms"]),
        "requests": n,
        "rps": st["requests_per_second"],
        "avg_in_flight": st["e2e"]["mean_ms"] * n / (st["total_time_s"] * 1000),
        "cpu_us": cpu / n * 1e6,
        "sim_cpu_us": sim_cpu / n * 1e6,
    }


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


def users_memory(exe, users, turns):
    """Peak memory of `users` session-held users in one process: every user a
    conversation with think time (5-10 s, a person reading and typing) and a kept-alive
    connection of its own. With think times short enough that the machine cannot serve
    the offered rate, requests queue and memory grows with the queue instead."""
    sim = Sim(exe, "--base-ttft-ms", "50", "--prefill-us-per-token", "0", "--itl-ms", "5",
              "--output-tokens", "8")
    res, cpu, rss = run(exe, sim.url, "--users", str(users), "--turns", str(turns), "--min-delay", "5",
                        "--keep-alive", max_delay=10.0, files=False)
    sim.stop()
    n = int(res["total_requests"])
    return rss, n, cpu / n * 1e6


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
    srv.settimeout(0.2)
    for _ in range(repeats):
        got = {}
        done = threading.Event()

        def accept():
            # Every connection is closed at once (turnbench may try more than one);
            # the first one's time is the figure.
            while not done.is_set():
                try:
                    conn, _ = srv.accept()
                except socket.timeout:
                    continue
                got.setdefault("t", time.monotonic())
                conn.close()

        th = threading.Thread(target=accept)
        th.start()
        t0 = time.monotonic()
        p = subprocess.Popen([exe, "run", f"http://127.0.0.1:{port}/v1", "--model", "m"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.wait(timeout=30)
        done.set()
        th.join(timeout=10)
        samples.append((got["t"] - t0) * 1000)
    srv.close()
    return statistics.median(samples), max(samples)


def compare_with(exe, other, reps=3):
    arms = [("given binary", other, {}), ("this build", exe, {}),
            ("this build, one tokio worker", exe, {"TOKIO_WORKER_THREADS": "1"})]
    got = {name: [] for name, _, _ in arms}
    for _ in range(reps):
        for name, binary_, env in arms:
            sim = Sim(exe, "--base-ttft-ms", "50", "--prefill-us-per-token", "0", "--itl-ms", "5",
                      "--output-tokens", "8")
            saved = dict(os.environ)
            os.environ.update(env)
            try:
                res, cpu, _ = run(binary_, sim.url, "--conversations", "2000", "--turns", "6", "--parallel", "1000",
                                  "--documents", "synthetic:2k", "--max-tokens", "8", "--keep-alive", max_delay=0.2)
            finally:
                os.environ.clear()
                os.environ.update(saved)
            sim.stop()
            got[name].append(cpu / res["stats"]["total_requests"] * 1e6)
    base = statistics.median(got["given binary"])
    print("client CPU per streamed request, 1,000 in flight, keep-alive (median of %d runs)" % reps)
    for name, values in got.items():
        m = statistics.median(values)
        print(f"  {name:<30} {m:6.1f} µs  ({m / base:.2f}x)  runs: {', '.join(f'{v:.0f}' for v in values)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    ap.add_argument("--compare-with", metavar="BINARY", help="another turnbench binary to compare CPU per request with")
    a = ap.parse_args()
    exe = binary()
    if a.compare_with:
        compare_with(exe, a.compare_with)
        return
    # 10,000 users hold 10,000 sockets on each side: raise the open-file limit where the
    # machine allows it (children inherit it); turnbench refuses to start otherwise.
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        pass
    q = 4 if a.quick else 1
    rows = []

    ttft_ms = 50
    for n in (1, 64, 256, 1000):
        e = ttft_error(exe, n, max(300, 12 * n) // q, ttft_ms)
        rows.append((f"TTFT error, up to {n} in flight (avg {e['avg_in_flight']:.0f}; {e['requests']} requests, "
                     f"{e['rps']:,.0f}/s; configured {ttft_ms} ms)",
                     "P50 {:+.3f} ms, P99 {:+.3f} ms".format(*e["all"])))
        if n > 1:
            rows.append((f"  first wave ({n} requests starting at once) / steady state after it",
                         "P50 {:+.2f} / {:+.2f} ms, P99 {:+.2f} / {:+.2f} ms".format(
                             e["first"][0], e["steady"][0], e["first"][1], e["steady"][1])))
        rows.append(("  of which the simulator's own lateness (first token vs plan)",
                     "P50 {:.3f} ms, P99 {:.3f} ms".format(*e["sim"])))
        rows.append(("  client lag the run reports (its own timer lateness)",
                     "P50 {:.3f} ms, P99 {:.3f} ms".format(*e["lag"])))
        rows.append(("  CPU per streamed request: turnbench / simulator (user + sys over requests)",
                     f"{e['cpu_us']:.0f} / {e['sim_cpu_us']:.0f} µs"))
    # The same 1,000 level with a new connection per request: what connecting costs.
    c = ttft_error(exe, 1000, 12000 // q, ttft_ms, keep_alive=False)
    rows.append(("  the 1,000 level with a new connection per request: CPU turnbench / simulator",
                 f"{c['cpu_us']:.0f} / {c['sim_cpu_us']:.0f} µs ({c['cpu_us'] / e['cpu_us']:.2f}x keep-alive's), "
                 "TTFT error P50 {:+.2f} ms, P99 {:+.2f} ms".format(*c["all"])))

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

    users = 10000 // q
    rss_users, reqs, cpu_us = users_memory(exe, users, 3)
    rows.append((f"peak memory, {users:,} users held at once (think 5-10 s, keep-alive; {reqs:,} requests)",
                 f"{rss_users / 2**20:.1f} MiB ({cpu_us:.0f} µs CPU per request)"))

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
