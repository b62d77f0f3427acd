#!/usr/bin/env python3
"""A run split over N local shard processes, merged, against the same run in one process.

Every setup sends the same plan (seed, salt, C conversations x T turns, no think time)
to its own `turnbench sim` on 127.0.0.1, with the same total number of requests in
flight: one process with --parallel K, or N processes with --shard-index I
--shard-count N --parallel K/N, all held until one --start-at and printing their
results into their logs (--print-results), as the pods of an Indexed Job do; then
`turnbench merge` of those logs. Prints one table: requests/s and wall time of the
merged result, client CPU (user + sys of every turnbench process) per request, the
spread of the shards' measured starts and the cost of the merge, with ratios to the
single process of the same round (the median of the rounds' ratios).

    python3 benches/shards.py              # builds the release binary unless TURNBENCH_BIN is set
    python3 benches/shards.py --quick      # fewer requests and rounds, for a first look

A benchmark, not a test: every process here shares one machine, so N shards cannot
add cores as N pods would; compare rows as ratios within one run. Only loopback is used.
"""

import argparse
import datetime as dt
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Time for N processes to start, ask /v1/models and be waiting before the start time.
START_LEAD_S = 2.0


def binary() -> str:
    env_bin = os.environ.get("TURNBENCH_BIN")
    if env_bin:
        return env_bin
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return str(ROOT / "target" / "release" / "turnbench")


