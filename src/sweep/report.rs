//! The report of a sweep or a capacity search, a function of its levels: the table,
//! the user-info block, sweep.json or capacity.json, and report.html with the four
//! charts against users. Each level's own files are its run's (results.json,
//! report.html, requests.csv) under `users-<U>/`.

use std::io::{self, Write};
use std::path::Path;

use serde_json::json;

use super::capacity::Search;
pub use super::charts::CHART_IDS;
use super::{charts, Ended, Level, Levels};
use crate::report::html::{escape, STYLE};
use crate::report::{yaml_plain, yaml_quote, BEGIN_MARKER, END_MARKER};
use crate::state::Target;

/// What the levels were for.
pub enum Kind {
    /// `sweep`: these levels were asked for.
    Sweep { planned: Vec<usize> },
    /// `capacity`: the search as it ended.
    Capacity { search: Search },
}

pub struct Report {
    pub kind: Kind,
    /// The summary, as printed (rulers included).
    pub lines: Vec<String>,
    /// The user-info data, keys with their prefix.
    pub data: Vec<(String, String)>,
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "N/A".into())
}

/// The table of levels: one row each, latencies in ms.
fn table(levels: &[&Level], numbered: bool) -> Vec<String> {
    let mut out = Vec::new();
    let head = format!(
        "{}{:>6} {:>8} {:>9} {:>9} {:>9} {:>8} {:>9} {:>8} {:>13}  {:<7} {:<12} {}",
        if numbered { "probe " } else { "" },
        "users",
        "req/s",
        "TTFT P50",
        "TTFT P95",
        "TTFT P99",
        "ITL P50",
        "E2E P95",
        "speedup",
        "errors",
        "verdict",
        "cache",
        "passes"
    );
    out.push(head);
    for (i, l) in levels.iter().enumerate() {
        let s = &l.report.stats;
        let v = &l.report.verdict;
        out.push(format!(
            "{}{:>6} {:>8.2} {:>9} {:>9} {:>9} {:>8} {:>9} {:>8} {:>13}  {:<7} {:<12} {}",
            if numbered {
                format!("{:>5} ", i + 1)
            } else {
                String::new()
            },
            l.users,
            s.requests_per_second,
            opt(s.ttft.map(|x| x.p50_ms)),
            opt(s.ttft.map(|x| x.p95_ms)),
            opt(s.ttft.map(|x| x.p99_ms)),
            opt(s.itl.map(|x| x.p50_ms)),
            opt(s.e2e.map(|x| x.p95_ms)),
            s.speedup_ratio
                .map(|x| format!("{x:.2}x"))
                .unwrap_or_else(|| "N/A".into()),
            format!("{} ({:.1}%)", s.failed_requests, s.error_rate * 100.0),
            v.status.label(),
            v.cache_status.label(),
            if l.passed { "yes" } else { "no" },
        ));
    }
    out
}

/// The lines every report over levels opens with.
fn header(title: &str, levels: &Levels) -> Vec<String> {
    let rule = "=".repeat(80);
    let base = levels.settings();
    let w = &base.workload;
    let t = &base.thresholds;
    let first = levels.levels.first().map(|l| &l.report.state.meta);
    let mut out = vec![rule.clone(), title.to_string(), rule];
    if let Some(meta) = first {
        match &meta.target {
            Target::Simulator { url } => {
                out.push("TARGET: the built-in simulator (no URL given) — these figures describe the simulator, not a real endpoint".into());
                out.push(format!("Endpoint: {url} (simulator)"));
            }
            Target::Endpoint { url } => out.push(format!("Endpoint: {url}")),
        }
        out.push(format!("Model: {}", meta.model.as_deref().unwrap_or("N/A")));
    }
    out.push(format!(
        "Seed: {} (every level); salt: {}",
        levels.seed(),
        match first.and_then(|m| m.salt.as_deref()) {
            Some(_) => "its own for each level (<salt>-u<users>)",
            None => "none (levels share prompts)",
        }
    ));
    out.push(format!(
        "Workload per level: U users (conversations = parallel = U) x {} turns, think time {}-{} s, max_tokens {}, warm-up {} before the first level",
        w.turns, w.min_delay, w.max_delay, w.max_tokens, w.warmup
    ));
    out.push(format!(
        "A level passes when: TTFT P95 < {:.2} ms and error rate <= {:.2}%{}",
        t.ttft_p95_ms,
        t.max_error_rate * 100.0,
        if base.levels.require_cache {
            format!(
                ", and cache GOOD or better (speedup > {:.2}; --require-cache)",
                t.speedup
            )
        } else {
            String::new()
        }
    ));
    out.push(String::new());
    out
}

