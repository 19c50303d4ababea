//! The validator: the chain of trust per zone (DS → DNSKEY from the closest trust anchor
//! down, cached per zone), then every RRset and denial of an outcome.
//!
//! ```text
//!  validate(outcome) ─► each answer RRset: signer zone ─► zone_keys(signer) ─► verify RRSIGs
//!                     └► negative / wildcard: SOA + NSEC/NSEC3 verified ─► denial proof
//!  zone_keys(Z): anchor at Z? DNSKEY vs anchor : DS(Z) from the parent (signed by zone_keys(P))
//!                ─► DNSKEY(Z) matched to a DS and self-signed ─► Secure(keys) | Insecure | Bogus
//! ```
//! Unsigned data is placed in its zone by a DS walk from the deepest known cut and is
//! bogus exactly when that zone is secure.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use domain::base::iana::Rcode;
use domain::base::{Name, Rtype, ToName};
use domain::rdata::{AllRecordData, Dnskey, Ds};

use super::aggressive::AggressiveNsec;
use super::canonical::rrsig_labels;
use super::denial::{delegation_at, nsec3_proof, nsec_proof, Claim, Nsec3Rr, NsecRr, Proof};
use super::sentinel::Sentinel;
use super::verify::{ds_matches, sigs_for, usable_ds, verify_rrset, Budget};
use super::{
    Bogus, BogusReason, Failure, Security, TrustAnchor, TrustAnchors, Unsupported, ValidatorConfig,
};
use crate::clock::SharedClock;
use crate::names::Rr;
use crate::recursor::Outcome;
use crate::resolver::ResolveError;

/// A boxed future (the chain of trust recurses towards the anchor).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the validator asks for DS, DNSKEY and SOA records: the resolution engine in use.
pub(crate) trait Fetcher: Send {
    /// Resolves `name`/`rtype` (DO=1, and CD=1 towards forwarders).
    fn fetch(
        &mut self,
        name: Name<Bytes>,
        rtype: Rtype,
    ) -> BoxFuture<'_, Result<Outcome, ResolveError>>;
    /// The closest zone cut at or above `name` the engine knows, if it keeps any.
    fn known_cut(&self, name: &Name<Bytes>) -> Option<Name<Bytes>>;
}

/// The state of one zone's keys.
#[derive(Debug, Clone)]
enum ZoneState {
    Secure(Arc<[Dnskey<Bytes>]>),
    /// Insecure; with EDE 1 or 2 when only because of unsupported algorithms or digests.
    Insecure(Option<Unsupported>),
    Bogus(Bogus),
}

impl ZoneState {
    fn insecure(&self) -> Security {
        match self {
            ZoneState::Insecure(Some(what)) => Security::Unsupported(*what),
            _ => Security::Insecure,
        }
    }
}

/// What one step of the DS walk found at a name.
enum Walk {
    /// No zone cut there: the name is in the same zone.
    NoCut,
    /// The name does not exist (proven): nothing below it is in another zone.
    NoName,
    /// Nothing proves a cut (an unsigned denial from the secure zone): the walk stops and
    /// the data is taken to be in the zone reached, which fails closed.
    Unproven,
    /// A zone cut: the child zone's state.
    Zone(ZoneState),
}

/// Bound on cached zone states (past it the map is pruned, then cleared).
pub(crate) const MAX_ZONES: usize = 50_000;
/// Longest time a zone's validated keys (or insecurity) are trusted without asking again.
const MAX_ZONE_TTL: u64 = 3_600;

/// The validator shared by every resolution.
#[derive(Debug)]
pub(crate) struct Validator {
    config: ValidatorConfig,
    anchors: TrustAnchors,
    negative: Vec<Name<Bytes>>,
    zones: Mutex<HashMap<Name<Bytes>, (ZoneState, u64)>>,
    /// Names the DS walk proved are no zone cut (signed denial of DS, no delegation), and
    /// until when.
    no_cuts: Mutex<HashMap<Name<Bytes>, u64>>,
    clock: SharedClock,
    /// Validated NSEC ranges (RFC 8198), when `aggressive_nsec` is on.
    aggressive: Option<AggressiveNsec>,
    /// Zones (and proven non-cuts) kept (`resolver.limits.validated_zones`).
    max_zones: usize,
}

struct Ctx<'f> {
    fetcher: &'f mut dyn Fetcher,
    budget: &'f mut Budget,
    /// Zones being validated, innermost last (a chain never revisits one).
    stack: Vec<Name<Bytes>>,
    /// A DS answer the DS walk already has, for the zone it names (not asked again).
    ds_known: Option<(Name<Bytes>, Outcome)>,
}

/// Deepest chain of zones validated for one answer.
const MAX_CHAIN: usize = 32;

impl Validator {
    /// A validator for `config` with its anchors already loaded.
    pub(crate) fn new(config: ValidatorConfig, anchors: TrustAnchors, clock: SharedClock) -> Self {
        let negative = config
            .negative_trust_anchors
            .iter()
            .filter_map(|n| super::parse_domain(n).ok())
            .collect();
        Self {
            anchors,
            negative,
            aggressive: config.aggressive_nsec.then(AggressiveNsec::default),
            config,
            zones: Mutex::new(HashMap::new()),
            no_cuts: Mutex::new(HashMap::new()),
            clock,
            max_zones: MAX_ZONES,
        }
    }

    /// Keeps at most `zones` zones' states (and as many proven non-cuts) and the NSEC
    /// ranges of at most `aggressive.0` zones, `aggressive.1` record sets and `aggressive.2`
    /// wildcard expansions per zone, `aggressive.3` bytes in all.
    pub(crate) fn with_limits(
        mut self,
        zones: usize,
        aggressive: (usize, usize, usize, usize),
    ) -> Self {
        self.max_zones = zones.max(1);
        if self.aggressive.is_some() {
            let (zones, ranges, wildcards, bytes) = aggressive;
            self.aggressive =
                Some(AggressiveNsec::with_max(zones, ranges, wildcards).with_max_bytes(bytes));
        }
        self
    }

