//! `turnbench sweep` and `turnbench capacity`: one full run per load level (a level is
//! a number of users: conversations = parallel = U), composed from the same phases as
//! `run` ([`crate::run::execute`]), then a report across the levels.
//!
//! Every level shares the seed (so level 16 runs the first 16 conversations of one
//! plan, level 4 the first 4) and has a salt of its own, so no level's first turns can
//! be served from the cache an earlier level filled. The warm-up runs before the first
//! level only.

pub mod capacity;
mod charts;
pub mod report;

use std::io::{self, Write};

use crate::cli::{self, RunArgs};
use crate::config::{SaltSetting, Settings, Users};
use crate::error::{exit, ConfigError};
use crate::report::RunReport;
use crate::run::{self, StopReason, StopRx};
use crate::verdict::{CacheStatus, Status};
use capacity::Search;

/// One level's run.
pub struct Level {
    pub users: usize,
    pub report: RunReport,
    pub passed: bool,
    /// Where its files went (relative to the output directory), when they were written.
    pub dir: Option<String>,
}

/// Why the levels stopped before the plan's end.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// The error rate of this level exceeded the maximum: higher levels would only fail
    /// more, so none is run.
    ErrorRate { users: usize, rate: f64, max: f64 },
    /// The endpoint could not be used at all.
    Unusable { users: usize, why: String },
    /// A signal.
    Stopped { users: usize, reason: StopReason },
}

impl Ended {
    pub fn describe(&self) -> String {
        match self {
            Ended::ErrorRate { users, rate, max } => format!(
                "at {users} users the error rate was {:.2}% > {:.2}% (max_error_rate): no level above it was tried",
                rate * 100.0,
                max * 100.0
            ),
            Ended::Unusable { users, why } => {
                format!("stopped at {users} users: the endpoint cannot be used: {why}")
            }
            Ended::Stopped { users, reason } => {
                format!("stopped at {users} users: {}", reason.describe())
            }
        }
    }
}

/// Whether a level passes: PASS, and with `require_cache` a cache GOOD or better.
pub fn passes(report: &RunReport, require_cache: bool) -> bool {
    report.verdict.status == Status::Pass
        && (!require_cache || report.verdict.cache_status != CacheStatus::Poor)
        && report.partial().is_none()
}

/// Runs one level after another with the settings of the command.
pub struct Levels {
    base: Settings,
    seed: u64,
    /// The salt of the sweep: each level's is this plus the level.
    salt: Option<String>,
    stop: StopRx,
    runs: usize,
    pub levels: Vec<Level>,
    pub ended: Option<Ended>,
}

