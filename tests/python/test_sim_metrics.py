"""The simulator's GET /metrics read by prometheus_client's own parser, the library vLLM
renders its page with: the same family names, types, labels and buckets as vLLM V1, and
values that mean what vLLM's mean (prefix-cache queries and hits in prompt tokens)."""

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("TURNBENCH_BIN", str(ROOT / "target" / "release" / "turnbench"))


@pytest.fixture(scope="module")
def sim():
    proc = subprocess.Popen([BIN, "sim", "--port", "0", "--itl-ms", "1", "--output-tokens", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().split("listening on ")[1].split()[0]
        yield url[: -len("/v1")]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def chat(base, text):
    body = json.dumps({"model": "turnbench-sim", "messages": [{"role": "user", "content": text}],
                       "max_tokens": 4, "stream": False}).encode()
    req = urllib.request.Request(base + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["usage"]


def families(base):
    with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return {f.name: f for f in text_string_to_metric_families(r.read().decode())}


def value(fam, sample_name):
    return sum(s.value for s in fam.samples if s.name == sample_name)


def test_the_page_parses_with_prometheus_client_under_vllms_names_and_types(sim):
    prompt = "a prompt long enough to span several cache blocks " * 20
    first = chat(sim, prompt)
    second = chat(sim, prompt)
    fams = families(sim)
    expected = {
        "vllm:num_requests_running": "gauge",
        "vllm:num_requests_waiting": "gauge",
        "vllm:kv_cache_usage_perc": "gauge",
        "vllm:prefix_cache_queries": "counter",
        "vllm:prefix_cache_hits": "counter",
        "vllm:num_preemptions": "counter",
        "vllm:prompt_tokens": "counter",
        "vllm:generation_tokens": "counter",
        "vllm:time_to_first_token_seconds": "histogram",
        "vllm:e2e_request_latency_seconds": "histogram",
        "vllm:request_queue_time_seconds": "histogram",
        "vllm:request_prefill_time_seconds": "histogram",
        "vllm:request_decode_time_seconds": "histogram",
        "vllm:cache_config_info": "gauge",
    }
    for name, kind in expected.items():
        assert name in fams, name
        assert fams[name].type == kind, (name, fams[name].type)
    queries = fams["vllm:prefix_cache_queries"]
    assert {s.name for s in queries.samples} >= {"vllm:prefix_cache_queries_total"}
    assert all(s.labels["model_name"] == "turnbench-sim" and s.labels["engine"] == "0" for s in queries.samples)
    # Queries and hits are prompt tokens, as the usage of the same requests counts them.
    assert value(queries, "vllm:prefix_cache_queries_total") == first["prompt_tokens"] + second["prompt_tokens"]
    hits = value(fams["vllm:prefix_cache_hits"], "vllm:prefix_cache_hits_total")
    assert hits == second["prompt_tokens_details"]["cached_tokens"] > 0
    ttft = fams["vllm:time_to_first_token_seconds"]
    assert value(ttft, "vllm:time_to_first_token_seconds_count") == 2
    les = [s.labels["le"] for s in ttft.samples if s.name.endswith("_bucket")]
    assert les[0] == "0.001" and les[-1] == "+Inf" and len(les) == 23
    info = fams["vllm:cache_config_info"].samples[0].labels
    assert int(info["block_size"]) == 16 and int(info["num_gpu_blocks"]) > 0
    assert value(fams["vllm:kv_cache_usage_perc"], "vllm:kv_cache_usage_perc") == 0.0
