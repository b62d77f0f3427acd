//! Plain words for the failures a newcomer meets first: a base URL without `/v1`, the
//! wrong scheme for the port, nothing listening, a name that does not resolve, a path
//! prefix that the server does not serve. Each becomes one line: the cause, then what
//! to do.
//!
//! Classification and wording are pure functions of the error, the status and the
//! URL. The probes that confirm a guess (does `{url}/v1/models` answer? is there TLS
//! on that port?) are methods of [`Endpoint`], run once, when a failure calls for them.

use std::error::Error;
use std::time::Duration;

use reqwest::Url;

use super::{error_chain, Endpoint, Unusable};

/// What kind of failure a transport error is, as far as advice goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The TCP connection was refused: nothing listens on that port.
    Refused,
    /// The host name did not resolve.
    Dns,
    /// A TLS handshake got an answer that is not TLS (typically a plain HTTP reply).
    NotTls,
    /// Connected, but what came back was not HTTP, or nothing came back: over
    /// `http://`, typically a port that expects TLS.
    NotHttp,
    Other,
}

/// Classify a transport error by its chain of sources.
pub fn classify(e: &(dyn Error + 'static)) -> Failure {
    let mut src: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Failure::Refused;
            }
        }
        src = s.source();
    }
    classify_text(&error_chain(e))
}

/// The same, from the text of an error chain (what hyper, rustls and the OS say).
pub fn classify_text(chain: &str) -> Failure {
    let t = chain.to_ascii_lowercase();
    if t.contains("connection refused") {
        Failure::Refused
    } else if t.contains("dns error") || t.contains("failed to lookup address") {
        Failure::Dns
    } else if t.contains("invalidcontenttype") || t.contains("received corrupt message") {
        // rustls read bytes that are no TLS record: "HTTP/1.1 400 …" from a plain server.
        Failure::NotTls
    } else if [
        "connection closed before message completed",
        "invalid http version",
        "invalid http status-code",
        "invalid http header",
        "received http/0.9",
    ]
    .iter()
    .any(|p| t.contains(p))
    {
        Failure::NotHttp
    } else {
        Failure::Other
    }
}

/// `host:port` of a URL, the port spelled out even when it is the default.
fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// `base` with the other scheme, the port kept as it was (explicit or default).
pub fn with_scheme(base: &str, scheme: &str) -> Option<String> {
    let mut url = Url::parse(base).ok()?;
    let port = url.port_or_known_default();
    url.set_scheme(scheme).ok()?;
    url.set_port(port).ok()?;
    Some(url.as_str().trim_end_matches('/').to_string())
}

/// The cause and the advice for a classified failure reaching `base`, when there is one
/// to give without a probe.
pub fn explain(failure: Failure, base: &str) -> Option<String> {
    let url = Url::parse(base).ok()?;
    let at = host_port(&url);
    match failure {
        Failure::Refused => Some(format!(
            "nothing listens on {at} (connection refused): check the host and port, and that the server is up"
        )),
        Failure::Dns => Some(format!(
            "the host name {} does not resolve (DNS): check its spelling, or use an IP address",
            url.host_str().unwrap_or("?")
        )),
        Failure::NotTls if url.scheme() == "https" => Some(format!(
            "{at} speaks plain HTTP, not TLS: use {}",
            with_scheme(base, "http")?
        )),
        _ => None,
    }
}

/// The advice once a probe found TLS on the port that `http://` was sent to.
pub fn expects_tls(base: &str) -> Option<String> {
    let url = Url::parse(base).ok()?;
    Some(format!(
        "{} expects TLS, not plain HTTP: use {}",
        host_port(&url),
        with_scheme(base, "https")?
    ))
}

/// An HTTP reply that says plain HTTP reached a TLS port (nginx, Go and others answer
/// such a request with a 400 and this text).
pub fn says_plain_http_to_tls(server_message: &str) -> bool {
    let t = server_message.to_ascii_lowercase();
    t.contains("plain http request was sent to https port")
        || t.contains("http request to an https server")
}

