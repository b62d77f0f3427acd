//! The phases every measuring command composes: prepare (plan, endpoint), preflight
//! (model), warm-up, measure (→ the typed run state), finish (verdict, report).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::{Api, Chain, Endpoint, Message, MessageKind, RequestError, ToolCall, Unusable};
use crate::config::History;
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
    /// Open loop: each conversation's arrival, seconds from the start of the measured
    /// phase; `None`: a closed loop.
    pub arrivals: Option<Arc<Vec<f64>>>,
    /// The in-process simulator, when no URL was given; kept alive for the run.
    _sim: Option<sim::SimThread>,
}

impl Prepared {
    /// The state a run of this plan starts from, once the model is known.
    pub fn empty_state(&self, model: Option<String>) -> RunState {
        let mut state = RunState::new(RunMeta::of(
            &self.settings,
            self.target.clone(),
            model,
            self.plan.seed,
            self.plan.salt.clone(),
        ));
        if let Some(a) = self.settings.workload.arrival {
            let planned = self.plan.conversations.len();
            state.open_loop = Some(crate::state::open_loop::OpenLoop::new(a, planned));
        }
        state
    }
}

/// Prepare: the documents and the plan (seed and salt drawn), the open-file limit,
/// the simulator when there is no URL, and the client.
pub fn prepare(settings: &Settings) -> anyhow::Result<Prepared> {
    let mut settings = settings.clone();
    let seed = settings.workload.seed.unwrap_or_else(workload::random_seed);
    // Open loop: the arrivals decide how many conversations there are, and every one
    // may be in flight at once (a slot to wait for would let the server slow arrivals).
    let arrivals = settings.workload.arrival.map(|a| {
        let times = workload::arrivals::poisson(a.rate_per_s, a.duration_s, seed);
        settings.workload.conversations = times.len();
        settings.workload.parallel = times.len().max(1);
        Arc::new(times)
    });
    let settings = &settings;
    let w = &settings.workload;
    let documents = workload::load_documents(&w.documents)?;
    // Each request in flight holds a socket, and the in-process simulator one more. A
    // closed connection gives its descriptor back at once (TIME_WAIT holds none); a
    // quarter more covers connections being replaced while their old one closes. (Twice
    // as many held 10,000 users back on a 20,000-descriptor machine for no reason.)
    let per_request = if settings.target.url.is_none() { 2 } else { 1 };
    let sockets = w.parallel as u64 * per_request * 5 / 4;
    ensure_fd_limit(sockets + 256, w.parallel)?;
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
        arrivals,
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
            kind: MessageKind::Text,
        }];
        let max_tokens = p.settings.workload.max_tokens.min(16);
        let api = p.settings.target.api;
        let body = match api {
            Api::Chat => p.endpoint.chat_body(model, &msgs, max_tokens, &[]),
            Api::Responses => p
                .endpoint
                .responses_body(model, &msgs, max_tokens, Chain::None, &[]),
        };
        let Some(m) = or_stop(p.endpoint.send(api, body), stop, grace).await else {
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

/// One endpoint a measured phase sends to: its prepared plan and client, its model.
pub struct Lane<'a> {
    pub prepared: &'a Prepared,
    pub model: String,
    pub warm: WarmUp,
}

/// Measure: this shard's conversations, folded into the run state as they finish.
/// `keep_records` keeps every request's record too (for requests.csv).
pub async fn measure(
    p: &Prepared,
    model: &str,
    warm: WarmUp,
    stop: &mut StopRx,
    keep_records: bool,
) -> Measurement {
    let lane = Lane {
        prepared: p,
        model: model.to_string(),
        warm,
    };
    measure_lanes(&[lane], 0, stop, keep_records)
        .await
        .pop()
        .expect("one lane, one measurement")
}

