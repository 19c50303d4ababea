//! RFC 8509 root-key-sentinel: a client learns which root KSKs this resolver trusts by asking
//! for `root-key-sentinel-is-ta-<tag>.<domain>` / `root-key-sentinel-not-ta-<tag>.<domain>`
//! (A or AAAA): a *secure* answer becomes SERVFAIL when the sentinel says the opposite of the
//! root trust anchor store (§3.2). Unvalidated, insecure and bogus answers are left as they are.

use bytes::Bytes;
use domain::base::{Name, Rtype};

use super::anchors::TrustAnchors;

/// What a sentinel label asks (RFC 8509 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sentinel {
    /// `root-key-sentinel-is-ta-<tag>`: fail unless the tag is a root anchor.
    IsTa(u16),
    /// `root-key-sentinel-not-ta-<tag>`: fail if the tag is a root anchor.
    NotTa(u16),
}

impl Sentinel {
    /// The sentinel of a query, if its first label is one and its type A or AAAA (§3.1: the
    /// label is matched case-insensitively; the key tag is five decimal digits).
    pub(crate) fn of(qname: &Name<Bytes>, qtype: Rtype) -> Option<Self> {
        if qtype != Rtype::A && qtype != Rtype::AAAA {
            return None;
        }
        let label = qname.iter().next()?;
        let label = label.as_slice();
        let parse_tag = |digits: &[u8]| -> Option<u16> {
            if digits.len() != 5 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            // Five digits fit in u32; a value above 65535 is no key tag.
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
            u16::try_from(value).ok()
        };
        let strip = |prefix: &[u8]| -> Option<&[u8]> {
            (label.len() > prefix.len() && label[..prefix.len()].eq_ignore_ascii_case(prefix))
                .then(|| &label[prefix.len()..])
        };
        if let Some(digits) = strip(b"root-key-sentinel-is-ta-") {
            return parse_tag(digits).map(Sentinel::IsTa);
        }
        if let Some(digits) = strip(b"root-key-sentinel-not-ta-") {
            return parse_tag(digits).map(Sentinel::NotTa);
        }
        None
    }

    /// Whether a secure answer must become SERVFAIL (§3.2), given the root trust anchor
    /// store: the key tags of the root's DS anchors and of its DNSKEY anchors.
    pub(crate) fn fails(self, anchors: &TrustAnchors) -> bool {
        let is_ta = |tag: u16| {
            anchors.get(&Name::root_bytes()).is_some_and(|root| {
                root.ds.iter().any(|ds| ds.key_tag() == tag)
                    || root.dnskeys.iter().any(|key| key.key_tag() == tag)
            })
        };
        match self {
            Sentinel::IsTa(tag) => !is_ta(tag),
            Sentinel::NotTa(tag) => is_ta(tag),
        }
    }

    /// EXTRA-TEXT of the SERVFAIL.
    pub(crate) fn text(self) -> String {
        match self {
            Sentinel::IsTa(tag) => {
                format!("root-key-sentinel: key tag {tag:05} is not a root trust anchor")
            }
            Sentinel::NotTa(tag) => {
                format!("root-key-sentinel: key tag {tag:05} is a root trust anchor")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn name(text: &str) -> Name<Bytes> {
        Name::bytes_from_str(text).unwrap()
    }

    #[test]
    fn sentinel_labels_are_recognised_for_a_and_aaaa_only() {
        let is_ta = name("root-key-sentinel-is-ta-20326.example.");
        assert_eq!(Sentinel::of(&is_ta, Rtype::A), Some(Sentinel::IsTa(20326)));
        assert_eq!(
            Sentinel::of(&is_ta, Rtype::AAAA),
            Some(Sentinel::IsTa(20326))
        );
        assert_eq!(Sentinel::of(&is_ta, Rtype::TXT), None);
        let upper = name("ROOT-Key-Sentinel-NOT-TA-00042.example.");
        assert_eq!(Sentinel::of(&upper, Rtype::A), Some(Sentinel::NotTa(42)));
        for other in [
            "root-key-sentinel-is-ta-2032.example.",
            "root-key-sentinel-is-ta-203266.example.",
            "root-key-sentinel-is-ta-99999.example.",
            "root-key-sentinel-is-ta-2032x.example.",
            "root-key-sentinel-is-ta-.example.",
            "www.root-key-sentinel-is-ta-20326.example.",
            "root-key-sentinel-maybe-ta-20326.example.",
            ".",
        ] {
            assert_eq!(Sentinel::of(&name(other), Rtype::A), None, "{other}");
        }
    }

    #[test]
    fn sentinel_fails_by_the_root_anchors_only() {
        let mut anchors = TrustAnchors::builtin();
        anchors.merge(
            TrustAnchors::parse(
                "example. IN DS 4759 8 2 3384CAE149834F17054DD9150E8C33D3979C4092F5C1B8D35E17A3C36A83810F\n",
                Path::new("<test>"),
            )
            .unwrap(),
        );
        assert!(!Sentinel::IsTa(20326).fails(&anchors));
        assert!(!Sentinel::IsTa(38696).fails(&anchors));
        assert!(Sentinel::NotTa(20326).fails(&anchors));
        assert!(Sentinel::IsTa(0).fails(&anchors));
        assert!(!Sentinel::NotTa(0).fails(&anchors));
        // A non-root anchor's key tag is not a root trust anchor.
        assert!(Sentinel::IsTa(4759).fails(&anchors));
        assert!(!Sentinel::NotTa(4759).fails(&anchors));
        // DNSKEY anchors count by their key tag.
        let dnskey = TrustAnchors::parse(
            ". IN DNSKEY 257 3 8 AwEAAcliJP8Jh/RjL3c8eaUj8dzVdEksENKubqVA5FdrDJ2rC0O/bGG/ MVZt+WacE1o1mRVwTT/TrhhZUAzZ+qOcpB+IWxURsR4vVqVwakHMny7D 2aLXKoVXwTo/VhAQtHDw5G9bxGgwybPUtd5Vz6EIenUsmNYZ+Spde4l8 vpw7UISVL6q0C1mwHMN18P/1yfHmbkS19b6B1S9Y2aputccF1lso3yiF Ig7UNqqD4PNxSo4jByDnajQSP3qg/LSJSOnzBIumb8wc6svxgugy/pxr BFKgGGk4/JdJCKufdfU5jFX4fJ3HM37G/RccrtGhIf2Z1utoOyaILoa9 wT3O1WaYG/U=\n",
            Path::new("<test>"),
        )
        .unwrap();
        assert!(!Sentinel::IsTa(48409).fails(&dnskey));
        assert!(Sentinel::NotTa(48409).fails(&dnskey));
        assert!(Sentinel::IsTa(20326).fails(&dnskey));
        // No root anchor at all: no tag is a root trust anchor.
        assert!(Sentinel::IsTa(20326).fails(&TrustAnchors::default()));
    }
}