/// Base URLs worth a `GET …/models` when `base` seems to be the wrong prefix, most
/// likely first: the full endpoint pasted instead of its base, `/v1` missing, and the
/// OpenAI-compatible prefix of older Llama Stack releases (`/v1/openai/v1`).
pub fn alternatives(base: &str) -> Vec<String> {
    let base = base.trim_end_matches('/');
    let Ok(url) = Url::parse(base) else {
        return Vec::new();
    };
    let origin = url.origin().ascii_serialization();
    let mut out = Vec::new();
    for tail in ["/chat/completions", "/models", "/responses"] {
        if let Some(stripped) = base.strip_suffix(tail) {
            out.push(stripped.to_string());
        }
    }
    if !base.ends_with("/v1") {
        out.push(format!("{base}/v1"));
    }
    out.push(format!("{origin}/v1"));
    out.push(format!("{base}/openai/v1"));
    out.push(format!("{origin}/v1/openai/v1"));
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| c != base && seen.insert(c.clone()));
    out
}

/// Loopback hosts bypass any proxy, as the endpoint's own client does.
fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

/// What to say about another base URL that answers with a model list.
fn did_you_mean(base: &str, alt: &str) -> String {
    if alt == format!("{}/v1", base.trim_end_matches('/')) {
        format!("the base URL usually ends in /v1: did you mean {alt}?")
    } else {
        format!("{alt}/models answers: did you mean {alt}?")
    }
}

/// `GET {base}/models` gave no model list and no model was given.
pub fn no_model_list(base: &str, answering: Option<&str>) -> String {
    let head = format!("GET {base}/models did not answer with a model list");
    match answering {
        Some(alt) => format!("{head}; {}", did_you_mean(base, alt)),
        None if !base.trim_end_matches('/').ends_with("/v1") => format!(
            "{head}; the base URL usually ends in /v1 (or pass --model if the server lists no models)"
        ),
        None => format!("{head}; pass --model"),
    }
}

/// `GET {base}/models` listed nothing and no model was given.
pub fn empty_model_list(base: &str, answering: Option<&str>) -> String {
    let head = format!("{base}/models lists no model");
    match answering {
        Some(alt) => format!("{head}; {}", did_you_mean(base, alt)),
        None => format!("{head}; pass --model"),
    }
}

/// Whether a 404 on chat completions is about the path rather than the model (vLLM and
/// the simulator answer an unknown model with a 404 that names it).
pub fn is_path_not_found(server_message: &str) -> bool {
    !server_message.to_ascii_lowercase().contains("model")
}

/// The advice for a 404 on `{base}/chat/completions` whose body does not name a model.
pub fn chat_not_found(base: &str, answering: Option<&str>) -> String {
    let head = format!("no chat completions at {base}/chat/completions (path not found)");
    match answering {
        Some(alt) => format!("{head}; {}", did_you_mean(base, alt)),
        None => format!(
            "{head}; the base URL is what precedes /chat/completions, usually ending in /v1 (older Llama Stack: …/v1/openai/v1)"
        ),
    }
}

/// How long one probe may take; they run side by side, once per failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a `GET …/models` body is an OpenAI-style model list (a `data` array whose
/// entries carry an `id`; Llama Stack's own API lists `identifier`s at `/v1/models`).
pub fn is_model_list(body: &[u8]) -> bool {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match v["data"].as_array() {
        Some(a) => a.is_empty() || a.iter().any(|m| m["id"].is_string()),
        None => false,
    }
}

impl Endpoint {
    /// The first of [`alternatives`] whose `GET …/models` answers with a model list.
    /// Same origin as the base, so the key goes nowhere it was not already sent.
    pub(super) async fn answering_alternative(&self) -> Option<String> {
        let alts = alternatives(&self.base);
        let probes = alts.iter().map(|alt| async move {
            let url = Url::parse(&format!("{alt}/models")).ok()?;
            let resp = tokio::time::timeout(
                PROBE_TIMEOUT,
                self.request(reqwest::Method::GET, url).send(),
            )
            .await
            .ok()?
            .ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = tokio::time::timeout(PROBE_TIMEOUT, resp.bytes())
                .await
                .ok()?
                .ok()?;
            is_model_list(&body).then_some(())
        });
        let answers = futures_util::future::join_all(probes).await;
        alts.into_iter()
            .zip(answers)
            .find_map(|(alt, a)| a.map(|()| alt))
    }

