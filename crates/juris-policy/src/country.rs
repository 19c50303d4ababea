//! Countries (ISO 3166-1 alpha-2) and compact sets of them.

use std::fmt;

/// A two-letter country code as decided for a client (listener pin, trusted ECS, GeoIP).
///
/// Any two ASCII letters are representable (GeoIP databases also emit user-assigned codes such
/// as `XK`); only the 249 codes assigned by ISO 3166-1 may appear in an order's jurisdictions
/// ([`Country::is_assigned`]). Stored upper-case; `Copy` and two bytes wide.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Country([u8; 2]);

/// Why a string is not a country code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a two-letter country code")]
pub struct CountryError(pub String);

impl Country {
    /// Parses two ASCII letters, case-insensitively.
    pub fn from_ascii(code: &[u8]) -> Result<Country, CountryError> {
        match code {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Ok(Country([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => Err(CountryError(String::from_utf8_lossy(code).into_owned())),
        }
    }

    /// The code as an upper-case string slice.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII upper-case letters (checked in `from_ascii`), so this is UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The code as two upper-case ASCII bytes.
    pub fn as_bytes(&self) -> [u8; 2] {
        self.0
    }

    /// Whether ISO 3166-1 assigns this code.
    pub fn is_assigned(&self) -> bool {
        ISO_3166_ALPHA2.binary_search(&self.as_str()).is_ok()
    }

    /// Position in the 26×26 space of two-letter codes (0..676).
    fn slot(self) -> usize {
        usize::from(self.0[0] - b'A') * 26 + usize::from(self.0[1] - b'A')
    }
}

impl std::str::FromStr for Country {
    type Err = CountryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Country::from_ascii(s.as_bytes())
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Country({})", self.as_str())
    }
}

/// The set of countries an order binds: a 676-bit set (every two-letter code) plus a global flag.
/// Membership is one shift and one AND.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CountrySet {
    global: bool,
    bits: [u64; 11],
}

impl CountrySet {
    /// The empty set (binds nobody).
    pub const fn empty() -> CountrySet {
        CountrySet {
            global: false,
            bits: [0; 11],
        }
    }

    /// The global set: binds every client, including those whose country is unknown.
    pub const fn global() -> CountrySet {
        CountrySet {
            global: true,
            bits: [0; 11],
        }
    }

    /// Adds one country.
    pub fn insert(&mut self, country: Country) {
        let slot = country.slot();
        self.bits[slot / 64] |= 1 << (slot % 64);
    }

    /// Adds every country of `other` (and makes this set global if `other` is).
    pub fn extend(&mut self, other: &CountrySet) {
        self.global |= other.global;
        for (mine, theirs) in self.bits.iter_mut().zip(other.bits) {
            *mine |= theirs;
        }
    }

    /// Whether the set binds every client.
    pub fn is_global(&self) -> bool {
        self.global
    }

    /// Whether an order with this set applies to a client in `country` (`None`: unknown; only
    /// global orders apply then).
    #[inline]
    pub fn applies_to(&self, country: Option<Country>) -> bool {
        if self.global {
            return true;
        }
        match country {
            Some(country) => {
                let slot = country.slot();
                self.bits[slot / 64] & (1 << (slot % 64)) != 0
            }
            None => false,
        }
    }

    /// The countries in the set, in alphabetical order (empty for the global set unless
    /// countries were also inserted).
    pub fn iter(&self) -> impl Iterator<Item = Country> + '_ {
        (0..676usize)
            .filter(|slot| self.bits[slot / 64] & (1 << (slot % 64)) != 0)
            .map(|slot| {
                // slot < 676, so both quotients are < 26 and fit in u8.
                Country([b'A' + (slot / 26) as u8, b'A' + (slot % 26) as u8])
            })
    }
}

impl fmt::Debug for CountrySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.global {
            return f.write_str("CountrySet(*)");
        }
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The member states of the European Union, which the group `EU` expands to.
pub const EU_MEMBERS: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted.
pub const ISO_3166_ALPHA2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn iso_list_is_sorted_unique_and_complete() {
        assert_eq!(ISO_3166_ALPHA2.len(), 249);
        assert!(ISO_3166_ALPHA2.windows(2).all(|w| w[0] < w[1]));
        for code in EU_MEMBERS {
            assert!(code.parse::<Country>().unwrap().is_assigned(), "{code}");
        }
        assert!(!"EU".parse::<Country>().unwrap().is_assigned());
        assert!(!"XK".parse::<Country>().unwrap().is_assigned());
    }

    #[test]
    fn set_membership() {
        let mut set = CountrySet::empty();
        set.insert("it".parse().unwrap());
        set.insert("ZW".parse().unwrap());
        assert!(set.applies_to(Some("IT".parse().unwrap())));
        assert!(set.applies_to(Some("ZW".parse().unwrap())));
        assert!(!set.applies_to(Some("DE".parse().unwrap())));
        assert!(!set.applies_to(None));
        assert!(CountrySet::global().applies_to(None));
        assert_eq!(
            set.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            ["IT", "ZW"]
        );
        assert!("I".parse::<Country>().is_err());
        assert!("I1".parse::<Country>().is_err());
    }
}
