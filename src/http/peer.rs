//! Who is on the other end of a request: the client's IP address and the
//! origin the request was made to, believing `X-Forwarded-*` headers only
//! from the proxies listed in `TRUSTED_PROXIES`; and the `Origin` check of
//! WebSocket upgrades (`ALLOWED_ORIGINS`).
//!
//! actix's `ConnectionInfo` believes those headers from anyone, so nothing
//! here uses it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderMap};
use anyhow::bail;
use ipnet::IpNet;

/// The peers whose `X-Forwarded-For`, `X-Forwarded-Proto` and
/// `X-Forwarded-Host` are believed: addresses and CIDR ranges.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// `TRUSTED_PROXIES` entries (`10.0.0.5`, `10.0.0.0/8`, `::1`,
    /// `fd00::/8`); empty ones are ignored. An entry that is neither an
    /// address nor a range is an error naming the variable.
    pub fn parse(entries: &[String]) -> anyhow::Result<TrustedProxies> {
        let mut nets = Vec::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let net = match (entry.parse::<IpNet>(), entry.parse::<IpAddr>()) {
                (Ok(net), _) => net.trunc(),
                (_, Ok(address)) => IpNet::from(address),
                _ => bail!(
                    "TRUSTED_PROXIES: {entry:?} is neither an IP address nor a CIDR range \
                     (such as 10.0.0.0/8)"
                ),
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    /// Whether `address` is one of the trusted proxies. An IPv4 peer seen
    /// as an IPv4-mapped IPv6 address (a dual-stack listener) counts as the
    /// IPv4 address.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }

    fn trusts_peer(&self, request: &HttpRequest) -> bool {
        request
            .peer_addr()
            .is_some_and(|peer| self.trusts(peer.ip()))
    }
}

/// The client's IP address: the peer's, or, when the peer is a trusted
/// proxy, the last `X-Forwarded-For` entry (the address that proxy saw; the
/// entries before it are whatever the client claimed). Falls back to the
/// peer when that entry is not an address, and to `0.0.0.0` when there is
/// no peer (a request built in a test).
pub fn client_ip(request: &HttpRequest, trusted: &TrustedProxies) -> IpAddr {
    let peer = request
        .peer_addr()
        .map(|peer| peer.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if !trusted.trusts(peer) {
        return peer;
    }
    last_entry(request.headers(), X_FORWARDED_FOR)
        .and_then(parse_forwarded_address)
        .map(|address| address.to_canonical())
        .unwrap_or(peer)
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// The last comma-separated entry of the last `name` header, if any.
fn last_entry<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers.get_all(name).last()?.to_str().ok()?;
    let entry = value.rsplit(',').next()?.trim();
    (!entry.is_empty()).then_some(entry)
}

/// An `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:5678`, `[::1]:5678`).
fn parse_forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The origin this request was made to, `scheme://host[:port]`: the
/// listener's scheme and the `Host` header, or, behind a trusted proxy, its
/// `X-Forwarded-Proto` and `X-Forwarded-Host` where it sends them.
pub fn request_origin(request: &HttpRequest, trusted: &TrustedProxies) -> Option<String> {
    let forwarded = |name| {
        trusted
            .trusts_peer(request)
            .then(|| last_entry(request.headers(), name))
            .flatten()
    };
    let scheme = forwarded(X_FORWARDED_PROTO).unwrap_or(if request.app_config().secure() {
        "https"
    } else {
        "http"
    });
    let host = match forwarded(X_FORWARDED_HOST) {
        Some(host) => host.to_owned(),
        None => match request.headers().get(header::HOST) {
            Some(host) => host.to_str().ok()?.to_owned(),
            None => request.uri().authority()?.as_str().to_owned(),
        },
    };
    normalize_origin(&format!("{scheme}://{host}"))
}

/// The origins, besides a node's own, allowed to open a WebSocket.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// `ALLOWED_ORIGINS` entries (`https://chat.example.com`); empty ones
    /// are ignored. An entry that is not `scheme://host[:port]` is an error
    /// naming the variable.
    pub fn parse(entries: &[String]) -> anyhow::Result<AllowedOrigins> {
        let mut origins = Vec::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            match normalize_origin(entry) {
                Some(origin) => origins.push(origin),
                None => bail!(
                    "ALLOWED_ORIGINS: {entry:?} is not an origin; write scheme://host[:port], \
                     such as https://chat.example.com"
                ),
            }
        }
        Ok(AllowedOrigins(origins))
    }

    fn contains(&self, origin: &str) -> bool {
        self.0.iter().any(|allowed| allowed == origin)
    }
}

