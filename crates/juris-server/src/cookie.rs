//! DNS cookies as a server (RFC 7873 §5.2) with interoperable server cookies (RFC 9018).
//!
//! ```text
//!  query OPT: COOKIE = client cookie (8) [| server cookie (8..32)]
//!    ─► no server cookie            ─► answer normally, COOKIE = client | fresh server cookie
//!    ─► server cookie verifies      ─► answer normally, cookie_valid = true,
//!                                      COOKIE = client | the same server cookie (< 30 min old)
//!                                                       or a fresh one
//!    ─► server cookie does not verify ─► UDP: BADCOOKIE (23) with a fresh server cookie
//!                                        otherwise: as if only the client cookie was sent
//! ```
//!
//! A server cookie (RFC 9018 §4) is 16 bytes: version 1, three reserved zero bytes, a 32-bit
//! timestamp (Unix seconds, serial arithmetic) and SipHash-2-4 of `client cookie | version |
//! reserved | timestamp | client IP` keyed with a 128-bit secret. A cookie verifies when it
//! has version 1, its timestamp is at most one hour in the past and five minutes in the future
//! (RFC 9018 §4.3), and its hash matches under the secret in force for that timestamp.
//!
//! Secrets: `secret` is shared by a fleet (every server with the same secret and a synchronised
//! clock makes and accepts the same cookies, RFC 9018 §5). With `rotation` set, the key used
//! for a cookie is derived from the secret and the rotation period its timestamp falls in
//! (SipHash-2-4 128-bit as the PRF), so the key changes every period without coordination and
//! a cookie stays valid for its whole hour across a period boundary. A `previous_secret` is
//! still accepted (never used for new cookies) while an operator rolls a new secret out over
//! a fleet (RFC 7873 §7.1). Without a configured secret, each process draws a random one: its
//! cookies do not survive a restart and are not shared.
//!
//! Everything here is allocation-free: one SipHash-128 (key of the period) and one SipHash-64
//! per verification, the same again for a fresh cookie.
//!
//! # Limitations
//! - Cookies of other formats (RFC 7873's experimental ones, or lengths other than 16) never
//!   verify; such clients get a fresh RFC 9018 cookie (or BADCOOKIE over UDP) and then use it.
//! - Queries the parser rejects (FORMERR, BADVERS) are answered without a cookie.

use std::net::IpAddr;
use std::time::Duration;

use siphasher::sip::SipHasher24;
use siphasher::sip128::SipHasher24 as SipHasher24x128;

use crate::codes::option_code;
use crate::query::CookieOption;

/// Length of a client cookie (RFC 7873 §4.1).
pub const CLIENT_COOKIE_LEN: usize = 8;
/// Length of an RFC 9018 server cookie.
pub const SERVER_COOKIE_LEN: usize = 16;
/// The RFC 9018 server cookie version.
const VERSION: u8 = 1;
/// RFC 9018 §4.3: a cookie older than this is invalid.
const MAX_AGE: i64 = 3600;
/// RFC 9018 §4.3: a cookie from further in the future than this is invalid.
const MAX_AHEAD: i64 = 300;
/// RFC 9018 §4.3: a valid cookie younger than this may be echoed instead of a fresh one.
const REFRESH_AFTER: i64 = 1800;
/// Shortest rotation period: a cookie must outlive its hour of validity under some key.
pub const MIN_ROTATION: Duration = Duration::from_secs(3600);

/// Server cookie settings (`[server.cookies]` in the binary's file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// Answer cookies at all. Default: true.
    pub enabled: bool,
    /// The 128-bit secret; `None` draws a random one per process. Default: `None`.
    pub secret: Option<[u8; 16]>,
    /// A secret still accepted (never used for new cookies) while a new one rolls out.
    /// Default: `None`.
    pub previous_secret: Option<[u8; 16]>,
    /// Derive a new key from the secret every this long (at least [`MIN_ROTATION`]); zero
    /// uses the secret itself, unrotated. Default: one day.
    pub rotation: Duration,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            secret: None,
            previous_secret: None,
            rotation: Duration::from_secs(86_400),
        }
    }
}

