//! Name resolution: the system resolver (getaddrinfo, as reqwest's default), except for
//! names under `.invalid`, which RFC 6761 reserves to never resolve: those fail at once,
//! without a query leaving the machine (libc would ask the configured name server).

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

#[derive(Debug, Clone, Copy, Default)]
pub struct Resolver;

/// Whether `host` is under the reserved top-level domain `invalid` (RFC 6761 §6.4).
pub fn is_reserved_invalid(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "invalid" || h.ends_with(".invalid")
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            if is_reserved_invalid(&host) {
                return Err(format!(
                    "failed to lookup address information: {host} is a reserved name that never resolves (RFC 6761)"
                )
                .into());
            }
            // Port 0: the connector puts the URL's port in.
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_under_invalid_are_reserved() {
        assert!(is_reserved_invalid("nothing.invalid"));
        assert!(is_reserved_invalid("a.b.INVALID."));
        assert!(!is_reserved_invalid("invalid.example.com"));
        assert!(!is_reserved_invalid("localhost"));
    }

    #[tokio::test]
    async fn reserved_names_fail_and_others_resolve() {
        let r = Resolver;
        let err = r.resolve("x.invalid".parse().unwrap()).await.err().unwrap();
        assert!(err.to_string().contains("never resolves"), "{err}");
        let addrs: Vec<_> = r
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