    /// Zones (or parts of one) the aggressive NSEC store dropped to stay within its bytes.
    pub(crate) fn aggressive_evictions(&self) -> u64 {
        self.aggressive
            .as_ref()
            .map_or(0, AggressiveNsec::byte_evictions)
    }

    /// Keeps the NSEC/NSEC3 ranges and wildcard expansions of `outcome`, the answer to a
    /// `qtype` question just validated as `security` (RFC 8198).
    pub(crate) fn remember_denial(&self, qtype: Rtype, outcome: &Outcome, security: &Security) {
        if let (Some(aggressive), Security::Secure) = (&self.aggressive, security) {
            aggressive.remember(qtype, outcome, self.clock.unix_seconds());
        }
    }

    /// Forgets the aggressive-NSEC ranges that could deny a name `scope` covers.
    pub(crate) fn flush(&self, scope: crate::cache::FlushScope<'_>) {
        if let Some(aggressive) = &self.aggressive {
            aggressive.flush(scope);
        }
    }

    /// Whether answers for `name` are validated (a trust anchor above it, no negative one).
    pub(crate) fn covers(&self, name: &Name<Bytes>) -> bool {
        !self.under_nta(name) && self.anchors.closest(name).is_some()
    }

    /// Forgets the bogus chain-of-trust states of `name` and the zones above it, so that
    /// a re-query of other servers (design 0012, "Bogus data: other servers") starts afresh.
    pub(crate) fn forget_bogus(&self, name: &Name<Bytes>) {
        let mut zones = lock(&self.zones);
        zones.retain(|zone, (state, _)| !bogus_above(name, zone, state));
    }

    /// Whether the chain of trust of `name` is bogus: a zone at or above it has a bogus key
    /// state (its DS or DNSKEY set failed), as opposed to the answer's own data failing.
    pub(crate) fn chain_bogus(&self, name: &Name<Bytes>) -> bool {
        let now = self.clock.unix_seconds();
        let zones = lock(&self.zones);
        zones
            .iter()
            .any(|(zone, (state, until))| *until > now && bogus_above(name, zone, state))
    }

    /// A secure NXDOMAIN/NODATA for `qname`/`qtype` from validated cached NSEC/NSEC3
    /// ranges, or a secure answer from a cached wildcard expansion (RFC 8198).
    pub(crate) fn synthesise(&self, qname: &Name<Bytes>, qtype: Rtype) -> Option<Outcome> {
        let aggressive = self.aggressive.as_ref()?;
        if self.under_nta(qname) || self.anchors.closest(qname).is_none() {
            return None;
        }
        aggressive.synthesise(
            qname,
            qtype,
            self.clock.unix_seconds(),
            self.config.nsec3_max_iterations,
        )
    }

    /// RFC 8509 §3.2: `security` of the answer to `qname`/`qtype`, or bogus
    /// ([`BogusReason::RootKeySentinel`]) when the answer is secure and its sentinel label
    /// contradicts the root trust anchors. Anything not secure is returned as it is.
    pub(crate) fn root_key_sentinel(
        &self,
        qname: &Name<Bytes>,
        qtype: Rtype,
        security: Security,
    ) -> Security {
        if !self.config.root_key_sentinel || security != Security::Secure {
            return security;
        }
        match Sentinel::of(qname, qtype) {
            Some(sentinel) if sentinel.fails(&self.anchors) => Security::Bogus(Box::new(Bogus {
                reason: BogusReason::RootKeySentinel,
                text: sentinel.text(),
            })),
            _ => security,
        }
    }

    /// How long a bogus answer is kept.
    pub(crate) fn bogus_ttl(&self) -> u32 {
        u32::try_from(self.config.bogus_ttl.as_secs()).unwrap_or(u32::MAX)
    }

    /// Whether signatures of `algorithm` count: implemented, and DSA (3, 6) only when
    /// `validate_dsa` is on (RFC 8624 §3.1: MUST NOT validate).
    fn algorithm_allowed(&self, algorithm: domain::base::iana::SecurityAlgorithm) -> bool {
        super::verify::algorithm_supported(algorithm)
            && (self.config.validate_dsa || !matches!(algorithm.to_int(), 3 | 6))
    }

    fn under_nta(&self, name: &Name<Bytes>) -> bool {
        self.negative.iter().any(|n| name.ends_with(n))
    }

    fn now32(&self) -> u32 {
        // RRSIG times are serial numbers modulo 2^32 (RFC 4034 §3.1.5).
        self.clock.unix_seconds() as u32
    }

