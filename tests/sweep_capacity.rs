//! Load levels: `sweep` and `capacity` against simulators on loopback, the simulator's
//! finite capacity (`max_num_seqs`), the open loop, and their bad input.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use turnbench::config::schema::SCHEMA;
use turnbench::sim::{Capacity, Faults, SimConfig};

/// The tests of this file measure latencies against thresholds: they take turns, so
/// that none of them loads the machine while another measures.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn args(head: &[&str], tail: &[&str]) -> Vec<String> {
    strings(head).into_iter().chain(strings(tail)).collect()
}

/// A simulator that serves `max_num_seqs` requests at once, each for about 100 ms
/// (5 ms to the first token, then 9 tokens 10 ms apart), with nothing to prefill so
/// every request takes the same time.
fn finite_sim(max_num_seqs: u32) -> SimConfig {
    SimConfig {
        base_ttft_ms: 5.0,
        prefill_us_per_token: 0.0,
        itl_ms: 10.0,
        output_tokens: 10,
        capacity: Capacity {
            max_num_seqs: Some(max_num_seqs),
            prefill_tokens_per_s: None,
        },
        ..SimConfig::default()
    }
}

/// Users who think 90–110 ms. With about 100 ms of service, 4 slots serve about
/// 4 × (100 + 100) ÷ 100 = 8 of them before requests queue; with one user more most
/// requests wait a good part of a service time. 12 turns keep the first turns (which
/// all arrive together, so some queue) under 5% of requests.
const WORKLOAD: &[&str] = &[
    "--turns",
    "12",
    "--warmup",
    "0",
    "--seed",
    "5",
    "--min-delay",
    "0.09",
    "--max-delay",
    "0.11",
    "--documents",
    "synthetic:200",
];
const THINK_MS: f64 = 100.0;

/// `run --users U` with the workload and a threshold; (status word, results.json).
async fn run_level(url: &str, users: usize, threshold: f64) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let (u, t) = (users.to_string(), format!("{threshold:.2}"));
    let head = [
        "run",
        url,
        "--users",
        &u,
        "--ttft-p95-threshold-ms",
        &t,
        "--output-dir",
        dir.path().to_str().unwrap(),
    ];
    let out = turnbench(&args(&head, WORKLOAD), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, data) = user_info(&stdout(&out));
    let status = data["litemaas_benchmark_status"]
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    (status, json(&dir.path().join("results.json")))
}

/// Attempts of the timing claims below: on a machine that others load, a burst of load
/// during the calibration or a probe moves the capacity found, for that attempt. A
/// search that is wrong (no queue, a wait left out of TTFT, a bad bisection) is wrong
/// every time.
const ATTEMPTS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_against_max_num_seqs_agrees_with_the_queueing_estimate() {
    let _turn = SERIAL.lock().await;
    let n = 4;
    let sim = start_sim(finite_sim(n)).await;
    let mut failures = Vec::new();
    for attempt in 1..=ATTEMPTS {
        match capacity_attempt(&sim.url(), n).await {
            Ok(()) => return,
            Err(why) => {
                eprintln!("attempt {attempt} of {ATTEMPTS}: {why}");
                failures.push(why);
            }
        }
    }
    panic!("{}", failures.join("\n\n"));
}

