//! Validation of the server-metrics settings (`metrics_url`, `metrics_api_key`,
//! `metrics_interval`) and of `overhead_header`.

use std::time::Duration;

use figment::value::Value;
use reqwest::header::{HeaderName, HeaderValue};

use super::{Auth, Layers, Secret};
use crate::error::ConfigError;
use crate::scrape::MetricsSettings;

impl Layers<'_> {
    /// A list setting: a list (flags, files) or one comma-separated text (variables,
    /// files); items trimmed, empty ones dropped.
    pub(super) fn list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let items: Vec<String> = match self.value(key) {
            None | Some(Value::Empty(..)) => Vec::new(),
            Some(Value::String(_, s)) => s.split(',').map(String::from).collect(),
            Some(Value::Array(_, items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(_, s) => Ok(s.split(',').map(String::from).collect::<Vec<_>>()),
                    _ => Err(self.bad(key, "a list of texts")),
                })
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect(),
            Some(_) => Err(self.bad(key, "a list of texts, or one comma-separated text"))?,
        };
        Ok(items
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect())
    }
}

pub(super) fn validate(l: &Layers<'_>) -> Result<MetricsSettings, ConfigError> {
    let mut urls = Vec::new();
    for item in l.list("metrics_url")? {
        let bad = |expected: &str| {
            ConfigError::new(format!(
                "{}={item:?}: expected {expected}",
                l.name("metrics_url")
            ))
        };
        let url = reqwest::Url::parse(&item)
            .map_err(|_| bad("an http(s) URL such as http://10.0.0.7:8000/metrics"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(bad("an http(s) URL such as http://10.0.0.7:8000/metrics"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::new(format!(
                "{}: credentials in the URL are not supported; use --metrics-api-key",
                l.name("metrics_url")
            )));
        }
        if urls.contains(&url) {
            return Err(bad("each pod's URL once (it is given twice)"));
        }
        urls.push(url);
    }
    let interval = l.float("metrics_interval")?;
    if !(interval.is_finite() && (0.1..=3600.0).contains(&interval)) {
        return Err(l.bad("metrics_interval", "a number of seconds from 0.1 to 3600"));
    }
    let auth = match l.text("metrics_api_key")?.map(|k| k.trim().to_string()) {
        Some(k) if !k.is_empty() => {
            let mut header = HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                ConfigError::new(format!(
                    "{}=\"***\": expected a key of printable characters, usable in an HTTP header",
                    l.name("metrics_api_key")
                ))
            })?;
            header.set_sensitive(true);
            Some(Auth {
                key: Secret::new(k),
                header,
            })
        }
        _ => None,
    };
    Ok(MetricsSettings {
        urls,
        auth,
        interval: Duration::from_secs_f64(interval),
    })
}

pub(super) fn overhead_header(l: &Layers<'_>) -> Result<Option<HeaderName>, ConfigError> {
    match l.text("overhead_header")?.map(|s| s.trim().to_string()) {
        None => Ok(None),
        Some(s) if s.is_empty() || s.eq_ignore_ascii_case("none") => Ok(None),
        Some(s) => HeaderName::from_bytes(s.as_bytes())
            .map(Some)
            .map_err(|_| l.bad("overhead_header", "an HTTP header name, or none")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{load, Sources};
    use figment::value::{Dict, Value};

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
    fn metrics_urls_come_comma_separated_from_the_environment_and_repeated_from_flags() {
        let s = load(
            &Dict::new(),
            &env(&[(
                "TURNBENCH_METRICS_URL",
                "http://10.0.0.7:8000/metrics, http://10.0.0.8:8000/metrics",
            )]),
        )
        .unwrap();
        let urls: Vec<&str> = s.metrics.urls.iter().map(|u| u.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://10.0.0.7:8000/metrics",
                "http://10.0.0.8:8000/metrics"
            ]
        );
        let mut flags = Dict::new();
        flags.insert(
            "metrics_url".into(),
            Value::from(vec![
                "http://a:1/metrics".to_string(),
                "http://b:1/metrics".to_string(),
            ]),
        );
        let s = load(&flags, &env(&[])).unwrap();
        assert_eq!(s.metrics.urls.len(), 2);
        assert_eq!(s.public["metrics_url"][1], "http://b:1/metrics");
        assert_eq!(s.metrics.interval.as_secs_f64(), 5.0);
    }

    #[test]
    fn bad_metrics_settings_are_one_line_naming_what_was_written() {
        for (var, value, expect) in [
            ("TURNBENCH_METRICS_URL", "ftp://x/metrics", "http(s) URL"),
            (
                "TURNBENCH_METRICS_URL",
                "http://u:p@x/metrics",
                "credentials",
            ),
            ("TURNBENCH_METRICS_URL", "http://x/m,http://x/m", "once"),
            ("TURNBENCH_METRICS_INTERVAL", "0", "0.1 to 3600"),
            ("TURNBENCH_OVERHEAD_HEADER", "bad header", "header name"),
        ] {
            let e = load(&Dict::new(), &env(&[(var, value)])).unwrap_err();
            assert!(e.0.starts_with(var) && e.0.contains(expect), "{e}");
            assert!(!e.0.contains("u:p"), "{e}");
        }
    }

    #[test]
    fn the_metrics_key_stays_out_of_public_settings_and_the_overhead_header_defaults_to_litellms() {
        let s = load(
            &Dict::new(),
            &env(&[("TURNBENCH_METRICS_API_KEY", "sk-metrics-secret")]),
        )
        .unwrap();
        assert_eq!(s.metrics.auth.unwrap().key.expose(), "sk-metrics-secret");
        assert_eq!(s.public["metrics_api_key_set"], true);
        assert!(!serde_json::to_string(&s.public)
            .unwrap()
            .contains("sk-metrics-secret"));
        assert_eq!(
            s.target.overhead_header.unwrap().as_str(),
            "x-litellm-overhead-duration-ms"
        );
        let s = load(&Dict::new(), &env(&[("TURNBENCH_OVERHEAD_HEADER", "none")])).unwrap();
        assert!(s.target.overhead_header.is_none());
    }
}
