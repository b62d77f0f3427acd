//! Configuration: one validated [`Settings`] value, layered with figment.
//!
//! Layers, lowest first: built-in defaults → config file (`--config`) → environment
//! (`TURNBENCH_*`, `OPENAI_API_KEY` for the key) → command-line flags. The raw layer
//! ([`RawSettings`]) is what figment extracts; [`Settings::from_raw`] validates it and
//! names, in every error, the flag, variable or file key the user actually wrote.

use std::fmt;
use std::path::PathBuf;

use figment::providers::{Format, Serialized, Toml, Yaml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Prefix of every environment variable turnbench reads.
pub const ENV_PREFIX: &str = "TURNBENCH_";

/// Every setting name (snake case); flags are the kebab-case form, variables
/// `TURNBENCH_` + upper snake case.
pub const KEYS: &[&str] = &[
    "url",
    "api_key",
    "model",
    "conversations",
    "turns",
    "parallel",
    "max_tokens",
    "min_delay",
    "max_delay",
    "timeout",
    "connect_timeout",
    "idle_timeout",
    "warmup",
    "seed",
    "ttft_p95_threshold_ms",
    "speedup_threshold",
    "max_error_rate",
    "documents",
    "output_dir",
    "user_info_prefix",
    "ca_cert",
    "insecure",
    "keep_alive",
    "include_usage",
    "strict",
    "grace_period",
    "print_results",
];

/// Settings whose values are text, never parsed as numbers or booleans.
const TEXT_KEYS: &[&str] = &[
    "url",
    "api_key",
    "model",
    "documents",
    "output_dir",
    "user_info_prefix",
    "ca_cert",
];

/// An API key. Its `Debug` and `Display` never show the value, so it cannot leak
/// through a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The key itself, for the one place that needs it: the Authorization header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The layered, not yet validated settings. `Option` where "unset" means something.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    #[serde(default, deserialize_with = "scalar_string")]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    pub api_key: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    pub model: Option<String>,
    pub conversations: u64,
    pub turns: u64,
    pub parallel: u64,
    pub max_tokens: u64,
    pub min_delay: f64,
    pub max_delay: f64,
    pub timeout: f64,
    pub connect_timeout: f64,
    pub idle_timeout: f64,
    pub warmup: u64,
    #[serde(default)]
    pub seed: Option<u64>,
    pub ttft_p95_threshold_ms: f64,
    pub speedup_threshold: f64,
    pub max_error_rate: f64,
    #[serde(default, deserialize_with = "scalar_string")]
    pub documents: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    pub output_dir: Option<String>,
    #[serde(deserialize_with = "required_scalar_string")]
    pub user_info_prefix: String,
    #[serde(default, deserialize_with = "scalar_string")]
    pub ca_cert: Option<String>,
    pub insecure: bool,
    pub keep_alive: bool,
    pub include_usage: bool,
    pub strict: bool,
    pub grace_period: f64,
    pub print_results: bool,
}

impl Default for RawSettings {
    fn default() -> Self {
        RawSettings {
            url: None,
            api_key: None,
            model: None,
            conversations: 20,
            turns: 10,
            parallel: 4,
            max_tokens: 500,
            min_delay: 0.5,
            max_delay: 2.0,
            timeout: 300.0,
            connect_timeout: 10.0,
            idle_timeout: 60.0,
            warmup: 20,
            seed: None,
            ttft_p95_threshold_ms: 500.0,
            speedup_threshold: 2.0,
            max_error_rate: 0.05,
            documents: None,
            output_dir: None,
            user_info_prefix: "litemaas_benchmark".into(),
            ca_cert: None,
            insecure: false,
            keep_alive: false,
            include_usage: true,
            strict: false,
            grace_period: 5.0,
            print_results: false,
        }
    }
}

/// Environment variables are parsed by figment into numbers or booleans when they
/// look like one; a model called `7` or a numeric key must still be a string.
fn scalar_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<serde_json::Value> = Option::deserialize(d)?;
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(serde_json::Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(serde::de::Error::custom("expected a string")),
    }
}

