//! A run split into shards (pods of an Indexed Job) and merged back: the merge is
//! exact, the shards' conversations partition the plan, and inputs that are not
//! shards of one run are refused.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;

const SHARDS: u32 = 3;
const CONVERSATIONS: u32 = 7;
const TURNS: u32 = 3;

fn shard_args(url: &str, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = strings(&[
        "run",
        url,
        "--conversations",
        "7",
        "--turns",
        "3",
        "--parallel",
        "3",
        "--warmup",
        "1",
        "--min-delay",
        "0",
        "--max-delay",
        "0.02",
        "--seed",
        "5",
        "--salt",
        "shard-test",
        "--shard-count",
        "3",
        "--print-results",
        "--output-dir",
        dir.to_str().unwrap(),
    ]);
    v.extend(strings(extra));
    v
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// (conversation, ttft_ms) of every successful request in a requests.csv.
fn csv_rows(path: &Path) -> Vec<(u32, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap();
    let (conv, ttft) = (col("conversation"), col("ttft_ms"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[conv].parse().unwrap(), f[ttft].parse().unwrap())
        })
        .collect()
}

/// The value at quantile `q` as HdrHistogram defines it, from raw values.
fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_merge_into_exactly_the_whole_run() {
    let sim = start_sim(fast_sim()).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    let mut logs = Vec::new();
    for i in 0..SHARDS {
        let dir = tmp.path().join(format!("shard-{i}"));
        // Shard 1 takes its index from Kubernetes' variable, as in an Indexed Job.
        let index = i.to_string();
        let (extra, env): (Vec<&str>, Vec<(&str, &str)>) = if i == 1 {
            (vec![], vec![("JOB_COMPLETION_INDEX", index.as_str())])
        } else {
            (vec!["--shard-index", index.as_str()], vec![])
        };
        let out = turnbench(&shard_args(&sim.url(), &dir, &extra), &env).await;
        assert_eq!(out.status.code(), Some(0), "shard {i}: {}", stderr(&out));
        assert!(stdout(&out).contains(&format!("Shards: 1 of 3 ({i})")));
        let log = tmp.path().join(format!("pod-{i}.log"));
        // A pod's log: stderr and stdout together, as Kubernetes keeps them.
        std::fs::write(&log, format!("{}{}", stderr(&out), stdout(&out))).unwrap();
        logs.push(log);
        dirs.push(dir);
    }

    // The shards' conversations are disjoint and together the whole plan.
    let mut seen = BTreeSet::new();
    for (i, dir) in dirs.iter().enumerate() {
        let convs: BTreeSet<u32> = csv_rows(&dir.join("requests.csv"))
            .iter()
            .map(|r| r.0)
            .collect();
        assert!(
            convs.iter().all(|c| c % SHARDS == i as u32),
            "shard {i}: {convs:?}"
        );
        assert!(seen.is_disjoint(&convs));
        seen.extend(convs);
    }
    assert_eq!(seen, (0..CONVERSATIONS).collect());

    // Merge two results.json files and one pod log.
    let merged_dir = tmp.path().join("merged");
    let inputs: Vec<PathBuf> = vec![
        dirs[2].join("results.json"),
        logs[0].clone(),
        dirs[1].join("results.json"),
    ];
    let mut args = strings(&["merge"]);
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(strings(&["--output-dir", merged_dir.to_str().unwrap()]));
    let out = turnbench(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, data) = user_info(&stdout(&out));
    assert_eq!(
        data["litemaas_benchmark_total_requests"],
        (CONVERSATIONS * TURNS).to_string()
    );
    assert!(!stdout(&out).contains("PARTIAL"), "{}", stdout(&out));

    let merged = json(&merged_dir.join("results.json"));
    let shards: Vec<serde_json::Value> =
        dirs.iter().map(|d| json(&d.join("results.json"))).collect();
    assert_eq!(
        merged["run"]["meta"]["shards"],
        serde_json::json!([0, 1, 2])
    );
    // Every count and exact sum is the sum of the shards'.
    for (key, v) in merged["run"]["counts"].as_object().unwrap() {
        let sum: u64 = shards
            .iter()
            .map(|s| s["run"]["counts"][key].as_u64().unwrap())
            .sum();
        assert_eq!(v.as_u64().unwrap(), sum, "counts.{key}");
    }
    // Every histogram holds every shard's samples.
    for (name, h) in merged["run"]["histograms"].as_object().unwrap() {
        let len = |v: &serde_json::Value| {
            turnbench::state::Hist::from_base64(v.as_str().unwrap())
                .unwrap()
                .len()
        };
        let sum: u64 = shards
            .iter()
            .map(|s| len(&s["run"]["histograms"][name]))
            .sum();
        assert_eq!(len(h), sum, "histogram {name}");
    }
    // The merged percentiles are those of all requests together, to histogram precision.
    let rows = csv_rows(&merged_dir.join("requests.csv"));
    assert_eq!(
        rows.len() as u32,
        CONVERSATIONS * TURNS,
        "rows concatenated"
    );
    let mut ttft: Vec<f64> = rows.iter().map(|r| r.1).collect();
    ttft.sort_by(f64::total_cmp);
    for (q, key) in [(0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")] {
        let exact = exact_quantile(&ttft, q);
        let got = merged["stats"]["ttft"][key].as_f64().unwrap();
        assert!(
            (got - exact).abs() <= exact * 0.001 + 0.001,
            "{key}: merged {got} vs {exact} from the rows"
        );
    }
    assert!(merged_dir.join("report.html").is_file());

    // The merged result reads back and renders as any run's.
    let page = tmp.path().join("again.html");
    let out = turnbench(
        &strings(&[
            "report",
            merged_dir.join("results.json").to_str().unwrap(),
            "-o",
            page.to_str().unwrap(),
        ]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&page).unwrap(),
        std::fs::read(merged_dir.join("report.html")).unwrap()
    );

    // A missing shard: a warning, and the report says partial.
    let out = turnbench(
        &strings(&[
            "merge",
            logs[0].to_str().unwrap(),
            logs[2].to_str().unwrap(),
        ]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("PARTIAL RESULTS: 2 of 3 shards merged (1 missing)"),
        "{text}"
    );
    assert!(text.contains("missing_shards:"), "{text}");

    // The same shard twice is refused.
    let out = turnbench(
        &strings(&[
            "merge",
            logs[0].to_str().unwrap(),
            dirs[0].join("results.json").to_str().unwrap(),
        ]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("shard 0 appears twice"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());

    // A shard of another run (another seed) is refused with the reason.
    let other = tmp.path().join("other");
    let mut args = shard_args(&sim.url(), &other, &["--shard-index", "1"]);
    let seed = args.iter().position(|a| a == "--seed").unwrap();
    args[seed + 1] = "6".into();
    let out = turnbench(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0));
    let out = turnbench(
        &strings(&[
            "merge",
            logs[0].to_str().unwrap(),
            other.join("results.json").to_str().unwrap(),
        ]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cannot be merged") && err.contains("seeds differ (5 and 6)"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.contains("error")).count(),
        1,
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_shard_setting_or_start_time_is_a_config_error() {
    for (args, env, needle) in [
        (
            vec!["--shard-count", "3", "--shard-index", "3"],
            vec![],
            "--shard-index=\"3\"",
        ),
        (
            vec!["--shard-count", "2"],
            vec![("JOB_COMPLETION_INDEX", "x")],
            "JOB_COMPLETION_INDEX=\"x\"",
        ),
        (vec!["--start-at", "tomorrow"], vec![], "RFC 3339"),
    ] {
        let mut full = strings(&["run", "http://127.0.0.1:9/v1"]);
        full.extend(strings(&args));
        let out = turnbench(&full, &env).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_measured_phase_waits_for_start_at_after_the_warm_up() {
    let sim = start_sim(fast_sim()).await;
    let start = std::time::SystemTime::now() + std::time::Duration::from_millis(1500);
    let at = turnbench::state::Wall::from(start).rfc3339();
    let dir = tempfile::tempdir().unwrap();
    let out = turnbench(
        &[
            &["run".to_string(), sim.url()][..],
            &small(&[
                "--start-at",
                &at,
                "--output-dir",
                dir.path().to_str().unwrap(),
            ]),
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let results = json(&dir.path().join("results.json"));
    let started: jiff::Timestamp = results["run"]["started_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let asked: jiff::Timestamp = at.parse().unwrap();
    assert!(started >= asked, "measured from {started}, asked {at}");
    // A time long past starts at once, with a warning.
    let out = turnbench(
        &[
            &["run".to_string(), sim.url()][..],
            &small(&["--start-at", "2020-01-01T00:00:00Z"]),
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("passed") && stderr(&out).contains("starting now"),
        "{}",
        stderr(&out)
    );
}