impl CookieConfig {
    /// Checks the rotation period.
    pub fn validate(&self) -> Result<(), &'static str> {
        if !self.rotation.is_zero() && self.rotation < MIN_ROTATION {
            return Err("cookies.rotation must be 0 or at least 3600 s");
        }
        Ok(())
    }
}

/// The COOKIE option of a response: the client's cookie and our server cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieReply {
    bytes: [u8; CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN],
}

impl CookieReply {
    /// The option's length, its 4-byte header included.
    pub const OPTION_LEN: usize = 4 + CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN;

    fn new(client: [u8; 8], server: [u8; 16]) -> Self {
        let mut bytes = [0u8; CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN];
        bytes[..8].copy_from_slice(&client);
        bytes[8..].copy_from_slice(&server);
        Self { bytes }
    }

    /// The server cookie we send.
    pub fn server(&self) -> &[u8] {
        &self.bytes[CLIENT_COOKIE_LEN..]
    }

    /// Writes the option (header included) at the start of `out`; returns its length.
    pub(crate) fn write(&self, out: &mut [u8]) -> Option<usize> {
        let out = out.get_mut(..Self::OPTION_LEN)?;
        out[0..2].copy_from_slice(&option_code::COOKIE.to_be_bytes());
        // 24: fits.
        out[2..4].copy_from_slice(&((Self::OPTION_LEN - 4) as u16).to_be_bytes());
        out[4..].copy_from_slice(&self.bytes);
        Some(Self::OPTION_LEN)
    }
}

/// What a query's cookie option earned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieAnswer {
    /// The option to put into the response.
    pub reply: CookieReply,
    /// The client's server cookie verified.
    pub valid: bool,
    /// The client sent a server cookie that did not verify (RFC 7873 §5.2.3).
    pub bad_server_cookie: bool,
}

/// The secrets in force, shared by every transport.
#[derive(Clone)]
pub struct ServerCookies {
    secret: [u8; 16],
    previous: Option<[u8; 16]>,
    /// Rotation period in seconds, 0 for none.
    rotation: u64,
}

impl std::fmt::Debug for ServerCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("ServerCookies")
            .field("previous", &self.previous.is_some())
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

