//! Command line: flags parsed once by clap into a low-level form, turned into
//! validated settings by [`crate::config`], then run. `main` only calls [`main`].

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use figment::value::{Dict, Value};

use crate::config::schema::{self, Kind, Scope};
use crate::config::{self, Secret, Sources};
use crate::error::{exit, ConfigError};
use crate::report::RunReport;
use crate::run::{self, StopReason};
use crate::sim::{self, Faults, SimConfig};
use crate::verdict::Status;

#[derive(Parser, Debug)]
#[command(
    name = "turnbench",
    version,
    about = "Multi-turn prefix-caching benchmark for OpenAI-compatible LLM endpoints",
    long_about = "Multi-turn prefix-caching benchmark for OpenAI-compatible LLM endpoints \
(vLLM, llm-d, LiteLLM gateways, Llama Stack). Measures time to first token, how much \
prefix caching speeds later turns up, throughput and errors, and prints a PASS/WARN/FAIL \
verdict as AgnosticD user-info YAML.\n\n`turnbench run` with no URL benchmarks the \
built-in simulator, so it works anywhere with no server.",
    after_help = "Exit codes: 0 run finished (any verdict), 1 FAIL with --strict, 2 bad \
configuration, 3 endpoint not usable, 4 internal error, 130/143 stopped by SIGINT/SIGTERM \
(partial report printed)."
)]
pub struct Cli {
    /// Log format on stderr (levels through RUST_LOG, e.g. RUST_LOG=turnbench=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the benchmark against URL, or against the built-in simulator when no URL is given.
    #[command(
        allow_negative_numbers = true,
        args_override_self = true,
        after_help = "Every option can also be set as TURNBENCH_<OPTION> in upper snake case \
(TURNBENCH_API_KEY, TURNBENCH_PARALLEL, ...) or in a --config file (YAML or TOML, keys in snake \
case). Precedence, highest first: flags, environment, config file, defaults. OPENAI_API_KEY is \
read when TURNBENCH_API_KEY is unset."
    )]
    Run(Box<RunArgs>),
    /// Serve the simulator: an OpenAI-compatible server with a prefix cache.
    Sim(SimArgs),
    /// Render the HTML report of a saved run (results.json, or a log holding a
    /// TURNBENCH RESULTS block), to a file or served over HTTP.
    Report(ReportArgs),
    /// Run one plan against two endpoints and report every difference with its 95%
    /// confidence interval, and an overhead verdict.
    #[command(
        allow_negative_numbers = true,
        args_override_self = true,
        after_help = "Every setting of `run` applies to both sides; per side: --baseline-*/--candidate-* \
(TURNBENCH_BASELINE_*, TURNBENCH_CANDIDATE_*, or baseline:/candidate: sections of a --config file). \
A side without its own key or model uses the shared one. `sim` as a URL is an in-process simulator. \
Exit codes: 0 compared (any verdict), 1 overhead FAIL with --strict, 2 bad configuration, 3 a side \
not usable (the report names it), 130/143 stopped."
    )]
    Compare(Box<CompareArgs>),
    /// Merge the shards of one run (results.json files or pod logs printed with
    /// --print-results) into one exact report.
    #[command(
        after_help = "Inputs must be shards of one run: the same seed, salt, workload \
and shard count, each shard index once. Missing shards are a warning and the report says \
partial. Exit codes: 0 merged (any verdict), 1 FAIL with --strict, 2 inputs refused."
    )]
    Merge(MergeArgs),
    /// One measured run per load level (--users 1,4,16,64 or 1..64x2), each with its own
    /// salt; a table, charts against users, and the largest passing level.
    #[command(
        allow_negative_numbers = true,
        args_override_self = true,
        after_help = "Takes every `run` setting; --users gives the levels (conversations = \
parallel = U at each). A level whose error rate exceeds --max-error-rate ends the sweep: no \
higher level runs. With --output-dir: report.html (the charts), sweep.json, and each level's \
own files in users-<U>/. Exit codes as for run; --strict exits 1 when no level passes."
    )]
    Sweep(Box<RunArgs>),
    /// The largest number of users whose run passes: doubling, then bisection, each
    /// probe a full run (--max-users N; --require-cache also needs cache GOOD).
    #[command(
        allow_negative_numbers = true,
        args_override_self = true,
        after_help = "Takes every `run` setting; --users sets where the doubling starts \
(default 1). Reports max_users with its bracket (largest PASS, smallest FAIL) and every \
probe's figures; data key <prefix>_max_users. With --output-dir: report.html, capacity.json, \
each probe's files in users-<U>/. Exit codes as for run; --strict exits 1 when no level passes."
    )]
    Capacity(Box<RunArgs>),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// results.json files, or logs holding a TURNBENCH RESULTS block (`oc logs` of each pod)
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Write the merged results.json, report.html and requests.csv here
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Also print the merged results.json (gzip, base64) between TURNBENCH RESULTS markers
    #[arg(long)]
    pub print_results: bool,
    /// Exit 1 when the merged verdict is FAIL
    #[arg(long)]
    pub strict: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// results.json of a run, or a log printed with --print-results
    #[arg(value_name = "RESULTS")]
    pub input: PathBuf,
    /// Where to write the report
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "report.html",
        conflicts_with = "serve"
    )]
    pub output: PathBuf,
    /// Serve the report over HTTP instead (read-only: GET / and /results.json; the input
    /// is read again on every request)
    #[arg(long)]
    pub serve: bool,
    /// Address to serve on
    #[arg(long, default_value = "0.0.0.0", requires = "serve")]
    pub host: String,
    /// Port to serve on (0: any free port, printed at start)
    #[arg(long, default_value_t = 8080, requires = "serve")]
    pub port: u16,
}

