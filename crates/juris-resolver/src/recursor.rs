//! Iterative resolution from the root hints (RFC 1034 §5.3.3, RFC 9156).
//!
//! ```text
//!  chase(name, type) ── lookup(current) ──► deepest cut (delegation cache, else root)
//!        ▲                   │  query_zone: order servers by SRTT, UDP (TC→TCP), next server on
//!        │                   │  timeout / SERVFAIL / lame; glueless NS → sub-lookup (depth+1)
//!        │                   ├─ referral (strictly deeper, in bailiwick) → cache cut + glue, loop
//!        │                   └─ final response (answer, NXDOMAIN, NODATA)
//!        └── CNAME / DNAME out of the zone: restart at the target (chain limited)
//! ```
//!
//! Every record taken from a response must be at or below the zone the answering server was
//! asked about (bailiwick); glue must also be for one of the referral's name servers.
//! QNAME minimisation (RFC 9156, relaxed) sends `NS` queries for one more label than the
//! current zone cut until the full name is reached; on NXDOMAIN or error RCODEs for a
//! minimised query, when every server asked answered it lamely or not at all, or when its
//! answer shows a DNAME at or above the probed name, the full name is asked instead.
//!
//! # Limitations
//! - No serve-stale, no prefetch, no 0x20, no DNSSEC validation (RRSIG/NSEC/NSEC3 are kept).
//! - Only name server addresses are ranked (glue below answers, RFC 2181 §5.4.1); zone cuts
//!   come from referrals alone (the child's NS RRset is never cached, so a sold domain moves
//!   when the parent's delegation expires).
//! - Answers are not assembled from cached records: only zone cuts, name server addresses and
//!   the CNAME/DNAME records chains went through (`redirects`) are cached here; complete
//!   answers live in the answer cache.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use domain::base::iana::Rcode;
use domain::base::{Name, Rtype};
use domain::rdata::AllRecordData;
use tokio::time::Instant;

use crate::clock::SharedClock;
use crate::delegation::{Delegation, DelegationCache, Rank};
use crate::infra::InfraCache;
use crate::names::{
    cname_target, dname_target, is_at_or_below, is_below, is_dnssec_type, lower, replace_suffix,
    rrsig_covers, same_name, suffix_with_labels, synthesized_cname, Rr,
};
use crate::outstanding::Outstanding;
use crate::redirects::Redirects;
use crate::referral_ds::ReferralDs;
use crate::resolver::{Limit, ResolveError, ResolverConfig};
use crate::tcp_pool::{TcpLimits, TcpPool};
use crate::upstream::{self, QueryOptions, Response, UpstreamError};

mod priming;

/// Minimised queries per zone before asking for the full name (RFC 9156 §2.3 MAX_MINIMISE_COUNT).
const MAX_MINIMISE_STEPS: usize = 10;
/// Servers tried for one question at one zone before giving up on the zone.
const MAX_ATTEMPTS_PER_ZONE: usize = 8;

/// The result of a resolution: the RCODE, the answer (CNAME/DNAME chain then the final RRset,
/// with RRSIGs) and, for negative answers, the authority records (SOA, NSEC/NSEC3, RRSIGs).
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub rcode: Rcode,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    /// The upstream message this outcome was taken from, when it holds all of it (no
    /// CNAME/DNAME chain across responses): lets the cached answer be copied from its wire
    /// form instead of composed again (see [`crate::answer::build`]).
    pub verbatim: Option<Bytes>,
}

impl Outcome {
    /// A CNAME question answered by the CNAME synthesised from a DNAME (RFC 6672 §3.1): the
    /// chain ends there, its target is not resolved.
    fn cname_from_dname(chain: Vec<Rr>) -> Self {
        Self {
            rcode: Rcode::NOERROR,
            answer: chain,
            authority: Vec::new(),
            verbatim: None,
        }
    }

    /// A CNAME/DNAME chain that comes back on itself (RFC 1034 §3.6.2: loops are signalled as
    /// an error): SERVFAIL, with the chain up to the link that closes the loop.
    fn looped(chain: Vec<Rr>) -> Self {
        Self {
            rcode: Rcode::SERVFAIL,
            answer: chain,
            authority: Vec::new(),
            verbatim: None,
        }
    }
}

/// Work done on behalf of one client query; bounded by [`crate::Limits`].
#[derive(Debug)]
pub(crate) struct Work {
    pub upstream_queries: u32,
    pub referrals: u32,
    pub ns_lookups: u32,
    /// (name, type) of the resolutions under way, outermost first (loop detection).
    pub in_progress: Vec<(Name<Bytes>, Rtype)>,
    pub deadline: Instant,
    /// Forward mode: the upstream whose answer was taken.
    pub answered_by: Option<std::net::SocketAddr>,
    /// Limits hit on the way (counted for `/metrics` when the resolution ends).
    pub limits_hit: Vec<Limit>,
    /// Recursive mode: the name servers of every zone cut whose servers gave a final response
    /// to the client's question (one per step of a CNAME chain that leaves a zone), with the
    /// addresses known for them then. Not filled by sub-lookups (depth > 0).
    pub name_servers: crate::cache::NameServers,
    /// The server of every referral and full-question answer this work took, for the
    /// re-query of other servers after a bogus answer; at most `MAX_RESPONDERS`.
    pub responders: Vec<Responder>,
    /// Servers whose data turned out bogus for this client query: asked last (Unbound's
    /// per-query blacklist).
    pub avoid: Vec<SocketAddr>,
}

/// Bound on `Work::responders`.
const MAX_RESPONDERS: usize = 32;

/// A server whose response a resolution used, and what that response was: the validator's
/// verdict blames only the servers that supplied the data it found bogus (design 0019).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Responder {
    /// The zone the server was asked as a server of.
    pub zone: Name<Bytes>,
    pub server: SocketAddr,
    /// A referral (the child's DS or its denial) rather than an answer to the question.
    pub referral: bool,
}

impl Work {
    pub(crate) fn new(deadline: Instant) -> Self {
        Self {
            upstream_queries: 0,
            referrals: 0,
            ns_lookups: 0,
            in_progress: Vec::new(),
            deadline,
            answered_by: None,
            limits_hit: Vec::new(),
            name_servers: crate::cache::NameServers::default(),
            responders: Vec::new(),
            avoid: Vec::new(),
        }
    }

