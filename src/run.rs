//! `turnbench run`: pre-flight, warm-up, the measured conversations, and the report.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::{Endpoint, Message, Unusable};
use crate::config::Settings;
use crate::error::ConfigError;
use crate::metrics::{Aggregator, RequestRecord};
use crate::report::{RunReport, Target};
use crate::sim;
use crate::verdict::{judge, Thresholds};
use crate::workload::{self, ConversationPlan, Plan};

/// Why a run was asked to stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Sigint,
    Sigterm,
}

impl StopReason {
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Sigint => "interrupted by SIGINT",
            StopReason::Sigterm => "terminated by SIGTERM",
        }
    }
}

/// Receives a stop request (a signal); `None` while the run may go on.
pub type StopRx = watch::Receiver<Option<StopReason>>;

/// A finished (or stopped, or refused) run: its report and what results.json needs.
pub struct RunResult {
    pub report: RunReport,
    pub histograms: BTreeMap<String, String>,
    pub records: Vec<RequestRecord>,
    pub stopped_by: Option<StopReason>,
}

/// Counters the progress line reads while the run goes on.
#[derive(Default)]
struct Progress {
    in_flight: AtomicU64,
}

/// Run the benchmark the settings describe. Errors are only those that stop it from
/// starting (bad documents, client set-up); an endpoint that cannot be used gives a
/// report with `endpoint_unusable` set.
pub async fn execute(settings: Settings, mut stop: StopRx) -> anyhow::Result<RunResult> {
    let documents = workload::load_documents(&settings.documents)?;
    // Each request in flight holds a socket, and the in-process simulator one more;
    // closed connections linger a moment, so count each twice.
    let sockets = settings.parallel as u64 * if settings.url.is_none() { 4 } else { 2 };
    ensure_fd_limit(sockets + 256, settings.parallel)?;
    let seed = settings.seed.unwrap_or_else(workload::random_seed);
    let plan = Plan::new(&settings, documents, seed);

    // No URL: benchmark the built-in simulator, started here on a free loopback port.
    let (target, _sim) = match &settings.url {
        Some(url) => (Target::Endpoint { url: url.clone() }, None),
        None => {
            let sim = sim::start(sim::SimConfig::default(), ([127, 0, 0, 1], 0).into()).await?;
            let url = sim.url();
            tracing::warn!(
                "no URL given: benchmarking the BUILT-IN SIMULATOR at {url}, not a real endpoint"
            );
            (Target::Simulator { url }, Some(sim))
        }
    };
    let endpoint = Endpoint::new(target.url(), &settings)?;
    let mut base = ReportBase {
        settings: &settings,
        target: &target,
        seed,
        model: settings.model.clone(),
    };

    let grace = Duration::from_secs_f64(settings.grace_period);
    let discovered = or_stop(
        discover_model(&endpoint, settings.model.as_deref()),
        &mut stop,
        grace,
    )
    .await;
    let model = match discovered {
        Some(Ok(m)) => m,
        Some(Err(Unusable(why))) => {
            tracing::error!("the endpoint cannot be used: {why}");
            return Ok(base.empty(Some(why), None));
        }
        None => return Ok(base.empty(None, *stop.borrow())),
    };
    base.model = Some(model.clone());
    tracing::info!(model = %model, url = %target.url(), seed, "starting");

    // Warm-up: short sequential requests, outside every statistic.
    let mut warm_failed = 0u64;
    let mut warm_first_error = None;
    let mut warm_done = 0u64;
    for i in 0..settings.warmup {
        if stop.borrow().is_some() {
            break;
        }
        let prompt = workload::warmup_prompt(i);
        let msgs = [Message {
            role: "user",
            content: &prompt,
        }];
        let body = endpoint.chat_body(&model, &msgs, settings.max_tokens.min(16));
        let Some(m) = or_stop(endpoint.chat(body), &mut stop, grace).await else {
            break;
        };
        warm_done += 1;
        if let Some(e) = m.error {
            warm_failed += 1;
            tracing::debug!(error = %e.message, "warm-up request failed");
            warm_first_error.get_or_insert(e);
        }
    }
    if warm_done > 0 && warm_failed == warm_done {
        if let Some(e) = warm_first_error.as_ref().filter(|e| e.is_fatal()) {
            let why = format!("every warm-up request failed: {}", e.message);
            tracing::error!("the endpoint cannot be used: {why}");
            return Ok(base.empty(Some(why), None));
        }
    }

    // The measured phase.
    let plan = Arc::new(plan);
    let sem = Arc::new(Semaphore::new(settings.parallel));
    let progress = Arc::new(Progress::default());
    let (tx, mut rx) = mpsc::unbounded_channel::<RequestRecord>();
    let phase_start = Instant::now();
    let mut tasks = JoinSet::new();
    let model: Arc<str> = model.into();
    for i in 0..plan.conversations.len() {
        let ctx = ConversationCtx {
            plan: plan.clone(),
            index: i,
            endpoint: endpoint.clone(),
            model: model.clone(),
            max_tokens: settings.max_tokens,
            sem: sem.clone(),
            tx: tx.clone(),
            stop: stop.clone(),
            phase_start,
            progress: progress.clone(),
        };
        tasks.spawn(run_conversation(ctx));
    }
    drop(tx);

    let expected = (settings.conversations * settings.turns) as u64;
    let mut agg = Aggregator::default();
    agg.turns = settings.turns as u32;
    let keep_records = settings.output_dir.is_some() || settings.print_results;
    let mut records = Vec::new();
    let tty = std::io::stderr().is_terminal();
    let mut ticker = tokio::time::interval(if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    });
    ticker.tick().await;
    // A stop that came during warm-up has been seen already: start its grace now.
    let mut stopped_by = *stop.borrow();
    let mut grace_deadline = stopped_by.map(|_| tokio::time::Instant::now() + grace);
    loop {
        let grace = async {
            match grace_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = rx.recv() => match r {
                Some(mut r) => {
                    agg.add(&mut r);
                    if keep_records {
                        records.push(r);
                    }
                }
                None => break,
            },
            _ = ticker.tick() => print_progress(&agg, expected, &progress, phase_start, tty),
            changed = stop.changed(), if stopped_by.is_none() => {
                if changed.is_ok() {
                    if let Some(reason) = *stop.borrow() {
                        stopped_by = Some(reason);
                        tracing::warn!("{}: no new requests; waiting up to {}s for {} in flight",
                            reason.describe(), settings.grace_period, progress.in_flight.load(Ordering::Relaxed));
                        grace_deadline = Some(tokio::time::Instant::now() + Duration::from_secs_f64(settings.grace_period));
                    }
                }
            }
            _ = grace => break,
        }
    }
    let abandoned = progress.in_flight.load(Ordering::Relaxed);
    tasks.abort_all();
    // Records already sent by tasks that finished in the last instant still count.
    while let Ok(mut r) = rx.try_recv() {
        agg.add(&mut r);
        if keep_records {
            records.push(r);
        }
    }
    let wall = phase_start.elapsed().as_secs_f64();
    if tty {
        eprintln!();
    }

    // Every measured request failed, and every failure says the endpoint is unusable.
    let endpoint_unusable = (agg.total > 0 && agg.fatal_failed == agg.total).then(|| {
        let first = agg
            .errors
            .values()
            .next()
            .map(|e| e.first_message.clone())
            .unwrap_or_default();
        format!("every request failed: {first}")
    });
    base.model = Some(model.to_string());
    let warmup = (warm_done, warm_failed);
    let abandoned = if stopped_by.is_some() { abandoned } else { 0 };
    Ok(base.finish(
        agg,
        wall,
        records,
        endpoint_unusable,
        stopped_by,
        warmup,
        abandoned,
    ))
}

