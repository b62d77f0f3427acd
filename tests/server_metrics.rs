//! Server metrics end to end: the real binary scraping the simulator's `/metrics`, and
//! a fixture serving vLLM-format pages for two pods whose counters advance by known
//! amounts (one of them restarting), all on 127.0.0.1.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use common::*;
use serde_json::Value;

const MODEL: &str = "turnbench-sim";
const METRICS_KEY: &str = "sk-metrics-fixture-secret";

fn results(dir: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_simulator_the_server_hit_rate_is_the_client_cached_share_and_the_breakdown_adds_up(
) {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("http://{}/metrics", sim.addr);
    let args = [
        &["run".to_string(), sim.url()][..],
        &small(&["--metrics-url", &metrics, "--metrics-interval", "0.1"]),
        &strings(&["--output-dir", dir.path().to_str().unwrap()]),
    ]
    .concat();
    let out = turnbench(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("TTFT breakdown: of "), "{text}");

    let v = results(dir.path());
    let m = &v["stats"]["server"]["metrics"];
    assert_eq!(m["pods_with_data"], 1, "{m}");
    let (server, client) = (
        num(&m["hit_rate_percent"]),
        num(&m["client_cached_percent"]),
    );
    assert!(server > 30.0, "later turns hit the cache: {server}");
    assert!(
        (server - client).abs() <= 2.0,
        "server {server}% vs client {client}%"
    );
    assert_eq!(
        num(&m["requests_finished"]),
        12.0,
        "the 12 measured requests"
    );

    // Client TTFT = network and gateway + queue + prefill (+ other server time), where
    // the part outside the server is within the time the network measurably took.
    let client_ttft = num(&m["client_ttft_mean_ms"]);
    let queue = num(&m["queue"]["mean_ms"]);
    let prefill = num(&m["prefill"]["mean_ms"]);
    let overhead = num(&m["overhead_ms"]);
    let other = num(&m["other_server_ms"]);
    assert_eq!(queue, 0.0, "the simulator queues nothing");
    assert!(
        other.abs() < 0.05,
        "TTFT = queue + prefill on the simulator: {other}"
    );
    assert!(
        (client_ttft - (overhead + queue + prefill + other)).abs() < 1e-6,
        "the parts add up"
    );
    let ttfb = num(&v["stats"]["ttfb"]["mean_ms"]);
    let lag = num(&v["stats"]["client_lag"]["p99_ms"]);
    let network = ttfb + lag.max(3.0);
    assert!(
        (0.0..=network).contains(&overhead),
        "client TTFT {client_ttft} ms − server TTFT: {overhead} ms, network {network} ms"
    );

    let (_, data) = user_info(&text);
    let key = |k: &str| data[&format!("litemaas_benchmark_{k}")].clone();
    assert_eq!(key("server_prefix_cache_hit_rate"), format!("{server:.2}"));
    assert_eq!(key("overhead_ms"), format!("{overhead:.2}"));
    assert_eq!(key("queue_time_mean_ms"), "0.00");
    assert_eq!(key("preemptions"), "0");
    assert!(key("server_ttft_p50_ms").parse::<f64>().unwrap() > 0.0);
    assert!(key("kv_cache_usage_max").parse::<f64>().unwrap() >= 0.0);
    // Every later turn reused its previous turn's prompt and reply, but for the last
    // partial block.
    assert!(key("reuse_efficiency").parse::<f64>().unwrap() >= 99.0);
    assert!(!v["verdict"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["id"].as_str().unwrap().starts_with("metrics_")));

    // The state reads back: the report of the file has the same server figures.
    let again = turnbench(
        &[
            "report".to_string(),
            dir.path().join("results.json").display().to_string(),
            "-o".into(),
            dir.path().join("again.html").display().to_string(),
        ],
        &[],
    )
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let page = std::fs::read_to_string(dir.path().join("again.html")).unwrap();
    assert!(page.contains("id=\"ttft-breakdown\""));
    for id in [
        "chart-kv-usage-over-time",
        "chart-waiting-over-time",
        "chart-reuse-by-turn",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id}");
    }
}

/// Two pods' `/metrics`, each scrape advancing their counters by known steps; pod B
/// restarts right after its first scrape (its counters fall and `_created` changes).
#[derive(Default)]
struct Pods {
    a: AtomicU32,
    b: AtomicU32,
}

