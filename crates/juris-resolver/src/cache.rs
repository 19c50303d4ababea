//! The answer cache: complete responses in wire form, served with ID and TTLs patched.
//!
//! ```text
//!   resolver builds a response ──► CachedAnswer::from_message (clamp TTLs, note TTL offsets,
//!                                   CNAME targets, addresses) ──► AnswerCache::insert
//!   client query ──► CacheKeyRef (borrowed, lower-cased name) ──► AnswerCache::get
//!                ──► CachedAnswer::write_response (copy, patch ID/flags/TTLs; no allocation)
//! ```
//!
//! The cache holds **unfiltered** data shared by every jurisdiction: policy is applied to the
//! entry's [`CachedAnswer::cname_targets`] and [`CachedAnswer::addresses`] after the lookup,
//! never baked in. Entries are weighed in bytes; the total is bounded by
//! [`CacheConfig::max_bytes`] and eviction is S3-FIFO (quick_cache).
//!
//! # Limitations
//! - Keys include the DO bit, so DO=1 and DO=0 clients do not share entries.
//! - One entry per (name, type, class, DO): CD=1 and CD=0 queries share it; the entry keeps
//!   its validation state and the server refuses bogus entries to CD=0 queries.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::wire::{self, WireError, HEADER_LEN, MAX_NAME_LEN};

/// Cache sizing and TTL policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Upper bound on the bytes held by entries (wire data plus bookkeeping).
    pub max_bytes: u64,
    /// TTLs below this are raised to it; it is also the least time any answer is cached
    /// (negative answers included, even one without a SOA and so without a TTL).
    pub min_ttl: u32,
    /// Positive TTLs above this are lowered to it.
    pub max_ttl: u32,
    /// Negative answers (NXDOMAIN, NODATA) are cached at most this long (RFC 2308 §5).
    pub max_negative_ttl: u32,
    /// Resolution failures (SERVFAIL) are cached this long (RFC 9520 §3.2: at least 1 s).
    pub servfail_ttl: u32,
    /// Serve-stale (RFC 8767): how long past expiry an entry may still be served when
    /// resolution fails. `None` disables serve-stale.
    pub stale_window: Option<u32>,
    /// TTL given to stale answers (RFC 8767 §4 recommends 30 s).
    pub stale_answer_ttl: u32,
    /// Prefetch (Unbound's `prefetch`): a hit in the last tenth of an answer's lifetime
    /// (lifetimes of at least [`PREFETCH_MIN_LIFETIME`] seconds) refreshes it in the
    /// background, so popular names do not expire in the cache.
    pub prefetch: bool,
}

/// Shortest lifetime (seconds) of an answer that is prefetched.
pub const PREFETCH_MIN_LIFETIME: u64 = 10;

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            min_ttl: 0,
            max_ttl: 86_400,
            max_negative_ttl: 3_600,
            servfail_ttl: 5,
            stale_window: None,
            stale_answer_ttl: 30,
            prefetch: false,
        }
    }
}

/// Owned cache key: lower-cased wire-format name, type, class and the DO bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    name: Box<[u8]>,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
}

/// Borrowed cache key, for lookups without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKeyRef<'a> {
    /// Lower-cased, uncompressed wire-format name.
    pub name: &'a [u8],
    /// Query type.
    pub qtype: u16,
    /// Query class.
    pub qclass: u16,
    /// Whether the client set DO.
    pub dnssec_ok: bool,
}

impl CacheKeyRef<'_> {
    /// The owned form, for insertion.
    pub fn to_owned_key(&self) -> CacheKey {
        CacheKey {
            name: self.name.into(),
            qtype: self.qtype,
            qclass: self.qclass,
            dnssec_ok: self.dnssec_ok,
        }
    }
}

impl CacheKey {
    /// The borrowed form.
    pub fn as_ref(&self) -> CacheKeyRef<'_> {
        CacheKeyRef {
            name: &self.name,
            qtype: self.qtype,
            qclass: self.qclass,
            dnssec_ok: self.dnssec_ok,
        }
    }
}

// Both key forms must hash identically: quick_cache looks up an owned key by its borrowed form.
impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state)
    }
}

impl Hash for CacheKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.name);
        state.write_u16(self.qtype);
        state.write_u16(self.qclass);
        state.write_u8(self.dnssec_ok as u8);
    }
}

impl quick_cache::Equivalent<CacheKey> for CacheKeyRef<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        *self == key.as_ref()
    }
}

/// What a cached response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// NOERROR with answer records.
    Positive,
    /// NXDOMAIN.
    NxDomain,
    /// NOERROR without records of the asked type.
    NoData,
    /// SERVFAIL (a resolution failure, cached briefly).
    ServerFailure,
    /// Any other RCODE (REFUSED, NOTIMP... passed through from upstream).
    Other,
}