impl ServerCookies {
    /// The secrets of `config` (a random secret when it has none); `None` when cookies are
    /// off.
    pub fn new(config: &CookieConfig) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        Some(Self {
            secret: config.secret.unwrap_or_else(rand::random),
            previous: config.previous_secret,
            rotation: config.rotation.as_secs(),
        })
    }

    /// The secrets after a reload from `old` to `new` settings (SIGHUP), given the secrets
    /// in force (`current`, `None` when cookies were off). Unchanged settings keep the
    /// secrets in force (a random secret is not drawn again). A changed secret takes effect
    /// at once and the one it replaces becomes the previous secret — accepted, never used
    /// for new cookies — so that clients' cookies stay valid through one rotation (RFC 7873
    /// §7.1); a `previous_secret` in the new settings wins over it. `None` when cookies are
    /// off.
    pub fn reloaded(
        current: Option<&Self>,
        old: &CookieConfig,
        new: &CookieConfig,
    ) -> Option<Self> {
        if let Some(current) = current.filter(|_| old == new) {
            return Some(current.clone());
        }
        let mut next = Self::new(new)?;
        if let Some(current) = current {
            if new.secret.is_none() && old.secret.is_none() {
                // Still a random secret: keep the one drawn at start.
                next.secret = current.secret;
                next.previous = new.previous_secret.or(current.previous);
            } else if next.secret != current.secret && new.previous_secret.is_none() {
                next.previous = Some(current.secret);
            }
        }
        Some(next)
    }

    /// Verifies the query's cookie for `client` at `now` (Unix seconds) and chooses the
    /// cookie to answer with. Allocation-free.
    pub fn answer(&self, option: &CookieOption, client: IpAddr, now: u64) -> CookieAnswer {
        let client_cookie = option.client();
        let Some(server) = option.server() else {
            return CookieAnswer {
                reply: CookieReply::new(client_cookie, self.fresh(client_cookie, client, now)),
                valid: false,
                bad_server_cookie: false,
            };
        };
        match self.verify(client_cookie, server, client, now) {
            Some((cookie, age)) => {
                let server = if age < REFRESH_AFTER {
                    cookie
                } else {
                    self.fresh(client_cookie, client, now)
                };
                CookieAnswer {
                    reply: CookieReply::new(client_cookie, server),
                    valid: true,
                    bad_server_cookie: false,
                }
            }
            None => CookieAnswer {
                reply: CookieReply::new(client_cookie, self.fresh(client_cookie, client, now)),
                valid: false,
                bad_server_cookie: true,
            },
        }
    }

    /// A new server cookie for `client_cookie` and `client`, stamped `now`.
    pub fn fresh(&self, client_cookie: [u8; 8], client: IpAddr, now: u64) -> [u8; 16] {
        // RFC 9018 §4.3: the timestamp is the Unix time modulo 2^32 (serial arithmetic).
        let timestamp = now as u32;
        let key = self.key(&self.secret, timestamp);
        server_cookie(&key, client_cookie, [0; 3], timestamp, client)
    }

    /// The server cookie and its age when `server` verifies under the secret or the previous
    /// one.
    fn verify(
        &self,
        client_cookie: [u8; 8],
        server: &[u8],
        client: IpAddr,
        now: u64,
    ) -> Option<([u8; 16], i64)> {
        let server: [u8; 16] = server.try_into().ok()?;
        if server[0] != VERSION {
            return None;
        }
        let reserved = [server[1], server[2], server[3]];
        let timestamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        // Serial number arithmetic (RFC 1982) on 32 bits: the signed distance.
        let age = i64::from((now as u32).wrapping_sub(timestamp) as i32);
        if !(-MAX_AHEAD..=MAX_AGE).contains(&age) {
            return None;
        }
        let matches = |secret: &[u8; 16]| {
            let key = self.key(secret, timestamp);
            let expected = server_cookie(&key, client_cookie, reserved, timestamp, client);
            // No early exit on the first differing byte.
            expected[8..]
                .iter()
                .zip(&server[8..])
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        };
        (matches(&self.secret) || self.previous.as_ref().is_some_and(matches))
            .then_some((server, age))
    }

    /// The SipHash key for a cookie stamped `timestamp`: the secret itself without rotation,
    /// else the secret's PRF output for the rotation period.
    fn key(&self, secret: &[u8; 16], timestamp: u32) -> [u8; 16] {
        if self.rotation == 0 {
            return *secret;
        }
        let period = u64::from(timestamp) / self.rotation;
        let mut input = [0u8; 20];
        input[..12].copy_from_slice(b"juris cookie");
        input[12..].copy_from_slice(&period.to_be_bytes());
        SipHasher24x128::new_with_key(secret)
            .hash(&input)
            .as_bytes()
    }
}