    /// The validation state of `outcome`, the resolution of `qname`/`qtype`.
    pub(crate) async fn validate(
        &self,
        qname: &Name<Bytes>,
        qtype: Rtype,
        outcome: &Outcome,
        fetcher: &mut dyn Fetcher,
        budget: &mut Budget,
    ) -> Security {
        if self.under_nta(qname) {
            return Security::Insecure;
        }
        if self.anchors.closest(qname).is_none() {
            return Security::Indeterminate;
        }
        let mut ctx = Ctx {
            fetcher,
            budget,
            stack: Vec::new(),
            ds_known: None,
        };
        let mut insecure: Option<Security> = None;
        let has_dname = outcome.answer.iter().any(|r| r.rtype() == Rtype::DNAME);
        let mut final_name = qname.clone();
        let mut positive = false;
        for (owner, rtype) in rrsets(&outcome.answer) {
            let records: Vec<&Rr> = outcome
                .answer
                .iter()
                .filter(|r| r.rtype() == rtype && r.owner().name_eq(&owner))
                .collect();
            if rtype == qtype || qtype == Rtype::ANY {
                positive = true;
            }
            if rtype == Rtype::CNAME || rtype == Rtype::DNAME {
                if let Some(target) = chain_target(&records) {
                    if rtype == Rtype::CNAME || qtype != Rtype::DNAME {
                        final_name = target;
                    }
                }
            }
            let sigs = sigs_for(&outcome.answer, &owner, rtype);
            // The CNAME we synthesised from a DNAME carries no signature: the DNAME does.
            if rtype == Rtype::CNAME && sigs.is_empty() && has_dname {
                continue;
            }
            match self
                .check_rrset(&owner, rtype, &records, &sigs, &outcome.authority, &mut ctx)
                .await
            {
                Security::Secure => {}
                Security::Bogus(b) => return Security::Bogus(b),
                other => insecure = Some(weaker(insecure, other)),
            }
        }
        if qtype == Rtype::RRSIG && outcome.answer.iter().any(|r| r.rtype() == Rtype::RRSIG) {
            // RRSIGs are not signed themselves (RFC 4035 §2.2): an answer to an RRSIG question
            // is passed on as it came, never with AD (as Unbound does).
            positive = true;
            insecure = Some(weaker(insecure, Security::Insecure));
        }
        let negative =
            !positive && (outcome.rcode == Rcode::NXDOMAIN || outcome.rcode == Rcode::NOERROR);
        if negative {
            let claim = if outcome.rcode == Rcode::NXDOMAIN {
                Claim::NoName
            } else {
                Claim::NoData(qtype)
            };
            match self
                .check_denial(&final_name, claim, &outcome.authority, &mut ctx)
                .await
            {
                Security::Secure => {}
                Security::Bogus(b) => return Security::Bogus(b),
                other => insecure = Some(weaker(insecure, other)),
            }
        }
        insecure.unwrap_or(Security::Secure)
    }

    /// One RRset of an answer.
    async fn check_rrset(
        &self,
        owner: &Name<Bytes>,
        rtype: Rtype,
        records: &[&Rr],
        sigs: &[&super::canonical::Sig],
        authority: &[Rr],
        ctx: &mut Ctx<'_>,
    ) -> Security {
        if sigs.is_empty() {
            let (zone, state) = self.zone_of_unsigned(owner, rtype, None, ctx).await;
            return match state {
                ZoneState::Secure(_) => Security::Bogus(Box::new(
                    Failure::bogus(BogusReason::RrsigsMissing, "RRSIGs missing").in_zone(&zone),
                )),
                state @ ZoneState::Insecure(_) => state.insecure(),
                ZoneState::Bogus(b) => Security::Bogus(Box::new(b)),
            };
        }
        // The signer named by the signatures (they must all agree for us to use them).
        let signer = sigs[0].signer_name().clone();
        if !owner.ends_with(&signer) {
            return Security::Bogus(Box::new(
                Failure::bogus(BogusReason::Bogus, "RRSIG signer is not above the owner")
                    .in_zone(&signer),
            ));
        }
        let signer = crate::names::lower(&signer);
        let keys = match self.zone_keys(signer.clone(), ctx).await {
            ZoneState::Secure(keys) => keys,
            state @ ZoneState::Insecure(_) => return state.insecure(),
            ZoneState::Bogus(b) => return Security::Bogus(Box::new(b)),
        };
        let same_signer: Vec<&super::canonical::Sig> = sigs
            .iter()
            .copied()
            .filter(|s| s.signer_name().name_eq(&signer))
            .collect();
        match verify_rrset(
            records,
            &same_signer,
            &signer,
            &keys,
            self.now32(),
            &mut *ctx.budget,
        ) {
            Ok(labels) if usize::from(labels) < rrsig_labels(owner) => {
                // A wildcard expansion: the owner itself must be proven not to exist.
                self.check_proof(
                    &signer,
                    &keys,
                    owner,
                    Claim::Wildcard(labels),
                    authority,
                    ctx,
                )
            }
            Ok(_) => Security::Secure,
            Err(failure) => Security::Bogus(Box::new(failure.in_zone(&signer))),
        }
    }

    /// A negative answer (NXDOMAIN or NODATA for `name`).
    async fn check_denial(
        &self,
        name: &Name<Bytes>,
        claim: Claim,
        authority: &[Rr],
        ctx: &mut Ctx<'_>,
    ) -> Security {
        let soa = authority.iter().find(|r| r.rtype() == Rtype::SOA);
        // The signer: of the SOA, else of any NSEC/NSEC3.
        let signer = authority.iter().find_map(|r| match r.data() {
            AllRecordData::Rrsig(sig)
                if matches!(sig.type_covered(), Rtype::SOA | Rtype::NSEC | Rtype::NSEC3) =>
            {
                Some(crate::names::lower(sig.signer_name()))
            }
            _ => None,
        });
        let Some(signer) = signer.filter(|s| name.ends_with(s)) else {
            // Nothing signed: fine only if the zone is insecure.
            let place = soa
                .map(|s| s.owner().clone())
                .unwrap_or_else(|| name.clone());
            // A signature in the response (on the zone's apex NS, say) names the zone whose
            // server answered.
            let answered_by = authority.iter().find_map(|r| match r.data() {
                AllRecordData::Rrsig(sig) if name.ends_with(sig.signer_name()) => {
                    Some(crate::names::lower(sig.signer_name()))
                }
                _ => None,
            });
            let (zone, state) = self
                .zone_of_unsigned(&place, Rtype::SOA, answered_by.as_ref(), ctx)
                .await;
            return match state {
                ZoneState::Secure(_) => Security::Bogus(Box::new(
                    Failure::bogus(
                        BogusReason::NsecMissing,
                        "denial of existence without NSEC/NSEC3 or signatures",
                    )
                    .in_zone(&zone),
                )),
                state @ ZoneState::Insecure(_) => state.insecure(),
                ZoneState::Bogus(b) => Security::Bogus(Box::new(b)),
            };
        };
        let keys = match self.zone_keys(signer.clone(), ctx).await {
            ZoneState::Secure(keys) => keys,
            state @ ZoneState::Insecure(_) => return state.insecure(),
            ZoneState::Bogus(b) => return Security::Bogus(Box::new(b)),
        };
        if let Some(soa) = soa {
            let records: Vec<&Rr> = authority
                .iter()
                .filter(|r| r.rtype() == Rtype::SOA && r.owner().name_eq(soa.owner()))
                .collect();
            let sigs = sigs_for(authority, soa.owner(), Rtype::SOA);
            if let Err(failure) = verify_rrset(
                &records,
                &sigs,
                &signer,
                &keys,
                self.now32(),
                &mut *ctx.budget,
            ) {
                return Security::Bogus(Box::new(failure.in_zone(&signer)));
            }
        }
        self.check_proof(&signer, &keys, name, claim, authority, ctx)
    }