/// Whether an entry is within its TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within its TTL.
    Fresh,
    /// Past its TTL but within the serve-stale window.
    Stale,
}

/// Errors building a cache entry.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The message could not be walked.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The message does not have exactly one question.
    #[error("a cached response must have exactly one question, found {0}")]
    QuestionCount(u16),
    /// An OPT record that is not the last record of the message, or not in the additional
    /// section.
    #[error("OPT record is not the last record of the additional section")]
    MisplacedOpt,
    /// More than 65535 bytes.
    #[error("message too large to cache")]
    TooLarge,
}

/// One cached response in wire form.
#[derive(Debug)]
pub struct CachedAnswer {
    /// The whole message: ID 0, lower-cased question at offset 12, no OPT record.
    wire: Box<[u8]>,
    /// Offsets of every record's TTL field.
    ttl_offsets: Box<[u16]>,
    /// Offset just past the question (where the answer section starts).
    question_end: u16,
    stored_at: u64,
    expires_at: u64,
    kind: AnswerKind,
    /// Lower-cased wire names that CNAME/DNAME records in the answer point to.
    cname_targets: Box<[Box<[u8]>]>,
    /// A and AAAA addresses in the answer section.
    addresses: Box<[IpAddr]>,
    /// DNSSEC validation state (the AD bit of the stored header is set when secure).
    security: crate::dnssec::Security,
    /// The entry answers DO=1 queries (they get AD on secure data, RFC 6840 §5.7).
    dnssec_ok: bool,
    /// The name servers of the zone cuts that answered (recursive mode; empty otherwise).
    name_servers: NameServers,
    /// Prefetch is on ([`CacheConfig::prefetch`]) and this is an answer (not a failure).
    prefetch: bool,
}

/// The name servers of the zone cuts whose servers answered a question: their names (the NS
/// names of the delegation, lower-cased wire form) and every address known for them when the
/// answer was made (glue or looked up). Kept with the cache entry so that the policy's
/// `nsdname`/`nsip` triggers are checked on cache hits without resolving anything again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameServers {
    names: Vec<Box<[u8]>>,
    addresses: Vec<IpAddr>,
}

impl NameServers {
    /// Adds a name server name (wire form, any case; lower-cased here), once.
    pub fn add_name(&mut self, wire_name: &[u8]) {
        let lower: Box<[u8]> = wire_name.to_ascii_lowercase().into_boxed_slice();
        if !self.names.contains(&lower) {
            self.names.push(lower);
        }
    }

    /// Adds a name server address, once.
    pub fn add_address(&mut self, address: IpAddr) {
        if !self.addresses.contains(&address) {
            self.addresses.push(address);
        }
    }

    /// The names (lower-cased wire form).
    pub fn names(&self) -> &[Box<[u8]>] {
        &self.names
    }

    /// The addresses.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// Whether nothing is known (forward mode, or an entry made without resolution).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.addresses.is_empty()
    }

    fn weight(&self) -> usize {
        self.names.iter().map(|n| n.len() + 16).sum::<usize>()
            + self.addresses.len() * std::mem::size_of::<IpAddr>()
    }
}

/// Whether a query with these header flags and DO bit gets AD on secure data: CD=0, and AD=1
/// or DO=1 (RFC 6840 §5.7, RFC 4035 §3.2.3). The one statement of the rule: the rendered and
/// the pre-rendered (hot) answers both ask it.
#[inline]
pub fn query_wants_ad(query_flags: u16, dnssec_ok: bool) -> bool {
    query_flags & 0x0010 == 0 && (query_flags & 0x0020 != 0 || dnssec_ok)
}

impl CachedAnswer {
    /// Builds an entry from a complete response message (as assembled by the resolver).
    ///
    /// TTLs are clamped per `config` and written back into the wire copy; the ID is zeroed;
    /// the question name is lower-cased; a trailing OPT record is removed (the client's EDNS
    /// is added on the way out).
    pub fn from_message(
        message: &[u8],
        now: u64,
        config: &CacheConfig,
    ) -> Result<Self, CacheError> {
        if message.len() > u16::MAX as usize {
            return Err(CacheError::TooLarge);
        }
        Self::from_vec(message.to_vec(), now, config)
    }