/// Raise the soft limit on open files when it is below `needed`: to the hard limit
/// (at most 65,536), for headroom. Refuse to start when even the hard limit is below
/// `needed`, rather than fail with "too many open files" halfway.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
pub fn ensure_fd_limit(needed: u64, parallel: usize) -> Result<(), ConfigError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Ok(()); // unknown: let the run find out
    }
    if lim.rlim_cur as u64 >= needed {
        return Ok(());
    }
    if lim.rlim_max as u64 >= needed || lim.rlim_max == libc::RLIM_INFINITY {
        let raised = libc::rlimit {
            rlim_cur: needed as libc::rlim_t,
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(
                from = lim.rlim_cur,
                to = needed,
                "raised the open-file limit"
            );
            return Ok(());
        }
    }
    Err(ConfigError::new(format!(
        "parallel={parallel} needs {needed} open files but the limit is {} (hard {}); lower parallel or raise `ulimit -n`",
        lim.rlim_cur, lim.rlim_max
    )))
}

pub fn thresholds(s: &Settings) -> Thresholds {
    Thresholds {
        ttft_p95_ms: s.ttft_p95_threshold_ms,
        speedup: s.speedup_threshold,
        max_error_rate: s.max_error_rate,
    }
}

/// What every report of this run shares, so a refused run reports the same way.
struct ReportBase<'a> {
    settings: &'a Settings,
    target: &'a Target,
    seed: u64,
    model: Option<String>,
}