/// Flags of `turnbench run`: every setting of the schema it takes, all optional
/// (unset flags leave lower layers in force), the positional URL and `--config`.
#[derive(Debug, Default, Clone)]
pub struct RunArgs {
    /// The settings given on the command line, keyed as in the config file.
    pub flags: Dict,
    pub config: Option<PathBuf>,
}

/// Flags of `turnbench compare`: the run's, the per-side ones, two positional URLs.
#[derive(Debug, Default, Clone)]
pub struct CompareArgs(pub RunArgs);

impl RunArgs {
    pub fn to_dict(&self) -> Dict {
        self.flags.clone()
    }
}

const CONFIG_ARG: &str = "config";

/// Positional arguments: (id, the setting they give, help).
type Positional = (&'static str, &'static str, &'static str);

const RUN_POSITIONALS: &[Positional] = &[(
    "url_arg",
    "url",
    "Base URL including /v1, e.g. https://gateway.example/v1 [env: TURNBENCH_URL]",
)];
const COMPARE_POSITIONALS: &[Positional] = &[
    (
        "baseline_url_arg",
        "baseline_url",
        "Base URL of the baseline, including /v1, or `sim` [env: TURNBENCH_BASELINE_URL]",
    ),
    (
        "candidate_url_arg",
        "candidate_url",
        "Base URL of the candidate, including /v1, or `sim` [env: TURNBENCH_CANDIDATE_URL]",
    ),
];

/// The flags of every setting a command of `scope` takes, from the schema.
fn augment(mut cmd: clap::Command, scope: Scope, positionals: &[Positional]) -> clap::Command {
    for (id, key, help) in positionals {
        cmd = cmd.arg(
            Arg::new(*id)
                .value_name(key.to_ascii_uppercase())
                .help(*help)
                .conflicts_with(*key),
        );
    }
    cmd = cmd.arg(
        Arg::new(CONFIG_ARG)
            .long("config")
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("YAML or TOML file of settings (snake-case keys) [env: TURNBENCH_CONFIG]"),
    );
    for s in schema::all().filter(|s| s.scope.within(scope)) {
        let mut help = s.help.to_string();
        if let Some(d) = s.default_text().filter(|_| !s.help.contains("[default:")) {
            help.push_str(&format!(" [default: {d}]"));
        }
        help.push_str(&format!(" [env: {}]", s.env()));
        let mut arg = Arg::new(s.key)
            .long(s.flag())
            .help(help)
            .help_heading(s.group.heading());
        arg = match s.kind {
            Kind::Bool { .. } => arg.action(ArgAction::SetTrue),
            Kind::Uint => arg
                .value_name(s.value_name)
                .value_parser(clap::value_parser!(u64)),
            Kind::Float => arg
                .value_name(s.value_name)
                .value_parser(clap::value_parser!(f64))
                .allow_negative_numbers(true),
            Kind::Text | Kind::Secret => arg.value_name(s.value_name),
            Kind::List => arg.value_name(s.value_name).action(ArgAction::Append),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// The settings given on the command line, keyed as in the config file.
fn from_matches(m: &ArgMatches, scope: Scope, positionals: &[Positional]) -> RunArgs {
    let given = |id: &str| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let mut flags = Dict::new();
    for s in schema::all().filter(|s| s.scope.within(scope)) {
        if !given(s.key) {
            continue;
        }
        let v = match s.kind {
            Kind::Bool { negated } => Value::from(!negated),
            Kind::Uint => Value::from(*m.get_one::<u64>(s.key).expect("parsed")),
            Kind::Float => Value::from(*m.get_one::<f64>(s.key).expect("parsed")),
            Kind::Text | Kind::Secret => {
                Value::from(m.get_one::<String>(s.key).expect("parsed").clone())
            }
            Kind::List => Value::from(
                m.get_many::<String>(s.key)
                    .expect("parsed")
                    .cloned()
                    .collect::<Vec<String>>(),
            ),
        };
        flags.insert(s.key.into(), v);
    }
    for (id, key, _) in positionals {
        if let (false, Some(v)) = (given(key), m.get_one::<String>(id)) {
            flags.insert((*key).into(), Value::from(v.clone()));
        }
    }
    RunArgs {
        flags,
        config: m.get_one::<PathBuf>(CONFIG_ARG).cloned(),
    }
}

impl Args for RunArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        augment(cmd, Scope::Run, RUN_POSITIONALS)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for RunArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(from_matches(m, Scope::Run, RUN_POSITIONALS))
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for CompareArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        augment(cmd, Scope::Compare, COMPARE_POSITIONALS)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for CompareArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(CompareArgs(from_matches(
            m,
            Scope::Compare,
            COMPARE_POSITIONALS,
        )))
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at start)
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Model id served and listed by /v1/models
    #[arg(long, default_value = "turnbench-sim")]
    pub model: String,
    /// Fixed part of the time to first token, ms
    #[arg(long, default_value_t = 15.0)]
    pub base_ttft_ms: f64,
    /// Prefill cost per uncached prompt token (characters / 4), µs
    #[arg(long, default_value_t = 20.0)]
    pub prefill_us_per_token: f64,
    /// Interval between output tokens, ms
    #[arg(long, default_value_t = 3.0)]
    pub itl_ms: f64,
    /// Output tokens per request (fewer when the request's max_tokens is lower)
    #[arg(long, default_value_t = 64)]
    pub output_tokens: u32,
    /// Prefix-cache capacity in tokens, least recently used blocks evicted beyond it
    #[arg(long, default_value_t = 1_000_000)]
    pub cache_capacity_tokens: u64,
    /// Share of requests offering function tools that are answered with a tool call
    #[arg(long, value_name = "RATE", default_value_t = 0.5)]
    pub tool_call_rate: f64,
    /// How long a server-side (MCP) tool call of the Responses API takes, ms
    #[arg(long, value_name = "MS", default_value_t = 20.0)]
    pub mcp_call_ms: f64,
    /// Require `Authorization: Bearer KEY`; others get 401 [env: TURNBENCH_SIM_API_KEY]
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub capacity: sim::CapacityArgs,

    /// Fault: share of requests (0-1) answered with --error-status and an OpenAI-style error body
    #[arg(
        long,
        value_name = "RATE",
        default_value_t = 0.0,
        help_heading = "Faults"
    )]
    pub error_rate: f64,
    /// Fault: HTTP status of --error-rate answers (429 also sends Retry-After)
    #[arg(
        long,
        value_name = "CODE",
        default_value_t = 500,
        help_heading = "Faults"
    )]
    pub error_status: u16,
    /// Fault: Retry-After seconds sent with a 429
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 1,
        help_heading = "Faults"
    )]
    pub retry_after: u32,
    /// Fault: share of streams reset after --cut-after-events events
    #[arg(
        long,
        value_name = "RATE",
        default_value_t = 0.0,
        help_heading = "Faults"
    )]
    pub cut_rate: f64,
    /// Fault: events sent before a cut stream is reset
    #[arg(long, value_name = "N", default_value_t = 3, help_heading = "Faults")]
    pub cut_after_events: u32,
    /// Fault: share of streams with a malformed JSON event after the first token
    #[arg(
        long,
        value_name = "RATE",
        default_value_t = 0.0,
        help_heading = "Faults"
    )]
    pub malformed_rate: f64,
    /// Fault: share of streams with an error event after the first token
    #[arg(
        long,
        value_name = "RATE",
        default_value_t = 0.0,
        help_heading = "Faults"
    )]
    pub error_event_rate: f64,
    /// Fault: share of streams that end with neither [DONE] nor a finish_reason
    #[arg(
        long,
        value_name = "RATE",
        default_value_t = 0.0,
        help_heading = "Faults"
    )]
    pub no_end_rate: f64,
    /// Fault: share of requests that stall (see the two --stall-* durations)
    #[arg(
        long,
        value_name = "RATE",
        default_value_t = 0.0,
        help_heading = "Faults"
    )]
    pub stall_rate: f64,
    /// Fault: a stalled request waits this long before sending headers, ms
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0.0,
        help_heading = "Faults"
    )]
    pub stall_before_headers_ms: f64,
    /// Fault: a stalled stream waits this long after its first token, ms
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0.0,
        help_heading = "Faults"
    )]
    pub stall_between_events_ms: f64,
    /// Fault: send a `"content": null` chunk before every token
    #[arg(long, help_heading = "Faults")]
    pub null_content: bool,
    /// Fault: make the first token one line of this many bytes
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 0,
        help_heading = "Faults"
    )]
    pub long_line_bytes: usize,
    /// Fault: share of Responses API requests whose previous_response_id is taken as unknown
    #[arg(
        long,
        value_name = "RATE",
        default_value_t = 0.0,
        help_heading = "Faults"
    )]
    pub unknown_response_rate: f64,
}

