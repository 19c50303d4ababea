//! What SIGHUP does with the configuration file: the keys that change live, and the others,
//! which it refuses and names (docs/operations.md, "Reloading").
//!
//! ```text
//!  SIGHUP ─► read + validate the file again (invalid: nothing changes, logged)
//!         ─► keys that differ from the file juris started with:
//!              LIVE_KEYS (log.level, server.allow, policy.withdraw) and every key
//!              under LIVE_TABLES (server.rate_limit, server.cookies) ─► applied
//!              any other ─► not applied, named: "need a restart"
//!  independently: orders re-read, GeoIP database and TLS certificate reloaded (same paths)
//! ```

/// The configuration keys a SIGHUP puts in force (the files behind `policy.orders`,
/// `geoip.mmdb` and `tls.cert`/`tls.key` are re-read too, but not a change of those paths).
pub const LIVE_KEYS: &[&str] = &["log.level", "server.allow", "policy.withdraw"];

/// Tables whose every key a SIGHUP puts in force.
pub const LIVE_TABLES: &[&str] = &["server.rate_limit", "server.cookies"];

/// The dotted keys whose values differ between two TOML documents (a key in one only counts;
/// arrays and inline values compare whole; tables are walked).
pub fn changed_keys(old: &toml::Value, new: &toml::Value) -> Vec<String> {
    let mut changed = Vec::new();
    walk("", Some(old), Some(new), &mut changed);
    changed.sort();
    changed
}

fn walk(
    prefix: &str,
    old: Option<&toml::Value>,
    new: Option<&toml::Value>,
    changed: &mut Vec<String>,
) {
    let key = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        }
    };
    match (old, new) {
        (Some(toml::Value::Table(old)), Some(toml::Value::Table(new))) => {
            for (name, value) in old {
                walk(&key(name), Some(value), new.get(name), changed);
            }
            for (name, value) in new {
                if !old.contains_key(name) {
                    walk(&key(name), None, Some(value), changed);
                }
            }
        }
        // A table on one side only: each of its keys changed.
        (Some(toml::Value::Table(table)), None) | (None, Some(toml::Value::Table(table))) => {
            for (name, value) in table {
                let (old, new) = if old.is_some() {
                    (Some(value), None)
                } else {
                    (None, Some(value))
                };
                walk(&key(name), old, new, changed);
            }
        }
        (old, new) if old != new => changed.push(prefix.to_owned()),
        _ => {}
    }
}

/// Splits changed keys into those a SIGHUP applies and those that need a restart.
pub fn partition(changed: Vec<String>) -> (Vec<String>, Vec<String>) {
    changed.into_iter().partition(|key| {
        LIVE_KEYS.contains(&key.as_str())
            || LIVE_TABLES.iter().any(|table| {
                key.strip_prefix(table)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
    })
}

/// The file as a TOML document (`None`: no file, an empty document).
pub fn document(path: Option<&std::path::Path>) -> anyhow::Result<toml::Value> {
    use anyhow::Context;
    match path {
        None => Ok(toml::Value::Table(toml::map::Map::new())),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}: not TOML", path.display()))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    fn doc(text: &str) -> toml::Value {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn changed_keys_are_named_with_their_section() {
        let old = doc("[server]\nlisten = [\"127.0.0.1:53\"]\nallow = [\"10.0.0.0/8\"]\n[log]\nlevel = \"info\"\n");
        let new = doc("[server]\nlisten = [\"127.0.0.1:5353\"]\nallow = [\"10.0.0.0/8\", \"192.0.2.0/24\"]\n[log]\nlevel = \"info\"\n[cache]\nsize = \"1G\"\n");
        assert_eq!(
            changed_keys(&old, &new),
            ["cache.size", "server.allow", "server.listen"]
        );
        assert!(changed_keys(&old, &old).is_empty());
    }

    #[test]
    fn removed_keys_and_nested_tables_count() {
        let (old, new) = (
            doc("[resolver]\nforward = [\"192.0.2.1\"]\n[resolver.limits]\nmax_depth = 6\n"),
            doc("[resolver.limits]\nmax_depth = 7\n"),
        );
        let expected = ["resolver.forward", "resolver.limits.max_depth"];
        assert_eq!(changed_keys(&old, &new), expected);
    }

    #[test]
    fn only_the_live_keys_are_applied() {
        let (live, restart) = partition(vec![
            "cache.size".into(),
            "log.level".into(),
            "policy.withdraw".into(),
            "server.allow".into(),
            "server.listen".into(),
            "server.rate_limit.queries_per_second".into(),
            "server.rate_limit".into(),
            "server.rate_limiter".into(),
            "server.cookies.secret".into(),
            "server.cookiesx".into(),
            "server.hot_answer_slots".into(),
            "resolver.limits.aggressive_nsec_ranges".into(),
        ]);
        assert_eq!(
            live,
            [
                "log.level",
                "policy.withdraw",
                "server.allow",
                "server.rate_limit.queries_per_second",
                "server.rate_limit",
                "server.cookies.secret"
            ]
        );
        assert_eq!(
            restart,
            [
                "cache.size",
                "server.listen",
                "server.rate_limiter",
                "server.cookiesx",
                "server.hot_answer_slots",
                "resolver.limits.aggressive_nsec_ranges"
            ]
        );
    }
}
