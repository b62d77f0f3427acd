//! The phases every measuring command composes: prepare (plan, endpoint), preflight
//! (model), warm-up, measure (→ the typed run state), finish (verdict, report).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::{Endpoint, Message, RequestError, Unusable};
use crate::config::Settings;
use crate::error::ConfigError;
use crate::report::RunReport;
use crate::sim;
use crate::state::results::{RequestRow, Requests};
use crate::state::{RequestRecord, RunMeta, RunState, Target, Wall};
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

/// A finished (or stopped, or refused) run: its report, and why it stopped early.
pub struct RunResult {
    pub report: RunReport,
    pub stopped_by: Option<StopReason>,
}

/// Everything a run needs before it talks to the endpoint.
pub struct Prepared {
    pub settings: Settings,
    pub plan: Arc<Plan>,
    pub target: Target,
    pub endpoint: Endpoint,
    /// The in-process simulator, when no URL was given; kept alive for the run.
    _sim: Option<sim::SimThread>,
}

impl Prepared {
    /// The state a run of this plan starts from, once the model is known.
    pub fn empty_state(&self, model: Option<String>) -> RunState {
        RunState::new(RunMeta::of(
            &self.settings,
            self.target.clone(),
            model,
            self.plan.seed,
            self.plan.salt.clone(),
        ))
    }
}

/// Prepare: the documents and the plan (seed and salt drawn), the open-file limit,
/// the simulator when there is no URL, and the client.
pub fn prepare(settings: &Settings) -> anyhow::Result<Prepared> {
    let w = &settings.workload;
    let documents = workload::load_documents(&w.documents)?;
    // Each request in flight holds a socket, and the in-process simulator one more;
    // closed connections linger a moment, so count each twice.
    let sockets = w.parallel as u64 * if settings.target.url.is_none() { 4 } else { 2 };
    ensure_fd_limit(sockets + 256, w.parallel)?;
    let seed = w.seed.unwrap_or_else(workload::random_seed);
    let salt = workload::resolve_salt(&w.salt);
    let plan = Plan::new(w, documents, seed, salt);

    // No URL: benchmark the built-in simulator, on its own thread and runtime.
    let (target, base, sim) = match &settings.target.url {
        Some(url) => (
            Target::Endpoint {
                url: url.as_str().trim_end_matches('/').to_string(),
            },
            url.clone(),
            None,
        ),
        None => {
            let sim = sim::start_thread(sim::SimConfig::default(), ([127, 0, 0, 1], 0).into())?;
            let url = sim.url();
            tracing::warn!(
                "no URL given: benchmarking the BUILT-IN SIMULATOR at {url}, not a real endpoint"
            );
            (
                Target::Simulator { url: url.clone() },
                url.parse()?,
                Some(sim),
            )
        }
    };
    let endpoint = Endpoint::new(&base, &settings.target)?;
    Ok(Prepared {
        settings: settings.clone(),
        plan: Arc::new(plan),
        target,
        endpoint,
        _sim: sim,
    })
}

/// How a phase before measuring ended when the run cannot go on.
pub enum Refused {
    /// The endpoint cannot be used at all; the reason.
    Unusable(String),
    /// A signal came first.
    Stopped(StopReason),
}

/// Preflight: the model to use, as given or the first listed by `GET /models`.
pub async fn preflight(p: &Prepared, stop: &mut StopRx) -> Result<String, Refused> {
    let grace = p.settings.output.grace_period;
    let given = p.settings.target.model.as_deref();
    match or_stop(discover_model(&p.endpoint, given), stop, grace).await {
        Some(Ok(m)) => Ok(m),
        Some(Err(Unusable(why))) => Err(Refused::Unusable(why)),
        None => Err(stopped_reason(stop)),
    }
}

fn stopped_reason(stop: &StopRx) -> Refused {
    Refused::Stopped((*stop.borrow()).unwrap_or(StopReason::Sigterm))
}

/// What the warm-up did.
#[derive(Debug, Default, Clone, Copy)]
pub struct WarmUp {
    pub requests: u64,
    pub failed: u64,
}