    /// Verifies the NSEC/NSEC3 records of `authority` with the zone's keys, then the proof.
    fn check_proof(
        &self,
        zone: &Name<Bytes>,
        keys: &[Dnskey<Bytes>],
        name: &Name<Bytes>,
        claim: Claim,
        authority: &[Rr],
        ctx: &mut Ctx<'_>,
    ) -> Security {
        let mut nsecs: Vec<NsecRr<'_>> = Vec::new();
        let mut nsec3s: Vec<Nsec3Rr<'_>> = Vec::new();
        for record in authority {
            let rtype = record.rtype();
            if rtype != Rtype::NSEC && rtype != Rtype::NSEC3 {
                continue;
            }
            if !record.owner().ends_with(zone) {
                continue;
            }
            let sigs = sigs_for(authority, record.owner(), rtype);
            let set = [record];
            if let Err(failure) =
                verify_rrset(&set, &sigs, zone, keys, self.now32(), &mut *ctx.budget)
            {
                return Security::Bogus(Box::new(failure.in_zone(zone)));
            }
            match record.data() {
                AllRecordData::Nsec(nsec) => nsecs.push((record.owner(), nsec)),
                AllRecordData::Nsec3(nsec3) => nsec3s.push((record.owner(), nsec3)),
                _ => {}
            }
        }
        let proof = if !nsecs.is_empty() {
            nsec_proof(&nsecs, name, claim)
        } else if !nsec3s.is_empty() {
            nsec3_proof(&nsec3s, zone, name, claim, self.config.nsec3_max_iterations)
        } else {
            Proof::Missing
        };
        match proof {
            Proof::Proven => Security::Secure,
            Proof::Insecure => Security::Insecure,
            Proof::Missing => Security::Bogus(Box::new(
                Failure::bogus(
                    BogusReason::NsecMissing,
                    "no NSEC/NSEC3 proof of the denial",
                )
                .in_zone(zone),
            )),
            Proof::Limit => Security::Bogus(Box::new(
                Failure::limit("too many NSEC3 hash computations (limit)").in_zone(zone),
            )),
        }
    }

    /// The zone holding unsigned data at `owner` (DS lives in the parent) and its state.
    /// `answered_by`: a zone that signed records of the same response, if any (the server
    /// answered as that zone, so the data is in it).
    ///
    /// Found by walking down from the deepest zone cut the engine knows (else the closest
    /// trust anchor) towards the owner one label at a time, asking for DS as Unbound's
    /// validator does: a signed DS set leads into the child zone, a proven absence of DS at a
    /// delegation (or in an NSEC3 opt-out span) makes the child insecure, a proven absence
    /// anywhere else means there is no zone cut at that name. The walk stops as soon as the
    /// zone is not secure. No SOA query is needed, so parent and child zones on the same
    /// servers (no referral between them) are told apart by the parent's signed DS proofs.
    async fn zone_of_unsigned(
        &self,
        owner: &Name<Bytes>,
        rtype: Rtype,
        answered_by: Option<&Name<Bytes>>,
        ctx: &mut Ctx<'_>,
    ) -> (Name<Bytes>, ZoneState) {
        if self.under_nta(owner) {
            return (owner.clone(), ZoneState::Insecure(None));
        }
        let place = match (rtype, owner.parent()) {
            (Rtype::DS, Some(parent)) => parent,
            _ => owner.clone(),
        };
        if let Some(zone) = answered_by.filter(|z| place.ends_with(z)) {
            let state = self.zone_keys(zone.clone(), ctx).await;
            return (zone.clone(), state);
        }
        let Some(anchor) = self.anchors.closest(&place).map(|a| a.zone.clone()) else {
            return (place, ZoneState::Insecure(None));
        };
        let mut zone = match ctx.fetcher.known_cut(&place) {
            Some(cut) if cut.ends_with(&anchor) => cut,
            _ => anchor,
        };
        let mut state = self.zone_keys(zone.clone(), ctx).await;
        let mut labels = zone.label_count();
        while labels < place.label_count() {
            if !matches!(state, ZoneState::Secure(_)) {
                break;
            }
            labels += 1;
            let Some(next) = crate::names::suffix_with_labels(&place, labels) else {
                break;
            };
            match self.cut_at(&zone, &next, ctx).await {
                Walk::NoCut => {}
                Walk::NoName | Walk::Unproven => break,
                Walk::Zone(next_state) => {
                    zone = next;
                    state = next_state;
                }
            }
        }
        (zone, state)
    }