    /// [`Self::from_message`] on a message the entry may keep as it is (no copy; best with
    /// a capacity equal to its length).
    pub(crate) fn from_vec(
        mut wire: Vec<u8>,
        now: u64,
        config: &CacheConfig,
    ) -> Result<Self, CacheError> {
        if wire.len() > u16::MAX as usize {
            return Err(CacheError::TooLarge);
        }
        let counts = wire::counts(&wire)?;
        if counts.question != 1 {
            return Err(CacheError::QuestionCount(counts.question));
        }
        wire[0] = 0;
        wire[1] = 0;
        let question_end = wire::skip_questions(&wire, 1)?;
        // Lower-case the question name in place (it is uncompressed: it is the first name).
        {
            let mut pos = HEADER_LEN;
            while let Some(&len) = wire.get(pos) {
                if len == 0 || len & 0xC0 != 0 {
                    break;
                }
                let end = (pos + 1 + len as usize).min(wire.len());
                wire[pos + 1..end].make_ascii_lowercase();
                pos = end;
            }
        }
        let rcode = wire[3] & 0x0F;

        // Sized for the usual case (no OPT; an answer of addresses) so that turning them into
        // boxed slices below does not reallocate.
        let mut ttl_offsets = Vec::with_capacity(
            usize::from(counts.answer)
                + usize::from(counts.authority)
                + usize::from(counts.additional),
        );
        let mut cname_targets = Vec::new();
        let mut addresses = Vec::with_capacity(usize::from(counts.answer));
        let mut min_ttl: Option<u32> = None;
        let mut soa_negative_ttl: Option<u32> = None;
        let mut pos = question_end;
        let total = counts.answer as usize + counts.authority as usize + counts.additional as usize;
        let mut opt_at: Option<usize> = None;
        for index in 0..total {
            let record = wire::record_at(&wire, pos)?;
            let section = if index < counts.answer as usize {
                Section::Answer
            } else if index < counts.answer as usize + counts.authority as usize {
                Section::Authority
            } else {
                Section::Additional
            };
            if record.rtype == 41 {
                // RFC 6891 §6.1.1: the OPT record belongs to the additional section (here its
                // last record, which is removed below by decrementing ARCOUNT).
                if section != Section::Additional || index + 1 != total {
                    return Err(CacheError::MisplacedOpt);
                }
                opt_at = Some(pos);
                break;
            }
            let ttl = wire::u32_at(&wire, record.ttl_at)?;
            match (section, record.rtype) {
                (Section::Answer, 5 | 39) => {
                    let mut name = [0u8; MAX_NAME_LEN];
                    let (_, len) = wire::read_name_lower(&wire, record.rdata, &mut name)?;
                    cname_targets.push(Box::<[u8]>::from(&name[..len]));
                }
                (Section::Answer, 1) if record.rdlen == 4 => {
                    let b = &wire[record.rdata..record.rdata + 4];
                    addresses.push(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])));
                }
                (Section::Answer, 28) if record.rdlen == 16 => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&wire[record.rdata..record.rdata + 16]);
                    addresses.push(IpAddr::V6(Ipv6Addr::from(b)));
                }
                (Section::Authority, 6) => {
                    // RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM).
                    let after_mname = wire::skip_name(&wire, record.rdata)?;
                    let after_rname = wire::skip_name(&wire, after_mname)?;
                    let minimum = wire::u32_at(&wire, after_rname + 16)?;
                    soa_negative_ttl = Some(ttl.min(minimum));
                }
                _ => {}
            }
            let clamped = ttl.clamp(config.min_ttl, config.max_ttl.max(config.min_ttl));
            wire[record.ttl_at..record.ttl_at + 4].copy_from_slice(&clamped.to_be_bytes());
            if section != Section::Additional {
                min_ttl = Some(min_ttl.map_or(clamped, |m| m.min(clamped)));
            }
            ttl_offsets.push(record.ttl_at as u16);
            pos = record.end();
        }
        if let Some(at) = opt_at {
            wire.truncate(at);
            let arcount = counts.additional - 1;
            wire[10..12].copy_from_slice(&arcount.to_be_bytes());
        }

        let kind = match rcode {
            0 if counts.answer > 0 => AnswerKind::Positive,
            0 => AnswerKind::NoData,
            3 => AnswerKind::NxDomain,
            2 => AnswerKind::ServerFailure,
            _ => AnswerKind::Other,
        };
        let lifetime = match kind {
            AnswerKind::Positive => min_ttl.unwrap_or(0),
            AnswerKind::NxDomain | AnswerKind::NoData => {
                // `min_ttl` is a floor for every cached answer: a negative answer without a
                // SOA (no TTL of its own) is kept that long too, as Knot Resolver does.
                let negative = soa_negative_ttl
                    .unwrap_or(0)
                    .min(config.max_negative_ttl)
                    .max(config.min_ttl);
                // The SOA's own TTL is what downstream caches use: make it the negative TTL.
                if soa_negative_ttl.is_some() {
                    Self::lower_soa_ttls(&mut wire, question_end, &counts, negative)?;
                }
                negative
            }
            AnswerKind::ServerFailure | AnswerKind::Other => config.servfail_ttl,
        };
        Ok(Self {
            wire: wire.into_boxed_slice(),
            ttl_offsets: ttl_offsets.into_boxed_slice(),
            question_end: question_end as u16,
            stored_at: now,
            expires_at: now + u64::from(lifetime),
            kind,
            cname_targets: cname_targets.into_boxed_slice(),
            addresses: addresses.into_boxed_slice(),
            security: crate::dnssec::Security::Unchecked,
            dnssec_ok: false,
            name_servers: NameServers::default(),
            prefetch: config.prefetch
                && matches!(
                    kind,
                    AnswerKind::Positive | AnswerKind::NxDomain | AnswerKind::NoData
                ),
        })
    }

    /// Records the validation state: a secure entry stores AD=1 (sent to clients that asked
    /// with AD or DO and without CD); a bogus one lives at most `bogus_ttl` seconds.
    /// `dnssec_ok` says whether the entry answers DO=1 queries.
    pub fn set_security(&mut self, security: crate::dnssec::Security, bogus_ttl: u32) {
        // Never AD on a SERVFAIL (a CNAME loop's chain may well be signed).
        if security == crate::dnssec::Security::Secure && self.kind != AnswerKind::ServerFailure {
            self.wire[3] |= 0x20;
        } else {
            self.wire[3] &= !0x20;
        }
        if security.bogus().is_some() {
            self.expires_at = self.expires_at.min(self.stored_at + u64::from(bogus_ttl));
        }
        self.security = security;
    }

    /// Records the name servers of the zone cuts that answered (see [`NameServers`]).
    pub fn set_name_servers(&mut self, name_servers: NameServers) {
        self.name_servers = name_servers;
    }

    /// The name servers of the zone cuts that answered (empty in forward mode).
    pub fn name_servers(&self) -> &NameServers {
        &self.name_servers
    }

    /// Marks the entry as one for DO=1 queries.
    pub fn set_dnssec_ok(&mut self, dnssec_ok: bool) {
        self.dnssec_ok = dnssec_ok;
    }

    /// The DNSSEC validation state.
    pub fn security(&self) -> &crate::dnssec::Security {
        &self.security
    }

    /// Whether a response to a query with these header flags carries AD: secure data, CD=0,
    /// and the query had AD=1 or DO=1 (RFC 6840 §5.7, RFC 4035 §3.2.3).
    #[inline]
    pub fn ad_for(&self, query_flags: u16, dnssec_ok: bool) -> bool {
        self.wire[3] & 0x20 != 0 && query_wants_ad(query_flags, dnssec_ok)
    }

    fn lower_soa_ttls(
        wire: &mut [u8],
        question_end: usize,
        counts: &wire::Counts,
        ttl: u32,
    ) -> Result<(), WireError> {
        let mut pos = question_end;
        for index in 0..(counts.answer as usize + counts.authority as usize) {
            let record = wire::record_at(wire, pos)?;
            if index >= counts.answer as usize && record.rtype == 6 {
                let current = wire::u32_at(wire, record.ttl_at)?;
                wire[record.ttl_at..record.ttl_at + 4]
                    .copy_from_slice(&current.min(ttl).to_be_bytes());
            }
            pos = record.end();
        }
        Ok(())
    }

    /// The entry's response kind.
    pub fn kind(&self) -> AnswerKind {
        self.kind
    }

    /// The RCODE of the cached response.
    pub fn rcode(&self) -> u8 {
        self.wire[3] & 0x0F
    }

    /// Names that CNAME/DNAME records in the answer point to (lower-cased wire form).
    pub fn cname_targets(&self) -> &[Box<[u8]>] {
        &self.cname_targets
    }

    /// Addresses in the answer section.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// The stored message (ID 0, lower-cased question, TTLs as stored).
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// Length of the rendered response without OPT.
    pub fn len(&self) -> usize {
        self.wire.len()
    }

    /// Whether the stored message is empty (never, for a valid entry).
    pub fn is_empty(&self) -> bool {
        self.wire.is_empty()
    }

    /// Offset just past the question section.
    pub fn question_end(&self) -> usize {
        self.question_end as usize
    }

    /// Unix time the entry was stored.
    pub fn stored_at(&self) -> u64 {
        self.stored_at
    }

    /// Unix time the entry expires.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// Unix time from which a hit refreshes the entry in the background (the last tenth of
    /// its lifetime; never without [`CacheConfig::prefetch`] or for short lifetimes).
    pub fn prefetch_at(&self) -> u64 {
        let lifetime = self.expires_at.saturating_sub(self.stored_at);
        if !self.prefetch || lifetime < PREFETCH_MIN_LIFETIME {
            return u64::MAX;
        }
        self.expires_at - lifetime / 10
    }

    /// Whether a hit at `now` should refresh the entry in the background.
    pub fn prefetch_due(&self, now: u64) -> bool {
        now >= self.prefetch_at() && now < self.expires_at
    }

    /// Until when a copy of the entry kept outside the cache (a UDP worker's hot answer) may
    /// be served: its expiry, or the start of its prefetch window, so that hits in the window
    /// reach the cache, where they trigger the refresh.
    pub fn hot_until(&self) -> u64 {
        self.expires_at.min(self.prefetch_at())
    }

    /// Whether the entry may be cached at all (a lifetime above zero).
    pub fn is_cacheable(&self) -> bool {
        self.expires_at > self.stored_at
    }

    /// Freshness at `now`, or `None` if past the serve-stale window too.
    pub fn freshness(&self, now: u64, stale_window: Option<u32>) -> Option<Freshness> {
        if now < self.expires_at {
            Some(Freshness::Fresh)
        } else if stale_window.is_some_and(|w| now < self.expires_at + u64::from(w)) {
            Some(Freshness::Stale)
        } else {
            None
        }
    }

    /// Writes the response for one client into `out` and returns its length, or `None` if
    /// `out` is too small.
    ///
    /// `id` and the RD and CD bits come from the query; `client_qname` is the query's name as
    /// the client spelled it (same length as the stored name, since it is the same name), so
    /// 0x20 case survives. TTLs are decremented by the time spent in the cache, or set to
    /// `stale_ttl` when serving stale. Performs no allocation.
    pub fn write_response(
        &self,
        out: &mut [u8],
        id: u16,
        query_flags: u16,
        client_qname: &[u8],
        now: u64,
        stale_ttl: Option<u32>,
    ) -> Option<usize> {
        let len = self.wire.len();
        let out = out.get_mut(..len)?;
        out.copy_from_slice(&self.wire);
        out[0..2].copy_from_slice(&id.to_be_bytes());
        // Keep QR, RA and RCODE from the stored response; RD and CD echo the query (RFC 1035
        // §4.1.1, RFC 4035 §3.2.2); AA and TC are never set on a cache answer.
        let stored_flags = u16::from_be_bytes([out[2], out[3]]);
        // AD: kept from the stored (secure) header only for a query that may get it.
        let ad = if self.ad_for(query_flags, self.dnssec_ok) {
            0x0020
        } else {
            0
        };
        let flags = (stored_flags & 0x808F) | ad | (query_flags & 0x0110) | 0x0080;
        out[2..4].copy_from_slice(&flags.to_be_bytes());
        if client_qname.len() + HEADER_LEN <= len {
            if let Some(dst) = out.get_mut(HEADER_LEN..HEADER_LEN + client_qname.len()) {
                if client_qname.eq_ignore_ascii_case(dst) {
                    dst.copy_from_slice(client_qname);
                }
            }
        }
        let elapsed = now.saturating_sub(self.stored_at).min(u64::from(u32::MAX)) as u32;
        if elapsed == 0 && stale_ttl.is_none() {
            // Stored this second: the copied TTLs are already right.
            return Some(len);
        }
        for &at in self.ttl_offsets.iter() {
            let at = at as usize;
            let field = &mut out[at..at + 4];
            let ttl = match stale_ttl {
                Some(stale) => stale,
                None => u32::from_be_bytes([field[0], field[1], field[2], field[3]])
                    .saturating_sub(elapsed),
            };
            field.copy_from_slice(&ttl.to_be_bytes());
        }
        Some(len)
    }

    /// Bytes this entry costs the cache (for the weigher): its struct, wire form and derived
    /// data, estimated from their lengths (allocator overhead not included). Also what a UDP
    /// worker's hot slot keeps alive after the cache evicted the entry (design 0048).
    pub fn weight(&self) -> u64 {
        let targets: usize = self.cname_targets.iter().map(|t| t.len() + 16).sum();
        (std::mem::size_of::<Self>()
            + self.wire.len()
            + self.ttl_offsets.len() * 2
            + targets
            + self.addresses.len() * std::mem::size_of::<IpAddr>()
            + self.name_servers.weight()
            + 64) as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Answer,
    Authority,
    Additional,
}

