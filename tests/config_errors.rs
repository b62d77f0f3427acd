//! Bad configuration: a one-line error naming what the user wrote, exit 2, and nothing
//! sent to the endpoint.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

/// A server that only counts connections: any request reaching it is a failure here.
async fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_sock, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, hits)
}

async fn expect_config_error(args: &[&str], env: &[(&str, &str)], needles: &[&str]) {
    let (url, hits) = counting_listener().await;
    let mut full = vec!["run".to_string(), url];
    full.extend(args.iter().map(|s| s.to_string()));
    let out = turnbench(&full, env).await;
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "args {args:?} env {env:?}: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    for n in needles {
        assert!(err.contains(n), "error {err:?} lacks {n:?}");
    }
    assert!(stdout(&out).is_empty(), "no report for a bad configuration");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing may reach the endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_environment_value_names_the_variable() {
    expect_config_error(
        &[],
        &[("TURNBENCH_PARALLEL", "abc")],
        &["TURNBENCH_PARALLEL", "abc"],
    )
    .await;
    expect_config_error(
        &[],
        &[("TURNBENCH_PARALLEL", "0")],
        &["TURNBENCH_PARALLEL", "from 1"],
    )
    .await;
    expect_config_error(
        &[],
        &[("TURNBENCH_MAX_ERROR_RATE", "5")],
        &["TURNBENCH_MAX_ERROR_RATE", "fraction"],
    )
    .await;
    expect_config_error(
        &[],
        &[("TURNBENCH_MIN_DELAY", "3"), ("TURNBENCH_MAX_DELAY", "1")],
        &["TURNBENCH_MAX_DELAY", "TURNBENCH_MIN_DELAY"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_flag_names_the_flag() {
    expect_config_error(&["--parallel", "0"], &[], &["--parallel", "\"0\""]).await;
    expect_config_error(&["--parallel", "x"], &[], &["--parallel", "'x'"]).await;
    expect_config_error(&["--max-delay", "-1"], &[], &["--max-delay"]).await;
    expect_config_error(
        &["--documents", "/no/such/dir"],
        &[],
        &["--documents", "/no/such/dir"],
    )
    .await;
    expect_config_error(
        &["--user-info-prefix", "bad-prefix"],
        &[],
        &["--user-info-prefix"],
    )
    .await;
    expect_config_error(&["--ca-cert", "/no/such.pem"], &[], &["--ca-cert"]).await;
    // The flag beats the environment, so its error is the flag's.
    expect_config_error(&["--turns", "0"], &[("TURNBENCH_TURNS", "5")], &["--turns"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_file_names_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("bench.yaml");
    std::fs::write(&yaml, "conversations: 3\nparallel: 0\n").unwrap();
    expect_config_error(
        &["--config", yaml.to_str().unwrap()],
        &[],
        &["parallel (in ", "bench.yaml"],
    )
    .await;

    let toml = dir.path().join("bench.toml");
    std::fs::write(&toml, "paralel = 3\n").unwrap();
    expect_config_error(
        &["--config", toml.to_str().unwrap()],
        &[],
        &["unknown setting `paralel`", "parallel"],
    )
    .await;

    let typed = dir.path().join("typed.yaml");
    std::fs::write(&typed, "turns: many\n").unwrap();
    expect_config_error(
        &["--config", typed.to_str().unwrap()],
        &[],
        &["turns", "typed.yaml"],
    )
    .await;

    expect_config_error(
        &["--config", "/no/such/file.yaml"],
        &[],
        &["--config", "no such file"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_apply_in_order_file_then_environment_then_flags() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("bench.yaml");
    std::fs::write(
        &yaml,
        format!("url: {}\nconversations: 2\nturns: 2\nwarmup: 0\nmin_delay: 0\nmax_delay: 0\nseed: 11\n", sim.url()),
    )
    .unwrap();
    let args: Vec<String> = ["run", "--config", yaml.to_str().unwrap(), "--turns", "3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = turnbench(
        &args,
        &[("TURNBENCH_CONVERSATIONS", "3"), ("TURNBENCH_TURNS", "1")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // 3 conversations (environment over file) x 3 turns (flag over environment)
    let (_, data) = user_info(&stdout(&out));
    assert_eq!(data["litemaas_benchmark_total_requests"], "9");
    assert_eq!(data["litemaas_benchmark_seed"], "11");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_variable_is_a_warning_naming_the_closest_one() {
    let sim = start_sim(fast_sim()).await;
    let out = turnbench(
        &[&["run".to_string(), sim.url()][..], &small(&[])].concat(),
        &[("TURNBENCH_PARALEL", "3")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("TURNBENCH_PARALEL") && err.contains("did you mean TURNBENCH_PARALLEL"),
        "{err}"
    );
}