impl SimArgs {
    pub fn to_config(&self) -> Result<SimConfig, ConfigError> {
        for (name, v) in [
            ("--base-ttft-ms", self.base_ttft_ms),
            ("--prefill-us-per-token", self.prefill_us_per_token),
            ("--itl-ms", self.itl_ms),
            ("--mcp-call-ms", self.mcp_call_ms),
        ] {
            if !v.is_finite() || !(0.0..=3_600_000.0).contains(&v) {
                return Err(ConfigError::new(format!(
                    "{name}={v:?}: expected a number from 0 to 3600000"
                )));
            }
        }
        for (name, v) in [
            ("--error-rate", self.error_rate),
            ("--cut-rate", self.cut_rate),
            ("--malformed-rate", self.malformed_rate),
            ("--error-event-rate", self.error_event_rate),
            ("--no-end-rate", self.no_end_rate),
            ("--stall-rate", self.stall_rate),
            ("--unknown-response-rate", self.unknown_response_rate),
            ("--tool-call-rate", self.tool_call_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ConfigError::new(format!(
                    "{name}={v:?}: expected a share from 0 to 1"
                )));
            }
        }
        for (name, v) in [
            ("--stall-before-headers-ms", self.stall_before_headers_ms),
            ("--stall-between-events-ms", self.stall_between_events_ms),
        ] {
            if !v.is_finite() || !(0.0..=86_400_000.0).contains(&v) {
                return Err(ConfigError::new(format!(
                    "{name}={v:?}: expected milliseconds from 0 to 86400000"
                )));
            }
        }
        if !(400..=599).contains(&self.error_status) {
            return Err(ConfigError::new(format!(
                "--error-status=\"{}\": expected an HTTP error status from 400 to 599",
                self.error_status
            )));
        }
        if !(1..=1_000_000_000_000).contains(&self.cache_capacity_tokens) {
            return Err(ConfigError::new(format!(
                "--cache-capacity-tokens=\"{}\": expected a whole number from 1 to 1000000000000",
                self.cache_capacity_tokens
            )));
        }
        if self.output_tokens == 0 {
            return Err(ConfigError::new(
                "--output-tokens=\"0\": expected a whole number of at least 1",
            ));
        }
        let api_key = self
            .api_key
            .clone()
            .or_else(|| std::env::var("TURNBENCH_SIM_API_KEY").ok())
            .filter(|k| !k.is_empty())
            .map(Secret::new);
        Ok(SimConfig {
            model: self.model.clone(),
            base_ttft_ms: self.base_ttft_ms,
            prefill_us_per_token: self.prefill_us_per_token,
            itl_ms: self.itl_ms,
            output_tokens: self.output_tokens,
            cache_capacity_tokens: self.cache_capacity_tokens,
            api_key,
            tools: sim::ToolSim {
                call_rate: self.tool_call_rate,
                mcp_call_ms: self.mcp_call_ms,
            },
            faults: Faults {
                error_rate: self.error_rate,
                error_status: self.error_status,
                retry_after_s: self.retry_after,
                cut_rate: self.cut_rate,
                cut_after_events: self.cut_after_events,
                malformed_rate: self.malformed_rate,
                error_event_rate: self.error_event_rate,
                no_end_rate: self.no_end_rate,
                stall_rate: self.stall_rate,
                stall_before_headers_ms: self.stall_before_headers_ms,
                stall_between_events_ms: self.stall_between_events_ms,
                null_content: self.null_content,
                long_line_bytes: self.long_line_bytes,
                unknown_response_rate: self.unknown_response_rate,
            },
            capacity: self.capacity.to_capacity()?,
        })
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,turnbench=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        // Colours only on a terminal: a Job's log is a file.
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Print a one-line error and return its exit code.
pub(crate) fn fail(code: i32, msg: impl std::fmt::Display) -> i32 {
    eprintln!("turnbench: error: {msg}");
    code
}

/// The whole program: parse, run, print, and the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(
                e.kind(),
                K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand {
                    exit::CONFIG
                } else {
                    exit::OK
                };
            }
            // clap's first line names the flag and the value; keep its tip, drop usage.
            let text = e.to_string();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| {
                    !l.trim().is_empty()
                        && !l.starts_with("Usage:")
                        && !l.starts_with("For more information")
                })
                .collect();
            eprintln!(
                "turnbench: error: {}",
                lines.join(" ").trim_start_matches("error: ")
            );
            return exit::CONFIG;
        }
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return fail(
                exit::INTERNAL,
                format!("cannot start the async runtime: {e}"),
            )
        }
    };
    match cli.command {
        Command::Run(args) => runtime.block_on(run_command(*args)),
        Command::Sim(args) => runtime.block_on(sim_command(args)),
        Command::Report(args) => runtime.block_on(report_command(args)),
        Command::Merge(args) => merge_command(args),
        Command::Compare(args) => runtime.block_on(compare_command(args.0)),
        Command::Sweep(args) => runtime.block_on(crate::sweep::sweep_command(*args)),
        Command::Capacity(args) => runtime.block_on(crate::sweep::capacity_command(*args)),
    }
}