#[derive(Debug, Clone, Copy, Default)]
struct ByteWeighter;

impl quick_cache::Weighter<CacheKey, Arc<CachedAnswer>> for ByteWeighter {
    fn weight(&self, key: &CacheKey, value: &Arc<CachedAnswer>) -> u64 {
        key.name.len() as u64 + 24 + value.weight()
    }
}

/// Which cached names a flush removes (`juris cache flush`, `docs/design/0017-cache-control.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushScope<'a> {
    /// Every entry.
    All,
    /// Every entry for exactly this name (lower-cased wire form), whatever its type, class
    /// or DO bit: positive, negative and failure answers alike.
    Name(&'a [u8]),
    /// Every entry at or below this name (lower-cased wire form).
    Subtree(&'a [u8]),
}

impl FlushScope<'_> {
    /// Whether `name` (a lower-cased wire name) is flushed by this scope.
    pub fn covers(&self, name: &[u8]) -> bool {
        match *self {
            FlushScope::All => true,
            FlushScope::Name(flushed) => name == flushed,
            FlushScope::Subtree(apex) => is_at_or_below(name, apex),
        }
    }
}

/// Whether the wire name `name` equals `apex` or lies below it (both lower-cased, uncompressed).
pub fn is_at_or_below(name: &[u8], apex: &[u8]) -> bool {
    let mut pos = 0;
    while pos < name.len() {
        if &name[pos..] == apex {
            return true;
        }
        let len = usize::from(name[pos]);
        if len == 0 {
            return false;
        }
        pos += 1 + len;
    }
    false
}