    /// One step of the DS walk: is `name` (one label below a name in the secure `zone`) a
    /// zone cut, and if so, what is the child zone's state?
    fn cut_at<'a>(
        &'a self,
        zone: &'a Name<Bytes>,
        name: &'a Name<Bytes>,
        ctx: &'a mut Ctx<'_>,
    ) -> BoxFuture<'a, Walk>
    where
        Self: Sync,
    {
        Box::pin(async move {
            let now = self.clock.unix_seconds();
            if let Some(state) = self.cached(name, now) {
                return Walk::Zone(state);
            }
            if self.known_no_cut(name, now) {
                return Walk::NoCut;
            }
            let outcome = match fetch(name, Rtype::DS, BogusReason::Bogus, ctx).await {
                Ok(outcome) => outcome,
                Err((state, _)) => return Walk::Zone(state),
            };
            if !records_at(&outcome, name, Rtype::DS).is_empty() {
                // A DS set: a zone cut; the child's keys come through the usual chain.
                ctx.ds_known = Some((name.clone(), outcome));
                let state = self.zone_keys(name.clone(), ctx).await;
                ctx.ds_known = None;
                return Walk::Zone(state);
            }
            // A CNAME cannot sit at a zone apex.
            if outcome
                .answer
                .iter()
                .any(|r| r.rtype() == Rtype::CNAME && r.owner().name_eq(name))
            {
                return Walk::NoCut;
            }
            let signed = outcome.authority.iter().any(|r| r.rtype() == Rtype::RRSIG);
            if !signed {
                // The secure zone denies DS without signatures: nothing proves a cut here, so
                // the data stays in the secure zone (and is bogus for its own missing RRSIGs:
                // fails closed, with the precise EDE 10), and nothing deeper is asked.
                return Walk::Unproven;
            }
            let nxdomain = outcome.rcode == Rcode::NXDOMAIN;
            let claim = if nxdomain {
                Claim::NoName
            } else {
                Claim::NoData(Rtype::DS)
            };
            let ttl = negative_ttl(&outcome).min(MAX_ZONE_TTL);
            match self
                .check_denial(name, claim, &outcome.authority, ctx)
                .await
            {
                Security::Bogus(b) => Walk::Zone(ZoneState::Bogus(*b)),
                Security::Secure if nxdomain => Walk::NoName,
                Security::Secure if !delegation_at(zone, name, &outcome.authority) => {
                    self.remember_no_cut(name.clone(), now + ttl);
                    Walk::NoCut
                }
                // A delegation without DS, or an opt-out span that may hide one: insecure.
                _ => {
                    let state = ZoneState::Insecure(None);
                    self.store(name.clone(), state.clone(), now + ttl);
                    Walk::Zone(state)
                }
            }
        })
    }

    fn known_no_cut(&self, name: &Name<Bytes>, now: u64) -> bool {
        lock(&self.no_cuts)
            .get(name)
            .is_some_and(|until| *until > now)
    }

    fn remember_no_cut(&self, name: Name<Bytes>, until: u64) {
        let now = self.clock.unix_seconds();
        let mut no_cuts = lock(&self.no_cuts);
        if no_cuts.len() >= self.max_zones {
            no_cuts.retain(|_, until| *until > now);
            if no_cuts.len() >= self.max_zones {
                no_cuts.clear();
            }
        }
        no_cuts.insert(name, until);
    }

    /// The validated keys of `zone` (or why there are none), from the cache or the chain.
    fn zone_keys<'a>(&'a self, zone: Name<Bytes>, ctx: &'a mut Ctx<'_>) -> BoxFuture<'a, ZoneState>
    where
        Self: Sync,
    {
        Box::pin(async move {
            let now = self.clock.unix_seconds();
            if let Some(state) = self.cached(&zone, now) {
                return state;
            }
            if ctx.stack.len() >= MAX_CHAIN || ctx.stack.contains(&zone) {
                // Inconsistent data (a DS denial from the zone itself...): not cached.
                return ZoneState::Bogus(
                    Failure::bogus(BogusReason::Bogus, "chain of trust loops").in_zone(&zone),
                );
            }
            ctx.stack.push(zone.clone());
            let (state, ttl) = self.compute_zone(&zone, ctx).await;
            ctx.stack.pop();
            let ttl = match state {
                ZoneState::Bogus(_) => u64::from(self.bogus_ttl()),
                _ => ttl.min(MAX_ZONE_TTL),
            };
            self.store(zone, state.clone(), now + ttl);
            state
        })
    }

    fn cached(&self, zone: &Name<Bytes>, now: u64) -> Option<ZoneState> {
        let zones = lock(&self.zones);
        zones
            .get(zone)
            .filter(|(_, until)| *until > now)
            .map(|(state, _)| state.clone())
    }

    fn store(&self, zone: Name<Bytes>, state: ZoneState, until: u64) {
        let now = self.clock.unix_seconds();
        let mut zones = lock(&self.zones);
        if zones.len() >= self.max_zones {
            zones.retain(|_, (_, until)| *until > now);
            if zones.len() >= self.max_zones {
                zones.clear();
            }
        }
        zones.insert(zone, (state, until));
    }

    /// The chain-of-trust step for one zone; the state and how long it holds.
    async fn compute_zone(&self, zone: &Name<Bytes>, ctx: &mut Ctx<'_>) -> (ZoneState, u64) {
        if self.under_nta(zone) {
            return (ZoneState::Insecure(None), MAX_ZONE_TTL);
        }
        let Some(anchor) = self.anchors.closest(zone) else {
            return (ZoneState::Insecure(None), MAX_ZONE_TTL);
        };
        if anchor.zone.name_eq(zone) {
            return self.keys_from_anchor(anchor, ctx).await;
        }
        let known = ctx.ds_known.take_if(|(name, _)| name.name_eq(zone));
        let outcome = match known {
            Some((_, outcome)) => outcome,
            None => match fetch(zone, Rtype::DS, BogusReason::Bogus, ctx).await {
                Ok(outcome) => outcome,
                Err(failed) => return failed,
            },
        };
        let ds_records = records_at(&outcome, zone, Rtype::DS);
        if ds_records.is_empty() {
            return self.no_ds(zone, &outcome, ctx).await;
        }
        let sigs = sigs_for(&outcome.answer, zone, Rtype::DS);
        let ttl = min_ttl(&ds_records);
        let Some(parent) = sigs
            .first()
            .map(|s| crate::names::lower(s.signer_name()))
            .filter(|p| zone.ends_with(p) && p.label_count() < zone.label_count())
        else {
            // Unsigned DS: bogus if the parent is secure.
            let parent = zone.parent().unwrap_or_else(Name::root_bytes);
            let (_, state) = self.zone_of_unsigned(&parent, Rtype::SOA, None, ctx).await;
            return match state {
                ZoneState::Secure(_) => (
                    ZoneState::Bogus(
                        Failure::bogus(BogusReason::RrsigsMissing, "DS without RRSIG")
                            .in_zone(zone),
                    ),
                    0,
                ),
                other => (other, ttl),
            };
        };
        let parent_keys = match self.zone_keys(parent.clone(), ctx).await {
            ZoneState::Secure(keys) => keys,
            other => return (other, ttl),
        };
        if let Err(failure) = verify_rrset(
            &ds_records,
            &sigs,
            &parent,
            &parent_keys,
            self.now32(),
            &mut *ctx.budget,
        ) {
            return (ZoneState::Bogus(failure.in_zone(&parent)), 0);
        }
        let ds: Vec<Ds<Bytes>> = ds_records
            .iter()
            .filter_map(|r| match r.data() {
                AllRecordData::Ds(ds) => Some(ds.clone()),
                _ => None,
            })
            .collect();
        let (state, key_ttl) = self.keys_from_ds(zone, &ds, &[], ctx).await;
        (state, ttl.min(key_ttl))
    }

    /// No DS at `zone`: an insecure delegation if the parent proves it.
    async fn no_ds(
        &self,
        zone: &Name<Bytes>,
        outcome: &Outcome,
        ctx: &mut Ctx<'_>,
    ) -> (ZoneState, u64) {
        let ttl = negative_ttl(outcome);
        // The denial must come from above the cut.
        let signer = outcome.authority.iter().find_map(|r| match r.data() {
            AllRecordData::Rrsig(sig) => Some(crate::names::lower(sig.signer_name())),
            _ => None,
        });
        if let Some(signer) = &signer {
            if signer.label_count() >= zone.label_count() {
                return (
                    ZoneState::Bogus(
                        Failure::bogus(BogusReason::Bogus, "DS denial from below the zone cut")
                            .in_zone(zone),
                    ),
                    0,
                );
            }
        }
        match self
            .check_denial(
                zone,
                if outcome.rcode == Rcode::NXDOMAIN {
                    Claim::NoName
                } else {
                    Claim::NoData(Rtype::DS)
                },
                &outcome.authority,
                ctx,
            )
            .await
        {
            Security::Bogus(b) => (ZoneState::Bogus(*b), 0),
            // Proven absent (or provably unprovable): the delegation is insecure.
            _ => (ZoneState::Insecure(None), ttl),
        }
    }

    /// The zone's DNSKEY set, accepted when a key matches one of the usable DS records (or is
    /// an anchor key) and signs the set.
    async fn keys_from_ds(
        &self,
        zone: &Name<Bytes>,
        ds: &[Ds<Bytes>],
        anchor_keys: &[Dnskey<Bytes>],
        ctx: &mut Ctx<'_>,
    ) -> (ZoneState, u64) {
        let usable: Vec<&Ds<Bytes>> = usable_ds(ds)
            .into_iter()
            .filter(|d| self.algorithm_allowed(d.algorithm()))
            .collect();
        let anchor_keys: Vec<&Dnskey<Bytes>> = anchor_keys
            .iter()
            .filter(|k| self.algorithm_allowed(k.algorithm()))
            .collect();
        if usable.is_empty() && anchor_keys.is_empty() {
            // RFC 4035 §5.2, RFC 8624: only unsupported algorithms or digests.
            let digest_only = ds.iter().any(|d| self.algorithm_allowed(d.algorithm()));
            let code = if digest_only {
                Unsupported::DsDigestType
            } else {
                Unsupported::DnskeyAlgorithm
            };
            return (ZoneState::Insecure(Some(code)), MAX_ZONE_TTL);
        }
        let outcome = match fetch(zone, Rtype::DNSKEY, BogusReason::DnskeyMissing, ctx).await {
            Ok(outcome) => outcome,
            Err(failed) => return failed,
        };
        let records = records_at(&outcome, zone, Rtype::DNSKEY);
        let keys: Vec<Dnskey<Bytes>> = records
            .iter()
            .filter_map(|r| match r.data() {
                AllRecordData::Dnskey(key) => Some(key.clone()),
                _ => None,
            })
            .collect();
        let ttl = min_ttl(&records);
        let trusted: Vec<Dnskey<Bytes>> = keys
            .iter()
            .filter(|key| {
                usable.iter().any(|d| ds_matches(zone, d, key)) || anchor_keys.contains(key)
            })
            .cloned()
            .collect();
        if trusted.is_empty() {
            return (
                ZoneState::Bogus(
                    Failure::bogus(
                        BogusReason::DnskeyMissing,
                        "no DNSKEY matches the DS or trust anchor",
                    )
                    .in_zone(zone),
                ),
                0,
            );
        }
        let sigs = sigs_for(&outcome.answer, zone, Rtype::DNSKEY);
        match verify_rrset(
            &records,
            &sigs,
            zone,
            &trusted,
            self.now32(),
            &mut *ctx.budget,
        ) {
            Ok(_) => {
                // Keys of a disallowed algorithm (DSA unless `validate_dsa`) validate nothing.
                // Copied out of the DNSKEY answer's buffer, which a kept key would otherwise
                // keep whole for as long as the zone's state is kept (design 0048).
                let keys: Vec<Dnskey<Bytes>> = keys
                    .into_iter()
                    .filter(|k| self.algorithm_allowed(k.algorithm()))
                    .map(|k| {
                        let key = Bytes::copy_from_slice(k.public_key());
                        Dnskey::new(k.flags(), k.protocol(), k.algorithm(), key).unwrap_or(k)
                    })
                    .collect();
                (ZoneState::Secure(keys.into()), ttl)
            }
            Err(failure) => (ZoneState::Bogus(failure.in_zone(zone)), 0),
        }
    }

    async fn keys_from_anchor(&self, anchor: &TrustAnchor, ctx: &mut Ctx<'_>) -> (ZoneState, u64) {
        self.keys_from_ds(&anchor.zone, &anchor.ds, &anchor.dnskeys, ctx)
            .await
    }
}