fn required_scalar_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    scalar_string(d)?.ok_or_else(|| serde::de::Error::custom("expected a string"))
}

/// Where the documents of the conversations come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DocumentSource {
    /// The documents embedded in the binary.
    Bundled,
    /// Every file with a known extension in a directory.
    Directory { path: PathBuf },
    /// Generated documents of this many bytes each.
    Synthetic { bytes: usize },
}

/// Validated settings of `turnbench run`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL including `/v1`, without a trailing slash; `None`: the built-in simulator.
    pub url: Option<String>,
    pub api_key: Option<Secret>,
    pub model: Option<String>,
    pub conversations: usize,
    pub turns: usize,
    pub parallel: usize,
    pub max_tokens: u32,
    pub min_delay: f64,
    pub max_delay: f64,
    pub timeout: f64,
    pub connect_timeout: f64,
    pub idle_timeout: f64,
    pub warmup: usize,
    pub seed: Option<u64>,
    pub ttft_p95_threshold_ms: f64,
    pub speedup_threshold: f64,
    pub max_error_rate: f64,
    pub documents: DocumentSource,
    pub output_dir: Option<PathBuf>,
    pub user_info_prefix: String,
    pub ca_cert: Option<PathBuf>,
    pub insecure: bool,
    pub keep_alive: bool,
    pub include_usage: bool,
    pub strict: bool,
    pub grace_period: f64,
    /// Print results.json compressed between markers on stdout, for Jobs whose files
    /// vanish with their pod.
    pub print_results: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_raw(RawSettings::default(), &|k| Origin::Default.describe(k))
            .expect("built-in defaults are valid")
    }
}

/// The layer a value came from, so an error can name what the user wrote.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env,
    OpenAiEnv,
    Flag,
}

impl Origin {
    fn from_metadata(meta: &Metadata) -> Origin {
        match meta.name.as_ref() {
            "flag" => Origin::Flag,
            "env" => Origin::Env,
            "openai-env" => Origin::OpenAiEnv,
            "file" => match &meta.source {
                Some(figment::Source::File(p)) => Origin::File(p.clone()),
                _ => Origin::File(PathBuf::from("config file")),
            },
            _ => Origin::Default,
        }
    }

    /// How the user wrote `key` in this layer: `--max-delay`, `TURNBENCH_MAX_DELAY`, …
    pub fn describe(&self, key: &str) -> String {
        match self {
            Origin::Default => format!("default {key}"),
            Origin::File(p) => format!("{key} (in {})", p.display()),
            Origin::Env => env_name(key),
            Origin::OpenAiEnv => "OPENAI_API_KEY".into(),
            Origin::Flag => format!("--{}", key.replace('_', "-")),
        }
    }
}

/// `max_delay` → `TURNBENCH_MAX_DELAY`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// A figment provider under a name we recognise in [`Origin::from_metadata`].
struct Named<P> {
    name: &'static str,
    inner: P,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        let mut meta = self.inner.metadata();
        meta.name = self.name.into();
        meta
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// Inputs to the layering that come from outside the process' arguments, so tests can
/// supply them without touching the real environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `(name, value)` of every environment variable.
    pub env: Vec<(String, String)>,
    /// `--config FILE` (or `TURNBENCH_CONFIG`).
    pub config_file: Option<PathBuf>,
}

