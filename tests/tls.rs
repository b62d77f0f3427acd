//! TLS with a private CA generated here: --ca-cert makes it work, without it the
//! certificate error is clear (exit 3), and --insecure works and says so.

mod common;
#[path = "common/tls.rs"]
mod tls_support;

use common::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tls_support::{make_pki, server_config, Pki};

/// The simulator behind TLS on a free loopback port; returns its https base URL.
async fn tls_sim(pki: &Pki) -> String {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(pki));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = turnbench::sim::router(fast_sim());
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                // A client that rejects our certificate ends the handshake: not our error.
                let Ok(tls) = acceptor.accept(sock).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    format!("https://localhost:{port}/v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_works_with_ca_cert_fails_clearly_without_and_insecure_says_so() {
    let pki = make_pki();
    let url = tls_sim(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let run = |extra: Vec<String>| {
        let mut args = vec!["run".to_string(), url.clone()];
        args.extend(small(&[]));
        args.extend(extra);
        async move { turnbench(&args, &[]).await }
    };

    let out = run(vec!["--ca-cert".into(), ca.to_str().unwrap().into()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, data) = user_info(&stdout(&out));
    assert_eq!(data["litemaas_benchmark_failed_requests"], "0");
    assert!(!stdout(&out).contains("verification: OFF"));

    let out = run(vec![]).await;
    assert_eq!(out.status.code(), Some(3));
    let text = stdout(&out);
    assert!(text.contains("ENDPOINT NOT USABLE: cannot reach"), "{text}");
    assert!(
        text.to_lowercase().contains("certificate"),
        "the error names the certificate: {text}"
    );

    let out = run(vec!["--insecure".into()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("TLS certificate verification: OFF (--insecure)"));
    assert_eq!(
        user_info(&stdout(&out)).1["litemaas_benchmark_failed_requests"],
        "0"
    );
}