/// The reasons a level did not pass, in one line.
fn why_not(l: &Level, require_cache: bool) -> String {
    let mut reasons = l.report.verdict.reasons.clone();
    if let Some(p) = l.report.partial() {
        reasons.push(format!("partial: {p}"));
    }
    if require_cache && l.report.verdict.cache_status == crate::verdict::CacheStatus::Poor {
        reasons.push(format!(
            "cache {} (speedup {})",
            l.report.verdict.cache_status.label(),
            opt(l.report.stats.speedup_ratio)
        ));
    }
    format!(
        "{} ({})",
        l.report.verdict.status.label(),
        reasons.join("; ")
    )
}

fn sorted(levels: &Levels) -> Vec<&Level> {
    let mut v: Vec<&Level> = levels.levels.iter().collect();
    v.sort_by_key(|l| l.users);
    v
}

/// Per-level data keys (without prefix).
fn level_data(levels: &Levels) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for l in sorted(levels) {
        let s = &l.report.stats;
        let u = l.users;
        out.push((
            format!("users_{u}_status"),
            l.report.verdict.status.label().into(),
        ));
        out.push((
            format!("users_{u}_cache_status"),
            l.report.verdict.cache_status.label().into(),
        ));
        out.push((format!("users_{u}_passes"), l.passed.to_string()));
        out.push((format!("users_{u}_p95_ms"), opt(s.ttft.map(|x| x.p95_ms))));
        out.push((
            format!("users_{u}_requests_per_second"),
            format!("{:.2}", s.requests_per_second),
        ));
        out.push((
            format!("users_{u}_failed_requests"),
            s.failed_requests.to_string(),
        ));
    }
    out
}

fn prefixed(prefix: &str, kv: Vec<(String, String)>) -> Vec<(String, String)> {
    kv.into_iter()
        .map(|(k, v)| (format!("{prefix}_{k}"), v))
        .collect()
}

impl Report {
    pub fn sweep(levels: &Levels, planned: &[usize]) -> Report {
        let mut lines = header("SWEEP SUMMARY", levels);
        let all = sorted(levels);
        lines.push("Levels (latencies in ms):".into());
        lines.extend(table(&all, false).into_iter().map(|l| format!("  {l}")));
        lines.push(String::new());
        let best = levels.largest_passing();
        lines.push(match best {
            Some(l) => format!("Largest passing level: {} users", l.users),
            None => "Largest passing level: none (no level passed)".into(),
        });
        for l in all.iter().filter(|l| !l.passed) {
            lines.push(format!(
                "  {} users: {}",
                l.users,
                why_not(l, levels.settings().levels.require_cache)
            ));
        }
        let run: Vec<usize> = all.iter().map(|l| l.users).collect();
        let not_run: Vec<String> = planned
            .iter()
            .filter(|u| !run.contains(u))
            .map(usize::to_string)
            .collect();
        if let Some(e) = &levels.ended {
            lines.push(format!("Ended: {}", e.describe()));
        }
        if !not_run.is_empty() {
            lines.push(format!("Levels not run: {}", not_run.join(", ")));
        }
        lines.push("=".repeat(80));

        let prefix = levels.settings().output.user_info_prefix.clone();
        let mut data = vec![
            (
                "sweep_levels".to_string(),
                planned
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "largest_passing_users".into(),
                best.map(|l| l.users.to_string())
                    .unwrap_or_else(|| "N/A".into()),
            ),
            (
                "sweep_ended".into(),
                levels
                    .ended
                    .as_ref()
                    .map(Ended::describe)
                    .unwrap_or_default(),
            ),
        ];
        data.extend(headline_data(levels));
        data.extend(level_data(levels));
        Report {
            kind: Kind::Sweep {
                planned: planned.to_vec(),
            },
            lines,
            data: prefixed(&prefix, data),
        }
    }

