//! report.html from a run, the same page from saved results or from a Job's log, and
//! `turnbench report --serve` over loopback.

mod common;

use common::*;
use turnbench::report::html::CHART_IDS;
use turnbench::sim::{Faults, SimConfig};

async fn run_to_dir(extra: &[&str]) -> (tempfile::TempDir, String) {
    let sim = start_sim(SimConfig {
        faults: Faults {
            error_rate: 0.25,
            ..Faults::default()
        },
        ..fast_sim()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["run".to_string(), sim.url()];
    args.extend(small(&[
        "--output-dir",
        dir.path().to_str().unwrap(),
        "--max-error-rate",
        "0.5",
    ]));
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = turnbench(&args, &[("TURNBENCH_API_KEY", "sk-html-secret-1")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    (dir, stdout(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_writes_a_self_contained_report_that_report_renders_again_identically() {
    let (dir, _) = run_to_dir(&[]).await;
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    for id in CHART_IDS {
        let at = page
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("chart {id} missing"));
        assert!(
            page[at..].starts_with(&format!("id=\"{id}\" class=\"chart\"><svg")),
            "{id} holds an SVG"
        );
    }
    assert!(
        page.contains("PASS ✓") || page.contains("WARN ⚠"),
        "verdict banner"
    );
    assert!(page.contains("http_status"), "the error list");
    assert!(!page.contains("sk-html-secret-1"), "never the key");
    // Self-contained: nothing to fetch when opened.
    for needle in ["<script", "src=\"http", "href=\"http", "@import", "url("] {
        assert!(
            !page.contains(needle),
            "report refers outside itself: {needle}"
        );
    }

    let again = dir.path().join("again.html");
    let out = turnbench(
        &[
            "report",
            dir.path().join("results.json").to_str().unwrap(),
            "-o",
            again.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        page,
        "the same page from saved results"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_printed_with_print_results_is_enough_to_render_the_report() {
    let (dir, log) = run_to_dir(&["--print-results"]).await;
    // The results block comes before the user-info block, which stays last.
    let results_at = log
        .find(turnbench::report::RESULTS_BEGIN)
        .expect("results block");
    assert!(results_at < log.find(turnbench::report::BEGIN_MARKER).unwrap());
    assert!(log.trim_end().ends_with(turnbench::report::END_MARKER));
    let log_file = dir.path().join("job.log");
    std::fs::write(&log_file, format!("some stderr line\n{log}")).unwrap();
    let from_log = dir.path().join("from-log.html");
    let out = turnbench(
        &[
            "report",
            log_file.to_str().unwrap(),
            "-o",
            from_log.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&from_log).unwrap(),
        std::fs::read_to_string(dir.path().join("report.html")).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("x.txt");
    std::fs::write(&bad, "hello").unwrap();
    for input in [bad.to_str().unwrap(), "/no/such/results.json"] {
        let out = turnbench(
            &[
                "report",
                input,
                "-o",
                dir.path().join("o.html").to_str().unwrap(),
            ],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        assert!(!dir.path().join("o.html").exists(), "nothing half-written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_serve_answers_over_loopback_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let (dir, _) = run_to_dir(&[]).await;
    let results = dir.path().join("results.json");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnbench"))
        .args([
            "report",
            results.to_str().unwrap(),
            "--serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(PROCESS_LIMIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = first.split(" on ").nth(1).unwrap().trim().to_string();
    let http = reqwest::Client::new();
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let body = page.text().await.unwrap();
    assert!(CHART_IDS.iter().all(|id| body.contains(id)));
    let json: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{url}results.json"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["stats"]["total_requests"], 12);
    // Read-only: nothing but GET.
    let post = http.post(&url).body("x").send().await.unwrap();
    assert_eq!(post.status(), 405);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(PROCESS_LIMIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
