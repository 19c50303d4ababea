//! Client access control: an allow list of prefixes, checked before anything else.

use std::net::IpAddr;

use ipnet::IpNet;

/// Allowed client prefixes. Few entries are expected (a handful of private ranges, or
/// `0.0.0.0/0` + `::/0` for an open resolver), so a linear scan is the fastest lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessList {
    v4: Vec<ipnet::Ipv4Net>,
    v6: Vec<ipnet::Ipv6Net>,
}

impl AccessList {
    /// A list allowing exactly `allow`.
    pub fn new(allow: &[IpNet]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in allow {
            match net.trunc() {
                IpNet::V4(n) => v4.push(n),
                IpNet::V6(n) => v6.push(n),
            }
        }
        Self { v4, v6 }
    }

    /// Whether `client` may query. IPv4-mapped IPv6 addresses are checked as IPv4.
    #[inline]
    pub fn allows(&self, client: IpAddr) -> bool {
        match client {
            IpAddr::V4(a) => self.v4.iter().any(|n| n.contains(&a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.v4.iter().any(|n| n.contains(&v4)),
                None => self.v6.iter().any(|n| n.contains(&a)),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::config::default_allow_list;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_list_allows_private_only() {
        let acl = AccessList::new(&default_allow_list());
        for ok in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.1.1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(acl.allows(ip(ok)), "{ok}");
        }
        for denied in [
            "8.8.8.8",
            "172.32.0.1",
            "2001:db8::1",
            "::2",
            "::ffff:8.8.8.8",
        ] {
            assert!(!acl.allows(ip(denied)), "{denied}");
        }
    }

    #[test]
    fn open_resolver_is_explicit() {
        let acl = AccessList::new(&["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]);
        assert!(acl.allows(ip("8.8.8.8")));
        assert!(acl.allows(ip("2001:db8::1")));
        assert!(!AccessList::new(&[]).allows(ip("127.0.0.1")));
    }
}