impl Sources {
    pub fn from_process(config_file: Option<PathBuf>) -> Sources {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let config_file = config_file.or_else(|| {
            env.iter()
                .find(|(k, _)| k == "TURNBENCH_CONFIG")
                .map(|(_, v)| PathBuf::from(v))
        });
        Sources { env, config_file }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `TURNBENCH_*` variables that name no setting, each with the closest known name.
    pub fn unknown_variables(&self) -> Vec<(String, String)> {
        let known: Vec<String> = KEYS.iter().map(|k| env_name(k)).collect();
        self.env
            .iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != "TURNBENCH_CONFIG")
            .filter(|(k, _)| !known.contains(k))
            .map(|(k, _)| {
                let closest = known
                    .iter()
                    .max_by(|a, b| {
                        strsim::jaro_winkler(k, a).total_cmp(&strsim::jaro_winkler(k, b))
                    })
                    .cloned()
                    .unwrap_or_default();
                (k.clone(), closest)
            })
            .collect()
    }
}

/// Layer defaults, file, environment and flags, then validate.
///
/// `flags` holds only the settings given on the command line (absent keys are unset).
pub fn load(flags: &Dict, sources: &Sources) -> Result<Settings, ConfigError> {
    let mut figment = Figment::from(Named {
        name: "default",
        inner: Serialized::defaults(RawSettings::default()),
    });

    if let Some(path) = &sources.config_file {
        if !path.is_file() {
            return Err(ConfigError::new(format!(
                "--config {}: no such file",
                path.display()
            )));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        figment = match ext.as_str() {
            "yaml" | "yml" => figment.merge(Named {
                name: "file",
                inner: Yaml::file_exact(path),
            }),
            "toml" => figment.merge(Named {
                name: "file",
                inner: Toml::file_exact(path),
            }),
            _ => {
                return Err(ConfigError::new(format!(
                    "--config {}: expected a .yaml, .yml or .toml file",
                    path.display()
                )))
            }
        };
    }

    // OPENAI_API_KEY is read only when TURNBENCH_API_KEY is unset.
    if sources.var("TURNBENCH_API_KEY").is_none() {
        if let Some(key) = sources.var("OPENAI_API_KEY") {
            let mut dict = Dict::new();
            dict.insert("api_key".into(), key.into());
            figment = figment.merge(Named {
                name: "openai-env",
                inner: Serialized::defaults(dict),
            });
        }
    }

    let env_pairs: Vec<(String, String)> = sources
        .env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .cloned()
        .collect();
    // The variables come from `Sources` rather than figment's `Env` provider, so that
    // tests can pass their own environment without touching the process'.
    let env_dict = env_dict(&env_pairs)?;
    figment = figment.merge(Named {
        name: "env",
        inner: Serialized::defaults(env_dict),
    });

    figment = figment.merge(Named {
        name: "flag",
        inner: Serialized::defaults(flags.clone()),
    });

    let origin_of = |key: &str| -> Origin {
        figment
            .find_metadata(key)
            .map(Origin::from_metadata)
            .unwrap_or(Origin::Default)
    };

    let raw: RawSettings = figment.extract().map_err(|e| {
        let e = e
            .into_iter()
            .next()
            .expect("figment errors are never empty");
        extraction_error(&e, sources, flags)
    })?;

    Settings::from_raw(raw, &|key| origin_of(key).describe(key))
}

/// Parse `TURNBENCH_*` values the way a shell user means them: numbers and booleans
/// where they look like one, strings otherwise.
fn env_dict(pairs: &[(String, String)]) -> Result<Dict, ConfigError> {
    let mut dict = Dict::new();
    for (name, value) in pairs {
        let key = name[ENV_PREFIX.len()..].to_ascii_lowercase();
        if !KEYS.contains(&key.as_str()) {
            continue;
        }
        // Text settings stay as written: a model "1.10" or a key "007" is not a number.
        let v: figment::value::Value = if TEXT_KEYS.contains(&key.as_str()) {
            figment::value::Value::from(value.clone())
        } else {
            value
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(value.clone()))
        };
        dict.insert(key, v);
    }
    Ok(dict)
}