/// One search, checked: structure by assertions, timing claims as the `Err`.
async fn capacity_attempt(url: &str, n: u32) -> Result<(), String> {
    // Calibration at n users, where nothing can queue: the service time, and the TTFT
    // P95 this machine gives without queueing. The threshold is half a service time
    // above the latter, so the jitter of a loaded machine does not decide the test.
    let (_, calibration) = run_level(url, n as usize, 1_000.0).await;
    let stats = &calibration["stats"];
    let service_ms = stats["e2e"]["p50_ms"].as_f64().unwrap();
    let threshold = stats["ttft"]["p95_ms"].as_f64().unwrap() + service_ms / 2.0;
    let estimate = n as f64 * (service_ms + THINK_MS) / service_ms;

    let dir = tempfile::tempdir().unwrap();
    let t = format!("{threshold:.2}");
    let head = [
        "capacity",
        url,
        "--users",
        "8",
        "--max-users",
        "16",
        "--ttft-p95-threshold-ms",
        &t,
        "--output-dir",
        dir.path().to_str().unwrap(),
    ];
    let out = turnbench(&args(&head, WORKLOAD), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let result = json(&dir.path().join("capacity.json"));
    let cap = &result["capacity"];
    let max_users = cap["max_users"].as_u64().unwrap() as usize;
    let fail = cap["smallest_fail"].as_u64().unwrap() as usize;
    assert_eq!(fail, max_users + 1, "bisected to one user: {cap}");
    let probes: Vec<u64> = serde_json::from_value(cap["probes"].clone()).unwrap();
    assert_eq!(probes[0], 8, "from --users: {text}");
    let (_, data) = user_info(&text);
    assert_eq!(data["litemaas_benchmark_max_users"], max_users.to_string());
    assert_eq!(
        data["litemaas_benchmark_smallest_fail_users"],
        fail.to_string()
    );
    if max_users > 0 {
        assert_eq!(
            data["litemaas_benchmark_status"], "PASS ✓",
            "the figures at capacity"
        );
    }
    assert!(text.contains(&format!(
        "Capacity: max_users = {max_users} (largest PASS {}, smallest FAIL {fail})",
        if max_users > 0 {
            max_users.to_string()
        } else {
            "none".into()
        }
    )));
    for p in &probes {
        assert!(dir.path().join(format!("users-{p}/results.json")).is_file());
    }
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(page.contains(&format!("Capacity: {max_users} users")));

    let context = format!(
        "capacity {max_users} (bracket {max_users}..{fail}), estimate {estimate:.2} \
         (service {service_ms:.1} ms, threshold {threshold:.1} ms)\n{text}"
    );
    // Within one bisection step of the bracket the search ended with.
    if !(max_users as f64 - 1.0..=fail as f64 + 1.0).contains(&estimate) {
        return Err(format!("the estimate lies outside the bracket: {context}"));
    }
    // A run at the capacity passes; one at twice it does not (the search's own probe
    // there when it made one: the same run with the same settings).
    let (at, _) = run_level(url, max_users, threshold).await;
    if at != "PASS" {
        return Err(format!("a run at {max_users} users gave {at}: {context}"));
    }
    let twice = 2 * max_users;
    let probed = result["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["users"] == twice as u64)
        .map(|l| l["status"].as_str().unwrap().to_ascii_uppercase());
    let status = match probed {
        Some(s) => s,
        None => run_level(url, twice, threshold).await.0,
    };
    if status == "PASS" {
        return Err(format!("a run at {twice} users passed: {context}"));
    }
    Ok(())
}

async fn sweep(url: &str, dir: &Path, extra: &[&str]) -> std::process::Output {
    let a = args(
        &[
            "sweep",
            url,
            "--users",
            "1..4x2",
            "--warmup",
            "1",
            "--min-delay",
            "0",
            "--max-delay",
            "0.02",
            "--seed",
            "11",
            "--documents",
            "synthetic:4k",
            "--max-tokens",
            "6",
            "--output-dir",
            dir.to_str().unwrap(),
        ],
        extra,
    );
    // Turns come from the environment: sweep takes every run setting from every layer.
    turnbench(&a, &[("TURNBENCH_TURNS", "2")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_runs_each_level_with_its_own_salt_and_charts_them_against_users() {
    let _turn = SERIAL.lock().await;
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = sweep(&sim.url(), dir.path(), &["--print-results"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("SWEEP SUMMARY"));
    // The results block is the largest passing level's, readable by `turnbench report`.
    let log = dir.path().join("sweep.log");
    std::fs::write(&log, &text).unwrap();
    let html = dir.path().join("from-log.html");
    let rendered = turnbench(
        &[
            "report",
            log.to_str().unwrap(),
            "-o",
            html.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(rendered.status.code(), Some(0), "{}", stderr(&rendered));
    assert_eq!(
        std::fs::read_to_string(&html).unwrap(),
        std::fs::read_to_string(dir.path().join("users-4/report.html")).unwrap()
    );
    let csv = std::fs::read_to_string(dir.path().join("users-4/requests.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 4 * 2,
        "a row per request of the level"
    );
    for col in [
        "users", "req/s", "TTFT P50", "TTFT P95", "TTFT P99", "ITL P50", "E2E P95", "speedup",
        "errors", "verdict",
    ] {
        assert!(text.contains(col), "table column {col}");
    }
    assert!(text.contains("Largest passing level: 4 users"), "{text}");

    let (msg, data) = user_info(&text);
    assert!(msg.contains("Largest passing level: 4 users"));
    assert_eq!(data["litemaas_benchmark_sweep_levels"], "1,2,4");
    assert_eq!(data["litemaas_benchmark_largest_passing_users"], "4");
    for u in [1, 2, 4] {
        assert_eq!(
            data[&format!("litemaas_benchmark_users_{u}_status")],
            "PASS ✓"
        );
    }
    for key in DATA_KEYS {
        assert!(
            data.contains_key(&format!("litemaas_benchmark_{key}")),
            "{key}"
        );
    }

    let result = json(&dir.path().join("sweep.json"));
    let levels = result["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 3);
    let mut salts = Vec::new();
    for (level, users) in levels.iter().zip([1u64, 2, 4]) {
        assert_eq!(level["users"], users);
        let run = json(&dir.path().join(format!("users-{users}/results.json")));
        let meta = &run["run"]["meta"];
        assert_eq!(meta["salt"], level["salt"]);
        assert_eq!(meta["seed"], 11, "one seed for every level");
        assert_eq!(meta["workload"]["conversations"], users);
        assert_eq!(meta["workload"]["parallel"], users);
        assert_eq!(meta["workload"]["turns"], 2, "from TURNBENCH_TURNS");
        assert_eq!(meta["workload"]["max_tokens"], 6, "from --max-tokens");
        // Independent levels: no first turn found the cache an earlier level filled.
        assert_eq!(level["stats"]["warm_first_turns"], 0, "level {users}");
        salts.push(level["salt"].as_str().unwrap().to_string());
    }
    salts.sort();
    salts.dedup();
    assert_eq!(salts.len(), 3, "a salt per level: {salts:?}");

    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    for id in turnbench::sweep::report::CHART_IDS {
        let at = page
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("chart {id} missing"));
        assert!(
            page[at..].starts_with(&format!("id=\"{id}\" class=\"chart\"><svg")),
            "{id} holds an SVG"
        );
    }
    assert!(page.contains("href=\"users-2/report.html\""));
    for needle in ["<script", "src=\"http", "href=\"http"] {
        assert!(
            !page.contains(needle),
            "report refers outside itself: {needle}"
        );
    }

    // The control: without a salt, the second level's first turn is the first
    // level's, and the cache serves it.
    let dir = tempfile::tempdir().unwrap();
    let out = sweep(&sim.url(), dir.path(), &["--salt", "none"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let result = json(&dir.path().join("sweep.json"));
    assert!(
        result["levels"][1]["stats"]["warm_first_turns"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_whose_error_rate_exceeds_the_maximum_ends_the_search_upward() {
    let _turn = SERIAL.lock().await;
    let sim = start_sim(SimConfig {
        faults: Faults {
            error_rate: 0.5,
            ..Faults::default()
        },
        ..fast_sim()
    })
    .await;
    let small = [
        "--turns",
        "2",
        "--warmup",
        "0",
        "--min-delay",
        "0",
        "--max-delay",
        "0.01",
        "--documents",
        "synthetic:1k",
    ];
    let out = turnbench(
        &args(&["sweep", &sim.url(), "--users", "1,2,4"], &small),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let (_, data) = user_info(&text);
    assert!(text.contains("Levels not run: 2, 4"), "{text}");
    let ended = &data["litemaas_benchmark_sweep_ended"];
    assert!(
        ended.contains("at 1 users the error rate was 50.00% > 5.00%"),
        "{ended}"
    );
    assert_eq!(data["litemaas_benchmark_largest_passing_users"], "N/A");

    let out = turnbench(
        &args(
            &[
                "capacity",
                &sim.url(),
                "--max-users",
                "8",
                "--users",
                "4",
                "--strict",
            ],
            &small,
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "--strict: no level passes");
    let text = stdout(&out);
    let (_, data) = user_info(&text);
    assert_eq!(data["litemaas_benchmark_max_users"], "0");
    assert_eq!(
        data["litemaas_benchmark_capacity_probes"], "3",
        "4, then 2, then 1"
    );
    assert!(
        data["litemaas_benchmark_capacity_ended"].contains("at 4 users the error rate was"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_arrivals_do_not_wait_for_a_slow_server() {
    let _turn = SERIAL.lock().await;
    // One slot of 100 ms: 10 requests/s at most, against 20 conversations/s offered.
    let sim = start_sim(finite_sim(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = turnbench(
        &args(
            &["run", &sim.url()],
            &[
                "--arrival-rate",
                "20",
                "--duration",
                "1.5",
                "--turns",
                "1",
                "--warmup",
                "0",
                "--seed",
                "3",
                "--documents",
                "synthetic:200",
                "--output-dir",
                dir.path().to_str().unwrap(),
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Open loop: 20 new conversations/s for 1.5 s"),
        "{text}"
    );
    let results = json(&dir.path().join("results.json"));
    let planned = results["run"]["open_loop"]["planned"].as_u64().unwrap();
    assert!((15..=45).contains(&planned), "{planned}");
    assert_eq!(
        results["stats"]["total_requests"], planned,
        "every arrival ran"
    );

    // No coordinated omission: each request started at its arrival, within the
    // 1.5 s window, though the server needed twice as long to answer them all.
    let csv = std::fs::read_to_string(dir.path().join("requests.csv")).unwrap();
    let starts: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    let last = starts.iter().cloned().fold(0.0, f64::max);
    assert!(last < 1_600.0, "last request started at {last} ms");
    assert!(results["stats"]["total_time_s"].as_f64().unwrap() > 2.0);
    // The queue wait is part of TTFT.
    let ttft_max = results["stats"]["ttft"]["max_ms"].as_f64().unwrap();
    assert!(ttft_max > 500.0, "TTFT max {ttft_max} ms");

    let (_, data) = user_info(&text);
    let offered: f64 = data["litemaas_benchmark_offered_conversations_per_second"]
        .parse()
        .unwrap();
    let achieved: f64 = data["litemaas_benchmark_achieved_conversations_per_second"]
        .parse()
        .unwrap();
    assert!(
        achieved < 0.75 * offered,
        "achieved {achieved} vs offered {offered}"
    );
    assert!(achieved > 6.0, "about the server's 10/s: {achieved}");
    let peak: u64 = data["litemaas_benchmark_peak_active_conversations"]
        .parse()
        .unwrap();
    assert!(peak >= 5, "conversations pile up: {peak}");
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(page.contains("id=\"chart-active-conversations\" class=\"chart\"><svg"));
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_levels_are_one_line_errors_with_exit_2_and_nothing_sent() {
    let (url, hits) = counting_listener().await;
    // (arguments, environment, what the error says)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["sweep", "--users", ""],
            &[],
            "--users=\"\": expected a number of users, a list",
        ),
        (
            &["sweep", "--users", "0,4"],
            &[],
            "expected levels of at least 1 user",
        ),
        (
            &["sweep", "--users", "8..2"],
            &[],
            "from a lower to a higher level",
        ),
        (&["sweep"], &[], "turnbench sweep needs --users"),
        (
            &["sweep", "--users", "1,2", "--arrival-rate", "2"],
            &[],
            "cannot go together",
        ),
        (
            &["capacity", "--max-users", "0"],
            &[],
            "--max-users=\"0\": expected a whole number from 1",
        ),
        (&["capacity"], &[], "turnbench capacity needs --max-users"),
        (
            &["capacity", "--max-users", "4", "--users", "8"],
            &[],
            "at most --max-users (4)",
        ),
        (
            &["capacity", "--max-users", "4", "--users", "1,2"],
            &[],
            "expected one number of users",
        ),
        (
            &["capacity", "--max-users", "4", "--shard-count", "2"],
            &[],
            "runs in one process",
        ),
        (
            &["run", "--arrival-rate", "2", "--users", "4"],
            &[],
            "--arrival-rate=\"2\" and --users=\"4\" cannot go together",
        ),
        (&["run", "--users", "1,4"], &[], "for turnbench sweep"),
        (
            &["run"],
            &[("TURNBENCH_USERS", "0")],
            "TURNBENCH_USERS=\"0\": expected levels of at least 1 user",
        ),
        (&["run", "--duration", "10"], &[], "give --arrival-rate too"),
        (
            &["run", "--arrival-rate", "0"],
            &[],
            "--arrival-rate=\"0\": expected a number",
        ),
    ];
    for (a, env, needle) in cases {
        let mut full = strings(&a[..1]);
        full.push(url.clone());
        full.extend(strings(&a[1..]));
        let out = turnbench(&full, env).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{a:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{a:?}: one line: {err}");
        assert!(err.starts_with("turnbench: error: "), "{err}");
        assert!(err.contains(needle), "{a:?}: {err:?} lacks {needle:?}");
        assert!(stdout(&out).is_empty(), "{a:?}: no report");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing may reach the endpoint"
    );
    for bad in [["--max-num-seqs", "0"], ["--prefill-tokens-per-s", "-1"]] {
        let out = turnbench(&args(&["sim", "--port", "0"], &bad), &[]).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_and_capacity_take_every_run_setting() {
    let _turn = SERIAL.lock().await;
    for command in ["run", "sweep", "capacity"] {
        let out = turnbench(&[command, "--help"], &[]).await;
        assert_eq!(out.status.code(), Some(0));
        let help = stdout(&out);
        for s in SCHEMA {
            assert!(
                help.contains(&format!("--{} ", s.flag()))
                    || help.contains(&format!("--{}\n", s.flag())),
                "{command} --help lacks --{}",
                s.flag()
            );
            assert!(
                help.contains(&s.env()),
                "{command} --help lacks {}",
                s.env()
            );
        }
    }
    // --users on run: conversations = parallel = U, whatever they were set to.
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = vec!["run".to_string(), sim.url()];
    a.extend(small(&[
        "--users",
        "3",
        "--output-dir",
        dir.path().to_str().unwrap(),
    ]));
    let out = turnbench(&a, &[("TURNBENCH_CONVERSATIONS", "9")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let w = &json(&dir.path().join("results.json"))["run"]["meta"]["workload"];
    assert_eq!(
        (w["conversations"].as_u64(), w["parallel"].as_u64()),
        (Some(3), Some(3))
    );
}