/// A page as vLLM renders it, for `model` plus another model on the same pod.
fn page(queries: u64, hits: u64, preempt: u64, ttft_n: u64, created: f64, waiting: u64) -> String {
    let mut out = String::new();
    for (model, scale) in [(MODEL, 1), ("other-model", 1000)] {
        let l = format!("engine=\"0\",model_name=\"{model}\"");
        for (name, v) in [
            ("vllm:prefix_cache_queries", queries * scale),
            ("vllm:prefix_cache_hits", hits * scale),
            ("vllm:num_preemptions", preempt * scale),
            ("vllm:prompt_tokens", queries * scale),
        ] {
            out.push_str(&format!(
                "# HELP {name}_total x\n# TYPE {name}_total counter\n{name}_total{{{l}}} {}.0\n\
                 # HELP {name}_created x\n# TYPE {name}_created gauge\n{name}_created{{{l}}} {created:e}\n",
                v
            ));
        }
        let n = ttft_n * scale;
        out.push_str(&format!(
            "# HELP vllm:time_to_first_token_seconds x\n# TYPE vllm:time_to_first_token_seconds histogram\n\
             vllm:time_to_first_token_seconds_bucket{{engine=\"0\",le=\"0.04\",model_name=\"{model}\"}} 0.0\n\
             vllm:time_to_first_token_seconds_bucket{{engine=\"0\",le=\"0.06\",model_name=\"{model}\"}} {n}.0\n\
             vllm:time_to_first_token_seconds_bucket{{engine=\"0\",le=\"+Inf\",model_name=\"{model}\"}} {n}.0\n\
             vllm:time_to_first_token_seconds_count{{{l}}} {n}.0\n\
             vllm:time_to_first_token_seconds_sum{{{l}}} {}\n",
            n as f64 * 0.05
        ));
        out.push_str(&format!(
            "# HELP vllm:num_requests_waiting x\n# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{{{l}}} {waiting}.0\n"
        ));
    }
    out
}

fn authorized(h: &HeaderMap) -> bool {
    h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {METRICS_KEY}"))
}