    pub fn capacity(levels: &Levels, search: &Search) -> Report {
        let mut lines = header("CAPACITY SEARCH", levels);
        let require_cache = levels.settings().levels.require_cache;
        lines.push(format!(
            "Search: doubling from {} users up to --max-users {}, then bisection to one user; every probe a full run",
            search.start, search.limit
        ));
        lines.push("Probes in the order run (latencies in ms):".into());
        let in_order: Vec<&Level> = levels.levels.iter().collect();
        lines.extend(table(&in_order, true).into_iter().map(|l| format!("  {l}")));
        lines.push(String::new());
        let complete = !levels.aborted();
        let max = search.max_users();
        let fail = search.smallest_fail;
        lines.push(format!(
            "Capacity: max_users = {max} (largest PASS {}, smallest FAIL {}){}",
            if max > 0 {
                max.to_string()
            } else {
                "none".into()
            },
            fail.map(|f| f.to_string()).unwrap_or_else(|| "none".into()),
            if complete {
                ""
            } else {
                " — search incomplete"
            }
        ));
        if let Some(f) = fail.and_then(|f| levels.levels.iter().find(|l| l.users == f)) {
            lines.push(format!(
                "  {} users: {}",
                f.users,
                why_not(f, require_cache)
            ));
        }
        if search.limit_reached() {
            lines.push(format!(
                "  every level up to --max-users {} passed: the capacity is at least {} (raise --max-users to search further)",
                search.limit, search.limit
            ));
        } else if max == 0 && complete {
            lines.push("  no level passed, not even 1 user".into());
        }
        if let Some(e) = &levels.ended {
            lines.push(format!("Ended: {}", e.describe()));
        }
        lines.push("=".repeat(80));

        let prefix = levels.settings().output.user_info_prefix.clone();
        let mut data = vec![
            ("max_users".to_string(), max.to_string()),
            (
                "largest_pass_users".into(),
                if max > 0 {
                    max.to_string()
                } else {
                    "N/A".into()
                },
            ),
            (
                "smallest_fail_users".into(),
                fail.map(|f| f.to_string()).unwrap_or_else(|| "N/A".into()),
            ),
            ("max_users_limit".into(), search.limit.to_string()),
            ("capacity_probes".into(), levels.levels.len().to_string()),
            ("capacity_complete".into(), complete.to_string()),
            (
                "capacity_ended".into(),
                levels
                    .ended
                    .as_ref()
                    .map(Ended::describe)
                    .unwrap_or_default(),
            ),
        ];
        data.extend(headline_data(levels));
        data.extend(level_data(levels));
        Report {
            kind: Kind::Capacity {
                search: search.clone(),
            },
            lines,
            data: prefixed(&prefix, data),
        }
    }

    /// The summary, the results block of the headline level when asked, and the
    /// user-info block last.
    pub fn write_stdout(
        &self,
        w: &mut dyn Write,
        print_results: bool,
        levels: &Levels,
    ) -> io::Result<()> {
        for l in &self.lines {
            writeln!(w, "{l}")?;
        }
        writeln!(w)?;
        if let (true, Some(h)) = (print_results, levels.headline()) {
            crate::state::results::write_block(w, &h.report.results_json())?;
            writeln!(w)?;
        }
        self.write_user_info(w)?;
        w.flush()
    }