    fn note_responder(&mut self, zone: &Name<Bytes>, server: SocketAddr, referral: bool) {
        let responder = Responder {
            zone: zone.clone(),
            server,
            referral,
        };
        if self.responders.len() < MAX_RESPONDERS && !self.responders.contains(&responder) {
            self.responders.push(responder);
        }
    }

    /// Accounts for one upstream query, about to be sent at `now`.
    pub(crate) fn count_query(&mut self, max: u32, now: Instant) -> Result<(), ResolveError> {
        self.upstream_queries += 1;
        if self.upstream_queries > max {
            return Err(self.limit(Limit::UpstreamQueries));
        }
        if now >= self.deadline {
            return Err(ResolveError::Timeout);
        }
        Ok(())
    }

    /// `limit` was hit: counted, and the error to return.
    pub(crate) fn limit(&mut self, limit: Limit) -> ResolveError {
        self.limits_hit.push(limit);
        ResolveError::LimitExceeded(limit)
    }

    /// `limit` was hit when `hit`, without failing anything: counted only (the caps on what
    /// a zone cut keeps).
    fn note_limit(&mut self, limit: Limit, hit: bool) {
        if hit {
            self.limits_hit.push(limit);
        }
    }
}

/// Errors after which the whole client query stops (budgets, deadline); others only rule out
/// one server or one name server name.
pub(crate) fn is_fatal(error: &ResolveError) -> bool {
    match error {
        ResolveError::Timeout | ResolveError::Internal(_) => true,
        ResolveError::LimitExceeded(limit) => limit.is_fatal(),
        ResolveError::NoReachableAuthority(_) | ResolveError::InvalidData(_) => false,
    }
}