/// Whether a WebSocket upgrade may proceed: it has no `Origin` (not a
/// browser), or its one `Origin` is the request's own origin or an allowed
/// one. Anything else (an origin from another site, `null`, two `Origin`
/// headers, one that is not text) is refused.
pub fn origin_allowed(
    request: &HttpRequest,
    trusted: &TrustedProxies,
    allowed: &AllowedOrigins,
) -> bool {
    let mut values = request.headers().get_all(header::ORIGIN);
    let Some(value) = values.next() else {
        return true;
    };
    if values.next().is_some() {
        return false;
    }
    let Some(origin) = value.to_str().ok().and_then(normalize_origin) else {
        return false;
    };
    allowed.contains(&origin) || request_origin(request, trusted).is_some_and(|own| own == origin)
}

/// `scheme://host[:port]` in one spelling: scheme and host in lower case,
/// the scheme's default port left out, a trailing `/` dropped. `None` for
/// anything else (`null`, a path, credentials).
fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim();
    let origin = origin.strip_suffix('/').unwrap_or(origin);
    let (scheme, host) = origin.split_once("://")?;
    let valid_scheme = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid_scheme
        || host.is_empty()
        || host
            .bytes()
            .any(|b| matches!(b, b'/' | b'?' | b'#' | b'@' | b',') || b.is_ascii_whitespace())
    {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" | "ws" => Some(":80"),
        "https" | "wss" => Some(":443"),
        _ => None,
    };
    let host = default_port
        .and_then(|port| host.strip_suffix(port))
        .unwrap_or(&host);
    Some(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn origins(entries: &[&str]) -> AllowedOrigins {
        AllowedOrigins::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn from(peer: &str) -> TestRequest {
        TestRequest::default().peer_addr(peer.parse().unwrap())
    }

    #[test]
    fn trusted_proxies_are_addresses_and_ranges() {
        let trusted = proxies(&["10.0.0.0/8", " 192.168.1.7 ", "", "fd00::/8", "::1"]);
        for address in [
            "10.1.2.3",
            "192.168.1.7",
            "fd12::1",
            "::1",
            "::ffff:10.9.9.9",
        ] {
            assert!(trusted.trusts(address.parse().unwrap()), "{address}");
        }
        for address in ["11.0.0.1", "192.168.1.8", "fe80::1", "127.0.0.1"] {
            assert!(!trusted.trusts(address.parse().unwrap()), "{address}");
        }
        // Host bits in a range are ignored, as routers do.
        assert!(proxies(&["10.1.2.3/8"]).trusts("10.200.0.1".parse().unwrap()));
        assert!(!TrustedProxies::default().trusts("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_bad_trusted_proxy_names_the_variable() {
        for entry in ["10.0.0.0/33", "proxy.local", "10.0.0", "1.2.3.4:80"] {
            let error = TrustedProxies::parse(&[entry.to_owned()]).unwrap_err();
            assert!(error.to_string().contains("TRUSTED_PROXIES"), "{error}");
        }
    }

    #[test]
    fn the_client_ip_is_the_peer_unless_a_trusted_proxy_forwards() {
        let trusted = proxies(&["10.0.0.1"]);
        let forwarded = |peer: &str, values: &[&str]| {
            let mut request = from(peer);
            for value in values {
                request = request.append_header(("X-Forwarded-For", *value));
            }
            client_ip(&request.to_http_request(), &trusted).to_string()
        };
        // An untrusted peer's header is ignored.
        assert_eq!(forwarded("203.0.113.9:5000", &["1.1.1.1"]), "203.0.113.9");
        // A trusted proxy's last entry is the client; earlier ones are claims.
        assert_eq!(
            forwarded("10.0.0.1:5000", &["6.6.6.6, 198.51.100.4"]),
            "198.51.100.4"
        );
        assert_eq!(
            forwarded("10.0.0.1:5000", &["6.6.6.6", "198.51.100.4"]),
            "198.51.100.4"
        );
        assert_eq!(
            forwarded("10.0.0.1:5000", &["198.51.100.4:443"]),
            "198.51.100.4"
        );
        assert_eq!(
            forwarded("10.0.0.1:5000", &["[2001:db8::1]:443"]),
            "2001:db8::1"
        );
        // Nothing usable: the proxy itself.
        assert_eq!(forwarded("10.0.0.1:5000", &[]), "10.0.0.1");
        assert_eq!(forwarded("10.0.0.1:5000", &["unknown"]), "10.0.0.1");
        assert_eq!(
            forwarded("[::ffff:10.0.0.1]:5000", &["198.51.100.4"]),
            "198.51.100.4"
        );
        assert_eq!(
            client_ip(&TestRequest::default().to_http_request(), &trusted).to_string(),
            "0.0.0.0"
        );
    }

    #[test]
    fn origins_are_compared_in_one_spelling() {
        for (a, b) in [
            ("HTTP://Example.COM", "http://example.com"),
            ("http://example.com:80", "http://example.com"),
            ("https://example.com:443/", "https://example.com"),
            ("http://example.com:8080", "http://example.com:8080"),
            ("http://[::1]:80", "http://[::1]"),
        ] {
            assert_eq!(normalize_origin(a).as_deref(), Some(b), "{a}");
        }
        for bad in [
            "null",
            "example.com",
            "http://",
            "http://a/b",
            "http://u@a",
            "://a",
            "1http://a",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
        let error = AllowedOrigins::parse(&["chat.example.com".into()]).unwrap_err();
        assert!(error.to_string().contains("ALLOWED_ORIGINS"), "{error}");
    }

    #[test]
    fn an_upgrade_may_come_from_its_own_origin_or_an_allowed_one() {
        let allowed = origins(&["https://app.example.com"]);
        let trusted = proxies(&["10.0.0.1"]);
        let check =
            |request: TestRequest| origin_allowed(&request.to_http_request(), &trusted, &allowed);
        let direct = || from("203.0.113.9:5000").insert_header(("Host", "node.local:8080"));
        assert!(check(direct()), "no Origin: not a browser");
        assert!(check(
            direct().insert_header(("Origin", "http://node.local:8080"))
        ));
        assert!(check(
            direct().insert_header(("Origin", "https://app.example.com"))
        ));
        assert!(!check(
            direct().insert_header(("Origin", "https://evil.example"))
        ));
        assert!(!check(
            direct().insert_header(("Origin", "https://node.local:8080"))
        ));
        assert!(!check(direct().insert_header(("Origin", "null"))));
        assert!(!check(
            direct()
                .append_header(("Origin", "http://node.local:8080"))
                .append_header(("Origin", "http://node.local:8080"))
        ));
        // Forwarded headers from an untrusted peer are ignored.
        assert!(!check(
            direct()
                .insert_header(("X-Forwarded-Proto", "https"))
                .insert_header(("X-Forwarded-Host", "chat.example.com"))
                .insert_header(("Origin", "https://chat.example.com"))
        ));
        // From a trusted proxy they name the origin.
        let proxied = || {
            from("10.0.0.1:5000")
                .insert_header(("Host", "node.local:8080"))
                .insert_header(("X-Forwarded-Proto", "https"))
                .insert_header(("X-Forwarded-Host", "chat.example.com"))
        };
        assert!(check(
            proxied().insert_header(("Origin", "https://chat.example.com"))
        ));
        assert!(!check(
            proxied().insert_header(("Origin", "http://node.local:8080"))
        ));
    }
}
