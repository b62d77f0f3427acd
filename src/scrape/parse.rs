//! The Prometheus text format, read with `prom_text_format_parser` into flat samples
//! named as on the wire (`x_total`, `x_bucket`, `x_sum`, `x_count`, `x_created`).
//!
//! Why that crate: it reads metric names with colons (every vLLM name; the regex of
//! `prometheus-parse` drops them all), labels with quoted commas, counters with
//! `_total` and their `_created` gauges, and histograms with typed `_sum`/`_count`; it
//! is MIT/Apache like this project (`openmetrics-parser` is LGPL-3.0, awkward in a
//! static binary). Its parse is all or nothing and leaves escapes in label values, so
//! this module unescapes them and, when a page does not parse whole, parses it family
//! by family and keeps what reads.

use std::collections::BTreeMap;

use prom_text_format_parser::{Metric, ScrapeParseError, Type, ValueType};

/// One sample line: its full name, its labels, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// A page of samples, and how many of its metric families could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub samples: Vec<Sample>,
    pub unreadable_families: usize,
}

/// Longest part of a parser message kept (its messages quote the input).
const MAX_ERROR_CHARS: usize = 120;

/// Parse a page in the Prometheus text format. `Err` when nothing on it reads as
/// Prometheus samples (an HTML error page, JSON, an empty body).
pub fn parse(text: &str) -> Result<Page, String> {
    let text = text.replace("\r\n", "\n");
    let (metrics, err) = prom_text_format_parser::parse_scrape(&text);
    let mut page = Page::default();
    match &err {
        None => flatten(&metrics, &mut page.samples),
        // Families that did not assemble are left out; the others stand.
        Some(ScrapeParseError::Collect(bad)) => {
            flatten(&metrics, &mut page.samples);
            page.unreadable_families += bad.len();
        }
        // One bad line fails the whole parse: retry family by family.
        Some(ScrapeParseError::Parse(_)) => {
            for block in families(&text) {
                let (metrics, err) = prom_text_format_parser::parse_scrape(block);
                flatten(&metrics, &mut page.samples);
                page.unreadable_families += usize::from(err.is_some());
            }
        }
    }
    if page.samples.is_empty() {
        let why = match err {
            Some(e) => first_line(&format!("{e:?}")),
            None => "no samples".into(),
        };
        return Err(format!("not a Prometheus text page ({why})"));
    }
    Ok(page)
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    crate::client::shorten(line, MAX_ERROR_CHARS)
}

/// The page cut before every `# HELP` line, and before a `# TYPE` line that no
/// `# HELP` line introduces: one block per metric family.
fn families(text: &str) -> Vec<&str> {
    let mut starts = vec![0];
    let mut prev_help = false;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        let help = t.starts_with("# HELP ");
        let ty = t.starts_with("# TYPE ");
        if at > 0 && (help || (ty && !prev_help)) {
            starts.push(at);
        }
        prev_help = help;
        at += line.len();
    }
    starts.push(text.len());
    starts
        .windows(2)
        .map(|w| &text[w[0]..w[1]])
        .filter(|b| !b.trim().is_empty())
        .collect()
}

fn flatten(metrics: &[Metric], out: &mut Vec<Sample>) {
    for m in metrics {
        for s in &m.samples {
            let labels: BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|l| (l.key.clone(), unescape(&l.value)))
                .collect();
            let suffix = match (m.kind, s.value.value_type) {
                (_, ValueType::Sum) => "_sum",
                (_, ValueType::Count) => "_count",
                (Type::Histogram, ValueType::Sample) if labels.contains_key("le") => "_bucket",
                _ => "",
            };
            let Ok(value) = s.value.value.parse::<f64>() else {
                continue;
            };
            out.push(Sample {
                name: format!("{}{suffix}", m.name),
                labels,
                value,
            });
        }
    }
}

/// `\\`, `\"` and `\n` in a label value, as the text format escapes them.
fn unescape(v: &str) -> String {
    if !v.contains('\\') {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Page) -> Vec<&str> {
        p.samples.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn histograms_counters_and_created_gauges_keep_their_wire_names() {
        let page = parse(
            "# HELP vllm:e2e_request_latency_seconds e2e\n\
             # TYPE vllm:e2e_request_latency_seconds histogram\n\
             vllm:e2e_request_latency_seconds_bucket{engine=\"0\",le=\"0.3\",model_name=\"m\"} 1.0\n\
             vllm:e2e_request_latency_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"m\"} 2.0\n\
             vllm:e2e_request_latency_seconds_count{engine=\"0\",model_name=\"m\"} 2.0\n\
             vllm:e2e_request_latency_seconds_sum{engine=\"0\",model_name=\"m\"} 0.9\n\
             # HELP vllm:prompt_tokens_total p\n\
             # TYPE vllm:prompt_tokens_total counter\n\
             vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} 10.0\n\
             # HELP vllm:prompt_tokens_created p\n\
             # TYPE vllm:prompt_tokens_created gauge\n\
             vllm:prompt_tokens_created{engine=\"0\",model_name=\"m\"} 1.7e+09\n",
        )
        .unwrap();
        assert_eq!(
            names(&page),
            [
                "vllm:e2e_request_latency_seconds_bucket",
                "vllm:e2e_request_latency_seconds_bucket",
                "vllm:e2e_request_latency_seconds_count",
                "vllm:e2e_request_latency_seconds_sum",
                "vllm:prompt_tokens_total",
                "vllm:prompt_tokens_created",
            ]
        );
        assert_eq!(page.samples[1].label("le"), Some("+Inf"));
        assert_eq!(page.samples[5].value, 1.7e9);
    }

    #[test]
    fn label_values_are_unescaped_and_crlf_pages_read() {
        let page = parse("# TYPE x gauge\r\nx{a=\"q\\\"u,o=te\",b=\"c\\\\d\"} 3\r\n").unwrap();
        assert_eq!(page.samples[0].label("a"), Some("q\"u,o=te"));
        assert_eq!(page.samples[0].label("b"), Some("c\\d"));
    }

    #[test]
    fn a_bad_family_costs_only_itself() {
        let page = parse(
            "# HELP a ok\n# TYPE a gauge\na 1\n# HELP b broken\n# TYPE b gauge\nb{x=} 2\n# TYPE c_total counter\nc_total 3\n",
        )
        .unwrap();
        assert_eq!(names(&page), ["a", "c_total"]);
        assert_eq!(page.unreadable_families, 1);
    }

    #[test]
    fn pages_that_are_not_prometheus_are_refused_in_one_line() {
        for body in ["<html><body>Not found</body></html>\n", "", "{\"a\": 1}"] {
            let e = parse(body).unwrap_err();
            assert!(e.starts_with("not a Prometheus text page"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