/// Warm-up: short sequential requests, outside every statistic. Every one failing in
/// a way that says the endpoint is unusable refuses the run.
pub async fn warm_up(p: &Prepared, model: &str, stop: &mut StopRx) -> Result<WarmUp, Refused> {
    let grace = p.settings.output.grace_period;
    let mut done = WarmUp::default();
    let mut first_error: Option<RequestError> = None;
    for i in 0..p.settings.workload.warmup {
        if stop.borrow().is_some() {
            break;
        }
        let prompt = workload::warmup_prompt(i);
        let msgs = [Message {
            role: "user",
            parts: &[&prompt],
        }];
        let max_tokens = p.settings.workload.max_tokens.min(16);
        let body = p.endpoint.chat_body(model, &msgs, max_tokens);
        let Some(m) = or_stop(p.endpoint.chat(body), stop, grace).await else {
            break;
        };
        done.requests += 1;
        if let Some(e) = m.error {
            done.failed += 1;
            tracing::debug!(error = %e.message, "warm-up request failed");
            first_error.get_or_insert(e);
        }
    }
    if done.requests > 0 && done.failed == done.requests {
        if let Some(e) = first_error.filter(|e| e.is_fatal()) {
            return Err(Refused::Unusable(format!(
                "every warm-up request failed: {}",
                e.message
            )));
        }
    }
    Ok(done)
}