/// RFC 9018 §4.4: version 1, `reserved`, timestamp, then SipHash-2-4 over `client cookie |
/// version | reserved | timestamp | client IP` (4 or 16 bytes), written as the reference
/// implementation writes its 64-bit result (little-endian).
fn server_cookie(
    key: &[u8; 16],
    client_cookie: [u8; 8],
    reserved: [u8; 3],
    timestamp: u32,
    client: IpAddr,
) -> [u8; 16] {
    let mut cookie = [0u8; 16];
    cookie[0] = VERSION;
    cookie[1..4].copy_from_slice(&reserved);
    cookie[4..8].copy_from_slice(&timestamp.to_be_bytes());
    let mut input = [0u8; 8 + 8 + 16];
    input[..8].copy_from_slice(&client_cookie);
    input[8..16].copy_from_slice(&cookie[..8]);
    let len = match client {
        IpAddr::V4(v4) => {
            input[16..20].copy_from_slice(&v4.octets());
            20
        }
        IpAddr::V6(v6) => {
            input[16..32].copy_from_slice(&v6.octets());
            32
        }
    };
    let hash = SipHasher24::new_with_key(key).hash(&input[..len]);
    cookie[8..].copy_from_slice(&hash.to_le_bytes());
    cookie
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;

    fn hex16(s: &str) -> [u8; 16] {
        hex_bytes(s).try_into().unwrap()
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn unrotated(secret: [u8; 16]) -> ServerCookies {
        ServerCookies::new(&CookieConfig {
            secret: Some(secret),
            rotation: Duration::ZERO,
            ..CookieConfig::default()
        })
        .unwrap()
    }

    fn option(client: [u8; 8], server: &[u8]) -> CookieOption {
        let mut data = client.to_vec();
        data.extend_from_slice(server);
        CookieOption::new(&data).unwrap()
    }

    /// RFC 9018 Appendix A.1: the same server cookie as the RFC's own example.
    #[test]
    fn rfc_9018_test_vector_ipv4() {
        let cookies = unrotated(hex16("e5e973e5a6b2a43f48e7dc849e37bfcf"));
        let client: [u8; 8] = hex_bytes("2464c4abcf10c957").try_into().unwrap();
        let cookie = cookies.fresh(client, "198.51.100.100".parse().unwrap(), 1_559_731_985);
        assert_eq!(
            cookie.to_vec(),
            hex_bytes("010000005cf79f111f8130c3eee29480")
        );
    }

    /// RFC 9018 Appendix A.2 and A.3: a renewed cookie, and a cookie with non-zero reserved
    /// bytes from another implementation, which the hash covers as received.
    #[test]
    fn rfc_9018_test_vectors_renewal_and_reserved_bytes() {
        let cookies = unrotated(hex16("e5e973e5a6b2a43f48e7dc849e37bfcf"));
        let ip: IpAddr = "198.51.100.100".parse().unwrap();
        let client: [u8; 8] = hex_bytes("2464c4abcf10c957").try_into().unwrap();
        let first = hex_bytes("010000005cf79f111f8130c3eee29480");
        // 40 minutes later: valid, but older than half an hour, so renewed.
        let answer = cookies.answer(&option(client, &first), ip, 1_559_734_385);
        assert!(answer.valid);
        assert_eq!(
            answer.reply.server(),
            &hex_bytes("010000005cf7a871d4a564a1442aca77")[..]
        );
        let ip: IpAddr = "203.0.113.203".parse().unwrap();
        let client: [u8; 8] = hex_bytes("fc93fc62807ddb86").try_into().unwrap();
        let foreign = hex_bytes("01abcdef5cf78f71a314227b6679ebf5");
        assert!(
            cookies
                .answer(&option(client, &foreign), ip, 1_559_727_985 + 600)
                .valid
        );
        let mut tampered = foreign.clone();
        tampered[3] ^= 1;
        assert!(
            !cookies
                .answer(&option(client, &tampered), ip, 1_559_727_985 + 600)
                .valid
        );
        assert_eq!(
            cookies.fresh(client, ip, 1_559_734_700).to_vec(),
            hex_bytes("010000005cf7a9acf73a7810aca2381e")
        );
    }

    /// RFC 9018 Appendix A.4: an IPv6 client during a secret rollover.
    #[test]
    fn rfc_9018_test_vector_ipv6_rollover() {
        let rolled = ServerCookies::new(&CookieConfig {
            secret: Some(hex16("445536bcd2513298075a5d379663c962")),
            previous_secret: Some(hex16("dd3bdf9344b678b185a6f5cb60fca715")),
            rotation: Duration::ZERO,
            ..CookieConfig::default()
        })
        .unwrap();
        let ip: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b8".parse().unwrap();
        let client: [u8; 8] = hex_bytes("22681ab97d52c298").try_into().unwrap();
        let old = hex_bytes("010000005cf7c57926556bd0934c72f8");
        assert!(
            rolled
                .answer(&option(client, &old), ip, 1_559_741_961)
                .valid
        );
        assert_eq!(
            rolled.fresh(client, ip, 1_559_741_961).to_vec(),
            hex_bytes("010000005cf7c609a6bb79d16625507a")
        );
        let new_only = unrotated(hex16("445536bcd2513298075a5d379663c962"));
        assert!(
            !new_only
                .answer(&option(client, &old), ip, 1_559_741_961)
                .valid
        );
    }

    #[test]
    fn a_fresh_cookie_verifies_within_the_window_only() {
        let cookies = unrotated([7; 16]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let client = [1; 8];
        let made = cookies.fresh(client, ip, 1_000_000);
        for (now, valid) in [
            (1_000_000 - 300, true),
            (1_000_000 - 301, false),
            (1_000_000 + 3600, true),
            (1_000_000 + 3601, false),
        ] {
            let answer = cookies.answer(&option(client, &made), ip, now);
            assert_eq!(answer.valid, valid, "at {now}");
            assert_eq!(answer.bad_server_cookie, !valid, "at {now}");
        }
        // Young: echoed. Older than half an hour: replaced.
        let young = cookies.answer(&option(client, &made), ip, 1_000_100);
        assert_eq!(young.reply.server(), &made);
        let old = cookies.answer(&option(client, &made), ip, 1_000_000 + 2000);
        assert_ne!(old.reply.server(), &made);
        assert_eq!(
            old.reply.server()[4..8],
            (1_000_000u32 + 2000).to_be_bytes()
        );
    }

    #[test]
    fn a_cookie_is_bound_to_the_client_address_client_cookie_and_secret() {
        let cookies = unrotated([7; 16]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let made = cookies.fresh([1; 8], ip, 5000);
        let other_ip: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!cookies.answer(&option([1; 8], &made), other_ip, 5000).valid);
        assert!(!cookies.answer(&option([2; 8], &made), ip, 5000).valid);
        assert!(
            !unrotated([8; 16])
                .answer(&option([1; 8], &made), ip, 5000)
                .valid
        );
        let mut flipped = made;
        flipped[15] ^= 1;
        assert!(!cookies.answer(&option([1; 8], &flipped), ip, 5000).valid);
        // Wrong length or version never verifies.
        assert!(!cookies.answer(&option([1; 8], &made[..8]), ip, 5000).valid);
        let mut v2 = made;
        v2[0] = 2;
        assert!(!cookies.answer(&option([1; 8], &v2), ip, 5000).valid);
    }

    #[test]
    fn only_a_client_cookie_gets_a_cookie_and_is_not_bad() {
        let cookies = unrotated([7; 16]);
        let ip: IpAddr = "::1".parse().unwrap();
        let answer = cookies.answer(&option([9; 8], &[]), ip, 77);
        assert!(!answer.valid);
        assert!(!answer.bad_server_cookie);
        assert_eq!(answer.reply.server(), &cookies.fresh([9; 8], ip, 77));
        let mut wire = [0u8; 28];
        assert_eq!(answer.reply.write(&mut wire), Some(28));
        assert_eq!(&wire[..4], &[0, 10, 0, 24]);
        assert_eq!(&wire[4..12], &[9; 8]);
    }

    #[test]
    fn rotation_changes_the_key_per_period_and_keeps_cookies_valid_across_a_boundary() {
        let config = CookieConfig {
            secret: Some([3; 16]),
            rotation: Duration::from_secs(3600),
            ..CookieConfig::default()
        };
        let cookies = ServerCookies::new(&config).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        // Made just before a period boundary, checked just after it.
        let made = cookies.fresh([1; 8], ip, 7199);
        assert!(cookies.answer(&option([1; 8], &made), ip, 7300).valid);
        // The key of each period differs from the secret and from the next period's.
        assert_ne!(cookies.key(&[3; 16], 7199), [3; 16]);
        assert_ne!(cookies.key(&[3; 16], 7199), cookies.key(&[3; 16], 7200));
        // A fleet peer with the same secret and period accepts it; a different one does not.
        let peer = ServerCookies::new(&config).unwrap();
        assert!(peer.answer(&option([1; 8], &made), ip, 7300).valid);
        assert!(config.validate().is_ok());
        let short = CookieConfig {
            rotation: Duration::from_secs(60),
            ..config
        };
        assert!(short.validate().is_err());
    }

    #[test]
    fn the_previous_secret_is_accepted_but_never_used() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let old = unrotated([1; 16]);
        let made = old.fresh([5; 8], ip, 100);
        let rolled = ServerCookies::new(&CookieConfig {
            secret: Some([2; 16]),
            previous_secret: Some([1; 16]),
            rotation: Duration::ZERO,
            ..CookieConfig::default()
        })
        .unwrap();
        let answer = rolled.answer(&option([5; 8], &made), ip, 200);
        assert!(answer.valid);
        // Echoed as it is young; a fresh one is made with the new secret.
        assert!(
            unrotated([2; 16])
                .answer(&option([5; 8], &rolled.fresh([5; 8], ip, 200)), ip, 200)
                .valid
        );
        assert!(
            !unrotated([2; 16])
                .answer(&option([5; 8], &made), ip, 200)
                .valid
        );
    }

    #[test]
    fn a_reloaded_secret_takes_effect_and_the_old_one_stays_valid_for_one_rotation() {
        let config = |secret: u8| CookieConfig {
            secret: Some([secret; 16]),
            ..CookieConfig::default()
        };
        let client = IpAddr::from([192, 0, 2, 1]);
        let now = 1_700_000_000;
        let a = ServerCookies::new(&config(1)).unwrap();
        let issued_under_a = a.fresh([7; 8], client, now);
        // Unchanged settings: the same secrets.
        let same = ServerCookies::reloaded(Some(&a), &config(1), &config(1)).unwrap();
        assert_eq!(same.fresh([7; 8], client, now), issued_under_a);
        // A -> B: new cookies under B, A's still verify (as the previous secret).
        let b = ServerCookies::reloaded(Some(&a), &config(1), &config(2)).unwrap();
        let issued_under_b = b.fresh([7; 8], client, now);
        assert_ne!(issued_under_b, issued_under_a);
        let valid = |cookies: &ServerCookies, server: [u8; 16]| {
            cookies
                .answer(&option([7; 8], &server), client, now + 60)
                .valid
        };
        assert!(valid(&b, issued_under_a));
        assert!(valid(&b, issued_under_b));
        // A second reload with the same file keeps A as the previous secret...
        let b_again = ServerCookies::reloaded(Some(&b), &config(2), &config(2)).unwrap();
        assert!(valid(&b_again, issued_under_a));
        // ...and B -> C drops A: one rotation only.
        let c = ServerCookies::reloaded(Some(&b), &config(2), &config(3)).unwrap();
        assert!(!valid(&c, issued_under_a));
        assert!(valid(&c, issued_under_b));
        // An explicit previous_secret wins over the one replaced.
        let explicit = CookieConfig {
            previous_secret: Some([9; 16]),
            ..config(3)
        };
        let c = ServerCookies::reloaded(Some(&b), &config(2), &explicit).unwrap();
        assert!(!valid(&c, issued_under_b));
        // Without a configured secret, a reload that changes something else keeps the
        // random one drawn at start.
        let random = CookieConfig::default();
        let r = ServerCookies::new(&random).unwrap();
        let other_rotation = CookieConfig {
            rotation: Duration::from_secs(7200),
            ..random.clone()
        };
        let r2 = ServerCookies::reloaded(Some(&r), &random, &other_rotation).unwrap();
        assert_eq!(r2.secret, r.secret);
        // Turned off: none; turned on again: a secret.
        let off = CookieConfig {
            enabled: false,
            ..config(3)
        };
        assert!(ServerCookies::reloaded(Some(&c), &config(3), &off).is_none());
        assert!(ServerCookies::reloaded(None, &off, &config(4)).is_some());
    }

    #[test]
    fn disabled_means_none_and_debug_hides_the_secret() {
        let off = CookieConfig {
            enabled: false,
            ..CookieConfig::default()
        };
        assert!(ServerCookies::new(&off).is_none());
        let on = unrotated([0xAB; 16]);
        assert!(!format!("{on:?}").contains("171"));
    }
}
