//! Configuration: [`GeoConfig`] (the raw, strict layer read from TOML) and [`FieldPath`] (the
//! validated path to the country code inside a database record).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::GeoError;

/// How clients are placed in a jurisdiction (the `[geo]` table of the configuration).
///
/// Listener pins are configured on the listeners themselves and passed to
/// [`Classifier::classify`](crate::Classifier::classify) per query.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoConfig {
    /// The GeoIP database (MaxMind DB format). Default: none, so every client whose listener is
    /// not pinned is in an unknown jurisdiction and only global orders apply to it.
    pub mmdb: Option<PathBuf>,
    /// Dotted path to the two-letter country code in each record, e.g. `country.iso_code`
    /// (MaxMind), `country_code` (ip-location-db), `country` (IPinfo); an all-digit segment
    /// indexes an array. Default: detected when the database is opened, trying those three in
    /// that order.
    pub field_path: Option<String>,
    /// Forwarders whose EDNS Client Subnet option is believed (addresses or prefixes).
    /// Default: none, so ECS is ignored from everyone.
    pub trusted_ecs_forwarders: Vec<IpNet>,
}

/// The deepest field path accepted (the lookup builds the path on the stack).
pub const MAX_FIELD_PATH_DEPTH: usize = 8;

/// A validated field path such as `country.iso_code`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

impl FieldPath {
    /// The paths tried, in order, when none is configured: MaxMind, ip-location-db, IPinfo.
    pub const AUTO_DETECTED: [&'static str; 3] = ["country.iso_code", "country_code", "country"];

    /// Parses a dotted path: non-empty segments, at most [`MAX_FIELD_PATH_DEPTH`] of them.
    pub fn parse(text: &str) -> Result<Self, GeoError> {
        let invalid = |reason: &'static str| GeoError::InvalidFieldPath {
            field_path: text.to_owned(),
            reason,
        };
        let mut segments = Vec::new();
        for segment in text.split('.') {
            if segment.is_empty() {
                return Err(invalid("empty segment"));
            }
            if segments.len() == MAX_FIELD_PATH_DEPTH {
                return Err(invalid("more than 8 segments"));
            }
            let segment = if segment.bytes().all(|byte| byte.is_ascii_digit()) {
                segment
                    .parse()
                    .map(Segment::Index)
                    .map_err(|_| invalid("array index too large"))?
            } else {
                Segment::Key(segment.to_owned())
            };
            segments.push(segment);
        }
        Ok(FieldPath {
            text: text.to_owned(),
            segments,
        })
    }

    /// The path as configured, e.g. `country.iso_code`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldPath({})", self.text)
    }
}

impl FromStr for FieldPath {
    type Err = GeoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[cfg(test)]
// Tests: a panic is how a failure is reported.
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn field_paths() {
        let path = FieldPath::parse("subdivisions.0.iso_code").unwrap();
        assert_eq!(
            path.segments(),
            [
                Segment::Key("subdivisions".into()),
                Segment::Index(0),
                Segment::Key("iso_code".into())
            ]
        );
        assert_eq!(path.to_string(), "subdivisions.0.iso_code");
        for bad in [
            "",
            ".",
            "a..b",
            "a.",
            "a.b.c.d.e.f.g.h.i",
            "a.99999999999999999999999",
        ] {
            assert!(
                matches!(
                    FieldPath::parse(bad),
                    Err(GeoError::InvalidFieldPath { .. })
                ),
                "{bad:?}"
            );
        }
        for auto in FieldPath::AUTO_DETECTED {
            FieldPath::parse(auto).unwrap();
        }
    }

    #[test]
    fn config_is_strict_and_defaults_to_nothing() {
        let config: GeoConfig = toml::from_str(
            r#"
            mmdb = "/x.mmdb"
            field_path = "country_code"
            trusted_ecs_forwarders = ["192.0.2.0/24", "2001:db8::1/128"]
            "#,
        )
        .unwrap();
        assert_eq!(config.mmdb, Some(PathBuf::from("/x.mmdb")));
        assert_eq!(config.field_path.as_deref(), Some("country_code"));
        assert_eq!(config.trusted_ecs_forwarders.len(), 2);
        assert!(toml::from_str::<GeoConfig>(r#"mmdbb = "/x.mmdb""#).is_err());
        assert_eq!(
            toml::from_str::<GeoConfig>("").unwrap(),
            GeoConfig::default()
        );
    }
}