fn extraction_error(e: &figment::Error, sources: &Sources, flags: &Dict) -> ConfigError {
    use figment::error::Kind;
    let key = e.path.join(".");
    if let Kind::UnknownField(field, _) = &e.kind {
        let closest = KEYS
            .iter()
            .max_by(|a, b| {
                strsim::jaro_winkler(field, a).total_cmp(&strsim::jaro_winkler(field, b))
            })
            .copied()
            .unwrap_or("");
        let file = sources
            .config_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        return ConfigError::new(format!(
            "{file}: unknown setting `{field}` (did you mean `{closest}`?)"
        ));
    }
    let origin = e
        .metadata
        .as_ref()
        .map(Origin::from_metadata)
        .unwrap_or(Origin::Default);
    if key.is_empty() {
        // A file that does not parse. Only the first line of the parser's message: the
        // others quote the source line, which may be the API key.
        let first = e
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let file = match &origin {
            Origin::File(p) => p.display().to_string(),
            _ => "configuration".into(),
        };
        return ConfigError::new(format!("{file}: cannot be read: {first}"));
    }
    let name = origin.describe(&key);
    let expected = match &e.kind {
        Kind::InvalidType(_, exp) | Kind::InvalidValue(_, exp) => plain_expected(exp),
        Kind::Message(m) => m.clone(),
        other => other.to_string(),
    };
    // Never echo the API key, even a malformed one.
    let value = if key == "api_key" {
        "***".to_string()
    } else {
        match &origin {
            Origin::Env => sources.var(&env_name(&key)).unwrap_or("").to_string(),
            Origin::Flag => flags.get(&key).map(value_text).unwrap_or_default(),
            _ => match &e.kind {
                Kind::InvalidType(actual, _) | Kind::InvalidValue(actual, _) => actual_text(actual),
                _ => String::new(),
            },
        }
    };
    ConfigError::new(format!("{name}={value:?}: expected {expected}"))
}

/// serde's type names in words a user of the command line reads.
fn plain_expected(exp: &str) -> String {
    match exp {
        "u64" | "u32" | "usize" => "a whole number".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        other => other.to_string(),
    }
}