/// Wait until `start_at` (so the shards of a run start together); a time already
/// past starts at once, with a warning when it is more than a few seconds late.
pub async fn wait_for_start(at: Option<SystemTime>, stop: &mut StopRx) -> Result<(), Refused> {
    let Some(at) = at else { return Ok(()) };
    let wall = Wall::from(at);
    match at.duration_since(SystemTime::now()) {
        Ok(wait) => {
            tracing::info!("holding the measured phase until {}", wall.rfc3339());
            tokio::select! {
                _ = tokio::time::sleep(wait) => Ok(()),
                _ = stopped(stop) => Err(stopped_reason(stop)),
            }
        }
        Err(late) if late.duration() > Duration::from_secs(5) => {
            tracing::warn!(
                "--start-at {} passed {:.1} s ago: starting now",
                wall.rfc3339(),
                late.duration().as_secs_f64()
            );
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

/// What the measured phase produced.
pub struct Measurement {
    pub state: RunState,
    pub records: Vec<RequestRecord>,
    pub stopped_by: Option<StopReason>,
}

/// How often the client's own timer lateness is probed.
const LAG_PROBE_EVERY: Duration = Duration::from_millis(10);

/// Measure: this shard's conversations, folded into the run state as they finish.
/// `keep_records` keeps every request's record too (for requests.csv).
pub async fn measure(
    p: &Prepared,
    model: &str,
    warm: WarmUp,
    stop: &mut StopRx,
    keep_records: bool,
) -> Measurement {
    let w = &p.settings.workload;
    let mut state = p.empty_state(Some(model.to_string()));
    state.counts.warmup_requests = warm.requests;
    state.counts.warmup_failed = warm.failed;
    let sem = Arc::new(Semaphore::new(w.parallel));
    let in_flight = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<RequestRecord>();
    // The server's metrics: a baseline scrape now, after the warm-up, then at intervals.
    let scraper = crate::scrape::Scraper::start(&p.settings, &p.target, model).await;
    // The time anchor: monotonic offsets from here map to wall-clock time from here.
    let phase_start = Instant::now();
    state.started_at = Some(Wall::now());
    let mut tasks = JoinSet::new();
    let model: Arc<str> = model.into();
    let mut expected = 0u64;
    for i in (0..p.plan.conversations.len()).filter(|i| w.shard.owns(*i)) {
        expected += w.turns as u64;
        tasks.spawn(run_conversation(ConversationCtx {
            plan: p.plan.clone(),
            index: i,
            endpoint: p.endpoint.clone(),
            model: model.clone(),
            max_tokens: w.max_tokens,
            sem: sem.clone(),
            tx: tx.clone(),
            stop: stop.clone(),
            phase_start,
            in_flight: in_flight.clone(),
        }));
    }
    drop(tx);

    let mut records = Vec::new();
    let tty = std::io::stderr().is_terminal();
    let mut ticker = tokio::time::interval(if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    });
    ticker.tick().await;
    let grace = p.settings.output.grace_period;
    // A stop that came during warm-up has been seen already: start its grace now.
    let mut stopped_by = *stop.borrow();
    let mut grace_deadline = stopped_by.map(|_| tokio::time::Instant::now() + grace);
    let mut probe_at = tokio::time::Instant::now() + LAG_PROBE_EVERY;
    loop {
        let grace_end = async {
            match grace_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = rx.recv() => match r {
                Some(mut r) => {
                    state.add(&mut r);
                    if keep_records {
                        records.push(r);
                    }
                }
                None => break,
            },
            _ = tokio::time::sleep_until(probe_at) => {
                let now = tokio::time::Instant::now();
                let late = now.saturating_duration_since(probe_at);
                state.histograms.client_lag.record(crate::client::micros(late));
                probe_at = now + LAG_PROBE_EVERY;
            }
            _ = ticker.tick() => print_progress(&state, expected, &in_flight, phase_start, tty),
            changed = stop.changed(), if stopped_by.is_none() => {
                if changed.is_ok() {
                    if let Some(reason) = *stop.borrow() {
                        stopped_by = Some(reason);
                        tracing::warn!("{}: no new requests; waiting up to {}s for {} in flight",
                            reason.describe(), grace.as_secs_f64(), in_flight.load(Ordering::Relaxed));
                        grace_deadline = Some(tokio::time::Instant::now() + grace);
                    }
                }
            }
            _ = grace_end => break,
        }
    }
    let abandoned = in_flight.load(Ordering::Relaxed);
    tasks.abort_all();
    // Records already sent by tasks that finished in the last instant still count.
    while let Ok(mut r) = rx.try_recv() {
        state.add(&mut r);
        if keep_records {
            records.push(r);
        }
    }
    state.ended_at = state
        .started_at
        .map(|s| s.plus_us(crate::client::micros(phase_start.elapsed())));
    if tty {
        eprintln!();
    }
    if let Some(s) = scraper {
        state.server = s.finish().await;
    }
    if let Some(reason) = stopped_by {
        state.partial = Some(reason.describe().to_string());
        state.counts.abandoned = abandoned;
    }
    // Every measured request failed, and every failure says the endpoint is unusable.
    let c = &state.counts;
    if c.requests > 0 && c.fatal_failed == c.requests {
        let first = state
            .errors
            .values()
            .next()
            .map(|e| e.first_message.clone())
            .unwrap_or_default();
        state.endpoint_unusable = Some(format!("every request failed: {first}"));
    }
    Measurement {
        state,
        records,
        stopped_by,
    }
}

/// Finish: the report of a state (statistics, verdict, warnings), with its rows.
pub fn finish(state: RunState, records: &[RequestRecord]) -> RunReport {
    let requests = (!records.is_empty()).then(|| Requests {
        rows: records.iter().map(RequestRow::from).collect(),
        sampled_from: None,
    });
    RunReport::new(state, requests)
}

/// `turnbench run`: every phase in order.
pub async fn execute(settings: Settings, mut stop: StopRx) -> anyhow::Result<RunResult> {
    let p = prepare(&settings)?;
    let refused = |p: &Prepared, model: Option<String>, why: Refused| {
        let mut state = p.empty_state(model);
        let stopped_by = match why {
            Refused::Unusable(why) => {
                tracing::error!("the endpoint cannot be used: {why}");
                state.endpoint_unusable = Some(why);
                None
            }
            Refused::Stopped(reason) => {
                state.partial = Some(reason.describe().to_string());
                Some(reason)
            }
        };
        RunResult {
            report: finish(state, &[]),
            stopped_by,
        }
    };
    let model = match preflight(&p, &mut stop).await {
        Ok(m) => m,
        Err(why) => return Ok(refused(&p, p.settings.target.model.clone(), why)),
    };
    tracing::info!(model = %model, url = %p.target.url(), seed = p.plan.seed,
        salt = p.plan.salt.as_deref().unwrap_or("none"), "starting");
    let warm = match warm_up(&p, &model, &mut stop).await {
        Ok(w) => w,
        Err(why) => return Ok(refused(&p, Some(model), why)),
    };
    if let Err(why) = wait_for_start(settings.workload.start_at, &mut stop).await {
        return Ok(refused(&p, Some(model), why));
    }
    let keep = settings.output.output_dir.is_some() || settings.output.print_results;
    let m = measure(&p, &model, warm, &mut stop, keep).await;
    Ok(RunResult {
        report: finish(m.state, &m.records),
        stopped_by: m.stopped_by,
    })
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
    in_flight: Arc<AtomicU64>,
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

/// One message of the history: the opening's parts, a fixed question, or a reply.
enum Turn {
    Opening,
    Question(&'static str),
    Reply(String),
}

/// Play one conversation: think, wait for a slot, send, read; turn after turn.
///
/// A failed turn keeps its question in the history and adds no reply; the conversation
/// goes on with its next turn, so later prompts still grow as they would have.
async fn run_conversation(mut ctx: ConversationCtx) {
    let conv: &ConversationPlan = &ctx.plan.conversations[ctx.index];
    let opening = conv.opening();
    let mut history: Vec<(&'static str, Turn)> = vec![("user", Turn::Opening)];
    // The previous turn's prompt and reply tokens: what this turn could reuse.
    let mut reusable: Option<u64> = None;
    for turn in 0..conv.delays.len() {
        if turn > 0 {
            history.push(("user", Turn::Question(conv.questions[turn - 1])));
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
        let singles: Vec<[&str; 1]> = history
            .iter()
            .map(|(_, t)| match t {
                Turn::Opening => [""],
                Turn::Question(q) => [*q],
                Turn::Reply(r) => [r.as_str()],
            })
            .collect();
        let msgs: Vec<Message<'_>> = history
            .iter()
            .zip(&singles)
            .map(|((role, t), one)| Message {
                role,
                parts: match t {
                    Turn::Opening => &opening,
                    _ => one,
                },
            })
            .collect();
        let prompt_bytes: usize = msgs.iter().map(Message::len).sum();
        let body = ctx.endpoint.chat_body(&ctx.model, &msgs, ctx.max_tokens);
        drop(msgs);
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        let called_us = crate::client::micros(ctx.phase_start.elapsed());
        let mut m = ctx.endpoint.chat(body).await;
        ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
        let reply = std::mem::take(&mut m.reply);
        let record = RequestRecord {
            conversation: conv.index,
            turn: turn as u32 + 1,
            doc_kind: conv.doc.kind,
            // Every offset of the request counts from its connection being ready.
            start_us: called_us + m.ready_after_us,
            prompt_bytes: prompt_bytes as u64,
            reusable_tokens: reusable,
            measured: m,
        };
        let ok = record.ok();
        let mu = &record.measured;
        reusable = match (ok, mu.prompt_tokens, mu.tokens_approx) {
            (true, Some(p), false) => Some(p + mu.output_tokens.unwrap_or(0)),
            _ => None,
        };
        if ctx.tx.send(record).is_err() {
            return;
        }
        if ok && !reply.is_empty() {
            history.push(("assistant", Turn::Reply(reply)));
        }
    }
}

fn print_progress(
    state: &RunState,
    expected: u64,
    in_flight: &AtomicU64,
    start: Instant,
    tty: bool,
) {
    let p50 = state
        .histograms
        .ttft
        .quantile_us(0.5)
        .map(|us| format!("{:.1} ms", us as f64 / 1000.0))
        .unwrap_or_else(|| "-".into());
    let line = format!(
        "[{:>6.1}s] {}/{} requests, {} failed, {} in flight, TTFT P50 {}",
        start.elapsed().as_secs_f64(),
        state.counts.requests,
        expected,
        state.counts.failed,
        in_flight.load(Ordering::Relaxed),
        p50
    );
    if tty {
        eprint!("\r{line}   ");
    } else {
        eprintln!("{line}");
    }
}