    pub fn write_user_info(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "{BEGIN_MARKER}")?;
        writeln!(w, "agnosticd_user_info:")?;
        writeln!(w, "  msg: |-")?;
        for line in self.lines.iter().filter(|l| !l.starts_with("====")) {
            let clean: String = line
                .chars()
                .map(|c| if yaml_plain(c) { c } else { ' ' })
                .collect();
            let clean = clean.trim_end();
            if clean.is_empty() {
                writeln!(w)?;
            } else {
                writeln!(w, "    {clean}")?;
            }
        }
        writeln!(w, "  data:")?;
        for (k, v) in &self.data {
            writeln!(w, "    {k}: {}", yaml_quote(v))?;
        }
        writeln!(w, "{END_MARKER}")
    }

    fn file_name(&self) -> &'static str {
        match self.kind {
            Kind::Sweep { .. } => "sweep.json",
            Kind::Capacity { .. } => "capacity.json",
        }
    }

    /// sweep.json or capacity.json: every level's figures and verdict, and the outcome.
    pub fn json(&self, levels: &Levels) -> serde_json::Value {
        let require_cache = levels.settings().levels.require_cache;
        let rows: Vec<serde_json::Value> = levels
            .levels
            .iter()
            .map(|l| {
                let st = &l.report.state;
                json!({
                    "users": l.users,
                    "passes": l.passed,
                    "salt": st.meta.salt,
                    "status": l.report.verdict.status,
                    "cache_status": l.report.verdict.cache_status,
                    "reasons": l.report.verdict.reasons,
                    "why_not": (!l.passed).then(|| why_not(l, require_cache)),
                    "partial": l.report.partial(),
                    "endpoint_unusable": st.endpoint_unusable,
                    "started_at": st.started_at,
                    "ended_at": st.ended_at,
                    "stats": l.report.stats,
                    "warnings": l.report.verdict.warnings,
                    "dir": l.dir,
                })
            })
            .collect();
        let mut v = json!({
            "kind": match self.kind { Kind::Sweep { .. } => "sweep", Kind::Capacity { .. } => "capacity" },
            "turnbench_version": env!("CARGO_PKG_VERSION"),
            "seed": levels.seed(),
            "require_cache": require_cache,
            "thresholds": levels.settings().thresholds,
            "settings": levels.settings().public,
            "levels": rows,
            "largest_passing_users": levels.largest_passing().map(|l| l.users),
            "ended": levels.ended.as_ref().map(Ended::describe),
            "user_info": self.data.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        match &self.kind {
            Kind::Sweep { planned } => v["planned_levels"] = json!(planned),
            Kind::Capacity { search } => {
                v["capacity"] = json!({
                    "max_users": search.max_users(),
                    "largest_pass": (search.largest_pass > 0).then_some(search.largest_pass),
                    "smallest_fail": search.smallest_fail,
                    "start": search.start,
                    "limit": search.limit,
                    "limit_reached": search.limit_reached(),
                    "complete": !levels.aborted(),
                    "probes": search.probed,
                })
            }
        }
        v
    }

    /// report.html and sweep.json (or capacity.json) in `dir`.
    pub fn write_files(&self, dir: &Path, levels: &Levels) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(&self.json(levels)).expect("json serializes");
        crate::report::write_atomic(&dir.join(self.file_name()), &json)?;
        crate::report::write_atomic(&dir.join("report.html"), self.html(levels).as_bytes())
    }

    /// The page: the outcome, the table (each level linked to its own report when its
    /// files were written), the four charts, the settings.
    pub fn html(&self, levels: &Levels) -> String {
        let all = sorted(levels);
        let (title, banner, class) = match &self.kind {
            Kind::Sweep { .. } => (
                "turnbench sweep",
                match levels.largest_passing() {
                    Some(l) => format!("Largest passing level: {} users", l.users),
                    None => "No level passed".into(),
                },
                if levels.largest_passing().is_some() {
                    "pass"
                } else {
                    "fail"
                },
            ),
            Kind::Capacity { search } => (
                "turnbench capacity",
                format!(
                    "Capacity: {} users (largest PASS {}, smallest FAIL {})",
                    search.max_users(),
                    search.max_users(),
                    search
                        .smallest_fail
                        .map(|f| f.to_string())
                        .unwrap_or_else(|| "none".into())
                ),
                if search.max_users() > 0 {
                    "pass"
                } else {
                    "fail"
                },
            ),
        };
        let mut h = String::with_capacity(128 * 1024);
        h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        h.push_str(&format!("<title>{title}</title>\n"));
        h.push_str(STYLE);
        h.push_str("</head>\n<body>\n");
        let header = header("", levels);
        let conditions = header
            .iter()
            .find(|l| l.starts_with("A level passes"))
            .cloned()
            .unwrap_or_default();
        h.push_str(&format!(
            "<header class=\"banner {class}\" id=\"verdict\"><div class=\"status\">{}</div><div class=\"thresholds\">{}</div></header>\n",
            escape(&banner),
            escape(&conditions)
        ));
        h.push_str("<section id=\"about\">\n");
        for l in header
            .iter()
            .skip(3)
            .filter(|l| !l.is_empty() && !l.starts_with("A level"))
        {
            h.push_str(&format!("<p class=\"meta\">{}</p>\n", escape(l)));
        }
        if let Some(e) = &levels.ended {
            h.push_str(&format!(
                "<p class=\"alert\">{}</p>\n",
                escape(&e.describe())
            ));
        }
        h.push_str("</section>\n<section id=\"levels\"><h2>Levels</h2>\n<table>\n<tr>");
        for c in [
            "users",
            "requests/s",
            "TTFT P50 (ms)",
            "TTFT P95 (ms)",
            "TTFT P99 (ms)",
            "ITL P50 (ms)",
            "E2E P95 (ms)",
            "speedup",
            "errors",
            "verdict",
            "cache",
            "passes",
            "report",
        ] {
            h.push_str(&format!("<th>{c}</th>"));
        }
        h.push_str("</tr>\n");
        for l in &all {
            let s = &l.report.stats;
            let cells = [
                l.users.to_string(),
                format!("{:.2}", s.requests_per_second),
                opt(s.ttft.map(|x| x.p50_ms)),
                opt(s.ttft.map(|x| x.p95_ms)),
                opt(s.ttft.map(|x| x.p99_ms)),
                opt(s.itl.map(|x| x.p50_ms)),
                opt(s.e2e.map(|x| x.p95_ms)),
                opt(s.speedup_ratio),
                format!("{} ({:.1}%)", s.failed_requests, s.error_rate * 100.0),
                l.report.verdict.status.label().to_string(),
                l.report.verdict.cache_status.label().to_string(),
                if l.passed { "yes".into() } else { "no".into() },
            ];
            h.push_str(&format!(
                "<tr class=\"{}\">",
                if l.passed { "pass" } else { "fail" }
            ));
            for c in cells {
                h.push_str(&format!("<td>{}</td>", escape(&c)));
            }
            match &l.dir {
                Some(d) => h.push_str(&format!(
                    "<td><a href=\"{}/report.html\">{}</a></td>",
                    escape(d),
                    escape(d)
                )),
                None => h.push_str("<td></td>"),
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n</section>\n<section class=\"charts\">\n");
        for (id, svg) in charts::CHART_IDS.iter().zip(charts::all(&all)) {
            let svg = svg.unwrap_or_else(|e| format!("<p>{}</p>", escape(&e)));
            h.push_str(&format!(
                "<figure id=\"{id}\" class=\"chart\">{svg}</figure>\n"
            ));
        }
        h.push_str("</section>\n<section id=\"settings\"><h2>Settings</h2>\n<table>\n");
        for (k, v) in &levels.settings().public {
            let shown = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "unset".into(),
                other => other.to_string(),
            };
            h.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>\n",
                escape(k),
                escape(&shown)
            ));
        }
        h.push_str("</table>\n</section>\n</body>\n</html>\n");
        h
    }
}

/// The run data keys of the headline level (the largest passing, else the lowest),
/// so a consumer of `run`'s keys reads the figures at capacity.
fn headline_data(levels: &Levels) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    if let Some(h) = levels.headline() {
        out.push(("users".into(), h.users.to_string()));
        out.extend(h.report.data().into_iter().map(|(k, v)| (k.to_string(), v)));
    }
    out
}