impl ReportBase<'_> {
    /// The report of a run that measured nothing: refused, or stopped before measuring.
    fn empty(&self, unusable: Option<String>, stopped_by: Option<StopReason>) -> RunResult {
        self.finish(
            Aggregator::default(),
            0.0,
            Vec::new(),
            unusable,
            stopped_by,
            (0, 0),
            0,
        )
    }

    /// Statistics, verdict and report of what was measured.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        agg: Aggregator,
        wall_s: f64,
        records: Vec<RequestRecord>,
        unusable: Option<String>,
        stopped_by: Option<StopReason>,
        (warmup_requests, warmup_failed): (u64, u64),
        abandoned_requests: u64,
    ) -> RunResult {
        let stats = agg.stats(wall_s);
        let thresholds = thresholds(self.settings);
        let verdict = judge(&stats, &thresholds);
        RunResult {
            report: RunReport {
                version: env!("CARGO_PKG_VERSION"),
                target: self.target.clone(),
                model: self.model.clone(),
                seed: self.seed,
                settings: self.settings.clone(),
                thresholds,
                stats,
                verdict,
                partial: stopped_by.map(|r| r.describe().to_string()),
                endpoint_unusable: unusable,
                warmup_requests,
                warmup_failed,
                abandoned_requests,
            },
            histograms: agg.histograms_serialized(),
            records,
            stopped_by,
        }
    }
}

/// The model to use: as given, else the first listed by `GET /models`.
async fn discover_model(endpoint: &Endpoint, given: Option<&str>) -> Result<String, Unusable> {
    let listed = endpoint.list_models().await?;
    match (given, listed) {
        (Some(m), Some(ids)) if ids.is_empty() || ids.iter().any(|id| id == m) => Ok(m.to_string()),
        (Some(m), Some(ids)) => Err(Unusable(format!(
            "model {m:?} not found; {} lists: {}",
            endpoint.base(),
            ids.join(", ")
        ))),
        (Some(m), None) => {
            tracing::warn!(
                "GET {}/models gave no list; using --model {m} as given",
                endpoint.base()
            );
            Ok(m.to_string())
        }
        (None, Some(ids)) => match ids.into_iter().next() {
            Some(m) => Ok(m),
            None => Err(endpoint.no_model_list(true).await),
        },
        (None, None) => Err(endpoint.no_model_list(false).await),
    }
}