/// Load settings from the process' flags, environment and config file.
pub fn load_settings(args: &RunArgs) -> Result<config::Settings, ConfigError> {
    let sources = Sources::from_process(args.config.clone());
    for (name, closest) in sources.unknown_variables() {
        tracing::warn!("unknown environment variable {name} ignored (did you mean {closest}?)");
    }
    config::load(&args.to_dict(), &sources)
}

async fn run_command(args: RunArgs) -> i32 {
    let settings = match load_settings(&args) {
        Ok(s) => s,
        Err(e) => return fail(exit::CONFIG, e),
    };
    if let Some(Err(e)) = settings.levels.users.as_ref().map(|u| u.single("run")) {
        return fail(exit::CONFIG, e);
    }
    if let Some(dir) = &settings.output.output_dir {
        if let Err(e) = check_writable(dir) {
            return fail(
                exit::CONFIG,
                format!("--output-dir {}: cannot write there ({e})", dir.display()),
            );
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    tokio::spawn(watch_signals(stop_tx));

    let result = match run::execute(settings.clone(), stop_rx).await {
        Ok(r) => r,
        Err(e) => {
            let code = crate::error::exit_code(&e);
            return fail(code, format!("{e:#}"));
        }
    };
    // `--baseline FILE`: this run against an earlier one, with a regression verdict.
    let against = match &settings.compare.baseline_file {
        None => None,
        Some(file) => match crate::compare::against_baseline(
            &result.report,
            file,
            settings.compare.max_regression_pct,
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                // The run happened: print it, then refuse the comparison.
                let _ = print_and_save(&result.report, &settings.output, &[], &[]);
                return fail(exit::CONFIG, e);
            }
        },
    };
    let (lines, data) = match &against {
        Some((c, base)) => (
            crate::compare::lines(c, [base, &result.report]),
            crate::compare::data_deltas(c, "regression_status"),
        ),
        None => (Vec::new(), Vec::new()),
    };
    if let Err(code) = print_and_save(&result.report, &settings.output, &lines, &data) {
        return code;
    }
    let regressed = against
        .as_ref()
        .is_some_and(|(c, _)| c.verdict.status == crate::compare::Judgement::Fail);
    match exit_code_of(&result, settings.output.strict) {
        exit::OK if settings.output.strict && regressed => exit::FAIL,
        code => code,
    }
}

async fn compare_command(args: RunArgs) -> i32 {
    let settings = match load_settings(&args) {
        Ok(s) => s,
        Err(e) => return fail(exit::CONFIG, e),
    };
    if settings.compare.sides.is_none() {
        return fail(
            exit::CONFIG,
            "compare needs BASELINE_URL and CANDIDATE_URL (positional, or TURNBENCH_BASELINE_URL and TURNBENCH_CANDIDATE_URL)",
        );
    }
    if let Some(dir) = &settings.output.output_dir {
        if let Err(e) = check_writable(dir) {
            return fail(
                exit::CONFIG,
                format!("--output-dir {}: cannot write there ({e})", dir.display()),
            );
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    tokio::spawn(watch_signals(stop_tx));
    let result = match crate::compare::execute(settings.clone(), stop_rx).await {
        Ok(r) => r,
        Err(e) => return fail(crate::error::exit_code(&e), format!("{e:#}")),
    };
    let reports = [&result.reports[0], &result.reports[1]];
    let printed = crate::compare::write_stdout(
        &mut io::stdout().lock(),
        &result.comparison,
        reports,
        "overhead_status",
    );
    if let Err(e) = printed {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return fail(exit::INTERNAL, format!("writing the report: {e}"));
        }
    }
    if let Some(dir) = &settings.output.output_dir {
        if let Err(e) = crate::compare::write_output_dir(dir, &result.comparison, reports) {
            return fail(
                exit::INTERNAL,
                format!("writing results to {}: {e}", dir.display()),
            );
        }
        tracing::info!("comparison written to {}", dir.display());
    }
    if let Some(r) = result.unusable() {
        tracing::error!(
            "{}",
            r.state
                .endpoint_unusable
                .as_deref()
                .unwrap_or("a side is not usable")
        );
        exit::ENDPOINT
    } else if let Some(reason) = result.stopped_by {
        match reason {
            StopReason::Sigint => exit::SIGINT,
            StopReason::Sigterm => exit::SIGTERM,
        }
    } else if settings.output.strict
        && result.comparison.verdict.status == crate::compare::Judgement::Fail
    {
        exit::FAIL
    } else {
        exit::OK
    }
}

/// Print a report on stdout and write its files: what every measuring command ends
/// with. `Err` holds the exit code of a failure to do so.
fn print_and_save(
    report: &RunReport,
    out: &config::OutputSettings,
    extra_lines: &[String],
    extra_data: &[(String, String)],
) -> Result<(), i32> {
    let printed = crate::report::write_stdout_with(
        &mut io::stdout().lock(),
        report,
        out.print_results,
        extra_lines,
        extra_data,
    );
    if let Err(e) = printed {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(fail(exit::INTERNAL, format!("writing the report: {e}")));
        }
    }
    if let Some(dir) = &out.output_dir {
        if let Err(e) = crate::report::write_output_dir(dir, report) {
            return Err(fail(
                exit::INTERNAL,
                format!("writing results to {}: {e}", dir.display()),
            ));
        }
        tracing::info!("results written to {}", dir.display());
    }
    Ok(())
}

fn merge_command(args: MergeArgs) -> i32 {
    let report = match crate::merge::merge_files(&args.files) {
        Ok(r) => r,
        Err(e) => return fail(exit::CONFIG, e),
    };
    if let Some(dir) = &args.output_dir {
        if let Err(e) = check_writable(dir) {
            return fail(
                exit::CONFIG,
                format!("--output-dir {}: cannot write there ({e})", dir.display()),
            );
        }
    }
    let out = config::OutputSettings {
        output_dir: args.output_dir,
        user_info_prefix: report.prefix().to_string(),
        strict: args.strict,
        grace_period: std::time::Duration::ZERO,
        print_results: args.print_results,
    };
    if let Err(code) = print_and_save(&report, &out, &[], &[]) {
        return code;
    }
    if args.strict && report.verdict.status == Status::Fail {
        exit::FAIL
    } else {
        exit::OK
    }
}

/// The exit code of a run that printed its report.
pub fn exit_code_of(result: &run::RunResult, strict: bool) -> i32 {
    if result.report.state.endpoint_unusable.is_some() {
        exit::ENDPOINT
    } else if let Some(reason) = result.stopped_by {
        match reason {
            StopReason::Sigint => exit::SIGINT,
            StopReason::Sigterm => exit::SIGTERM,
        }
    } else if strict && result.report.verdict.status == Status::Fail {
        exit::FAIL
    } else {
        exit::OK
    }
}

pub(crate) fn check_writable(dir: &std::path::Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(".turnbench-write-test");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
}

/// First SIGINT/SIGTERM: ask the run to stop. Second: exit at once.
pub(crate) async fn watch_signals(tx: tokio::sync::watch::Sender<Option<StopReason>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!(
            "cannot install signal handlers; SIGINT/SIGTERM will end the run without a report"
        );
        // Keep the sender: dropping it would read as a stop request.
        let _keep = tx;
        return std::future::pending().await;
    };
    let mut first = None;
    loop {
        let reason = tokio::select! {
            _ = int.recv() => StopReason::Sigint,
            _ = term.recv() => StopReason::Sigterm,
        };
        if first.is_some() {
            eprintln!("turnbench: second signal, exiting now");
            std::process::exit(match reason {
                StopReason::Sigint => exit::SIGINT,
                StopReason::Sigterm => exit::SIGTERM,
            });
        }
        first = Some(reason);
        let _ = tx.send(Some(reason));
    }
}

