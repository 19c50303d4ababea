//! Root hints: the `named.root` file that tells a recursive resolver where the root servers are.
//!
//! The format is a small subset of the master-file format (RFC 1035 §5):
//!
//! ```text
//! ; comment
//! .                        3600000      NS    A.ROOT-SERVERS.NET.
//! A.ROOT-SERVERS.NET.      3600000      A     198.41.0.4
//! A.ROOT-SERVERS.NET.      3600000      AAAA  2001:503:ba3e::2:30
//! ```
//!
//! # Limitations
//! - Only NS, A and AAAA records are understood; `$TTL` is accepted and ignored, other
//!   directives (`$ORIGIN`, `$INCLUDE`) and parentheses are errors. Names must be absolute.
//! - Addresses are returned only for names the file lists as root name servers (`. NS name`);
//!   a file without any NS record returns every address it holds.

use std::net::IpAddr;
use std::str::FromStr;

use bytes::Bytes;
use domain::base::Name;

use crate::names::lower;

/// The IANA root hints built into juris.
pub const BUILTIN_ROOT_HINTS: &str = include_str!("named.root");

/// Why a root hints file was rejected. Line numbers start at 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootHintsError {
    /// The line does not have the shape `owner [ttl] [IN] type data`.
    #[error("root hints line {line}: {reason}")]
    Syntax {
        /// Line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A name that is not a valid absolute domain name.
    #[error("root hints line {line}: invalid domain name {text:?}")]
    BadName {
        /// Line number.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// An A or AAAA record whose address does not parse.
    #[error("root hints line {line}: invalid address {text:?}")]
    BadAddress {
        /// Line number.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// A record type other than NS, A, AAAA.
    #[error("root hints line {line}: unsupported record type {text:?}")]
    UnsupportedType {
        /// Line number.
        line: usize,
        /// The offending text.
        text: String,
    },
    /// An NS record whose owner is not the root.
    #[error("root hints line {line}: NS record for {text:?}, expected the root \".\"")]
    NotRoot {
        /// Line number.
        line: usize,
        /// The owner found.
        text: String,
    },
    /// The file holds no usable root server address.
    #[error("root hints hold no root server address")]
    Empty,
}

/// Parses a `named.root` file into (server name, address) pairs, names lower-cased, in file
/// order.
pub fn parse_root_hints(text: &str) -> Result<Vec<(Name<Bytes>, IpAddr)>, RootHintsError> {
    let mut ns_names: Vec<Name<Bytes>> = Vec::new();
    let mut addresses: Vec<(Name<Bytes>, IpAddr)> = Vec::new();
    let mut previous_owner: Option<Name<Bytes>> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split(';').next().unwrap_or("");
        if content.trim().is_empty() {
            continue;
        }
        if content.contains('(') || content.contains(')') {
            return Err(RootHintsError::Syntax {
                line,
                reason: "parentheses are not supported",
            });
        }
        let continuation = content.starts_with([' ', '\t']);
        let mut tokens = content.split_whitespace().peekable();
        if let Some(first) = tokens.peek() {
            if first.starts_with('$') {
                if first.eq_ignore_ascii_case("$TTL") {
                    continue;
                }
                return Err(RootHintsError::Syntax {
                    line,
                    reason: "only the $TTL directive is supported",
                });
            }
        }
        let owner = if continuation {
            previous_owner.clone().ok_or(RootHintsError::Syntax {
                line,
                reason: "continuation line without a previous owner",
            })?
        } else {
            let text = tokens.next().ok_or(RootHintsError::Syntax {
                line,
                reason: "missing owner",
            })?;
            parse_name(text, line)?
        };
        previous_owner = Some(owner.clone());
        // Optional TTL and class, in either order.
        let mut rtype = None;
        for token in tokens.by_ref() {
            if token.bytes().all(|b| b.is_ascii_digit()) || token.eq_ignore_ascii_case("IN") {
                continue;
            }
            rtype = Some(token);
            break;
        }
        let rtype = rtype.ok_or(RootHintsError::Syntax {
            line,
            reason: "missing record type",
        })?;
        let data = tokens.next().ok_or(RootHintsError::Syntax {
            line,
            reason: "missing record data",
        })?;
        if tokens.next().is_some() {
            return Err(RootHintsError::Syntax {
                line,
                reason: "trailing data after the record",
            });
        }
        if rtype.eq_ignore_ascii_case("NS") {
            if !owner.is_root() {
                return Err(RootHintsError::NotRoot {
                    line,
                    text: owner.to_string(),
                });
            }
            let target = parse_name(data, line)?;
            if !ns_names.contains(&target) {
                ns_names.push(target);
            }
        } else if rtype.eq_ignore_ascii_case("A") || rtype.eq_ignore_ascii_case("AAAA") {
            let want_v4 = rtype.eq_ignore_ascii_case("A");
            let address = IpAddr::from_str(data)
                .ok()
                .filter(|a| a.is_ipv4() == want_v4)
                .ok_or_else(|| RootHintsError::BadAddress {
                    line,
                    text: data.to_string(),
                })?;
            addresses.push((owner, address));
        } else {
            return Err(RootHintsError::UnsupportedType {
                line,
                text: rtype.to_string(),
            });
        }
    }
    if !ns_names.is_empty() {
        addresses.retain(|(name, _)| ns_names.contains(name));
    }
    if addresses.is_empty() {
        return Err(RootHintsError::Empty);
    }
    Ok(addresses)
}

/// The IANA root servers (13 names, IPv4 and IPv6), from the built-in `named.root`.
pub fn builtin_root_hints() -> Vec<(Name<Bytes>, IpAddr)> {
    // The built-in file is tested below (`builtin_hints_parse`); an empty result would make
    // `Resolver::new` reject the config rather than panic.
    parse_root_hints(BUILTIN_ROOT_HINTS).unwrap_or_default()
}

fn parse_name(text: &str, line: usize) -> Result<Name<Bytes>, RootHintsError> {
    let bad = || RootHintsError::BadName {
        line,
        text: text.to_string(),
    };
    if !text.ends_with('.') {
        return Err(bad());
    }
    let name = Name::<Bytes>::bytes_from_str(text).map_err(|_| bad())?;
    Ok(lower(&name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn builtin_hints_parse() {
        let hints = builtin_root_hints();
        assert_eq!(hints.len(), 26, "13 servers, A and AAAA each");
        let a_root = Name::<Bytes>::bytes_from_str("a.root-servers.net.").unwrap();
        assert!(hints.contains(&(a_root.clone(), "198.41.0.4".parse().unwrap())));
        assert!(hints.contains(&(a_root, "2001:503:ba3e::2:30".parse().unwrap())));
        let m_root = Name::<Bytes>::bytes_from_str("m.root-servers.net.").unwrap();
        assert!(hints.contains(&(m_root, "2001:dc3::35".parse().unwrap())));
    }

    #[test]
    fn accepts_class_ttl_and_comments() {
        let text = "; hints\n. 3600000 IN NS ns.test. ; inline\n\
                    ns.test. IN 3600000 A 127.0.0.2\n\
                    other.test. 3600 A 127.0.0.9\n$TTL 3600\n";
        let hints = parse_root_hints(text).unwrap();
        assert_eq!(hints.len(), 1, "addresses of non-NS names are dropped");
        assert_eq!(hints[0].1, "127.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse_root_hints(". NS a.test.\na.test. A 999.1.1.1\n").unwrap_err();
        assert_eq!(
            err,
            RootHintsError::BadAddress {
                line: 2,
                text: "999.1.1.1".into()
            }
        );
        let err = parse_root_hints("\n\na.test. MX 10\n").unwrap_err();
        assert!(matches!(
            err,
            RootHintsError::UnsupportedType { line: 3, .. }
        ));
        let err = parse_root_hints("a.test. A 2001:db8::1\n").unwrap_err();
        assert!(matches!(err, RootHintsError::BadAddress { line: 1, .. }));
        let err = parse_root_hints("com. NS a.test.\n").unwrap_err();
        assert!(matches!(err, RootHintsError::NotRoot { line: 1, .. }));
        let err = parse_root_hints("a.test A 127.0.0.1\n").unwrap_err();
        assert!(matches!(err, RootHintsError::BadName { line: 1, .. }));
        assert_eq!(parse_root_hints("; nothing\n"), Err(RootHintsError::Empty));
    }
}