/// The NXNS cap on name server lookups for one zone cut.
fn is_ns_lookup_cap(error: &ResolveError) -> bool {
    matches!(
        error,
        ResolveError::LimitExceeded(Limit::NameServerLookupsPerZone)
    )
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The iterative resolver's shared state.
#[derive(Debug)]
pub(crate) struct Recursor {
    config: Arc<ResolverConfig>,
    delegations: DelegationCache,
    /// DS records (or no-DS proofs) that came with referrals, for the validator.
    referral_ds: ReferralDs,
    infra: InfraCache,
    /// CNAME and DNAME records followed before (answers are otherwise not kept here).
    redirects: Redirects,
    clock: SharedClock,
    max_ttl: u32,
    /// One priming query at a time (RFC 8109); the others wait for its result.
    priming: tokio::sync::Mutex<()>,
    /// Upstream queries out, per zone and in total (their caps: `Limits::max_outstanding*`).
    outstanding: Outstanding,
    /// Unix time before which a failed priming is not tried again (the hints serve).
    prime_retry_at: std::sync::atomic::AtomicU64,
    /// This resolver's upstream TCP connections (`resolver.limits.tcp_*`).
    tcp: Arc<TcpPool>,
}

/// What one zone's servers said about a question.
enum Reply {
    Referral(Delegation),
    Final(Response),
    /// No server gave a usable answer.
    Unreachable {
        /// At least one answered with an error RCODE (rather than timing out).
        rcode_failure: bool,
        /// The most telling error of a name server address lookup, if any.
        sub_error: Option<ResolveError>,
        /// Servers asked (0: no address was known or found).
        asked: usize,
    },
}

/// One response, sorted out.
enum Classified {
    Referral {
        /// At most `max_ns_per_zone_cut` name servers (see `capped`).
        delegation: Delegation,
        ttl: u32,
        glue: Vec<Rr>,
        /// The referral listed more name servers than the cut keeps.
        capped: bool,
        /// DS / NSEC / NSEC3 records and their RRSIGs from the referral's authority section.
        dnssec: Vec<Rr>,
    },
    Final(Response),
    Lame,
    ServerFailure,
}

impl Recursor {
    pub(crate) fn new(
        config: Arc<ResolverConfig>,
        hints: &[(Name<Bytes>, IpAddr)],
        clock: SharedClock,
        max_ttl: u32,
    ) -> Self {
        let outstanding = Outstanding::new(
            config.limits.max_outstanding,
            config.limits.max_outstanding_per_zone,
        );
        let limits = config.limits.clone();
        let table_bound = crate::resolver::table_bound;
        Self {
            config,
            delegations: DelegationCache::new(hints)
                .with_max(table_bound(limits.delegation_entries))
                .with_max_addresses(table_bound(limits.max_addresses_per_ns)),
            referral_ds: ReferralDs::with_max(table_bound(limits.referral_ds_zones)),
            infra: InfraCache::with_max(table_bound(limits.infra_servers)),
            redirects: Redirects::with_max(table_bound(limits.redirect_entries)),
            clock,
            max_ttl,
            priming: tokio::sync::Mutex::new(()),
            prime_retry_at: std::sync::atomic::AtomicU64::new(0),
            outstanding,
            tcp: Arc::new(TcpPool::new(TcpLimits::from(&limits))),
        }
    }

    /// The upstream TCP connections of this engine.
    #[cfg(test)]
    pub(crate) fn tcp_pool(&self) -> &TcpPool {
        &self.tcp
    }

    /// Forgets the zone cuts, name server addresses, followed CNAME/DNAME records and
    /// referral DS data `scope` covers (`juris cache flush`); returns (cuts, address entries).
    pub(crate) fn flush(&self, scope: crate::cache::FlushScope<'_>) -> (usize, usize) {
        self.redirects.flush(scope);
        self.referral_ds.flush(scope);
        self.delegations.flush(scope)
    }

    /// Resolves `qname`/`qtype`, following CNAMEs and DNAMEs. `depth` is 0 for the client's
    /// question and grows with each nested name server address lookup.
    pub(crate) fn resolve<'a>(
        &'a self,
        qname: Name<Bytes>,
        qtype: Rtype,
        depth: u32,
        work: &'a mut Work,
    ) -> BoxFuture<'a, Result<Outcome, ResolveError>> {
        Box::pin(async move {
            if depth > self.config.limits.max_depth {
                return Err(work.limit(Limit::Depth));
            }
            let key = (lower(&qname), qtype);
            if work.in_progress.contains(&key) {
                return Err(work.limit(Limit::DelegationLoop));
            }
            work.in_progress.push(key);
            let result = self.chase(lower(&qname), qtype, depth, work).await;
            work.in_progress.pop();
            result
        })
    }

    async fn chase(
        &self,
        qname: Name<Bytes>,
        qtype: Rtype,
        depth: u32,
        work: &mut Work,
    ) -> Result<Outcome, ResolveError> {
        let max_links = self.config.limits.max_cname_chain;
        let mut chain: Vec<Rr> = Vec::new();
        let mut links = 0u32;
        // Names the chain went through (the first one is `qname`, kept in `first`): filled only
        // when a CNAME or DNAME is followed.
        let first = qname.clone();
        let mut seen: Vec<Name<Bytes>> = Vec::new();
        // NSEC/NSEC3 proving the wildcard expansions among the chain's CNAMEs (they may come
        // from another response than the final one, or from the redirect cache).
        let mut chain_proof: Vec<Rr> = Vec::new();
        let mut current = qname;
        loop {
            // A CNAME or DNAME followed before takes the chain on without a query.
            if let Some(followed) =
                self.redirects
                    .follow(&current, qtype, self.clock.unix_seconds())
            {
                links += 1;
                if links > max_links {
                    return Err(work.limit(Limit::CnameChain));
                }
                for record in followed.records {
                    if !chain.contains(&record) {
                        chain.push(record);
                    }
                }
                for record in followed.proof {
                    if !chain_proof.contains(&record) {
                        chain_proof.push(record);
                    }
                }
                if qtype == Rtype::CNAME {
                    // A cached DNAME's synthesised CNAME answers a CNAME question.
                    return Ok(Outcome::cname_from_dname(chain));
                }
                if followed.target == first || seen.contains(&followed.target) {
                    return Ok(Outcome::looped(chain));
                }
                seen.push(followed.target.clone());
                current = followed.target;
                continue;
            }
            let (zone, mut response) = self.lookup(&current, qtype, depth, work).await?;
            let mut name = current.clone();
            let mut moved = false;
            loop {
                let in_rrset = |r: &Rr| {
                    same_name(r.owner(), &name)
                        && (r.rtype() == qtype
                            || (qtype == Rtype::ANY && r.rtype() != Rtype::RRSIG))
                };
                // A CNAME question under a DNAME: the DNAME and our own synthesis answer it
                // (below), not the server's CNAME, which carries no signature of its own.
                let under_dname = qtype == Rtype::CNAME
                    && response
                        .answer
                        .iter()
                        .any(|r| r.rtype() == Rtype::DNAME && is_below(&name, r.owner()));
                if !under_dname && response.answer.iter().any(in_rrset) {
                    // The RRset, then its signatures, moved out of the response (no copies).
                    let verbatim = chain.is_empty().then(|| response.wire.clone());
                    let mut records = std::mem::take(&mut response.answer);
                    records.retain(|r| {
                        in_rrset(r)
                            || (same_name(r.owner(), &name) && rrsig_covers(r) == Some(qtype))
                    });
                    // Stable: the RRset keeps its order, signatures go last.
                    records.sort_by_key(|r| !in_rrset(r));
                    if qtype == Rtype::DNAME {
                        // A DNAME asked for is remembered like one met in a chain: names
                        // below it are then synthesised from it without asking (RFC 6672
                        // §3.4; as Knot Resolver's cache does), whatever a server would add.
                        for dname in records.iter().filter(|r| r.rtype() == Rtype::DNAME) {
                            let sigs = signatures(&records, dname.owner(), Rtype::DNAME).collect();
                            self.redirects.remember(
                                dname,
                                sigs,
                                Vec::new(),
                                self.max_ttl,
                                self.clock.unix_seconds(),
                            );
                        }
                    }
                    if chain.is_empty() {
                        chain = records;
                    } else {
                        chain.append(&mut records);
                    }
                    // NSEC/NSEC3 proving a wildcard expansion are kept for the validator
                    // (and DO=1 clients).
                    let mut authority = crate::names::nsec_records(&response.authority);
                    add_missing(&mut authority, chain_proof);
                    return Ok(Outcome {
                        rcode: Rcode::NOERROR,
                        answer: chain,
                        authority,
                        verbatim,
                    });
                }
                // A DNAME wins over the CNAME the server synthesized from it: we build our own.
                let dname = if qtype != Rtype::DNAME {
                    response
                        .answer
                        .iter()
                        .find(|r| r.rtype() == Rtype::DNAME && is_below(&name, r.owner()))
                } else {
                    None
                };
                if let Some(dname) = dname {
                    let target = dname_target(dname)
                        .ok_or_else(|| ResolveError::InvalidData("DNAME without target".into()))?;
                    links += 1;
                    if links > max_links {
                        return Err(work.limit(Limit::CnameChain));
                    }
                    let sigs: Vec<Rr> =
                        signatures(&response.answer, dname.owner(), Rtype::DNAME).collect();
                    let signed = !sigs.is_empty();
                    self.redirects.remember(
                        dname,
                        sigs.clone(),
                        Vec::new(),
                        self.max_ttl,
                        self.clock.unix_seconds(),
                    );
                    // A DNAME applied again further down the chain is listed once.
                    for record in std::iter::once(dname.clone()).chain(sigs) {
                        if !chain.contains(&record) {
                            chain.push(record);
                        }
                    }
                    let Some(substituted) = replace_suffix(&name, dname.owner(), target) else {
                        // RFC 6672 §2.2: the substituted name would be too long.
                        return Ok(Outcome {
                            rcode: Rcode::YXDOMAIN,
                            answer: chain,
                            authority: Vec::new(),
                            verbatim: None,
                        });
                    };
                    let substituted = lower(&substituted);
                    // The server's own CNAME for `name` must be the same synthesis (RFC 6672
                    // §3.1). A signed DNAME with one that differs is a forged or broken answer
                    // (Deckard's val_dname_bogus): refused, as a validator would find it bogus.
                    // The DNAME itself stays remembered above; an unsigned DNAME just wins.
                    let contradicted = signed
                        && response.answer.iter().any(|r| {
                            r.rtype() == Rtype::CNAME
                                && same_name(r.owner(), &name)
                                && cname_target(r).is_some_and(|t| !same_name(t, &substituted))
                        });
                    if contradicted {
                        return Err(ResolveError::InvalidData(
                            "a CNAME that contradicts the signed DNAME it comes with".into(),
                        ));
                    }
                    chain.push(synthesized_cname(
                        name.clone(),
                        dname.ttl(),
                        substituted.clone(),
                    ));
                    if qtype == Rtype::CNAME {
                        return Ok(Outcome::cname_from_dname(chain));
                    }
                    if substituted == first || seen.contains(&substituted) {
                        return Ok(Outcome::looped(chain));
                    }
                    seen.push(substituted.clone());
                    name = substituted;
                    moved = true;
                    if is_at_or_below(&name, &zone) {
                        continue;
                    }
                    break;
                }
                let next = if qtype != Rtype::CNAME {
                    response
                        .answer
                        .iter()
                        .find(|r| r.rtype() == Rtype::CNAME && same_name(r.owner(), &name))
                } else {
                    None
                };
                if let Some(cname) = next {
                    let target = cname_target(cname)
                        .map(lower)
                        .ok_or_else(|| ResolveError::InvalidData("CNAME without target".into()))?;
                    links += 1;
                    if links > max_links {
                        return Err(work.limit(Limit::CnameChain));
                    }
                    let sigs: Vec<Rr> = signatures(&response.answer, &name, Rtype::CNAME).collect();
                    let proof = wildcard_proof(&sigs, &response.authority);
                    for record in &proof {
                        if !chain_proof.contains(record) {
                            chain_proof.push(record.clone());
                        }
                    }
                    self.redirects.remember(
                        cname,
                        sigs.clone(),
                        proof,
                        self.max_ttl,
                        self.clock.unix_seconds(),
                    );
                    chain.push(cname.clone());
                    chain.extend(sigs);
                    if target == first || seen.contains(&target) {
                        return Ok(Outcome::looped(chain));
                    }
                    seen.push(target.clone());
                    name = target;
                    moved = true;
                    if is_at_or_below(&name, &zone) {
                        continue;
                    }
                    break;
                }
                break;
            }
            if moved {
                // A chain without its final RRset: start over at the target, from the best
                // known delegation, whether the chain left the zone or ends in a negative
                // answer here. The SOA and NSEC/NSEC3 records after a chain prove the end of
                // the question the server answered, which need not be the target's (Deckard
                // val_dname: an answer given for `shortloop.x. CNAME` denies a CNAME at
                // `shortloop.`, not the TXT asked for); as Knot Resolver and Unbound, ask the
                // target itself (design 0019).
                current = name;
                continue;
            }
            // A negative answer (for the original name, or the end of an in-zone chain): the
            // SOA with the zone's own NS RRset beside it when the server sent one (as Knot
            // Resolver and Unbound pass it on), the NSEC/NSEC3 proofs, their signatures.
            // Without an SOA, a signed NS RRset at the zone's apex is kept: its signature names
            // the zone that answered, for the validator (no SOA probe needed).
            let apex = response
                .authority
                .iter()
                .find(|r| r.rtype() == Rtype::SOA)
                .map(|r| r.owner().clone())
                .or_else(|| {
                    response
                        .authority
                        .iter()
                        .any(|r| rrsig_covers(r) == Some(Rtype::NS) && same_name(r.owner(), &zone))
                        .then(|| zone.clone())
                });
            let authority = response
                .authority
                .iter()
                .filter(|r| {
                    matches!(r.rtype(), Rtype::SOA | Rtype::NSEC | Rtype::NSEC3)
                        || ((r.rtype() == Rtype::NS || rrsig_covers(r) == Some(Rtype::NS))
                            && apex.as_ref().is_some_and(|apex| same_name(r.owner(), apex)))
                        || rrsig_covers(r)
                            .is_some_and(|t| matches!(t, Rtype::SOA | Rtype::NSEC | Rtype::NSEC3))
                })
                .cloned()
                .collect();
            let mut authority = authority;
            add_missing(&mut authority, chain_proof);
            let verbatim = (!moved && chain.is_empty()).then(|| response.wire.clone());
            return Ok(Outcome {
                rcode: response.rcode,
                answer: chain,
                authority,
                verbatim,
            });
        }
    }

    /// The DS set of `zone` (or the proof there is none) a referral gave, for the validator;
    /// a client's DS question still goes to the parent's servers (it wants their SOA too).
    pub(crate) fn referral_ds(&self, zone: &Name<Bytes>) -> Option<Outcome> {
        self.referral_ds
            .outcome(&lower(zone), self.clock.unix_seconds())
    }

    /// Forgets the referral DS data of `name` and the zones above it (before other servers
    /// are asked after a bogus answer).
    pub(crate) fn forget_referral_ds(&self, name: &Name<Bytes>) {
        let mut zone = Some(lower(name));
        while let Some(current) = zone {
            self.referral_ds
                .flush(crate::cache::FlushScope::Name(current.as_slice()));
            zone = current.parent();
        }
    }

    /// Whether `zone` has a server to ask besides those in `avoid`: a name server with an
    /// address not avoided, or one whose address is not known yet.
    pub(crate) fn has_other_servers(&self, zone: &Name<Bytes>, avoid: &[SocketAddr]) -> bool {
        let now = self.clock.unix_seconds();
        let delegation = self.delegations.deepest(zone, now);
        if !same_name(&delegation.zone, zone) {
            return false;
        }
        delegation.name_servers.iter().any(|name| {
            let mut known = false;
            let mut other = false;
            for rtype in self.address_types() {
                self.delegations
                    .for_each_address(name, rtype, now, |address, _| {
                        known = true;
                        let server = SocketAddr::new(address, self.config.upstream_port);
                        other |= self.address_allowed(address) && !avoid.contains(&server);
                    });
            }
            other || !known
        })
    }

    /// The deepest zone cut known at or above `name` (the root when none is).
    pub(crate) fn known_cut(&self, name: &Name<Bytes>) -> Name<Bytes> {
        self.delegations
            .deepest(name, self.clock.unix_seconds())
            .zone
    }

    /// Follows referrals from the deepest known cut until a server of the zone holding
    /// `qname` gives a final response; returns that zone and the response.
    async fn lookup(
        &self,
        qname: &Name<Bytes>,
        qtype: Rtype,
        depth: u32,
        work: &mut Work,
    ) -> Result<(Name<Bytes>, Response), ResolveError> {
        let now = self.clock.unix_seconds();
        // DS records live on the parent side of a zone cut (RFC 4035 §3.1.4.1).
        let mut delegation = match (qtype, qname.parent()) {
            (Rtype::DS, Some(parent)) => self.delegations.deepest(&parent, now),
            _ => self.delegations.deepest(qname, now),
        };
        if delegation.zone.is_root() && !(qname.is_root() && qtype == Rtype::NS) {
            self.ensure_primed(depth, work).await?;
            delegation = self.delegations.deepest(&delegation.zone, now);
        }
        let mut minimise = self.config.qname_minimisation;
        let mut labels = delegation.zone.label_count() + 1;
        let mut minimised_steps = 0usize;
        // Zones whose delegation was asked for again at the parent (see below).
        let mut refreshed: Vec<Name<Bytes>> = Vec::new();
        loop {
            let minimised = if minimise && labels < qname.label_count() {
                suffix_with_labels(qname, labels)
            } else {
                None
            };
            let full = minimised.is_none();
            // Minimised queries ask for the NS RRset of the next name down (RFC 7816 §2, as
            // Knot Resolver does; RFC 9156 §2.1 lets the resolver choose the QTYPE): it is the
            // question whose answer is a referral, which every authority answers.
            let (sent_name, sent_type) = match minimised {
                Some(name) => (name, Rtype::NS),
                None => (qname.clone(), qtype),
            };
            let reply = self
                .query_zone(&delegation, &sent_name, sent_type, !full, depth, work)
                .await?;
            match reply {
                Reply::Referral(child) => {
                    work.referrals += 1;
                    if work.referrals > self.config.limits.max_referrals {
                        return Err(work.limit(Limit::Referrals));
                    }
                    delegation = child;
                    labels = delegation.zone.label_count() + 1;
                    minimised_steps = 0;
                }
                Reply::Final(response) if full => {
                    if depth == 0 {
                        self.note_name_servers(&delegation, &mut work.name_servers);
                    }
                    return Ok((delegation.zone, response));
                }
                Reply::Final(response) => {
                    if response.rcode == Rcode::NXDOMAIN {
                        // Relaxed mode (RFC 9156 §2.3): some servers answer NXDOMAIN for empty
                        // non-terminals; ask for the full name instead of trusting it.
                        minimise = false;
                    } else if self.redirected_below(&delegation.zone, &sent_name, &response) {
                        // Everything below is the DNAME's (RFC 9156 §3 step 6b): no zone cut
                        // for another probe to find; the full question gets the redirection.
                        minimise = false;
                    } else {
                        labels += 1;
                        minimised_steps += 1;
                        if minimised_steps >= MAX_MINIMISE_STEPS {
                            minimise = false;
                        }
                    }
                }
                Reply::Unreachable {
                    rcode_failure,
                    ref sub_error,
                    asked,
                } if !full
                    && (rcode_failure
                        || (asked > 0
                            && !matches!(sub_error, Some(ResolveError::LimitExceeded(_))))) =>
                {
                    // Relaxed mode (RFC 9156 §3): servers that choke on the minimised query,
                    // answering it with an error RCODE, lamely or not at all, may still
                    // answer the full question (middleboxes and servers that drop or
                    // mishandle NS queries), so it is asked next, as Unbound does after
                    // `MAX_MINIMISE_TIMEOUT_COUNT` timeouts and Knot Resolver with
                    // `NO_MINIMIZE`. The full name goes only to these same servers.
                    minimise = false;
                }
                Reply::Unreachable {
                    sub_error, asked, ..
                } => {
                    // A cached cut none of whose servers could be reached for want of an
                    // address (a name server name that needs the cut itself, glue expired
                    // before the delegation): ask the parent side again, which hands out the
                    // delegation with fresh glue. Once per zone and lookup.
                    // (Not when the NXNS cap stopped the lookups: the parent would hand out
                    // the same names again.)
                    let stranded = (sub_error.is_some() || asked == 0)
                        && !sub_error.as_ref().is_some_and(is_ns_lookup_cap);
                    if stranded
                        && !delegation.zone.is_root()
                        && !refreshed.contains(&delegation.zone)
                    {
                        if let Some(parent) = delegation.zone.parent() {
                            tracing::debug!(zone = %delegation.zone, "servers out of reach, asking the parent again");
                            refreshed.push(delegation.zone.clone());
                            delegation = self.delegations.deepest(&parent, now);
                            labels = delegation.zone.label_count() + 1;
                            minimised_steps = 0;
                            continue;
                        }
                    }
                    return Err(match sub_error {
                        Some(error @ ResolveError::LimitExceeded(_)) => error,
                        _ => ResolveError::NoReachableAuthority(delegation.zone.to_string()),
                    });
                }
            }
        }
    }

    /// Asks the servers of one zone, trying others on failure, resolving glueless name server
    /// addresses when the known ones run out.
    async fn query_zone(
        &self,
        delegation: &Delegation,
        qname: &Name<Bytes>,
        qtype: Rtype,
        minimised: bool,
        depth: u32,
        work: &mut Work,
    ) -> Result<Reply, ResolveError> {
        // The first server tried apart: the usual single attempt allocates nothing.
        let mut first_tried: Option<SocketAddr> = None;
        let mut more_tried: Vec<SocketAddr> = Vec::new();
        let mut looked_up: Vec<Name<Bytes>> = Vec::new();
        let mut rcode_failure = false;
        let mut sub_error: Option<ResolveError> = None;
        let mut attempts = 0usize;
        while attempts < MAX_ATTEMPTS_PER_ZONE {
            // Servers that gave bogus data for this query come last: after the addresses of
            // the other name server names are looked up (a last resort).
            let candidate = self
                .server_addresses(delegation)
                .into_iter()
                .filter(|server| first_tried != Some(*server) && !more_tried.contains(server))
                .min_by_key(|server| work.avoid.contains(server));
            let next = match candidate {
                Some(server) if !work.avoid.contains(&server) => Some(server),
                _ => match self
                    .resolve_name_server(delegation, &mut looked_up, depth, work)
                    .await
                {
                    Ok(true) => continue,
                    Ok(false) => candidate,
                    Err(error) if is_fatal(&error) => return Err(error),
                    Err(error) => {
                        let capped = is_ns_lookup_cap(&error);
                        if sub_error.is_none() || matches!(error, ResolveError::LimitExceeded(_)) {
                            sub_error = Some(error);
                        }
                        if capped {
                            break;
                        }
                        continue;
                    }
                },
            };
            let Some(server) = next else {
                break;
            };
            if first_tried.is_none() {
                first_tried = Some(server);
            } else {
                more_tried.push(server);
            }
            attempts += 1;
            // One clock read for the budget check, this attempt's deadline and its RTT.
            let started = Instant::now();
            work.count_query(self.config.limits.max_upstream_queries, started)?;
            let options = QueryOptions {
                recursion_desired: false,
                checking_disabled: false,
                edns_buffer_size: self.config.edns_buffer_size,
                edns: true,
                deadline: upstream::attempt_deadline(
                    self.config.query_timeout,
                    work.deadline,
                    started,
                ),
                tcp: Arc::clone(&self.tcp),
            };
            let answer = {
                // Held while the query is out: a zone (or the resolver) with too many queries
                // out fails this client query at once (random-subdomain floods).
                let _permit = self
                    .outstanding
                    .acquire(Some(&delegation.zone))
                    .map_err(|limit| work.limit(limit))?;
                upstream::ask(&self.infra, server, qname, qtype, &options).await
            };
            match answer {
                Err(UpstreamError::Timeout) => {
                    tracing::debug!(%server, zone = %delegation.zone, "upstream timeout");
                    self.infra.record_timeout(server);
                    if Instant::now() >= work.deadline {
                        return Err(ResolveError::Timeout);
                    }
                }
                Err(error) => {
                    tracing::debug!(%server, zone = %delegation.zone, %error, "upstream error");
                    self.infra.record_failure(server);
                }
                Ok(response) => {
                    self.infra.record_rtt(server, started.elapsed());
                    let classified = self.classify(&delegation.zone, qname, minimised, response);
                    // The data a validator judges: referrals (DS) and full-question answers,
                    // not the steps of a minimised walk.
                    let judged = match classified {
                        Classified::Referral { .. } => Some(true),
                        Classified::Final(_) if !minimised => Some(false),
                        Classified::Final(_) | Classified::Lame | Classified::ServerFailure => None,
                    };
                    if let Some(referral) = judged {
                        work.note_responder(&delegation.zone, server, referral);
                    }
                    match classified {
                        Classified::Referral {
                            delegation: child,
                            ttl,
                            glue,
                            capped,
                            dnssec,
                        } => {
                            tracing::debug!(%server, from = %delegation.zone, to = %child.zone, capped, "referral");
                            work.note_limit(Limit::NameServersPerZoneCut, capped);
                            let addresses_capped = self.store_referral(&child, ttl, &glue);
                            work.note_limit(Limit::AddressesPerNameServer, addresses_capped);
                            self.referral_ds.store(
                                &child.zone,
                                &dnssec,
                                self.max_ttl,
                                self.clock.unix_seconds(),
                            );
                            return Ok(Reply::Referral(child));
                        }
                        Classified::Final(response) => return Ok(Reply::Final(response)),
                        Classified::Lame => {
                            tracing::debug!(%server, zone = %delegation.zone, "lame server");
                            self.infra.mark_lame(&delegation.zone, server);
                        }
                        Classified::ServerFailure => {
                            tracing::debug!(%server, zone = %delegation.zone, "server failure");
                            rcode_failure = true;
                            self.infra.record_failure(server);
                        }
                    }
                }
            }
        }
        Ok(Reply::Unreachable {
            rcode_failure,
            sub_error,
            asked: attempts,
        })
    }

    /// Adds the zone's name server names and every address known for them (glue or looked
    /// up, whether usable or not) to `into` (the policy's `nsdname`/`nsip` triggers).
    fn note_name_servers(&self, delegation: &Delegation, into: &mut crate::cache::NameServers) {
        let now = self.clock.unix_seconds();
        for name in delegation.name_servers.iter() {
            into.add_name(name.as_slice());
            for rtype in [Rtype::A, Rtype::AAAA] {
                self.delegations
                    .for_each_address(name, rtype, now, |address, _| into.add_address(address));
            }
        }
    }

    /// Addresses of the zone's servers we know and may use, in the order to try them: the
    /// best-ranked ones by SRTT, then parent-side glue that answers outranked (RFC 2181
    /// §5.4.1 ranks it lower; it is the fallback when the child's own addresses fail).
    fn server_addresses(&self, delegation: &Delegation) -> Vec<SocketAddr> {
        let now = self.clock.unix_seconds();
        let mut servers = Vec::new();
        let mut fallback = Vec::new();
        for name in delegation.name_servers.iter() {
            for rtype in self.address_types() {
                self.delegations
                    .for_each_address(name, rtype, now, |address, is_fallback| {
                        if self.address_allowed(address) {
                            let server = SocketAddr::new(address, self.config.upstream_port);
                            if !servers.contains(&server) && !fallback.contains(&server) {
                                if is_fallback {
                                    fallback.push(server);
                                } else {
                                    servers.push(server);
                                }
                            }
                        }
                    });
            }
        }
        fallback.retain(|server| !servers.contains(server));
        let mut ordered = self.infra.order(&delegation.zone, servers);
        if !fallback.is_empty() {
            ordered.extend(self.infra.order(&delegation.zone, fallback));
        }
        ordered
    }

    fn address_types(&self) -> impl Iterator<Item = Rtype> {
        let v4 = self.config.ipv4.then_some(Rtype::A);
        let v6 = self.config.ipv6.then_some(Rtype::AAAA);
        v4.into_iter().chain(v6)
    }

    /// Whether we may send to `address` (family switches, loopback rule, never multicast).
    fn address_allowed(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        let family_ok = match address {
            IpAddr::V4(_) => self.config.ipv4,
            IpAddr::V6(_) => self.config.ipv6,
        };
        if !family_ok || address.is_multicast() || address.is_unspecified() {
            return false;
        }
        if let IpAddr::V4(v4) = address {
            if v4.is_broadcast() {
                return false;
            }
        }
        self.config.allow_loopback_upstreams || !address.is_loopback()
    }

    /// Looks up the addresses of one name server without known addresses; `Ok(false)` when
    /// there is none left to look up.
    async fn resolve_name_server(
        &self,
        delegation: &Delegation,
        looked_up: &mut Vec<Name<Bytes>>,
        depth: u32,
        work: &mut Work,
    ) -> Result<bool, ResolveError> {
        let now = self.clock.unix_seconds();
        // A name server needs a lookup when none of its known addresses is usable and some
        // enabled address family is still unknown (no AAAA lookups when A glue is there).
        let pending = delegation.name_servers.iter().find(|name| {
            if looked_up.contains(name) {
                return false;
            }
            let mut unknown = false;
            for rtype in self.address_types() {
                match self.delegations.addresses(name, rtype, now) {
                    Some(list) if list.iter().any(|a| self.address_allowed(*a)) => return false,
                    Some(_) => {}
                    None => unknown = true,
                }
            }
            unknown
        });
        let Some(name) = pending.cloned() else {
            return Ok(false);
        };
        if looked_up.len() >= self.config.limits.max_ns_lookups_per_zone as usize {
            // NXNS (CVE-2020-12662): the other names of this cut are left alone.
            tracing::debug!(zone = %delegation.zone, "name server lookups per zone cut exhausted");
            return Err(work.limit(Limit::NameServerLookupsPerZone));
        }
        looked_up.push(name.clone());
        work.ns_lookups += 1;
        if work.ns_lookups > self.config.limits.max_ns_lookups {
            return Err(work.limit(Limit::NameServerLookups));
        }
        tracing::debug!(zone = %delegation.zone, name_server = %name, "glueless name server lookup");
        let mut found = false;
        let mut last_error = None;
        for rtype in self.address_types().collect::<Vec<_>>() {
            if found {
                // IPv6 addresses are asked for only when there is no usable IPv4 address
                // (avoid queries nobody needs).
                break;
            }
            if self.delegations.addresses(&name, rtype, now).is_some() {
                continue;
            }
            match self.resolve(name.clone(), rtype, depth + 1, work).await {
                Ok(outcome) => {
                    let (addresses, ttl) = addresses_of(&outcome, rtype);
                    found |= addresses.iter().any(|a| self.address_allowed(*a));
                    let ttl = ttl.min(self.max_ttl);
                    let capped = self.delegations.insert_addresses(
                        &name,
                        rtype,
                        Rank::Answer,
                        addresses,
                        ttl.max(1),
                        now,
                    );
                    work.note_limit(Limit::AddressesPerNameServer, capped);
                }
                Err(error) if is_fatal(&error) => return Err(error),
                Err(error) => last_error = Some(error),
            }
        }
        match (found, last_error) {
            (false, Some(error)) => Err(error),
            _ => Ok(true),
        }
    }

    /// Stores a referral's cut and glue; returns whether some name server's glue was cut
    /// down to `max_addresses_per_ns`.
    fn store_referral(&self, child: &Delegation, ttl: u32, glue: &[Rr]) -> bool {
        let now = self.clock.unix_seconds();
        let mut capped = false;
        self.delegations
            .insert_delegation(child, ttl.min(self.max_ttl), now);
        for name in child.name_servers.iter() {
            for rtype in [Rtype::A, Rtype::AAAA] {
                let records: Vec<&Rr> = glue
                    .iter()
                    .filter(|r| r.rtype() == rtype && same_name(r.owner(), name))
                    .collect();
                if records.is_empty() {
                    continue;
                }
                let ttl = records
                    .iter()
                    .map(|r| r.ttl().as_secs())
                    .min()
                    .unwrap_or(0)
                    .min(self.max_ttl);
                let addresses = records.iter().filter_map(|r| address_of(r)).collect();
                capped |=
                    self.delegations
                        .insert_addresses(name, rtype, Rank::Glue, addresses, ttl, now);
            }
        }
        capped
    }

    /// Whether the answer to the minimised probe for `probed` (from a server of `zone`) shows
    /// that every name below `probed` is redirected by a DNAME, where RFC 6672 §2.4 allows no
    /// other data and so no zone cut: a DNAME in the answer at or above `probed`, or a NODATA
    /// whose NSEC/NSEC3 record for `probed` lists DNAME (a probe for the NS RRset of a DNAME
    /// owner gets exactly that). The full name then goes only to the servers of the zone
    /// that holds the DNAME, which answer for everything below it anyway.
    fn redirected_below(
        &self,
        zone: &Name<Bytes>,
        probed: &Name<Bytes>,
        response: &Response,
    ) -> bool {
        if response
            .answer
            .iter()
            .any(|r| r.rtype() == Rtype::DNAME && is_at_or_below(probed, r.owner()))
        {
            return true;
        }
        if !response.answer.is_empty() {
            return false;
        }
        // NSEC3 owners hang below the apex the SOA names (the server may hold zones below the
        // cut it was asked as, without a referral in between).
        let apex = response
            .authority
            .iter()
            .find(|r| r.rtype() == Rtype::SOA && is_at_or_below(probed, r.owner()))
            .map_or_else(|| zone.clone(), |soa| lower(soa.owner()));
        crate::dnssec::dname_at(
            &apex,
            probed,
            &response.authority,
            self.config.dnssec.nsec3_max_iterations,
        )
    }

    /// Sorts one response from a server of `zone` to a query for `qname` (`minimised`: a
    /// QNAME-minimisation probe, which only asks whether there is a zone cut at `qname`).
    fn classify(
        &self,
        zone: &Name<Bytes>,
        qname: &Name<Bytes>,
        minimised: bool,
        mut response: Response,
    ) -> Classified {
        // YXDOMAIN is a DNAME substitution that would be too long (RFC 6672 §2.2): an answer.
        if ![Rcode::NOERROR, Rcode::NXDOMAIN, Rcode::YXDOMAIN].contains(&response.rcode) {
            return Classified::ServerFailure;
        }
        // Bailiwick: a server for `zone` can speak only for names at or below it.
        response.answer.retain(|r| is_at_or_below(r.owner(), zone));
        // The NS RRset of a referral is looked at before the authority section is cut down
        // to the bailiwick: an upward or sideways one marks the server as lame.
        let delegated = response
            .authority
            .iter()
            .find(|r| r.rtype() == Rtype::NS)
            .map(|r| lower(r.owner()));
        response
            .authority
            .retain(|r| is_at_or_below(r.owner(), zone));
        let has_soa = response.authority.iter().any(|r| r.rtype() == Rtype::SOA);
        if response.rcode == Rcode::NOERROR && response.answer.is_empty() && !has_soa {
            match delegated {
                Some(child) if is_below(&child, zone) && is_at_or_below(qname, &child) => {
                    return self.referral(zone, child, response);
                }
                // The zone's own NS RRset (RFC 2308 §2.2 type 3 NODATA): an answer when
                // authoritative. Without AA it still tells a minimising resolver that there
                // is no cut at `qname` (Knot Resolver reads it so); for the full question it
                // is a lame server's cached referral (Unbound throws it away likewise).
                Some(child) if child == *zone && !response.authoritative && !minimised => {
                    return Classified::Lame;
                }
                Some(child) if child == *zone => {}
                // Upward or sideways referral.
                Some(_) => return Classified::Lame,
                // An empty answer without authority: lame for the full question; for a
                // minimised probe, the NODATA of a server that leaves AA off (as Unbound
                // reads such answers).
                None if !response.authoritative && !minimised => return Classified::Lame,
                None => {}
            }
        }
        response.additional.clear();
        Classified::Final(response)
    }

    /// A referral from a server of `zone` to `child` (strictly below it). The cut keeps at
    /// most `max_ns_per_zone_cut` name servers, those with usable glue first (design 0051).
    fn referral(&self, zone: &Name<Bytes>, child: Name<Bytes>, response: Response) -> Classified {
        let ns: Vec<&Rr> = response
            .authority
            .iter()
            .filter(|r| r.rtype() == Rtype::NS && same_name(r.owner(), &child))
            .collect();
        // Owners of glue we could send to, within the bailiwick of the server that sent it:
        // a set, so that sorting thousands of names by it stays linear.
        let glued: std::collections::HashSet<Bytes, foldhash::fast::RandomState> = response
            .additional
            .iter()
            .filter(|r| address_of(r).is_some_and(|a| self.address_allowed(a)))
            .filter(|r| is_at_or_below(r.owner(), zone))
            .map(|r| lower(r.owner()).into_octets())
            .collect();
        let targets = ns.iter().filter_map(|record| match record.data() {
            AllRecordData::Ns(target) => Some(lower(target.nsdname())),
            _ => None,
        });
        let (name_servers, capped) = crate::delegation::keep_name_servers(
            targets,
            |name| glued.contains(name.as_slice()),
            self.config.limits.max_ns_per_zone_cut as usize,
        );
        let ttl = ns.iter().map(|r| r.ttl().as_secs()).min().unwrap_or(0);
        // The DS set or the proof that there is none, for the validator (RFC 4035 §3.1.4).
        let dnssec = response
            .authority
            .iter()
            .filter(|r| {
                matches!(r.rtype(), Rtype::DS | Rtype::NSEC | Rtype::NSEC3)
                    || rrsig_covers(r)
                        .is_some_and(|t| matches!(t, Rtype::DS | Rtype::NSEC | Rtype::NSEC3))
            })
            .cloned()
            .collect();
        // Glue: addresses of the new name servers, within the bailiwick of the server
        // that sent them; anything else in the additional section is ignored.
        let glue = response
            .additional
            .into_iter()
            .filter(|r| matches!(r.rtype(), Rtype::A | Rtype::AAAA))
            .filter(|r| is_at_or_below(r.owner(), zone))
            .filter(|r| name_servers.iter().any(|n| same_name(n, r.owner())))
            .collect();
        Classified::Referral {
            delegation: Delegation {
                zone: child,
                name_servers: name_servers.into(),
            },
            ttl,
            glue,
            capped,
            dnssec,
        }
    }
}