/// The bounded answer cache shared by all workers.
#[derive(Debug)]
pub struct AnswerCache {
    entries: quick_cache::sync::Cache<CacheKey, Arc<CachedAnswer>, ByteWeighter>,
    config: CacheConfig,
    /// Bumped after every flush: whoever remembers an entry outside the cache (the UDP
    /// workers' hot answers) notes the generation it took the entry at and drops it when the
    /// generation has moved on.
    generation: AtomicU64,
}

impl AnswerCache {
    /// An empty cache bounded by `config.max_bytes`.
    pub fn new(config: CacheConfig) -> Self {
        // Estimate ~512 bytes an entry for the index size; quick_cache bounds by weight.
        let estimated_items = (config.max_bytes / 512).clamp(1024, 1 << 24) as usize;
        Self {
            entries: quick_cache::sync::Cache::with_weighter(
                estimated_items,
                config.max_bytes.max(1),
                ByteWeighter,
            ),
            config,
            generation: AtomicU64::new(0),
        }
    }

    /// The flush generation: read it **before** looking an entry up, and an entry remembered
    /// with it is still in the cache (or evicted, never flushed) while the generation is the same.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Removes the entries `scope` covers and bumps the generation (after the removal, so a
    /// reader that sees the new generation finds the entries gone). Returns how many entries
    /// were removed. Walks every shard: seconds for millions of entries, never on the query
    /// path.
    pub fn flush(&self, scope: FlushScope<'_>) -> usize {
        let before = self.entries.len();
        match scope {
            FlushScope::All => self.entries.clear(),
            FlushScope::Name(_) | FlushScope::Subtree(_) => {
                self.entries.retain(|key, _| !scope.covers(&key.name));
            }
        }
        let removed = before.saturating_sub(self.entries.len());
        self.generation.fetch_add(1, Ordering::AcqRel);
        removed
    }