async fn pod_a(State(p): State<Arc<Pods>>, h: HeaderMap) -> Response {
    if !authorized(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let n = u64::from(p.a.fetch_add(1, Ordering::SeqCst));
    page(
        50_000 + 1000 * n,
        30_000 + 600 * n,
        3 + n,
        10 + 2 * n,
        1.7e9,
        n % 3,
    )
    .into_response()
}

async fn pod_b(State(p): State<Arc<Pods>>, h: HeaderMap) -> Response {
    if !authorized(&h) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let n = u64::from(p.b.fetch_add(1, Ordering::SeqCst));
    if n == 0 {
        page(90_000, 80_000, 40, 400, 1.7e9, 0).into_response()
    } else {
        // Restarted: counting again from zero, under a new _created time.
        page(500 * n, 100 * n, n, n, 1.7e9 + 3600.0, 1).into_response()
    }
}

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_give_exact_deltas_per_pod_and_summed_and_a_restart_is_reported_not_negative() {
    let sim = start_sim(fast_sim()).await;
    let pods = Arc::new(Pods::default());
    let fixture = serve(
        Router::new()
            .route("/a/metrics", get(pod_a))
            .route("/b/metrics", get(pod_b))
            .with_state(pods.clone()),
    )
    .await;
    let (url_a, url_b) = (
        format!("http://{fixture}/a/metrics"),
        format!("http://{fixture}/b/metrics"),
    );
    let dir = tempfile::tempdir().unwrap();
    let args = [
        &["run".to_string(), sim.url()][..],
        &small(&[
            "--metrics-url",
            &url_a,
            "--metrics-url",
            &url_b,
            "--metrics-interval",
            "0.1",
        ]),
        &strings(&["--output-dir", dir.path().to_str().unwrap()]),
    ]
    .concat();
    let out = turnbench(&args, &[("TURNBENCH_METRICS_API_KEY", METRICS_KEY)]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let (ka, kb) = (
        f64::from(pods.a.load(Ordering::SeqCst)),
        f64::from(pods.b.load(Ordering::SeqCst)),
    );
    assert!(
        ka >= 2.0 && kb >= 2.0,
        "scraped before and after: {ka} {kb}"
    );

    let v = results(dir.path());
    let run = &v["run"]["server"]["pods"];
    let counter = |url: &str, k: &str| num(&run[url]["counters"][k]);
    // Pod A: the other model's samples left out, the steps exactly.
    assert_eq!(counter(&url_a, "prefix_cache_queries"), 1000.0 * (ka - 1.0));
    assert_eq!(counter(&url_a, "prefix_cache_hits"), 600.0 * (ka - 1.0));
    assert_eq!(counter(&url_a, "preemptions"), ka - 1.0);
    assert_eq!(run[url_a.as_str()]["resets"], 0);
    // Pod B: 90,000 queries before its restart never turn into a negative delta; after
    // it, the counters count from zero.
    assert_eq!(run[url_b.as_str()]["resets"], 1);
    assert_eq!(counter(&url_b, "prefix_cache_queries"), 500.0 * (kb - 1.0));
    assert_eq!(counter(&url_b, "prefix_cache_hits"), 100.0 * (kb - 1.0));
    for url in [&url_a, &url_b] {
        for (k, c) in run[url.as_str()]["counters"].as_object().unwrap() {
            assert!(num(c) >= 0.0, "{url} {k} {c}");
        }
    }
    let ttft_a = &run[url_a.as_str()]["histograms"]["ttft"];
    assert_eq!(num(&ttft_a["count"]), 2.0 * (ka - 1.0));

    // Summed over the pods.
    let m = &v["stats"]["server"]["metrics"];
    let queries = 1000.0 * (ka - 1.0) + 500.0 * (kb - 1.0);
    let hits = 600.0 * (ka - 1.0) + 100.0 * (kb - 1.0);
    assert_eq!(num(&m["prefix_cache_queries"]), queries);
    assert_eq!(num(&m["prefix_cache_hits"]), hits);
    assert_eq!(num(&m["preemptions"]), (ka - 1.0) + (kb - 1.0));
    assert_eq!(num(&m["ttft"]["count"]), 2.0 * (ka - 1.0) + (kb - 1.0));
    assert!((num(&m["ttft"]["mean_ms"]) - 50.0).abs() < 1e-9);
    assert!((num(&m["hit_rate_percent"]) - 100.0 * hits / queries).abs() < 1e-9);

    let text = stdout(&out);
    let (_, data) = user_info(&text);
    assert_eq!(
        data["litemaas_benchmark_server_prefix_cache_hit_rate"],
        format!("{:.2}", 100.0 * hits / queries)
    );
    assert_eq!(
        data["litemaas_benchmark_preemptions"],
        format!("{}", (ka - 1.0) + (kb - 1.0))
    );
    assert_eq!(data["litemaas_benchmark_server_ttft_p50_ms"], "50.00");
    let warnings = v["verdict"]["warnings"].as_array().unwrap();
    let reset = warnings
        .iter()
        .find(|w| w["id"] == "counter_reset")
        .expect("the restart is reported");
    assert_eq!(reset["count"], 1);
    assert!(text.contains("counter_reset: "), "{text}");
    // The key reached the fixture (it answers 401 without) and no report.
    assert!(!warnings.iter().any(|w| w["id"] == "metrics_unavailable"));
    let saved = std::fs::read_to_string(dir.path().join("results.json")).unwrap();
    for shown in [&text, &stderr(&out), &saved] {
        assert!(!shown.contains(METRICS_KEY));
    }
    assert_eq!(v["run"]["meta"]["settings"]["metrics_api_key_set"], true);
}

async fn html_page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html")],
        "<html><body><h1>Welcome</h1></body></html>",
    )
        .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_unauthorized_or_non_prometheus_metrics_are_a_warning_and_the_figures_na() {
    let sim = start_sim(fast_sim()).await;
    let fixture = serve(
        Router::new()
            .route("/html", get(html_page))
            .route("/a/metrics", get(pod_a))
            .with_state(Arc::new(Pods::default())),
    )
    .await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let urls = format!("http://{closed}/metrics,http://{fixture}/html,http://{fixture}/a/metrics");
    let out = turnbench(
        &[&["run".to_string(), sim.url()][..], &small(&[])].concat(),
        &[("TURNBENCH_METRICS_URL", &urls)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let (msg, data) = user_info(&text);
    for k in [
        "server_prefix_cache_hit_rate",
        "server_ttft_p50_ms",
        "queue_time_mean_ms",
        "overhead_ms",
        "kv_cache_usage_max",
        "preemptions",
    ] {
        assert_eq!(data[&format!("litemaas_benchmark_{k}")], "N/A", "{k}");
    }
    // Reuse efficiency comes from usage, not from the metrics.
    assert!(
        data["litemaas_benchmark_reuse_efficiency"]
            .parse::<f64>()
            .unwrap()
            >= 99.0
    );
    assert!(msg.contains("metrics_unavailable: 6 of 6 scrapes"), "{msg}");
    for why in ["cannot reach it", "not a Prometheus text page", "HTTP 401"] {
        assert!(text.contains(why), "{why}: {text}");
    }
    assert!(text.contains("Server metrics: N/A (no pod's metrics could be read"));
}

/// The simulator behind a "gateway" that reports its overhead in two headers.
async fn gateway() -> std::net::SocketAddr {
    async fn stamp(mut r: Response) -> Response {
        let h = r.headers_mut();
        h.insert("x-litellm-overhead-duration-ms", "12.5".parse().unwrap());
        h.insert("x-my-overhead", "3".parse().unwrap());
        r
    }
    let app = turnbench::sim::router(fast_sim()).layer(axum::middleware::map_response(stamp));
    serve(app).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateways_overhead_header_is_recorded_per_request_litellms_by_default() {
    let addr = gateway().await;
    let url = format!("http://{addr}/v1");
    for (flags, mean) in [
        (vec![], "12.50"),
        (vec!["--overhead-header", "X-My-Overhead"], "3.00"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let args = [
            &["run".to_string(), url.clone()][..],
            &small(&flags),
            &strings(&["--output-dir", dir.path().to_str().unwrap()]),
        ]
        .concat();
        let out = turnbench(&args, &[]).await;
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("Gateway-reported overhead (")
                && text.contains(&format!("mean {mean} ms")),
            "{text}"
        );
        let g = &results(dir.path())["stats"]["server"]["gateway_overhead"];
        assert_eq!(g["count"], 12, "every measured request: {g}");
        assert_eq!(format!("{:.2}", num(&g["mean_ms"])), mean);
    }
}
