//! Shared helpers of the integration tests: run the real binary, start servers on
//! free loopback ports, read the user-info block back.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::Router;
use turnbench::sim::{self, RunningSim, SimConfig};

/// Seconds any one turnbench process may take in a test before it counts as hung.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(90);

/// A fast simulator: small timings so tests finish quickly, a real prefix cache.
pub fn fast_sim() -> SimConfig {
    SimConfig {
        base_ttft_ms: 5.0,
        prefill_us_per_token: 20.0,
        itl_ms: 1.0,
        output_tokens: 8,
        ..SimConfig::default()
    }
}

pub async fn start_sim(cfg: SimConfig) -> RunningSim {
    sim::start(cfg, ([127, 0, 0, 1], 0).into())
        .await
        .expect("bind loopback")
}

/// Arguments of a small, quick workload.
pub fn small(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--conversations",
        "4",
        "--turns",
        "3",
        "--parallel",
        "2",
        "--warmup",
        "1",
        "--min-delay",
        "0",
        "--max-delay",
        "0.02",
        "--seed",
        "7",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Run `turnbench <args>` with a clean TURNBENCH_*/OPENAI_* environment plus `env`.
pub async fn turnbench<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnbench"));
    cmd.args(args).kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("TURNBENCH_") || k.starts_with("OPENAI_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(PROCESS_LIMIT, cmd.output())
        .await
        .expect("turnbench finished in time")
        .expect("turnbench started")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The user-info block parsed as YAML: (msg, data).
pub fn user_info(out: &str) -> (String, BTreeMap<String, String>) {
    let block = turnbench::report::extract_user_info(out).expect("user-info block present");
    let doc: serde_yaml::Value = serde_yaml::from_str(&block).expect("block is valid YAML");
    let info = &doc["agnosticd_user_info"];
    let msg = info["msg"].as_str().expect("msg is a string").to_string();
    let data = info["data"]
        .as_mapping()
        .expect("data is a mapping")
        .iter()
        .map(|(k, v)| {
            let k = k.as_str().expect("string key").to_string();
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("value of {k} is a string"))
                .to_string();
            (k, v)
        })
        .collect();
    (msg, data)
}

pub const DATA_KEYS: &[&str] = &[
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "speedup_ratio",
    "status",
    "cache_status",
    "total_time_seconds",
    "total_requests",
    "failed_requests",
    "requests_per_second",
    "p95_threshold_ms",
    "p95_threshold",
    "speedup_threshold",
    "model",
    "seed",
    "salt",
    "warm_first_turns",
    "warnings",
    "api",
    "tool_round_trips",
    "history",
    "server_prefix_cache_hit_rate",
    "server_ttft_p50_ms",
    "queue_time_mean_ms",
    "overhead_ms",
    "kv_cache_usage_max",
    "preemptions",
    "reuse_efficiency",
];

/// The simulator behind a recorder of the body of every chat or Responses request.
pub async fn recording_sim(cfg: SimConfig) -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let app = turnbench::sim::router(cfg).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let seen = seen.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                if parts.uri.path().ends_with("/chat/completions")
                    || parts.uri.path().ends_with("/responses")
                {
                    seen.lock().unwrap().push(bytes.clone());
                }
                next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
                    .await
            }
        },
    ));
    (serve(app).await, bodies)
}

pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}