/// Measure several endpoints with the same plan at once: every turn of every
/// conversation goes to each lane one right after the other, in a random order per
/// turn drawn from `order_seed`, inside one of the `parallel` slots, so the lanes share
/// time, load and think time and their differences pair up. One lane is a plain run.
pub async fn measure_lanes(
    lanes: &[Lane<'_>],
    order_seed: u64,
    stop: &mut StopRx,
    keep_records: bool,
) -> Vec<Measurement> {
    let first = lanes[0].prepared;
    let w = &first.settings.workload;
    let mut states: Vec<RunState> = lanes
        .iter()
        .map(|l| {
            let mut st = l.prepared.empty_state(Some(l.model.clone()));
            st.counts.warmup_requests = l.warm.requests;
            st.counts.warmup_failed = l.warm.failed;
            st
        })
        .collect();
    let sem = Arc::new(Semaphore::new(w.parallel));
    let in_flight = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, RequestRecord)>();
    // The server's metrics (one lane: a run, a sweep level): a baseline scrape now,
    // after the warm-up, then at intervals.
    let scraper = if lanes.len() == 1 {
        crate::scrape::Scraper::start(&first.settings, &first.target, &lanes[0].model).await
    } else {
        None
    };
    // The time anchor: monotonic offsets from here map to wall-clock time from here.
    let phase_start = Instant::now();
    let started_at = Wall::now();
    for st in &mut states {
        st.started_at = Some(started_at);
    }
    let mut tasks = JoinSet::new();
    let lane_ctx: Arc<Vec<LaneCtx>> = Arc::new(
        lanes
            .iter()
            .map(|l| LaneCtx {
                plan: l.prepared.plan.clone(),
                endpoint: l.prepared.endpoint.clone(),
                model: l.model.as_str().into(),
                api: l.prepared.settings.target.api,
                history: l.prepared.settings.target.history,
                tools: workload::tool_definitions(
                    l.prepared.settings.target.api,
                    l.prepared.settings.workload.tools,
                    &l.prepared.settings.target.mcp_servers,
                ),
            })
            .collect(),
    );
    let mut expected = 0u64;
    for i in (0..first.plan.conversations.len()).filter(|i| w.shard.owns(*i)) {
        expected += (w.turns * lanes.len()) as u64;
        tasks.spawn(run_conversation(ConversationCtx {
            lanes: lane_ctx.clone(),
            index: i,
            order_seed,
            max_tokens: w.max_tokens,
            sem: sem.clone(),
            tx: tx.clone(),
            stop: stop.clone(),
            phase_start,
            in_flight: in_flight.clone(),
            arrival: first
                .arrivals
                .as_ref()
                .map(|a| Duration::from_secs_f64(a[i])),
        }));
    }
    drop(tx);

    let mut records: Vec<Vec<RequestRecord>> = lanes.iter().map(|_| Vec::new()).collect();
    let tty = std::io::stderr().is_terminal();
    let mut ticker = tokio::time::interval(if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    });
    ticker.tick().await;
    let grace = first.settings.output.grace_period;
    // A stop that came during warm-up has been seen already: start its grace now.
    let mut stopped_by = *stop.borrow();
    let mut grace_deadline = stopped_by.map(|_| tokio::time::Instant::now() + grace);
    let mut probe_at = tokio::time::Instant::now() + LAG_PROBE_EVERY;
    let mut add = |states: &mut Vec<RunState>, (lane, mut r): (usize, RequestRecord)| {
        states[lane].add(&mut r);
        if keep_records {
            records[lane].push(r);
        }
    };
    loop {
        let grace_end = async {
            match grace_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = rx.recv() => match r {
                Some(r) => add(&mut states, r),
                None => break,
            },
            _ = tokio::time::sleep_until(probe_at) => {
                let now = tokio::time::Instant::now();
                let late = crate::client::micros(now.saturating_duration_since(probe_at));
                for st in &mut states {
                    st.histograms.client_lag.record(late);
                }
                probe_at = now + LAG_PROBE_EVERY;
            }
            _ = ticker.tick() => print_progress(&states, expected, &in_flight, phase_start, tty),
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
    // Every conversation may have ended because of a stop the loop had not seen yet
    // (the tasks quit at once when no request is in flight): the run is still partial.
    if stopped_by.is_none() {
        stopped_by = *stop.borrow();
    }
    let abandoned = in_flight.load(Ordering::Relaxed);
    tasks.abort_all();
    // Records already sent by tasks that finished in the last instant still count.
    while let Ok(r) = rx.try_recv() {
        add(&mut states, r);
    }
    let ended_at = started_at.plus_us(crate::client::micros(phase_start.elapsed()));
    if tty {
        eprintln!();
    }
    if let Some(s) = scraper {
        states[0].server = s.finish().await;
    }
    states
        .into_iter()
        .zip(records)
        .map(|(mut state, records)| {
            state.ended_at = Some(ended_at);
            if let Some(reason) = stopped_by {
                state.partial = Some(reason.describe().to_string());
                state.counts.abandoned = abandoned;
            }
            // Every measured request failed, and every failure says the endpoint is
            // unusable.
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
        })
        .collect()
}

/// Finish: the report of a state (statistics, verdict, warnings), with its rows.
pub fn finish(state: RunState, records: &[RequestRecord]) -> RunReport {
    let requests = (!records.is_empty()).then(|| Requests {
        rows: records.iter().map(RequestRow::from).collect(),
        sampled_from: None,
    });
    RunReport::new(state, requests)
}

/// The report of a run refused before measuring: the endpoint unusable, or a stop.
pub fn refused(p: &Prepared, model: Option<String>, why: Refused) -> RunResult {
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
}

/// `turnbench run`: every phase in order.
pub async fn execute(settings: Settings, mut stop: StopRx) -> anyhow::Result<RunResult> {
    let p = prepare(&settings)?;
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

/// What a conversation task needs of one lane.
struct LaneCtx {
    plan: Arc<Plan>,
    endpoint: Endpoint,
    model: Arc<str>,
    api: Api,
    history: Option<History>,
    /// The tools offered with every request, as the lane's API takes them.
    tools: Vec<serde_json::Value>,
}

struct ConversationCtx {
    lanes: Arc<Vec<LaneCtx>>,
    index: usize,
    order_seed: u64,
    max_tokens: u32,
    sem: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<(usize, RequestRecord)>,
    stop: StopRx,
    phase_start: Instant,
    in_flight: Arc<AtomicU64>,
    /// Open loop: when the first request goes, from the phase start (instead of a
    /// think time, whatever the server is doing).
    arrival: Option<Duration>,
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

/// One message of the history: the opening's parts, a fixed question, a reply, the
/// model's tool calls, or a tool's output.
enum Turn {
    Opening,
    Question(&'static str),
    Reply(String),
    ToolCalls(Vec<ToolCall>),
    ToolOutput { call_id: String, output: String },
}

/// Play one conversation: think, wait for a slot, send, read; turn after turn. With
/// several lanes, each turn goes to every lane inside the same slot, in a seeded
/// random order, each lane keeping its own history. When the model calls a tool, the
/// turn goes on with one follow-up request carrying the tools' outputs.
///
/// A failed turn keeps its question in the history and adds no reply; the conversation
/// goes on with its next turn, so later prompts still grow as they would have.
async fn run_conversation(mut ctx: ConversationCtx) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let lanes = ctx.lanes.clone();
    // The same seed gives every lane the same questions and think times: lane 0's
    // plan paces them all.
    let pace: &ConversationPlan = &lanes[0].plan.conversations[ctx.index];
    let openings: Vec<Vec<&str>> = lanes
        .iter()
        .map(|l| l.plan.conversations[ctx.index].opening())
        .collect();
    let mut histories: Vec<Vec<(&'static str, Turn)>> = lanes
        .iter()
        .map(|_| vec![("user", Turn::Opening)])
        .collect();
    // Responses API state per lane: the last successful response, the conversation.
    let mut previous: Vec<Option<String>> = lanes.iter().map(|_| None).collect();
    let mut conversation: Vec<Option<String>> = lanes.iter().map(|_| None).collect();
    // Per lane, the previous turn's prompt and reply tokens: what this turn could reuse.
    let mut reusable: Vec<Option<u64>> = lanes.iter().map(|_| None).collect();
    let mut order: Vec<usize> = (0..lanes.len()).collect();
    for turn in 0..pace.delays.len() {
        if turn > 0 {
            for h in &mut histories {
                h.push(("user", Turn::Question(pace.questions[turn - 1])));
            }
        }
        let wake = match ctx.arrival {
            Some(at) if turn == 0 => ctx.phase_start + at,
            _ => Instant::now() + Duration::from_secs_f64(pace.delays[turn]),
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = stopped(&mut ctx.stop) => return,
        }
        let permit = tokio::select! {
            p = ctx.sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stopped(&mut ctx.stop) => return,
        };
        if order.len() > 1 {
            let pair = (ctx.index as u64) << 32 | turn as u64;
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                ctx.order_seed ^ pair.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            order.shuffle(&mut rng);
        }
        for &lane in &order {
            let l = &lanes[lane];
            let history = &mut histories[lane];
            // Where this request's new messages start: what a server-held history
            // has not seen yet.
            let mut new_from = history.len() - 1;
            for round in 0..2 {
                let singles: Vec<[&str; 1]> = history
                    .iter()
                    .map(|(_, t)| match t {
                        Turn::Question(q) => [*q],
                        Turn::Reply(r) => [r.as_str()],
                        Turn::ToolOutput { output, .. } => [output.as_str()],
                        Turn::Opening | Turn::ToolCalls(_) => [""],
                    })
                    .collect();
                let msgs: Vec<Message<'_>> = history
                    .iter()
                    .zip(&singles)
                    .map(|((role, t), one)| Message {
                        role,
                        parts: match t {
                            Turn::Opening => &openings[lane],
                            Turn::ToolCalls(_) => &[],
                            _ => one,
                        },
                        kind: match t {
                            Turn::ToolCalls(calls) => MessageKind::ToolCalls(calls),
                            Turn::ToolOutput { call_id, .. } => MessageKind::ToolOutput { call_id },
                            _ => MessageKind::Text,
                        },
                    })
                    .collect();
                let sent: &[Message<'_>] = match l.history {
                    Some(History::Server | History::Conversation) => &msgs[new_from..],
                    _ => &msgs,
                };
                let prompt_bytes: usize = sent.iter().map(Message::len).sum();
                ctx.in_flight.fetch_add(1, Ordering::Relaxed);
                let mut called_us = crate::client::micros(ctx.phase_start.elapsed());
                let mut m = match (l.api, l.history) {
                    (Api::Chat, _) => {
                        let body = l
                            .endpoint
                            .chat_body(&l.model, sent, ctx.max_tokens, &l.tools);
                        l.endpoint.send(Api::Chat, body).await
                    }
                    (Api::Responses, Some(History::Conversation)) => {
                        let mut refused = None;
                        if conversation[lane].is_none() {
                            match l.endpoint.create_conversation().await {
                                Ok(id) => conversation[lane] = Some(id),
                                Err(e) => refused = Some(e),
                            }
                            // Creating the conversation is not part of the turn's latency.
                            called_us = crate::client::micros(ctx.phase_start.elapsed());
                        }
                        match &conversation[lane] {
                            Some(id) => {
                                let chain = Chain::Conversation(id);
                                let body = l.endpoint.responses_body(
                                    &l.model,
                                    sent,
                                    ctx.max_tokens,
                                    chain,
                                    &l.tools,
                                );
                                l.endpoint.send(Api::Responses, body).await
                            }
                            // The turn fails as the creation did; the next turn tries again.
                            None => crate::client::Measured {
                                error: refused,
                                ..Default::default()
                            },
                        }
                    }
                    (Api::Responses, history) => {
                        let chain = match history {
                            Some(History::Server) => Chain::Previous(previous[lane].as_deref()),
                            _ => Chain::None,
                        };
                        let body = l.endpoint.responses_body(
                            &l.model,
                            sent,
                            ctx.max_tokens,
                            chain,
                            &l.tools,
                        );
                        l.endpoint.send(Api::Responses, body).await
                    }
                };
                drop(msgs);
                drop(singles);
                ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
                if m.ok() {
                    if let Some(id) = m.response_id.take() {
                        previous[lane] = Some(id);
                    }
                }
                let reply = std::mem::take(&mut m.reply);
                // One follow-up per turn answers the tools the model called.
                let calls = (round == 0 && m.ok() && !l.tools.is_empty())
                    .then(|| m.tool_calls.clone())
                    .filter(|c| !c.is_empty());
                let record = RequestRecord {
                    conversation: pace.index,
                    turn: turn as u32 + 1,
                    doc_kind: pace.doc.kind,
                    // Every offset of the request counts from its connection being ready.
                    start_us: called_us + m.ready_after_us,
                    prompt_bytes: prompt_bytes as u64,
                    after_tool: round > 0,
                    reusable_tokens: if round == 0 { reusable[lane] } else { None },
                    measured: m,
                };
                let ok = record.ok();
                let mu = &record.measured;
                reusable[lane] = match (ok, mu.prompt_tokens, mu.tokens_approx) {
                    (true, Some(p), false) => Some(p + mu.output_tokens.unwrap_or(0)),
                    _ => None,
                };
                if ctx.tx.send((lane, record)).is_err() {
                    return;
                }
                if let Some(calls) = calls {
                    let outputs: Vec<Turn> = calls
                        .iter()
                        .map(|c| Turn::ToolOutput {
                            call_id: c.id.clone(),
                            output: workload::tool_output(c),
                        })
                        .collect();
                    history.push(("assistant", Turn::ToolCalls(calls)));
                    new_from = history.len();
                    history.extend(outputs.into_iter().map(|t| ("tool", t)));
                    continue;
                }
                if ok && !reply.is_empty() {
                    history.push(("assistant", Turn::Reply(reply)));
                }
                break;
            }
        }
        drop(permit);
    }
}

fn print_progress(
    states: &[RunState],
    expected: u64,
    in_flight: &AtomicU64,
    start: Instant,
    tty: bool,
) {
    let p50 = states
        .iter()
        .map(|st| {
            st.histograms
                .ttft
                .quantile_us(0.5)
                .map(|us| format!("{:.1} ms", us as f64 / 1000.0))
                .unwrap_or_else(|| "-".into())
        })
        .collect::<Vec<_>>()
        .join(" / ");
    let total: u64 = states.iter().map(|s| s.counts.requests).sum();
    let failed: u64 = states.iter().map(|s| s.counts.failed).sum();
    let line = format!(
        "[{:>6.1}s] {}/{} requests, {} failed, {} in flight, TTFT P50 {}",
        start.elapsed().as_secs_f64(),
        total,
        expected,
        failed,
        in_flight.load(Ordering::Relaxed),
        p50
    );
    if tty {
        eprint!("\r{line}   ");
    } else {
        eprintln!("{line}");
    }
}
