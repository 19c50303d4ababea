//! [`CountryCode`]: an ISO 3166-1 alpha-2 code as two upper-case ASCII letters.

use std::fmt;
use std::str::FromStr;

/// An ISO 3166-1 alpha-2 country code (`IT`, `DE`), stored as two upper-case ASCII letters.
///
/// The policy crate has its own country type; the server converts through
/// [`CountryCode::as_str`] so that `juris-geo` depends on nothing of ours. Any two letters are
/// accepted (GeoIP databases also use `EU`, `AP`, `XK`); whether a code names a jurisdiction
/// with orders is the policy's business.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 2]);

/// A string that is not two ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an ISO 3166-1 alpha-2 country code (two ASCII letters): {0:?}")]
pub struct CountryCodeError(pub String);

impl CountryCode {
    /// Parses two ASCII letters, either case (`it` → `IT`).
    pub fn parse(text: &str) -> Result<Self, CountryCodeError> {
        Self::from_bytes(text.as_bytes()).ok_or_else(|| CountryCodeError(text.to_owned()))
    }

    /// Two ASCII letters, either case, or `None`; allocation-free (used on the lookup path).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        match *bytes {
            [first, second] if first.is_ascii_alphabetic() && second.is_ascii_alphabetic() => {
                Some(CountryCode([
                    first.to_ascii_uppercase(),
                    second.to_ascii_uppercase(),
                ]))
            }
            _ => None,
        }
    }

    /// The code, e.g. `"IT"`.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII letters (the only constructor is `from_bytes`), so this is
        // valid UTF-8 and the fallback is unreachable.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The two upper-case ASCII bytes.
    pub fn as_bytes(&self) -> [u8; 2] {
        self.0
    }

    /// A dense index in `0..676` (`AA` = 0), used by the lookup memo.
    pub(crate) fn index(self) -> u16 {
        u16::from(self.0[0] - b'A') * 26 + u16::from(self.0[1] - b'A')
    }

    /// The inverse of [`index`](Self::index).
    pub(crate) fn from_index(index: u16) -> Option<Self> {
        if index >= 26 * 26 {
            return None;
        }
        // Both quotients are < 26, so the casts do not truncate.
        Some(CountryCode([
            b'A' + (index / 26) as u8,
            b'A' + (index % 26) as u8,
        ]))
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl FromStr for CountryCode {
    type Err = CountryCodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl serde::Serialize for CountryCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for CountryCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
// Tests: a panic is how a failure is reported.
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises_case_and_rejects_the_rest() {
        assert_eq!(CountryCode::parse("it").unwrap().as_str(), "IT");
        assert_eq!(CountryCode::parse("De").unwrap().to_string(), "DE");
        for bad in ["", "I", "ITA", "I1", "é", "*", "  "] {
            assert!(CountryCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn index_round_trips() {
        for first in b'A'..=b'Z' {
            for second in b'A'..=b'Z' {
                let code = CountryCode::from_bytes(&[first, second]).unwrap();
                assert_eq!(CountryCode::from_index(code.index()), Some(code));
            }
        }
        assert_eq!(CountryCode::from_index(676), None);
    }
}
