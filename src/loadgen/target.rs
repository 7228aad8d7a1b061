//! Where the load goes: a node or a proxy on this machine, and nowhere else.
//!
//! The load generator opens thousands of sockets as fast as it can; pointed at
//! someone else's server that is an attack, so only loopback addresses are
//! accepted (`127.0.0.0/8`, `[::1]`), written as addresses: a name, even
//! `localhost`, could resolve elsewhere.

use std::net::IpAddr;

use anyhow::{Context as _, bail};
use reqwest::Url;

/// A validated base URL on the loopback interface.
#[derive(Debug, Clone)]
pub struct Target {
    base: Url,
}

impl Target {
    /// Accepts `http://`, `ws://` (the same server) with a loopback address.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let mut base = Url::parse(url).with_context(|| format!("not a URL: {url}"))?;
        match base.scheme() {
            "http" | "ws" => {}
            other => bail!("unsupported scheme {other:?}: use http:// (or ws://) on 127.0.0.1"),
        }
        // An IPv6 host comes back in brackets; a name does not parse.
        let host = base.host_str().unwrap_or("");
        let loopback = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            bail!(
                "refusing to load {:?}: the load generator only targets loopback addresses (127.0.0.1)",
                base.host_str().unwrap_or("")
            );
        }
        base.set_scheme("http")
            .map_err(|()| anyhow::anyhow!("cannot use {url} over http"))?;
        base.set_path("/");
        base.set_query(None);
        base.set_fragment(None);
        Ok(Target { base })
    }

    /// An HTTP URL on the target, `path` starting with `/`.
    pub fn http(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    /// The WebSocket endpoint for a guest token.
    pub fn websocket(&self, token: &str) -> String {
        let mut url = self.base.clone();
        url.set_scheme("ws")
            .expect("http and ws are interchangeable");
        url.set_path("/ws/chat");
        url.query_pairs_mut().append_pair("token", token);
        url.into()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.base.as_str().trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_targets() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "ws://127.0.0.1:9000/ws/chat",
            "http://127.1.2.3:80",
            "http://[::1]:8080",
        ] {
            assert!(Target::parse(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://localhost:8080",
            "http://10.0.0.1:8080",
            "http://example.com",
            "https://127.0.0.1:8443",
            "http://0.0.0.0:8080",
            "not a url",
        ] {
            assert!(Target::parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn builds_http_and_websocket_urls() {
        let target = Target::parse("ws://127.0.0.1:9000/ignored?x=1").unwrap();
        assert_eq!(target.to_string(), "http://127.0.0.1:9000");
        assert_eq!(
            target.http("/api/auth/guest"),
            "http://127.0.0.1:9000/api/auth/guest"
        );
        assert_eq!(
            target.websocket("a.b.c"),
            "ws://127.0.0.1:9000/ws/chat?token=a.b.c"
        );
    }
}