/// The state of an answer with a part in `so_far` and one in `next` (neither secure nor bogus).
fn weaker(so_far: Option<Security>, next: Security) -> Security {
    match (so_far, next) {
        (Some(Security::Unsupported(code)), _) | (_, Security::Unsupported(code)) => {
            Security::Unsupported(code)
        }
        (Some(state), _) if state != Security::Secure => state,
        (_, next) => next,
    }
}

/// Asks for `zone`/`rtype`; a failed lookup makes the zone bogus with `code`.
async fn fetch(
    zone: &Name<Bytes>,
    rtype: Rtype,
    code: BogusReason,
    ctx: &mut Ctx<'_>,
) -> Result<Outcome, (ZoneState, u64)> {
    ctx.fetcher.fetch(zone.clone(), rtype).await.map_err(|_| {
        let reason = if rtype == Rtype::DS {
            "DS lookup failed"
        } else {
            "DNSKEY lookup failed"
        };
        (
            ZoneState::Bogus(Failure::bogus(code, reason).in_zone(zone)),
            0,
        )
    })
}

/// How long a negative answer holds: the SOA's negative TTL (RFC 2308 §5), 60 s without SOA.
fn negative_ttl(outcome: &Outcome) -> u64 {
    outcome
        .authority
        .iter()
        .find_map(|r| match r.data() {
            AllRecordData::Soa(soa) => {
                Some(u64::from(r.ttl().as_secs().min(soa.minimum().as_secs())))
            }
            _ => None,
        })
        .unwrap_or(60)
}