    /// Whether the `http://` base's port answers over TLS. The probe accepts any
    /// certificate and so carries no key: it asks only whether TLS is spoken there.
    pub(super) async fn speaks_tls(&self) -> bool {
        let Some(https) = with_scheme(&self.base, "https") else {
            return false;
        };
        let Ok(url) = Url::parse(&format!("{https}/models")) else {
            return false;
        };
        let mut builder = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(PROBE_TIMEOUT);
        if is_loopback(&url) {
            builder = builder.no_proxy();
        }
        let Ok(client) = builder.build() else {
            return false;
        };
        client.get(url).send().await.is_ok()
    }

    /// The message for a failed `GET {base}/models`, probing when the error alone
    /// cannot tell (plain HTTP sent to a TLS port looks like a broken reply).
    pub(super) async fn unreachable(&self, e: &reqwest::Error) -> Unusable {
        let failure = classify(e);
        // The raw chain, for when the plain words below are not the whole story.
        tracing::debug!(error = %self.public(&error_chain(e)), ?failure, "GET models failed");
        let hint = match explain(failure, &self.base) {
            Some(h) => Some(h),
            None if self.base.starts_with("http://")
                && matches!(failure, Failure::NotHttp | Failure::Other)
                && !e.is_timeout()
                && self.speaks_tls().await =>
            {
                expects_tls(&self.base)
            }
            None => None,
        };
        let why = hint.unwrap_or_else(|| error_chain(e));
        Unusable(self.public(&format!("cannot reach {}: {why}", self.base)))
    }

    /// The model list could not be used and no model was given: say where one is.
    pub async fn no_model_list(&self, empty: bool) -> Unusable {
        let alt = self.answering_alternative().await;
        Unusable(self.public(&if empty {
            empty_model_list(&self.base, alt.as_deref())
        } else {
            no_model_list(&self.base, alt.as_deref())
        }))
    }

