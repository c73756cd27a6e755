//! Who a request comes from, for the failed-authentication budget.
//!
//! Why: the budget must follow the attacker, not the connection: ports are free to rotate, so
//! a source is an IP address, and for IPv6 its /64 (one customer's network: rotating through
//! 2^64 addresses must not mint 2^64 budgets). Behind a reverse proxy every request comes from
//! the proxy; only proxies listed in `server.trusted_proxies` are believed about the client
//! (`X-Forwarded-For`, read right to left past the trusted proxies, as each appends the
//! address it saw). A header from anyone else is ignored: it is the client's own claim.

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;

/// A client as the budget counts it: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source of address `ip`.
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Source(IpAddr::V6(Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
        }
    }

    /// The source of a request from `peer` with `headers`, believing `X-Forwarded-For` only
    /// from `trusted` proxies.
    pub fn of_request(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> Source {
        let peer = peer.to_canonical();
        if !trusted.contains(&peer) {
            return Source::of(peer);
        }
        // All X-Forwarded-For lines in order, entries right to left: the first address that
        // is not a trusted proxy is the client. An entry that does not parse ends the walk:
        // nothing left of it was written by a proxy we trust.
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for entry in entries.iter().rev() {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) if trusted.contains(&ip.to_canonical()) => continue,
                Ok(ip) => return Source::of(ip),
                Err(_) => break,
            }
        }
        Source::of(peer)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy = ip("10.0.0.1");
        let trusted = [proxy, ip("10.0.0.2")];
        let client = Source::of(ip("203.0.113.7"));
        // Not a trusted peer: its header is the client's own claim.
        assert_eq!(
            Source::of_request(ip("198.51.100.1"), &xff(&["203.0.113.7"]), &trusted),
            Source::of(ip("198.51.100.1"))
        );
        // Trusted: the right-most untrusted entry, past a chain of trusted proxies; what the
        // client itself wrote in front is ignored.
        assert_eq!(
            Source::of_request(proxy, &xff(&["1.2.3.4, 203.0.113.7, 10.0.0.2"]), &trusted),
            client
        );
        assert_eq!(
            Source::of_request(proxy, &xff(&["1.2.3.4", "203.0.113.7"]), &trusted),
            client
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(
            Source::of_request(proxy, &HeaderMap::new(), &trusted),
            Source::of(proxy)
        );
        assert_eq!(
            Source::of_request(proxy, &xff(&["1.2.3.4, garbage"]), &trusted),
            Source::of(proxy)
        );
    }
}