/// The answer records of type `rtype` at `zone`.
fn records_at<'a>(outcome: &'a Outcome, zone: &Name<Bytes>, rtype: Rtype) -> Vec<&'a Rr> {
    outcome
        .answer
        .iter()
        .filter(|r| r.rtype() == rtype && r.owner().name_eq(zone))
        .collect()
}

/// Distinct (owner, type) of the records, RRSIGs left out, in order of appearance.
fn rrsets(records: &[Rr]) -> Vec<(Name<Bytes>, Rtype)> {
    let mut out: Vec<(Name<Bytes>, Rtype)> = Vec::new();
    for record in records {
        if record.rtype() == Rtype::RRSIG {
            continue;
        }
        if !out
            .iter()
            .any(|(o, t)| *t == record.rtype() && o.name_eq(record.owner()))
        {
            out.push((record.owner().clone(), record.rtype()));
        }
    }
    out
}

fn chain_target(records: &[&Rr]) -> Option<Name<Bytes>> {
    records.iter().find_map(|r| match r.data() {
        AllRecordData::Cname(c) => Some(crate::names::lower(c.cname())),
        _ => None,
    })
}

fn min_ttl(records: &[&Rr]) -> u64 {
    records
        .iter()
        .map(|r| u64::from(r.ttl().as_secs()))
        .min()
        .unwrap_or(0)
}

