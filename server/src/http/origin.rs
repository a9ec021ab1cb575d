//! Refusing what a browser sends cross-site.
//!
//! A web page can make the operator's browser send a "simple" request
//! (`POST` with a `text/plain` body, no custom headers, so no CORS
//! preflight) to `http://127.0.0.1:8080`, and DNS rebinding can point a
//! name the page controls at loopback. Browsers always name the page in
//! `Origin` on such requests, and the name they connected to in `Host`;
//! API clients (curl, the official client, the Node and Python hosts) send
//! no `Origin`. So:
//!
//! - any `Origin` not explicitly allowed is refused, whatever the auth mode;
//! - `Host` is checked only when the server has no token: with one, a page
//!   can't add the `Authorization` header without a preflight the server
//!   never grants, and the official client sends `Host: <sandbox-id>.local`
//!   through a proxy URL, which a Host check would break.

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};

/// Which origins and hosts a request may name.
#[derive(Clone, Debug, Default)]
pub struct CrossSite {
    /// `Origin` values let in (lower case, no trailing `/`); any other
    /// `Origin` is refused. Requests without one are not affected.
    pub allowed_origins: Vec<String>,
    /// When set, the `Host` names (lower case; IPv6 in brackets) a request
    /// may name, with or without a port; `None` skips the check.
    pub allowed_hosts: Option<Vec<String>>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq)]
pub(super) enum Refusal {
    Origin,
    Host,
}

impl CrossSite {
    /// The hosts a token-less server answers: loopback by name and number,
    /// the address it listens on, and `extra`.
    pub fn local_hosts(listen: std::net::IpAddr, extra: &[String]) -> Vec<String> {
        let listen = match listen {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "[::1]".to_owned()];
        for host in std::iter::once(listen).chain(extra.iter().map(|h| h.to_ascii_lowercase())) {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }

    /// Checks the headers; no allocation.
    pub(super) fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.as_bytes();
            if !self.allowed_origins.iter().any(|o| o.as_bytes().eq_ignore_ascii_case(origin)) {
                return Err(Refusal::Origin);
            }
        }
        if let (Some(allowed), Some(host)) = (&self.allowed_hosts, headers.get(HOST)) {
            let name = host_name(host.as_bytes()).ok_or(Refusal::Host)?;
            if !allowed.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name)) {
                return Err(Refusal::Host);
            }
        }
        Ok(())
    }
}

/// The name part of a `Host` value (`[v6]` kept in brackets), `None` when
/// what follows it is not `:digits`.
fn host_name(host: &[u8]) -> Option<&[u8]> {
    let name_end = if host.first() == Some(&b'[') {
        host.iter().position(|&b| b == b']')? + 1
    } else {
        host.iter().position(|&b| b == b':').unwrap_or(host.len())
    };
    let (name, rest) = host.split_at(name_end);
    match rest {
        [] => Some(name),
        [b':', port @ ..] if !port.is_empty() && port.iter().all(u8::is_ascii_digit) => Some(name),
        _ => None,
    }
}

/// Checks an `--allow-origin` value and writes it as browsers send it:
/// `scheme://host[:port]`, lower case, no path.
pub fn parse_origin(value: &str) -> Result<String, String> {
    let origin = value.trim_end_matches('/').to_ascii_lowercase();
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!("`{value}` is not an origin like https://example.com or http://localhost:3000"));
    };
    if scheme.is_empty() || rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!("`{value}` is not an origin: give scheme://host[:port], without a path"));
    }
    Ok(origin)
}

/// Checks an `--allow-host` value: a host name or address, without a port.
pub fn parse_host(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && (value.starts_with('[') && value.ends_with(']')
            || value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !valid {
        return Err(format!("`{value}` is not a host name (no port, no scheme; IPv6 in brackets)"));
    }
    Ok(value.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn origins_must_be_listed_and_hosts_local_without_a_token() {
        let open = CrossSite {
            allowed_origins: vec!["http://localhost:3000".into()],
            allowed_hosts: Some(CrossSite::local_hosts("127.0.0.1".parse().unwrap(), &["box.local".into()])),
        };
        let ok = |h: &[(&'static str, &'static str)]| open.check(&headers(h));
        assert_eq!(ok(&[]), Ok(()));
        assert_eq!(ok(&[("host", "127.0.0.1:8080")]), Ok(()));
        assert_eq!(ok(&[("host", "LOCALHOST")]), Ok(()));
        assert_eq!(ok(&[("host", "[::1]:8080")]), Ok(()));
        assert_eq!(ok(&[("host", "box.local:1")]), Ok(()));
        assert_eq!(ok(&[("origin", "http://LOCALHOST:3000")]), Ok(()));
        assert_eq!(ok(&[("origin", "http://localhost:3001")]), Err(Refusal::Origin));
        assert_eq!(ok(&[("origin", "null")]), Err(Refusal::Origin));
        assert_eq!(ok(&[("host", "evil.example:8080")]), Err(Refusal::Host));
        assert_eq!(ok(&[("host", "localhost.evil.example")]), Err(Refusal::Host));
        assert_eq!(ok(&[("host", "127.0.0.1:80x")]), Err(Refusal::Host));
        assert_eq!(ok(&[("host", "127.0.0.1:")]), Err(Refusal::Host));
        assert_eq!(ok(&[("host", "[::1]x")]), Err(Refusal::Host));

        let token = CrossSite { allowed_origins: vec![], allowed_hosts: None };
        assert_eq!(token.check(&headers(&[("host", "mybox.local")])), Ok(()));
        assert_eq!(token.check(&headers(&[("origin", "http://127.0.0.1:8080")])), Err(Refusal::Origin));
    }

    #[test]
    fn flag_values_are_checked() {
        assert_eq!(parse_origin("HTTP://Localhost:3000/").unwrap(), "http://localhost:3000");
        assert!(parse_origin("localhost:3000").is_err());
        assert!(parse_origin("http://x/path").is_err());
        assert_eq!(parse_host("Box.Local").unwrap(), "box.local");
        assert!(parse_host("box.local:80").is_err());
        assert!(parse_host("").is_err());
    }
}