    /// A 404 on chat completions that is about the path: the advice, probed once per
    /// endpoint (its clones share the answer) so that a run of 404s costs one probe.
    pub(super) async fn chat_not_found(&self) -> String {
        let alt = self
            .not_found_probe
            .get_or_init(|| self.answering_alternative())
            .await;
        chat_not_found(&self.base, alt.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_are_classified_by_what_hyper_rustls_and_the_os_say() {
        let cases = [
            (
                "error sending request for url (http://127.0.0.1:9/v1/models): client error (Connect): tcp connect error: Connection refused (os error 111)",
                Failure::Refused,
            ),
            (
                "error sending request: client error (Connect): dns error: failed to lookup address information: Name or service not known",
                Failure::Dns,
            ),
            (
                "error sending request: client error (Connect): received corrupt message of type InvalidContentType",
                Failure::NotTls,
            ),
            (
                "error sending request: client error (SendRequest): connection closed before message completed",
                Failure::NotHttp,
            ),
            (
                "error sending request: client error (SendRequest): invalid HTTP version parsed",
                Failure::NotHttp,
            ),
            (
                "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer",
                Failure::Other,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(classify_text(text), want, "{text}");
        }
    }

    #[test]
    fn a_refused_connection_is_found_in_the_source_chain() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl Error for Wrap {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrap(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&e), Failure::Refused);
    }

    #[test]
    fn each_cause_comes_with_what_to_do() {
        let refused = explain(Failure::Refused, "http://10.0.0.5:8000/v1").unwrap();
        assert!(
            refused.starts_with("nothing listens on 10.0.0.5:8000"),
            "{refused}"
        );
        assert!(refused.contains("server is up"), "{refused}");

        let dns = explain(Failure::Dns, "https://vllm.example.invalid/v1").unwrap();
        assert!(
            dns.contains("vllm.example.invalid does not resolve (DNS)"),
            "{dns}"
        );

        let plain = explain(Failure::NotTls, "https://127.0.0.1:8000/v1").unwrap();
        assert_eq!(
            plain,
            "127.0.0.1:8000 speaks plain HTTP, not TLS: use http://127.0.0.1:8000/v1"
        );
        // A "not TLS" reply over http:// cannot happen; nothing to say.
        assert_eq!(explain(Failure::NotTls, "http://127.0.0.1:8000/v1"), None);
        assert_eq!(explain(Failure::Other, "http://127.0.0.1:8000/v1"), None);

        assert_eq!(
            expects_tls("http://gw.example.com/v1").unwrap(),
            "gw.example.com:80 expects TLS, not plain HTTP: use https://gw.example.com:80/v1"
        );
        assert_eq!(
            expects_tls("http://127.0.0.1:8443/v1").unwrap(),
            "127.0.0.1:8443 expects TLS, not plain HTTP: use https://127.0.0.1:8443/v1"
        );
    }

    #[test]
    fn plain_http_answered_by_a_tls_server_is_recognised() {
        assert!(says_plain_http_to_tls(
            "400 The plain HTTP request was sent to HTTPS port"
        ));
        assert!(says_plain_http_to_tls(
            "Client sent an HTTP request to an HTTPS server."
        ));
        assert!(!says_plain_http_to_tls("Bad Request"));
    }

    #[test]
    fn alternatives_cover_missing_v1_pasted_endpoints_and_llama_stack() {
        assert_eq!(
            alternatives("http://h:8000"),
            [
                "http://h:8000/v1",
                "http://h:8000/openai/v1",
                "http://h:8000/v1/openai/v1"
            ]
        );
        assert_eq!(
            alternatives("http://h:8321/v1"),
            ["http://h:8321/v1/openai/v1"]
        );
        assert_eq!(
            alternatives("https://gw/v1/chat/completions")[0],
            "https://gw/v1"
        );
        let sub = alternatives("https://gw/litellm");
        assert_eq!(sub[0], "https://gw/litellm/v1");
        assert!(sub.contains(&"https://gw/v1".to_string()));
    }

    #[test]
    fn model_list_messages_point_at_the_base_that_answers() {
        assert_eq!(
            no_model_list("http://host:8000", Some("http://host:8000/v1")),
            "GET http://host:8000/models did not answer with a model list; the base URL usually ends in /v1: did you mean http://host:8000/v1?"
        );
        let other = no_model_list("http://h/v1", Some("http://h/v1/openai/v1"));
        assert!(
            other.ends_with(
                "http://h/v1/openai/v1/models answers: did you mean http://h/v1/openai/v1?"
            ),
            "{other}"
        );
        assert!(no_model_list("http://h", None).contains("usually ends in /v1"));
        assert!(no_model_list("http://h/v1", None).ends_with("pass --model"));
        assert!(empty_model_list("http://h/v1", None).ends_with("pass --model"));
    }

    #[test]
    fn a_404_naming_the_model_is_not_about_the_path() {
        assert!(!is_path_not_found("The model `nope` does not exist."));
        assert!(is_path_not_found("Not Found"));
        assert!(is_path_not_found("(empty body)"));
        let msg = chat_not_found("http://h/v1", None);
        assert!(msg.contains("path not found"), "{msg}");
        assert!(msg.contains("/v1/openai/v1"), "{msg}");
        let msg = chat_not_found("http://h/v1", Some("http://h/v1/openai/v1"));
        assert!(
            msg.ends_with("did you mean http://h/v1/openai/v1?"),
            "{msg}"
        );
    }

    #[test]
    fn only_openai_style_lists_count_as_answers() {
        assert!(is_model_list(br#"{"object":"list","data":[{"id":"m"}]}"#));
        assert!(is_model_list(br#"{"data":[]}"#));
        assert!(!is_model_list(br#"{"data":[{"identifier":"m"}]}"#));
        assert!(!is_model_list(b"<html>not found</html>"));
    }
}