/// The guard, also after a panic elsewhere poisoned the mutex (the data stays usable).
/// Whether `state`, the key state of `zone`, is bogus and `zone` is at or above `name`.
fn bogus_above(name: &Name<Bytes>, zone: &Name<Bytes>, state: &ZoneState) -> bool {
    matches!(state, ZoneState::Bogus(_)) && name.ends_with(zone)
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::names::testing::{name, record};
    use domain::base::iana::{DigestAlgorithm, SecurityAlgorithm};
    use domain::base::Ttl;
    use domain::rdata::dnssec::{RtypeBitmap, Timestamp};
    use domain::rdata::{Nsec, Rrsig, A};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    const NOW: u64 = 1_700_000_000;
    const ALGORITHM: SecurityAlgorithm = SecurityAlgorithm::ECDSAP256SHA256;

    /// A zone's one key (ECDSA P-256, made by ring) and what it signs.
    struct Signer {
        zone: Name<Bytes>,
        key: EcdsaKeyPair,
        dnskey: Dnskey<Bytes>,
    }

    impl Signer {
        fn new(zone: &str) -> Self {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            // DNSKEY holds x | y, without the uncompressed-point prefix (RFC 6605 §4).
            let public = Bytes::copy_from_slice(&key.public_key().as_ref()[1..]);
            let dnskey = Dnskey::new(257, 3, ALGORITHM, public).unwrap();
            Self {
                zone: name(zone),
                key,
                dnskey,
            }
        }

        /// The trust anchor text: the DS of the key.
        fn anchor(&self) -> String {
            let digest =
                super::super::verify::ds_digest(&self.zone, &self.dnskey, DigestAlgorithm::SHA256)
                    .unwrap();
            let hex: String = digest.iter().map(|b| format!("{b:02X}")).collect();
            format!("{} IN DS {} 13 2 {hex}\n", self.zone, self.dnskey.key_tag())
        }

        /// `rrset` followed by its RRSIG.
        fn sign(&self, rrset: Vec<Rr>) -> Vec<Rr> {
            let first = rrset[0].clone();
            let rrsig = |signature: Bytes| {
                Rrsig::new(
                    first.rtype(),
                    ALGORITHM,
                    u8::try_from(rrsig_labels(first.owner())).unwrap(),
                    first.ttl(),
                    Timestamp::from(u32::try_from(NOW + 86_400).unwrap()),
                    Timestamp::from(u32::try_from(NOW - 86_400).unwrap()),
                    self.dnskey.key_tag(),
                    self.zone.clone(),
                    signature,
                )
                .unwrap()
            };
            let refs: Vec<&Rr> = rrset.iter().collect();
            let data = super::super::canonical::signed_data(&rrsig(Bytes::new()), &refs).unwrap();
            let signature = self.key.sign(&SystemRandom::new(), &data).unwrap();
            let mut out = rrset;
            out.push(Rr::new(
                first.owner().clone(),
                first.class(),
                first.ttl(),
                AllRecordData::Rrsig(rrsig(Bytes::copy_from_slice(signature.as_ref()))),
            ));
            out
        }

        fn dnskey_answer(&self) -> Outcome {
            let dnskey = Rr::new(
                self.zone.clone(),
                domain::base::iana::Class::IN,
                Ttl::from_secs(3600),
                AllRecordData::Dnskey(self.dnskey.clone()),
            );
            answer(self.sign(vec![dnskey]))
        }

        /// A signed NODATA for a DS question: the zone's SOA and an NSEC at `owner`.
        fn no_ds(&self, owner: &str, types: &[Rtype]) -> Outcome {
            let soa = crate::names::testing::soa(&self.zone.to_string(), 300, 300);
            let mut bitmap = RtypeBitmap::<Bytes>::builder();
            for t in types {
                bitmap.add(*t).unwrap();
            }
            let nsec = record(
                owner,
                300,
                AllRecordData::Nsec(Nsec::new(name("zzz."), bitmap.finalize())),
            );
            let mut authority = self.sign(vec![soa]);
            authority.extend(self.sign(vec![nsec]));
            Outcome {
                rcode: Rcode::NOERROR,
                answer: Vec::new(),
                authority,
                verbatim: None,
            }
        }
    }

    fn answer(records: Vec<Rr>) -> Outcome {
        Outcome {
            rcode: Rcode::NOERROR,
            answer: records,
            authority: Vec::new(),
            verbatim: None,
        }
    }

    /// Canned answers by (name, type); records every question.
    struct Canned {
        answers: HashMap<(String, Rtype), Outcome>,
        asked: Vec<(String, Rtype)>,
    }

    impl Fetcher for Canned {
        fn fetch(
            &mut self,
            name: Name<Bytes>,
            rtype: Rtype,
        ) -> BoxFuture<'_, Result<Outcome, ResolveError>> {
            let key = (name.to_string(), rtype);
            self.asked.push(key.clone());
            let result = self
                .answers
                .get(&key)
                .cloned()
                .ok_or(ResolveError::NoReachableAuthority(key.0));
            Box::pin(async move { result })
        }

        /// The root: no referral was seen (parent and child on the same servers).
        fn known_cut(&self, _: &Name<Bytes>) -> Option<Name<Bytes>> {
            Some(Name::root_bytes())
        }
    }

    /// Validates the unsigned `www.child.` A under the signed root, whose DS answers for
    /// `child.` and `www.child.` are `child` and `www` (an NSEC's type list at that name).
    async fn unsigned_below_root(
        child: &[Rtype],
        www: &[Rtype],
    ) -> (Security, Vec<(String, Rtype)>) {
        let root = Signer::new(".");
        let anchors =
            TrustAnchors::parse(&root.anchor(), std::path::Path::new("root.key")).unwrap();
        let clock: SharedClock = std::sync::Arc::new(ManualClock::new(NOW));
        let validator = Validator::new(ValidatorConfig::default(), anchors, clock);
        let mut fetcher = Canned {
            answers: HashMap::from([
                ((".".into(), Rtype::DNSKEY), root.dnskey_answer()),
                (("child".into(), Rtype::DS), root.no_ds("child.", child)),
                (
                    ("www.child".into(), Rtype::DS),
                    root.no_ds("www.child.", www),
                ),
            ]),
            asked: Vec::new(),
        };
        let data = answer(vec![record(
            "www.child.",
            300,
            AllRecordData::A(A::new([192, 0, 2, 1].into())),
        )]);
        let security = validator
            .validate(
                &name("www.child."),
                Rtype::A,
                &data,
                &mut fetcher,
                &mut Budget::default(),
            )
            .await;
        (security, fetcher.asked)
    }

    #[tokio::test]
    async fn unsigned_data_below_a_proven_delegation_without_ds_is_insecure_without_an_soa_query() {
        let (security, asked) =
            unsigned_below_root(&[Rtype::NS, Rtype::RRSIG, Rtype::NSEC], &[]).await;
        assert_eq!(security, Security::Insecure);
        assert_eq!(
            asked,
            [
                (".".to_string(), Rtype::DNSKEY),
                ("child".to_string(), Rtype::DS)
            ],
            "the DS walk stops at the insecure delegation"
        );
    }

    #[tokio::test]
    async fn unsigned_data_where_the_ds_walk_finds_no_cut_is_bogus() {
        let names = [Rtype::A, Rtype::RRSIG, Rtype::NSEC];
        let (security, asked) = unsigned_below_root(&names, &names).await;
        let bogus = security.bogus().expect("bogus");
        assert_eq!(bogus.reason, BogusReason::RrsigsMissing, "{bogus:?}");
        assert!(asked.iter().all(|(_, t)| *t != Rtype::SOA), "{asked:?}");
        assert!(
            asked.contains(&("www.child".to_string(), Rtype::DS)),
            "{asked:?}"
        );
    }
}