/// Appends the records of `more` that `to` does not have yet.
fn add_missing(to: &mut Vec<Rr>, more: Vec<Rr>) {
    for record in more {
        if !to.contains(&record) {
            to.push(record);
        }
    }
}

/// The NSEC/NSEC3 records (with their RRSIGs) of `authority` when `signatures` show a
/// wildcard expansion (an RRSIG with fewer labels than its owner): the proof that the owner
/// does not exist, kept with the expanded record for the validator.
fn wildcard_proof(signatures: &[Rr], authority: &[Rr]) -> Vec<Rr> {
    let expanded = signatures.iter().any(|r| match r.data() {
        AllRecordData::Rrsig(sig) => {
            usize::from(sig.labels()) < crate::dnssec::rrsig_labels(r.owner())
        }
        _ => false,
    });
    if !expanded {
        return Vec::new();
    }
    crate::names::nsec_records(authority)
}

/// RRSIGs in `records` at `owner` covering `covered`.
fn signatures<'a>(
    records: &'a [Rr],
    owner: &'a Name<Bytes>,
    covered: Rtype,
) -> impl Iterator<Item = Rr> + 'a {
    records
        .iter()
        .filter(move |r| same_name(r.owner(), owner) && rrsig_covers(r) == Some(covered))
        .cloned()
}

fn address_of(record: &Rr) -> Option<IpAddr> {
    match record.data() {
        AllRecordData::A(a) => Some(IpAddr::V4(a.addr())),
        AllRecordData::Aaaa(aaaa) => Some(IpAddr::V6(aaaa.addr())),
        _ => None,
    }
}

/// Addresses of type `rtype` in an outcome and how long to keep them (the negative TTL when
/// there are none).
fn addresses_of(outcome: &Outcome, rtype: Rtype) -> (Vec<IpAddr>, u32) {
    let records: Vec<&Rr> = outcome
        .answer
        .iter()
        .filter(|r| r.rtype() == rtype)
        .collect();
    if records.is_empty() {
        let ttl = outcome
            .authority
            .iter()
            .find_map(|r| match r.data() {
                AllRecordData::Soa(soa) => Some(r.ttl().as_secs().min(soa.minimum().as_secs())),
                _ => None,
            })
            .unwrap_or(0);
        return (Vec::new(), ttl);
    }
    let ttl = outcome
        .answer
        .iter()
        .filter(|r| !is_dnssec_type(r.rtype()))
        .map(|r| r.ttl().as_secs())
        .min()
        .unwrap_or(0);
    (records.into_iter().filter_map(address_of).collect(), ttl)
}