    /// The configuration in force.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Looks up an entry that is fresh or (with serve-stale on) stale at `now`.
    #[inline]
    pub fn get(&self, key: &CacheKeyRef<'_>, now: u64) -> Option<(Arc<CachedAnswer>, Freshness)> {
        let entry = self.entries.get(key)?;
        let freshness = entry.freshness(now, self.config.stale_window)?;
        Some((entry, freshness))
    }

    /// Stores an entry if it has a lifetime; returns whether it was stored.
    pub fn insert(&self, key: CacheKey, entry: Arc<CachedAnswer>) -> bool {
        if !entry.is_cacheable() {
            return false;
        }
        self.entries.insert(key, entry);
        true
    }

    /// Removes one entry.
    pub fn remove(&self, key: &CacheKeyRef<'_>) {
        self.entries.remove(key);
    }

    /// Drops every entry (a flush of everything: the generation moves on too).
    pub fn clear(&self) {
        self.flush(FlushScope::All);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// Bytes currently accounted to entries.
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response for www.example.com A: CNAME to web.example.net, A 192.0.2.1, plus OPT.
    fn sample_response() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 1];
        m.extend_from_slice(b"\x03WWW\x07example\x03com\x00\x00\x01\x00\x01");
        // CNAME, owner pointer to 12, TTL 300
        m.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 1, 44]);
        let target = b"\x03web\x07example\x03net\x00";
        m.extend_from_slice(&(target.len() as u16).to_be_bytes());
        let target_at = m.len();
        m.extend_from_slice(target);
        // A, owner pointer to the CNAME target, TTL 60
        m.extend_from_slice(&[
            0xC0,
            target_at as u8,
            0,
            1,
            0,
            1,
            0,
            0,
            0,
            60,
            0,
            4,
            192,
            0,
            2,
            1,
        ]);
        // OPT
        m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        m
    }

    fn negative_response() -> Vec<u8> {
        let mut m = vec![0, 7, 0x81, 0x83, 0, 1, 0, 0, 0, 1, 0, 0];
        m.extend_from_slice(b"\x04nope\x07example\x03com\x00\x00\x01\x00\x01");
        // SOA for example.com (pointer to offset 17), TTL 3600, MINIMUM 120
        m.extend_from_slice(&[0xC0, 17, 0, 6, 0, 1, 0, 0, 0x0E, 0x10]);
        let mut rdata = Vec::new();
        rdata.extend_from_slice(b"\x02ns\xC0\x11");
        rdata.extend_from_slice(b"\x05admin\xC0\x11");
        for v in [1u32, 7200, 3600, 1_209_600, 120] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(&rdata);
        m
    }

    #[test]
    fn flush_removes_a_name_or_a_subtree_and_moves_the_generation() {
        let config = CacheConfig::default();
        let cache = AnswerCache::new(config.clone());
        let entry = Arc::new(CachedAnswer::from_message(&sample_response(), 0, &config).unwrap());
        let names: [&[u8]; 4] = [
            b"\x07example\x03com\x00",
            b"\x03www\x07example\x03com\x00",
            b"\x01a\x03www\x07example\x03com\x00",
            b"\x0anotexample\x03com\x00",
        ];
        let fill = || {
            for name in names {
                for qtype in [1, 28] {
                    let key = CacheKeyRef {
                        name,
                        qtype,
                        qclass: 1,
                        dnssec_ok: false,
                    };
                    cache.insert(key.to_owned_key(), Arc::clone(&entry));
                }
            }
        };
        let present = |name: &[u8]| {
            [1, 28]
                .iter()
                .filter(|&&qtype| {
                    cache
                        .get(
                            &CacheKeyRef {
                                name,
                                qtype,
                                qclass: 1,
                                dnssec_ok: false,
                            },
                            0,
                        )
                        .is_some()
                })
                .count()
        };
        fill();
        let generation = cache.generation();
        assert_eq!(cache.flush(FlushScope::Name(names[1])), 2);
        assert!(cache.generation() > generation);
        assert_eq!(
            (present(names[0]), present(names[1]), present(names[2])),
            (2, 0, 2)
        );
        fill();
        assert_eq!(cache.flush(FlushScope::Subtree(names[0])), 6);
        assert_eq!(
            present(names[3]),
            2,
            "a name that only ends with the same bytes stays"
        );
        assert_eq!(cache.flush(FlushScope::All), 2);
        assert!(cache.is_empty());
    }

    #[test]
    fn at_or_below_follows_label_boundaries() {
        let apex = b"\x07example\x03com\x00";
        assert!(is_at_or_below(apex, apex));
        assert!(is_at_or_below(b"\x01x\x07example\x03com\x00", apex));
        assert!(!is_at_or_below(b"\x08xexample\x03com\x00", apex));
        assert!(!is_at_or_below(b"\x03com\x00", apex));
        assert!(
            is_at_or_below(b"\x03com\x00", b"\x00"),
            "everything is below the root"
        );
        assert!(
            !is_at_or_below(b"\x05ab", apex),
            "a truncated name never matches"
        );
    }

    #[test]
    fn builds_entry_and_strips_opt() {
        let entry =
            CachedAnswer::from_message(&sample_response(), 1000, &CacheConfig::default()).unwrap();
        assert_eq!(entry.kind(), AnswerKind::Positive);
        assert_eq!(entry.expires_at(), 1060);
        assert_eq!(&entry.wire()[10..12], &[0, 0], "ARCOUNT without OPT");
        assert_eq!(entry.cname_targets().len(), 1);
        assert_eq!(&*entry.cname_targets()[0], b"\x03web\x07example\x03net\x00");
        assert_eq!(
            entry.addresses(),
            &[IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))]
        );
        assert_eq!(&entry.wire()[13..16], b"www", "question lower-cased");
    }

    /// Found by libFuzzer (`upstream_response`): an OPT record as the last record of the
    /// answer (or authority) section with ARCOUNT 0 underflowed ARCOUNT (a panic with overflow
    /// checks, ARCOUNT 65535 in the cached copy without them).
    #[test]
    fn opt_outside_the_additional_section_is_refused() {
        // One question, one answer record which is an OPT; ARCOUNT 0.
        let mut m = vec![0, 7, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x00\x00\x01\x00\x01");
        m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            CachedAnswer::from_message(&m, 0, &CacheConfig::default()),
            Err(CacheError::MisplacedOpt)
        ));
        // The same as the last authority record.
        m[7] = 0;
        m[9] = 1;
        assert!(matches!(
            CachedAnswer::from_message(&m, 0, &CacheConfig::default()),
            Err(CacheError::MisplacedOpt)
        ));
        // In the additional section it is accepted and removed.
        m[9] = 0;
        m[11] = 1;
        let entry = CachedAnswer::from_message(&m, 0, &CacheConfig::default()).unwrap();
        assert_eq!(&entry.wire()[10..12], &[0, 0]);
        assert_eq!(entry.wire().len(), m.len() - 11);
    }

    #[test]
    fn renders_with_id_case_and_decremented_ttls() {
        let entry =
            CachedAnswer::from_message(&sample_response(), 1000, &CacheConfig::default()).unwrap();
        let mut out = [0u8; 512];
        let client_name = b"\x03wWw\x07ExAmple\x03com\x00";
        let len = entry
            .write_response(&mut out, 0xBEEF, 0x0100, client_name, 1010, None)
            .unwrap();
        let out = &out[..len];
        assert_eq!(&out[0..2], &[0xBE, 0xEF]);
        assert_eq!(out[2] & 0x01, 0x01, "RD echoed");
        assert_eq!(&out[12..12 + client_name.len()], client_name);
        let first = wire::record_at(out, entry.question_end()).unwrap();
        assert_eq!(wire::u32_at(out, first.ttl_at).unwrap(), 290);
        let second = wire::record_at(out, first.end()).unwrap();
        assert_eq!(wire::u32_at(out, second.ttl_at).unwrap(), 50);
    }

    #[test]
    fn negative_ttl_is_soa_minimum() {
        let entry =
            CachedAnswer::from_message(&negative_response(), 0, &CacheConfig::default()).unwrap();
        assert_eq!(entry.kind(), AnswerKind::NxDomain);
        assert_eq!(entry.expires_at(), 120);
        let soa = wire::record_at(entry.wire(), entry.question_end()).unwrap();
        assert_eq!(wire::u32_at(entry.wire(), soa.ttl_at).unwrap(), 120);
    }

    #[test]
    fn min_ttl_also_keeps_a_nodata_without_soa() {
        // NOERROR, no records at all: no TTL of its own.
        let mut m = vec![0, 7, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x00\x00\x01\x00\x01");
        let entry = CachedAnswer::from_message(&m, 1000, &CacheConfig::default()).unwrap();
        assert_eq!(entry.kind(), AnswerKind::NoData);
        assert_eq!(entry.expires_at(), 1000, "not kept without a floor");
        let config = CacheConfig {
            min_ttl: 5,
            ..CacheConfig::default()
        };
        let entry = CachedAnswer::from_message(&m, 1000, &config).unwrap();
        assert_eq!(entry.expires_at(), 1005);
        let entry = CachedAnswer::from_message(&negative_response(), 0, &config).unwrap();
        assert_eq!(entry.expires_at(), 120, "a floor, not a replacement");
    }

    #[test]
    fn ttl_clamps_apply() {
        let config = CacheConfig {
            min_ttl: 100,
            max_ttl: 200,
            ..CacheConfig::default()
        };
        let entry = CachedAnswer::from_message(&sample_response(), 0, &config).unwrap();
        assert_eq!(entry.expires_at(), 100);
    }

    #[test]
    fn cache_get_respects_expiry_and_stale_window() {
        let config = CacheConfig {
            stale_window: Some(100),
            ..CacheConfig::default()
        };
        let cache = AnswerCache::new(config.clone());
        let entry = Arc::new(CachedAnswer::from_message(&sample_response(), 0, &config).unwrap());
        let key = CacheKeyRef {
            name: b"\x03www\x07example\x03com\x00",
            qtype: 1,
            qclass: 1,
            dnssec_ok: false,
        };
        assert!(cache.insert(key.to_owned_key(), entry));
        assert_eq!(cache.get(&key, 59).unwrap().1, Freshness::Fresh);
        assert_eq!(cache.get(&key, 61).unwrap().1, Freshness::Stale);
        assert!(cache.get(&key, 161).is_none());
        let other = CacheKeyRef { qtype: 28, ..key };
        assert!(cache.get(&other, 0).is_none());
    }

    #[test]
    fn truncated_messages_are_refused_and_corrupted_ones_refused_or_well_formed() {
        let config = CacheConfig::default();
        let base = sample_response();
        for cut in 0..base.len() {
            assert!(
                CachedAnswer::from_message(&base[..cut], 0, &config).is_err(),
                "a message cut at {cut} of {} was accepted",
                base.len()
            );
        }
        for i in 0..base.len() {
            let mut bad = base.clone();
            bad[i] ^= 0xFF;
            let Ok(entry) = CachedAnswer::from_message(&bad, 0, &config) else {
                continue;
            };
            // Whatever was accepted is whole: its records walk exactly to its end.
            let wire = entry.wire();
            let mut at = entry.question_end();
            while at < wire.len() {
                match wire::record_at(wire, at) {
                    Ok(record) => at = record.end(),
                    Err(e) => panic!("byte {i} flipped: an accepted entry does not walk: {e:?}"),
                }
            }
            assert_eq!(at, wire.len(), "byte {i} flipped");
        }
    }
}
