//! The `Host` allow-list: which names this server answers to, checked before routing.
//!
//! Why: a DNS-rebinding page (a name of the attacker's that first resolves to the attacker and
//! then to this server) makes the victim's browser send requests here that are same-origin for
//! the attacker's page; only the `Host` header shows the difference. So a request naming a host
//! the server does not know is answered 421 before any route runs, the login page and the
//! unauthenticated routes included.
//!
//! Answered: `localhost` (and `*.localhost`), loopback addresses, the address the connection
//! arrived at (the bind address, or with `0.0.0.0` each interface's: a browser at an IP
//! literal is same-origin only with that IP, so an IP cannot be rebound), and the configured
//! `allowed_hosts` (`*`: any). A request without a `Host` (HTTP/1.0) is answered: a browser
//! always sends one.

use std::net::IpAddr;

use super::settings::normalise_host;

/// The names answered besides loopback and the local address (see the module docs).
#[derive(Debug, Clone)]
pub struct HostAllowList {
    names: Vec<String>,
    any: bool,
}

impl HostAllowList {
    /// From `server.allowed_hosts` (already normalised).
    pub fn new(names: &[String]) -> Self {
        HostAllowList {
            any: names.iter().any(|n| n == "*"),
            names: names.to_vec(),
        }
    }

    /// Whether a request with `host` (the `Host` header or the request target's authority;
    /// `None` if absent) that arrived at `local` is answered.
    pub fn allows(&self, host: Option<&str>, local: IpAddr) -> bool {
        if self.any {
            return true;
        }
        let Some(host) = host else { return true };
        let Some(name) = normalise_host(strip_port(host)) else {
            return false;
        };
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            if ip.is_loopback() || ip == local.to_canonical() {
                return true;
            }
        }
        self.names.contains(&name)
    }
}

/// `host` without its `:port` (`[v6]:port` keeps its brackets for [`normalise_host`]).
fn strip_port(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address, no port.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> IpAddr {
        "192.168.1.10".parse().unwrap()
    }

    #[test]
    fn loopback_the_local_address_and_listed_names_are_answered() {
        let list = HostAllowList::new(&["sphere.example.net".to_owned()]);
        for host in [
            "localhost",
            "LOCALHOST:8470",
            "app.localhost",
            "127.0.0.1",
            "127.0.0.1:8470",
            "127.1.2.3:1",
            "[::1]:8470",
            "[::ffff:127.0.0.1]",
            "192.168.1.10:8470",
            "sphere.example.net",
            "Sphere.Example.Net.:443",
        ] {
            assert!(list.allows(Some(host), local()), "{host}");
        }
        assert!(list.allows(None, local()));
    }

    #[test]
    fn other_names_and_addresses_are_not() {
        let list = HostAllowList::new(&["sphere.example.net".to_owned()]);
        for host in [
            "evil.example",
            "evil.example:8470",
            "sphere.example.net.evil.example",
            "192.168.1.11",
            "10.0.0.1:8470",
            "",
            "a b",
            "localhost.evil.example",
            "[::1",
        ] {
            assert!(!list.allows(Some(host), local()), "{host}");
        }
        assert!(HostAllowList::new(&["*".to_owned()]).allows(Some("evil.example"), local()));
    }
}
