//! `chatstream healthcheck`: asks the node on this machine whether it is
//! alive (`/healthz`) or ready (`/readyz`), so that a container image needs
//! no `curl`. It finds the node through the node's own `BIND` setting (an
//! address on every interface is reached through loopback) and answers in
//! one line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How long the node has to answer; a container runtime's own probe
/// timeout is usually a few seconds more.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The address to reach a node that listens on `bind` from this machine.
pub fn probe_url(bind: &str, path: &str) -> Result<String, String> {
    let authority = match bind.parse::<SocketAddr>() {
        Ok(addr) => {
            let ip = match addr.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            if addr.port() == 0 {
                return Err(port_zero(bind));
            }
            SocketAddr::new(ip, addr.port()).to_string()
        }
        // A host name, as `localhost:8080`.
        Err(_) => match bind
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()))
        {
            Some((host, Ok(port))) if !host.is_empty() => {
                if port == 0 {
                    return Err(port_zero(bind));
                }
                bind.to_owned()
            }
            _ => return Err(format!("BIND `{bind}` is not a host:port address")),
        },
    };
    Ok(format!("http://{authority}{path}"))
}

fn port_zero(bind: &str) -> String {
    format!("BIND `{bind}` has port 0 (any free port): there is no fixed address to check")
}

/// Checks the node listening on `bind`: `Ok` with a line saying it is alive
/// (ready, with `ready`), or `Err` with a line saying why not.
pub async fn check(bind: &str, ready: bool) -> Result<String, String> {
    let (what, path) = if ready {
        ("ready", "/readyz")
    } else {
        ("alive", "/healthz")
    };
    let url = probe_url(bind, path).map_err(|problem| format!("cannot check: {problem}"))?;
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        // A proxy from the environment has no business with loopback.
        .no_proxy()
        .build()
        .map_err(|error| format!("cannot check: {}", root_cause(&error)))?;
    match client.get(&url).send().await {
        Ok(response) if response.status() == reqwest::StatusCode::OK => {
            Ok(format!("{what}: {url} answered {}", response.status()))
        }
        Ok(response) => Err(format!("not {what}: {url} answered {}", response.status())),
        Err(error) if error.is_timeout() => Err(format!(
            "not {what}: {url} gave no answer within {} s",
            TIMEOUT.as_secs()
        )),
        Err(error) => Err(format!("not {what}: {url}: {}", root_cause(&error))),
    }
}

/// The innermost cause of an error, which says what happened ("Connection
/// refused") where the outer ones only say what was being done.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::probe_url;

    #[test]
    fn an_address_on_every_interface_is_reached_through_loopback() {
        assert_eq!(
            probe_url("0.0.0.0:8080", "/healthz").unwrap(),
            "http://127.0.0.1:8080/healthz"
        );
        assert_eq!(
            probe_url("[::]:8080", "/readyz").unwrap(),
            "http://[::1]:8080/readyz"
        );
    }

    #[test]
    fn a_specific_address_or_host_is_kept() {
        assert_eq!(
            probe_url("192.0.2.7:9000", "/healthz").unwrap(),
            "http://192.0.2.7:9000/healthz"
        );
        assert_eq!(
            probe_url("localhost:8080", "/healthz").unwrap(),
            "http://localhost:8080/healthz"
        );
    }

    #[test]
    fn an_address_without_a_fixed_port_is_refused() {
        for bind in ["127.0.0.1:0", "localhost:0", "8080", "localhost", ":8080"] {
            let error = probe_url(bind, "/healthz").unwrap_err();
            assert!(error.contains(bind), "{error}");
        }
    }
}