async fn sim_command(args: SimArgs) -> i32 {
    let cfg = match args.to_config() {
        Ok(c) => c,
        Err(e) => return fail(exit::CONFIG, e),
    };
    let addr: SocketAddr = match format!("{}:{}", args.host, args.port).parse() {
        Ok(a) => a,
        Err(_) => {
            let host = if args.host.contains(':') {
                format!("[{}]", args.host)
            } else {
                args.host.clone()
            };
            match format!("{host}:{}", args.port).parse() {
                Ok(a) => a,
                Err(_) => {
                    return fail(
                        exit::CONFIG,
                        format!("--host={:?}: expected an IP address", args.host),
                    )
                }
            }
        }
    };
    let model = cfg.model.clone();
    let running = match sim::start(cfg, addr).await {
        Ok(r) => r,
        Err(e) => return fail(exit::CONFIG, format!("cannot listen on {addr}: {e}")),
    };
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(
            out,
            "turnbench simulator listening on {} (model {model})",
            running.url()
        );
        let _ = out.flush();
    }
    shutdown_signal().await;
    running.shutdown().await;
    exit::OK
}

fn render_report(path: &std::path::Path) -> Result<String, String> {
    crate::report::render_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

async fn report_command(args: ReportArgs) -> i32 {
    if !args.serve {
        let page = match render_report(&args.input) {
            Ok(p) => p,
            Err(e) => return fail(exit::CONFIG, e),
        };
        if let Err(e) = crate::report::write_atomic(&args.output, page.as_bytes()) {
            return fail(
                exit::INTERNAL,
                format!("writing {}: {e}", args.output.display()),
            );
        }
        tracing::info!("report written to {}", args.output.display());
        return exit::OK;
    }
    // Fail at start, not at the first visitor, when the input is unusable.
    if let Err(e) = render_report(&args.input) {
        return fail(exit::CONFIG, e);
    }
    let addr: SocketAddr = match parse_addr(&args.host, args.port) {
        Ok(a) => a,
        Err(e) => return fail(exit::CONFIG, e),
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => return fail(exit::CONFIG, format!("cannot listen on {addr}: {e}")),
    };
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(
            out,
            "turnbench report serving {} on http://{bound}/",
            args.input.display()
        );
        let _ = out.flush();
    }
    let app = crate::report::serve::router(args.input.clone());
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    match served {
        Ok(()) => exit::OK,
        Err(e) => fail(exit::INTERNAL, format!("serving: {e}")),
    }
}

fn parse_addr(host: &str, port: u16) -> Result<SocketAddr, String> {
    let bracketed = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!("{bracketed}:{port}")
        .parse()
        .map_err(|_| format!("--host={host:?}: expected an IP address"))
}

/// SIGINT or SIGTERM, for servers that stop cleanly.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}