fn actual_text(a: &figment::error::Actual) -> String {
    use figment::error::Actual;
    match a {
        Actual::Str(s) => s.clone(),
        Actual::Bool(b) => b.to_string(),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn value_text(v: &figment::value::Value) -> String {
    use figment::value::Value;
    match v {
        Value::String(_, s) => s.clone(),
        Value::Num(_, n) => format!("{n:?}"),
        Value::Bool(_, b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

impl Settings {
    /// Validate raw settings. `name` tells how the user wrote a key, for error messages.
    pub fn from_raw(
        raw: RawSettings,
        name: &dyn Fn(&str) -> String,
    ) -> Result<Settings, ConfigError> {
        let bad = |key: &str, value: &dyn fmt::Display, expected: &str| {
            ConfigError::new(format!(
                "{}={:?}: expected {expected}",
                name(key),
                value.to_string()
            ))
        };

        let url = match raw.url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => {
                let parsed = reqwest::Url::parse(u)
                    .map_err(|_| bad("url", &u, "an http(s) base URL such as https://host/v1"))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(bad(
                        "url",
                        &u,
                        "an http(s) base URL such as https://host/v1",
                    ));
                }
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err(ConfigError::new(format!(
                        "{}: credentials in the URL are not supported; use --api-key",
                        name("url")
                    )));
                }
                Some(u.trim_end_matches('/').to_string())
            }
        };

        let count = |key: &str, v: u64, max: u64| -> Result<usize, ConfigError> {
            if v == 0 || v > max {
                Err(bad(key, &v, &format!("a whole number from 1 to {max}")))
            } else {
                Ok(v as usize)
            }
        };
        let seconds = |key: &str, v: f64, allow_zero: bool| -> Result<f64, ConfigError> {
            let ok = v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0)) && v <= 86_400.0;
            if ok {
                Ok(v)
            } else if allow_zero {
                Err(bad(key, &v, "a number of seconds from 0 to 86400"))
            } else {
                Err(bad(key, &v, "a number of seconds above 0, at most 86400"))
            }
        };
        let positive = |key: &str, v: f64| -> Result<f64, ConfigError> {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(bad(key, &v, "a number above 0"))
            }
        };

        let conversations = count("conversations", raw.conversations, 10_000_000)?;
        let turns = count("turns", raw.turns, 100_000)?;
        let parallel = count("parallel", raw.parallel, 100_000)?;
        let max_tokens = count("max_tokens", raw.max_tokens, 1_000_000)? as u32;
        let min_delay = seconds("min_delay", raw.min_delay, true)?;
        let max_delay = seconds("max_delay", raw.max_delay, true)?;
        if max_delay < min_delay {
            return Err(ConfigError::new(format!(
                "{}={:?}: expected a value at least {}={:?}",
                name("max_delay"),
                max_delay.to_string(),
                name("min_delay"),
                min_delay.to_string()
            )));
        }
        let timeout = seconds("timeout", raw.timeout, false)?;
        let connect_timeout = seconds("connect_timeout", raw.connect_timeout, false)?;
        let idle_timeout = seconds("idle_timeout", raw.idle_timeout, false)?;
        let grace_period = seconds("grace_period", raw.grace_period, true)?;
        if raw.warmup > 100_000 {
            return Err(bad(
                "warmup",
                &raw.warmup,
                "a whole number from 0 to 100000",
            ));
        }
        let ttft_p95_threshold_ms = positive("ttft_p95_threshold_ms", raw.ttft_p95_threshold_ms)?;
        let speedup_threshold = positive("speedup_threshold", raw.speedup_threshold)?;
        if !(0.0..=1.0).contains(&raw.max_error_rate) {
            return Err(bad(
                "max_error_rate",
                &raw.max_error_rate,
                "a fraction from 0 to 1 (0.05 is 5%)",
            ));
        }

        let documents = match raw.documents.as_deref().map(str::trim) {
            None | Some("") | Some("bundled") => DocumentSource::Bundled,
            Some(s) if s.starts_with("synthetic:") => {
                let size = parse_size(&s["synthetic:".len()..]).ok_or_else(|| {
                    bad(
                        "documents",
                        &s,
                        "bundled, a directory, or synthetic:SIZE (e.g. synthetic:20k)",
                    )
                })?;
                if !(16..=10_000_000).contains(&size) {
                    return Err(bad(
                        "documents",
                        &s,
                        "a synthetic size from 16 bytes to 10m",
                    ));
                }
                DocumentSource::Synthetic { bytes: size }
            }
            Some(dir) => {
                let path = PathBuf::from(dir);
                if !path.is_dir() {
                    return Err(bad(
                        "documents",
                        &dir,
                        "bundled, an existing directory, or synthetic:SIZE",
                    ));
                }
                DocumentSource::Directory { path }
            }
        };

        let ca_cert = match raw.ca_cert.as_deref() {
            None | Some("") => None,
            Some(p) => {
                let path = PathBuf::from(p);
                let pem = std::fs::read(&path)
                    .map_err(|e| bad("ca_cert", &p, &format!("a readable PEM file ({e})")))?;
                if reqwest::Certificate::from_pem_bundle(&pem)
                    .map(|v| v.is_empty())
                    .unwrap_or(true)
                {
                    return Err(bad(
                        "ca_cert",
                        &p,
                        "a PEM file with at least one certificate",
                    ));
                }
                Some(path)
            }
        };

        let prefix = raw.user_info_prefix.trim().to_string();
        let prefix_ok = !prefix.is_empty()
            && prefix
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !prefix_ok {
            return Err(bad(
                "user_info_prefix",
                &prefix,
                "letters, digits and underscores, not starting with a digit",
            ));
        }

        let output_dir = raw
            .output_dir
            .filter(|s| !s.trim().is_empty())
            .map(PathBuf::from);

        // Keys pasted from files often end in a newline; the header cannot carry one.
        let api_key = raw
            .api_key
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty());
        if let Some(k) = &api_key {
            if reqwest::header::HeaderValue::from_str(&format!("Bearer {k}")).is_err() {
                return Err(ConfigError::new(format!(
                    "{}=\"***\": expected a key of printable characters, usable in an HTTP header",
                    name("api_key")
                )));
            }
        }

        Ok(Settings {
            url,
            api_key: api_key.map(Secret::new),
            model: raw.model.filter(|m| !m.trim().is_empty()),
            conversations,
            turns,
            parallel,
            max_tokens,
            min_delay,
            max_delay,
            timeout,
            connect_timeout,
            idle_timeout,
            warmup: raw.warmup as usize,
            seed: raw.seed,
            ttft_p95_threshold_ms,
            speedup_threshold,
            max_error_rate: raw.max_error_rate,
            documents,
            output_dir,
            user_info_prefix: prefix,
            ca_cert,
            insecure: raw.insecure,
            keep_alive: raw.keep_alive,
            include_usage: raw.include_usage,
            strict: raw.strict,
            grace_period,
            print_results: raw.print_results,
        })
    }

    /// The settings as recorded in results.json: everything but the key, which is only
    /// said to be set or not.
    pub fn to_public_json(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url,
            "api_key_set": self.api_key.is_some(),
            "model": self.model,
            "conversations": self.conversations,
            "turns": self.turns,
            "parallel": self.parallel,
            "max_tokens": self.max_tokens,
            "min_delay": self.min_delay,
            "max_delay": self.max_delay,
            "timeout": self.timeout,
            "connect_timeout": self.connect_timeout,
            "idle_timeout": self.idle_timeout,
            "warmup": self.warmup,
            "seed": self.seed,
            "ttft_p95_threshold_ms": self.ttft_p95_threshold_ms,
            "speedup_threshold": self.speedup_threshold,
            "max_error_rate": self.max_error_rate,
            "documents": self.documents,
            "output_dir": self.output_dir,
            "user_info_prefix": self.user_info_prefix,
            "ca_cert": self.ca_cert,
            "insecure": self.insecure,
            "keep_alive": self.keep_alive,
            "include_usage": self.include_usage,
            "strict": self.strict,
            "grace_period": self.grace_period,
            "print_results": self.print_results,
        })
    }
}