impl Levels {
    pub fn new(base: Settings, stop: StopRx) -> Levels {
        let seed = base
            .workload
            .seed
            .unwrap_or_else(crate::workload::random_seed);
        let salt = match &base.workload.salt {
            SaltSetting::Off => None,
            SaltSetting::Fixed(s) => Some(s.clone()),
            SaltSetting::Random => crate::workload::resolve_salt(&SaltSetting::Random),
        };
        if salt.is_none() {
            tracing::warn!("--salt none: the levels share prompts, so later levels' first turns may be served from the cache earlier levels filled");
        }
        Levels {
            base,
            seed,
            salt,
            stop,
            runs: 0,
            levels: Vec::new(),
            ended: None,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn settings(&self) -> &Settings {
        &self.base
    }

    /// The settings of the level of `users`.
    pub fn settings_for(&self, users: usize) -> Settings {
        let mut s = self.base.clone();
        let w = &mut s.workload;
        w.conversations = users;
        w.parallel = users;
        w.seed = Some(self.seed);
        w.salt = match &self.salt {
            None => SaltSetting::Off,
            Some(salt) => SaltSetting::Fixed(format!("{salt}-u{users}")),
        };
        if self.runs > 0 {
            // The endpoint is warm, and a start time is for the first level only.
            w.warmup = 0;
            w.start_at = None;
        }
        s.levels.users = Some(Users {
            levels: vec![users],
            written: format!("users={users}"),
        });
        for (k, v) in [
            ("users", serde_json::Value::from(users.to_string())),
            ("conversations", users.into()),
            ("parallel", users.into()),
            ("seed", self.seed.into()),
            ("warmup", w.warmup.into()),
        ] {
            s.public.insert(k.into(), v);
        }
        // output_dir and print_results stay: they make the run keep its rows (for
        // requests.csv and the results block); the files are written here, per level.
        s
    }

    /// Run the level of `users` in full, write its files, and keep it.
    pub async fn run(&mut self, users: usize) -> anyhow::Result<&Level> {
        let settings = self.settings_for(users);
        let n = self.runs + 1;
        tracing::info!("level {n}: {users} users");
        let result = run::execute(settings, self.stop.clone()).await?;
        self.runs += 1;
        let report = result.report;
        let passed = passes(&report, self.base.levels.require_cache);
        tracing::info!(
            "level {n}: {users} users: {} ({}){}",
            report.verdict.status.label(),
            report.verdict.reasons.join("; "),
            if passed { "" } else { ": does not pass" }
        );
        let mut dir = None;
        if let Some(out) = &self.base.output.output_dir {
            let name = format!("users-{users}");
            crate::report::write_output_dir(&out.join(&name), &report)?;
            dir = Some(name);
        }
        let s = &report.stats;
        let t = &report.state.meta.thresholds;
        let ended = if let Some(why) = &report.state.endpoint_unusable {
            Some(Ended::Unusable {
                users,
                why: why.clone(),
            })
        } else if let Some(reason) = result.stopped_by {
            Some(Ended::Stopped { users, reason })
        } else if s.total_requests > 0 && s.error_rate > t.max_error_rate {
            Some(Ended::ErrorRate {
                users,
                rate: s.error_rate,
                max: t.max_error_rate,
            })
        } else {
            None
        };
        // A capacity search bisects below the level whose error rate ended it upward:
        // that level stays the one named, unless a signal or the endpoint ends it all.
        self.ended = match (ended, self.ended.take()) {
            (Some(Ended::ErrorRate { .. }), Some(first)) => Some(first),
            (new, old) => new.or(old),
        };
        self.levels.push(Level {
            users,
            report,
            passed,
            dir,
        });
        Ok(self.levels.last().expect("just pushed"))
    }

    /// Whether no further level may run: a signal or an unusable endpoint.
    pub fn aborted(&self) -> bool {
        matches!(
            self.ended,
            Some(Ended::Unusable { .. } | Ended::Stopped { .. })
        )
    }

    /// The largest level that passed.
    pub fn largest_passing(&self) -> Option<&Level> {
        self.levels
            .iter()
            .filter(|l| l.passed)
            .max_by_key(|l| l.users)
    }

    /// The level whose figures stand for the whole: the largest passing one, else the
    /// lowest one run.
    pub fn headline(&self) -> Option<&Level> {
        self.largest_passing()
            .or_else(|| self.levels.iter().min_by_key(|l| l.users))
    }

    /// The exit code once the report is printed.
    pub fn exit_code(&self) -> i32 {
        match &self.ended {
            Some(Ended::Unusable { .. }) => exit::ENDPOINT,
            Some(Ended::Stopped {
                reason: StopReason::Sigint,
                ..
            }) => exit::SIGINT,
            Some(Ended::Stopped {
                reason: StopReason::Sigterm,
                ..
            }) => exit::SIGTERM,
            _ if self.base.output.strict && self.largest_passing().is_none() => exit::FAIL,
            _ => exit::OK,
        }
    }
}

/// The settings of a command over levels, or a one-line error.
fn load(args: &RunArgs, command: &str) -> Result<Settings, ConfigError> {
    let s = cli::load_settings(args)?;
    if s.workload.arrival.is_some() {
        return Err(ConfigError::new(format!(
            "turnbench {command} searches users, a closed loop: --arrival-rate is for turnbench run"
        )));
    }
    if s.workload.shard.count > 1 {
        return Err(ConfigError::new(format!(
            "turnbench {command} runs in one process: --shard-count must be 1 (it is {})",
            s.workload.shard.count
        )));
    }
    if let Some(dir) = &s.output.output_dir {
        cli::check_writable(dir).map_err(|e| {
            ConfigError::new(format!(
                "--output-dir {}: cannot write there ({e})",
                dir.display()
            ))
        })?;
    }
    Ok(s)
}

fn stop_channel() -> StopRx {
    let (tx, rx) = tokio::sync::watch::channel(None);
    tokio::spawn(cli::watch_signals(tx));
    rx
}

/// `turnbench sweep`.
pub async fn sweep_command(args: RunArgs) -> i32 {
    let settings = match load(&args, "sweep") {
        Ok(s) => s,
        Err(e) => return cli::fail(exit::CONFIG, e),
    };
    let Some(users) = settings.levels.users.clone() else {
        return cli::fail(
            exit::CONFIG,
            "turnbench sweep needs --users: a list such as 1,4,16,64 or a range such as 1..64x2",
        );
    };
    let mut levels = Levels::new(settings, stop_channel());
    for (i, u) in users.levels.iter().enumerate() {
        if let Err(e) = levels.run(*u).await {
            return cli::fail(crate::error::exit_code(&e), format!("{e:#}"));
        }
        if let Some(ended) = &levels.ended {
            let skipped = &users.levels[i + 1..];
            if !skipped.is_empty() {
                tracing::warn!("{}: levels {skipped:?} not run", ended.describe());
            }
            break;
        }
    }
    let report = report::Report::sweep(&levels, &users.levels);
    finish(&levels, &report)
}

/// `turnbench capacity`.
pub async fn capacity_command(args: RunArgs) -> i32 {
    let settings = match load(&args, "capacity") {
        Ok(s) => s,
        Err(e) => return cli::fail(exit::CONFIG, e),
    };
    let Some(limit) = settings.levels.max_users else {
        return cli::fail(
            exit::CONFIG,
            "turnbench capacity needs --max-users N (TURNBENCH_MAX_USERS): the most users the search tries",
        );
    };
    let start = match &settings.levels.users {
        None => 1,
        Some(u) => match u.single("capacity (where the search starts)") {
            Ok(v) if v <= limit => v,
            Ok(v) => {
                return cli::fail(
                    exit::CONFIG,
                    format!(
                        "{}: expected a start of at most --max-users ({limit}), not {v}",
                        u.written
                    ),
                )
            }
            Err(e) => return cli::fail(exit::CONFIG, e),
        },
    };
    let mut levels = Levels::new(settings, stop_channel());
    let mut search = Search::new(start, limit);
    while let Some(u) = search.next() {
        let passed = match levels.run(u).await {
            Ok(level) => level.passed,
            Err(e) => return cli::fail(crate::error::exit_code(&e), format!("{e:#}")),
        };
        if levels.aborted() {
            break;
        }
        search.record(u, passed);
    }
    let report = report::Report::capacity(&levels, &search);
    finish(&levels, &report)
}

/// Print the report of the levels, write its files; the exit code.
fn finish(levels: &Levels, report: &report::Report) -> i32 {
    let out = &levels.settings().output;
    let printed = report.write_stdout(&mut io::stdout().lock(), out.print_results, levels);
    if let Err(e) = printed {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return cli::fail(exit::INTERNAL, format!("writing the report: {e}"));
        }
    }
    if let Some(dir) = &out.output_dir {
        if let Err(e) = report.write_files(dir, levels) {
            return cli::fail(
                exit::INTERNAL,
                format!("writing results to {}: {e}", dir.display()),
            );
        }
        tracing::info!("results written to {}", dir.display());
    }
    let _ = io::stdout().flush();
    levels.exit_code()
}