struct ConversationCtx {
    plan: Arc<Plan>,
    index: usize,
    endpoint: Endpoint,
    model: Arc<str>,
    max_tokens: u32,
    sem: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<RequestRecord>,
    stop: StopRx,
    phase_start: Instant,
    progress: Arc<Progress>,
}

/// One turn of history: shared text (the opening, a fixed question) or a reply.
enum Text {
    Shared(Arc<str>),
    Fixed(&'static str),
    Owned(String),
}

impl Text {
    fn as_str(&self) -> &str {
        match self {
            Text::Shared(s) => s,
            Text::Fixed(s) => s,
            Text::Owned(s) => s,
        }
    }
}

/// `fut`'s output, unless a stop comes first and `grace` passes after it.
async fn or_stop<F: std::future::Future>(
    fut: F,
    stop: &mut StopRx,
    grace: Duration,
) -> Option<F::Output> {
    tokio::select! {
        out = fut => Some(out),
        _ = async { stopped(stop).await; tokio::time::sleep(grace).await } => None,
    }
}

/// Resolve when a stop has been requested.
async fn stopped(stop: &mut StopRx) {
    let _ = stop.wait_for(|s| s.is_some()).await;
}

/// Play one conversation: think, wait for a slot, send, read; turn after turn.
///
/// A failed turn keeps its question in the history and adds no reply; the conversation
/// goes on with its next turn, so later prompts still grow as they would have.
async fn run_conversation(mut ctx: ConversationCtx) {
    let conv: &ConversationPlan = &ctx.plan.conversations[ctx.index];
    let mut history: Vec<(&'static str, Text)> =
        vec![("user", Text::Shared(conv.doc.opening.clone()))];
    for turn in 0..conv.delays.len() {
        if turn > 0 {
            history.push(("user", Text::Fixed(conv.questions[turn - 1])));
        }
        let think = Duration::from_secs_f64(conv.delays[turn]);
        tokio::select! {
            _ = tokio::time::sleep(think) => {}
            _ = stopped(&mut ctx.stop) => return,
        }
        let permit = tokio::select! {
            p = ctx.sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stopped(&mut ctx.stop) => return,
        };
        let msgs: Vec<Message<'_>> = history
            .iter()
            .map(|(role, t)| Message {
                role,
                content: t.as_str(),
            })
            .collect();
        let prompt_bytes: usize = msgs.iter().map(|m| m.content.len()).sum();
        let body = ctx.endpoint.chat_body(&ctx.model, &msgs, ctx.max_tokens);
        drop(msgs);
        ctx.progress.in_flight.fetch_add(1, Ordering::Relaxed);
        let start_us = crate::client::micros(ctx.phase_start.elapsed());
        let mut m = ctx.endpoint.chat(body).await;
        ctx.progress.in_flight.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
        let reply = std::mem::take(&mut m.reply);
        let record = RequestRecord {
            conversation: conv.index,
            turn: turn as u32 + 1,
            doc_kind: conv.doc.kind,
            start_us,
            prompt_bytes: prompt_bytes as u64,
            measured: m,
        };
        let ok = record.ok();
        if ctx.tx.send(record).is_err() {
            return;
        }
        if ok && !reply.is_empty() {
            history.push(("assistant", Text::Owned(reply)));
        }
    }
}

fn print_progress(agg: &Aggregator, expected: u64, p: &Progress, start: Instant, tty: bool) {
    let p50 = if agg.ttft.is_empty() {
        "-".to_string()
    } else {
        format!("{:.1} ms", agg.ttft.value_at_quantile(0.5) as f64 / 1000.0)
    };
    let line = format!(
        "[{:>6.1}s] {}/{} requests, {} failed, {} in flight, TTFT P50 {}",
        start.elapsed().as_secs_f64(),
        agg.total,
        expected,
        agg.failed,
        p.in_flight.load(Ordering::Relaxed),
        p50
    );
    if tty {
        eprint!("\r{line}   ");
    } else {
        eprintln!("{line}");
    }
}