/// `20000`, `20k`, `1.5m`: bytes, with the decimal k and m of load tools.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1_000.0),
        'm' => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s.as_str(), 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some((v * mult) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            config_file: None,
        }
    }

    #[test]
    fn text_settings_from_the_environment_stay_as_written() {
        let s = load(
            &Dict::new(),
            &env(&[("TURNBENCH_MODEL", "1.10"), ("TURNBENCH_API_KEY", "007")]),
        )
        .unwrap();
        assert_eq!(s.model.as_deref(), Some("1.10"));
        assert_eq!(s.api_key.as_ref().map(Secret::expose), Some("007"));
    }

    #[test]
    fn a_key_is_trimmed_and_one_unfit_for_a_header_is_refused_without_showing_it() {
        let s = load(&Dict::new(), &env(&[("TURNBENCH_API_KEY", "sk-abc\n")])).unwrap();
        assert_eq!(s.api_key.unwrap().expose(), "sk-abc");
        let e = load(&Dict::new(), &env(&[("TURNBENCH_API_KEY", "sk-a\u{7}b")])).unwrap_err();
        assert!(
            e.0.contains("TURNBENCH_API_KEY") && !e.0.contains("sk-a"),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_does_not_parse_is_one_line_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "turns = 3\napi_key = sk-SECRET-abc\n").unwrap();
        let sources = Sources {
            env: vec![],
            config_file: Some(path),
        };
        let e = load(&Dict::new(), &sources).unwrap_err();
        assert!(!e.0.contains("sk-SECRET") && !e.0.contains('\n'), "{e}");
        assert!(e.0.contains("bad.toml"), "{e}");
    }
}
