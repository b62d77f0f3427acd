//! The errors a newcomer meets first say what to do: each a cause and a suggestion,
//! against real servers on 127.0.0.1 (and a name under `.invalid`, which turnbench
//! refuses to look up, so no query leaves the machine). Every case is exit 3.

mod common;
#[path = "common/tls.rs"]
mod tls_support;

use std::process::Output;

use common::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

/// `turnbench run URL` with a quick workload; `extra` after it.
async fn run(url: &str, extra: &[&str]) -> Output {
    let mut args = strings(&["run", url, "--timeout", "20", "--connect-timeout", "5"]);
    args.extend(small(extra));
    turnbench(&args, &[]).await
}

/// The line that says why the endpoint cannot be used, after exit 3.
fn unusable(out: &Output) -> String {
    let text = stdout(out);
    assert_eq!(out.status.code(), Some(3), "{text}\n{}", stderr(out));
    text.lines()
        .find_map(|l| l.strip_prefix("ENDPOINT NOT USABLE: "))
        .unwrap_or_else(|| panic!("no ENDPOINT NOT USABLE line: {text}"))
        .to_string()
}

/// Serve `app` on a free loopback port; returns the port.
async fn serve(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_without_v1_gets_the_url_that_answers() {
    let sim = start_sim(fast_sim()).await;
    let root = sim.url().trim_end_matches("/v1").to_string();

    let why = unusable(&run(&root, &[]).await);
    assert_eq!(
        why,
        format!(
            "GET {root}/models did not answer with a model list; the base URL usually ends in /v1: did you mean {root}/v1?"
        )
    );

    // With a model given the list is not needed: the 404 of chat completions says it.
    let why = unusable(&run(&root, &["--model", "turnbench-sim"]).await);
    assert!(
        why.contains(&format!(
            "no chat completions at {root}/chat/completions (path not found)"
        )) && why.ends_with(&format!("did you mean {root}/v1?")),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_path_prefix_gets_the_prefix_that_serves_chat() {
    // Like older Llama Stack: its own API at /v1 (a model list without OpenAI ids, no
    // chat completions), the OpenAI-compatible one under /v1/openai/v1.
    let app = axum::Router::new()
        .route(
            "/v1/models",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({"data": [{"identifier": "turnbench-sim"}]}))
            }),
        )
        .nest("/v1/openai", turnbench::sim::router(fast_sim()));
    let port = serve(app).await;
    let base = format!("http://127.0.0.1:{port}/v1");
    let right = format!("{base}/openai/v1");

    let why = unusable(&run(&base, &["--model", "turnbench-sim"]).await);
    assert!(
        why.starts_with("every warm-up request failed: HTTP 404"),
        "{why}"
    );
    assert!(why.contains("(path not found)"), "{why}");
    assert!(
        why.ends_with(&format!("{right}/models answers: did you mean {right}?")),
        "{why}"
    );

    let why = unusable(&run(&base, &[]).await);
    assert_eq!(
        why,
        format!("{base}/models lists no model; {right}/models answers: did you mean {right}?")
    );

    // And the suggestion works.
    let out = run(&right, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_http_port_says_use_http() {
    let sim = start_sim(fast_sim()).await;
    let http = sim.url();
    let https = http.replacen("http://", "https://", 1);
    let why = unusable(&run(&https, &[]).await);
    let at = http.trim_start_matches("http://").trim_end_matches("/v1");
    assert_eq!(
        why,
        format!("cannot reach {https}: {at} speaks plain HTTP, not TLS: use {http}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_a_tls_port_says_use_https() {
    let pki = tls_support::make_pki();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_support::server_config(&pki));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = turnbench::sim::router(fast_sim());
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // Plain HTTP fails the handshake: rustls closes, as TLS servers do.
                let Ok(tls) = acceptor.accept(sock).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    let http = format!("http://127.0.0.1:{port}/v1");
    let why = unusable(&run(&http, &[]).await);
    assert_eq!(
        why,
        format!(
            "cannot reach {http}: 127.0.0.1:{port} expects TLS, not plain HTTP: use https://127.0.0.1:{port}/v1"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_says_nothing_listens() {
    // A port that was free a moment ago and is closed now.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/v1");
    let why = unusable(&run(&url, &[]).await);
    assert_eq!(
        why,
        format!(
            "cannot reach {url}: nothing listens on 127.0.0.1:{port} (connection refused): check the host and port, and that the server is up"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_says_dns() {
    // `.invalid` never resolves (RFC 6761); turnbench answers it without a query, and
    // no proxy may be asked either. The timeouts above bound the run regardless.
    let url = "http://turnbench-test.invalid:8000/v1";
    let mut args = strings(&["run", url, "--timeout", "10", "--connect-timeout", "5"]);
    args.extend(small(&[]));
    let out = turnbench(&args, &[("NO_PROXY", "*"), ("no_proxy", "*")]).await;
    let why = unusable(&out);
    assert_eq!(
        why,
        format!(
            "cannot reach {url}: the host name turnbench-test.invalid does not resolve (DNS): check its spelling, or use an IP address"
        )
    );
}