class Sim:
    """`turnbench sim` on a free port, answering at once (no TTFT, no decode time), so
    the figures are the client's and the machine's, not a model's."""

    def __init__(self, exe):
        self.proc = subprocess.Popen(
            [exe, "sim", "--port", "0", "--base-ttft-ms", "0", "--prefill-us-per-token", "0",
             "--itl-ms", "0", "--output-tokens", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        self.url = line.split("listening on ")[1].split()[0]

    def stop(self) -> float:
        """Stop it; its CPU seconds."""
        self.proc.send_signal(signal.SIGTERM)
        _, _, ru = os.wait4(self.proc.pid, 0)
        return ru.ru_utime + ru.ru_stime


def rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def measured_start(log: str) -> dt.datetime:
    m = re.search(r"^Measured: (\S+) to ", log, re.M)
    if not m:
        sys.exit(f"no 'Measured:' line in a shard's log:\n{log[-3000:]}")
    return dt.datetime.fromisoformat(m[1].replace("Z", "+00:00"))


def one_setup(exe, shards, conversations, turns, in_flight, keep_alive):
    """One run of the plan over `shards` processes (0: one process, no shard flags).
    Returns the merged figures and the costs."""
    n = max(shards, 1)
    sim = Sim(exe)
    start = time.time() + START_LEAD_S
    common = ["run", sim.url, "--conversations", str(conversations), "--turns", str(turns),
              "--parallel", str(in_flight // n), "--min-delay", "0", "--max-delay", "0",
              "--warmup", "0", "--documents", "synthetic:512", "--max-tokens", "4",
              "--seed", "1", "--salt", "shards-bench", "--start-at", rfc3339(start), "--print-results"]
    if keep_alive:
        common.append("--keep-alive")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        procs = []
        for i in range(n):
            args = [exe, *common]
            if shards:
                args += ["--shard-index", str(i), "--shard-count", str(shards)]
            log = open(tmp / f"pod-{i}.log", "w")
            procs.append((subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT), log))
        cpu = 0.0
        for p, log in procs:
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            log.close()
            cpu += ru.ru_utime + ru.ru_stime
            if p.returncode != 0:
                sys.exit(f"turnbench exited {p.returncode}:\n{(tmp / 'pod-0.log').read_text()[-3000:]}")
        sim_cpu = sim.stop()
        logs = [tmp / f"pod-{i}.log" for i in range(n)]
        starts = [measured_start(p.read_text()) for p in logs]
        spread_ms = (max(starts) - min(starts)).total_seconds() * 1000
        lateness_ms = (min(starts) - dt.datetime.fromtimestamp(start, dt.timezone.utc)).total_seconds() * 1000
        # The single process's log goes through merge too: the same path to a report.
        out = tmp / "merged"
        t0 = time.monotonic()
        merge = subprocess.Popen([exe, "merge", "--output-dir", str(out), *map(str, logs)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, ru = os.wait4(merge.pid, 0)
        merge_wall = time.monotonic() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"turnbench merge failed: {merge.stderr.read()}")
        merge_cpu = ru.ru_utime + ru.ru_stime
        stats = json.loads((out / "results.json").read_text())["stats"]
    reqs = stats["total_requests"]
    if reqs != conversations * turns or stats["failed_requests"]:
        sys.exit(f"expected {conversations * turns} requests, none failed: got {reqs}, {stats['failed_requests']} failed")
    return {
        "requests": reqs,
        "rps": stats["requests_per_second"],
        "wall_s": stats["total_time_s"],
        "cpu_ms": cpu / reqs * 1000,
        "sim_cpu_ms": sim_cpu / reqs * 1000,
        "spread_ms": spread_ms,
        "late_ms": lateness_ms,
        "merge_ms": merge_wall * 1000,
        "merge_cpu_ms": merge_cpu * 1000,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    ap.add_argument("--shards", default="1,2,4", help="shard counts to compare with one process (default 1,2,4)")
    ap.add_argument("--in-flight", type=int, default=64, help="requests in flight, all processes together")
    ap.add_argument("--keep-alive", action="store_true", help="reuse connections (default: one per request, as the Job)")
    ap.add_argument("--rounds", type=int, help="rounds of every setup (default 5, 1 with --quick)")
    a = ap.parse_args()
    exe = binary()
    counts = [int(x) for x in a.shards.split(",")]
    turns = 10
    conversations = 800 if a.quick else 3200
    rounds = a.rounds or (1 if a.quick else 5)
    if any(a.in_flight % n for n in counts):
        sys.exit("--in-flight must divide by every shard count")
    setups = [0, *counts]
    results = {s: [] for s in setups}
    # Rounds interleave the setups, so a slow patch of the machine spreads over all.
    for _ in range(rounds):
        for s in setups:
            results[s].append(one_setup(exe, s, conversations, turns, a.in_flight, a.keep_alive))

    def med(s, key):
        return statistics.median(r[key] for r in results[s])

    def ratio(s, key):
        # Each round against the single process of the same round, then the median: a
        # slow patch of the machine moves both sides of a ratio.
        return statistics.median(r[key] / b[key] for r, b in zip(results[s], results[0]))

    conn = "keep-alive" if a.keep_alive else "new connection per request"
    print(f"{conversations * turns:,} streamed requests per run ({conversations:,} conversations x {turns} turns), "
          f"{a.in_flight} in flight in all, {conn}; median of {rounds} round(s)")
    head = ["setup", "req/s", "ratio", "wall s", "client CPU ms/req", "ratio", "sim CPU ms/req",
            "start spread ms", "late ms", "merge ms (CPU)"]
    rows = []
    for s in setups:
        label = "1 process, whole plan" if s == 0 else f"{s} shard{'s' if s > 1 else ''} + merge"
        rows.append([
            label,
            f"{med(s, 'rps'):,.0f}",
            f"{ratio(s, 'rps'):.2f}",
            f"{med(s, 'wall_s'):.2f}",
            f"{med(s, 'cpu_ms'):.3f}",
            f"{ratio(s, 'cpu_ms'):.2f}",
            f"{med(s, 'sim_cpu_ms'):.3f}",
            f"{med(s, 'spread_ms'):.1f}",
            f"{med(s, 'late_ms'):.1f}",
            f"{med(s, 'merge_ms'):.0f} ({med(s, 'merge_cpu_ms'):.0f})",
        ])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(fmt.format(*head))
    print(fmt.format(*("-" * w for w in widths)))
    for r in rows:
        print(fmt.format(*r))


if __name__ == "__main__":
    main()
