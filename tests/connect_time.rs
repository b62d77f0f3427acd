//! Connect time stays out of TTFT: a TLS terminator in front of the simulator holds
//! every handshake for 300 ms; requests.csv must show that in connect_ms, and the TTFT
//! of later turns must still be the simulator's own.

mod common;
#[path = "common/tls.rs"]
mod tls_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use turnbench::sim::SimConfig;

const HANDSHAKE_DELAY: Duration = Duration::from_millis(300);
const SIM_TTFT_MS: f64 = 40.0;

/// Terminate TLS on a free loopback port and pass the bytes on to `upstream`, after
/// holding each handshake (between the ClientHello and the answer) for `delay`.
async fn slow_tls_terminator(pki: &tls_support::Pki, upstream: SocketAddr, delay: Duration) -> u16 {
    let config = tls_support::server_config(pki);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                let acceptor = tokio_rustls::LazyConfigAcceptor::new(
                    rustls::server::Acceptor::default(),
                    sock,
                );
                let Ok(start) = acceptor.await else { return };
                tokio::time::sleep(delay).await;
                let Ok(mut tls) = start.into_stream(config).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = up.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    port
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tls_handshake_shows_in_connect_ms_and_not_in_ttft() {
    // A TTFT that does not depend on the prompt, so every turn's is known.
    let sim = start_sim(SimConfig {
        base_ttft_ms: SIM_TTFT_MS,
        prefill_us_per_token: 0.0,
        ..fast_sim()
    })
    .await;
    let sim_addr: SocketAddr = sim
        .url()
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .parse()
        .unwrap();
    let pki = tls_support::make_pki();
    let port = slow_tls_terminator(&pki, sim_addr, HANDSHAKE_DELAY).await;

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let out_dir = dir.path().join("out");
    let url = format!("https://localhost:{port}/v1");
    let args = strings(&[
        "run",
        &url,
        "--ca-cert",
        ca.to_str().unwrap(),
        "--output-dir",
        out_dir.to_str().unwrap(),
        "--conversations",
        "2",
        "--turns",
        "4",
        "--parallel",
        "2",
        "--warmup",
        "0",
        "--min-delay",
        "0",
        "--max-delay",
        "0.02",
        "--seed",
        "5",
    ]);
    let out = turnbench(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let csv = std::fs::read_to_string(out_dir.join("requests.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col: HashMap<&str, usize> = header.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 8, "{csv}");
    let num = |r: &[&str], name: &str| -> f64 {
        r[col[name]]
            .parse()
            .unwrap_or_else(|_| panic!("{name} of {r:?}"))
    };

    // Without keep-alive every request opens its own connection and pays the delay.
    for r in &rows {
        assert_eq!(r[col["ok"]], "true", "{r:?}");
        let connect = num(r, "connect_ms");
        assert!(connect >= 280.0, "connect_ms {connect} in {r:?}");
        // start_ms is taken once the connection is ready, like every other offset: a
        // request made at the phase's start begins only after its handshake.
        let start = num(r, "start_ms");
        assert!(
            start >= connect,
            "start_ms {start} before its connection was ready"
        );
    }
    // The median of later turns (robust to a stray slow one on a busy machine) is the
    // simulator's TTFT plus a little transport: neither the 300 ms handshake added in,
    // nor subtracted twice.
    let later: Vec<f64> = rows
        .iter()
        .filter(|r| num(r, "turn") > 1.0)
        .map(|r| num(r, "ttft_ms"))
        .collect();
    assert_eq!(later.len(), 6);
    let m = median(later);
    assert!(
        (SIM_TTFT_MS - 2.0..=SIM_TTFT_MS + 20.0).contains(&m),
        "later-turn TTFT median {m} ms, the simulator's is {SIM_TTFT_MS} ms"
    );
}
