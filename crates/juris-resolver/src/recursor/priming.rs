//! Root priming (RFC 8109): before the root servers are first asked about a name, one of the
//! hints is asked for the root NS set (`. NS`, RD=0); the answer's NS names and the addresses
//! in its additional section become the root cut until the NS TTL runs out, then the next
//! lookup that starts at the root primes again.
//!
//! The hints are the fallback: when priming fails (no answer, an answer without a root NS set
//! or without any usable address), the hints serve as the root NS set and priming is tried
//! again [`PRIME_RETRY_SECS`] later. Addresses the priming answer gives for names the hints
//! also list come first; the hints' own addresses stay behind them.
//!
//! # Limitations
//! - The priming answer is not validated (RFC 8109 §3.3 leaves it optional); the addresses
//!   are used as glue (rank below any answer for the names).

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use domain::base::iana::{Class, Rcode};
use domain::base::{Message, Name, Rtype, ToName};
use domain::rdata::{Aaaa, AllRecordData, A};

use super::{is_fatal, Recursor, Reply, Work};
use crate::delegation::Rank;
use crate::names::lower;
use crate::resolver::{Limit, ResolveError};

/// Seconds after a failed priming before the next attempt (the hints serve meanwhile).
pub(super) const PRIME_RETRY_SECS: u64 = 60;

impl Recursor {
    /// Primes the root NS set unless a priming answer is in force or a recent priming failed.
    /// A priming failure does not fail the lookup (the hints serve); only the client query's
    /// own budget and deadline do.
    pub(super) async fn ensure_primed(
        &self,
        depth: u32,
        work: &mut Work,
    ) -> Result<(), ResolveError> {
        if !self.config.root_priming || !self.priming_due() {
            return Ok(());
        }
        let _turn = self.priming.lock().await;
        // Another lookup may have primed while this one waited.
        if !self.priming_due() {
            return Ok(());
        }
        match self.prime(depth, work).await {
            Ok(servers) => {
                tracing::debug!(servers, "root primed");
                Ok(())
            }
            Err(error) if is_fatal(&error) => Err(error),
            Err(error) => {
                tracing::info!(%error, "root priming failed, using the root hints");
                self.prime_retry_at.store(
                    self.clock.unix_seconds() + PRIME_RETRY_SECS,
                    Ordering::Relaxed,
                );
                Ok(())
            }
        }
    }

    fn priming_due(&self) -> bool {
        let now = self.clock.unix_seconds();
        !self.delegations.root_primed(now) && now >= self.prime_retry_at.load(Ordering::Relaxed)
    }

    /// Asks the hints for `. NS` and stores the answer; returns the number of root servers.
    async fn prime(&self, depth: u32, work: &mut Work) -> Result<usize, ResolveError> {
        let hints = self.delegations.hints_root();
        let root = Name::root_bytes();
        let response = match self
            .query_zone(&hints, &root, Rtype::NS, false, depth, work)
            .await?
        {
            Reply::Final(response) => response,
            Reply::Referral(_) => {
                return Err(ResolveError::InvalidData(
                    "priming answered with a referral".into(),
                ))
            }
            Reply::Unreachable { .. } => {
                return Err(ResolveError::NoReachableAuthority(".".into()))
            }
        };
        if response.rcode != Rcode::NOERROR {
            return Err(ResolveError::InvalidData(format!(
                "priming answered {}",
                response.rcode
            )));
        }
        let mut targets: Vec<Name<Bytes>> = Vec::new();
        let mut ttl = u32::MAX;
        for record in &response.answer {
            if let AllRecordData::Ns(ns) = record.data() {
                if record.owner().is_root() {
                    targets.push(lower(ns.nsdname()));
                    ttl = ttl.min(record.ttl().as_secs());
                }
            }
        }
        if targets.is_empty() {
            return Err(ResolveError::InvalidData(
                "priming answer without a root NS set".into(),
            ));
        }
        // The root cut keeps at most `max_ns_per_zone_cut` names like any other, those with
        // usable addresses in the additional section first (design 0051).
        let mut addresses = additional_addresses(&response.wire, &targets);
        let (names, capped) = crate::delegation::keep_name_servers(
            targets,
            |name| {
                addresses
                    .iter()
                    .any(|(owner, address, _)| owner == name && self.address_allowed(*address))
            },
            self.config.limits.max_ns_per_zone_cut as usize,
        );
        work.note_limit(Limit::NameServersPerZoneCut, capped);
        addresses.retain(|(owner, _, _)| names.contains(owner));
        if !addresses
            .iter()
            .any(|(_, address, _)| self.address_allowed(*address))
        {
            return Err(ResolveError::InvalidData(
                "priming answer without a usable root server address".into(),
            ));
        }
        let now = self.clock.unix_seconds();
        for name in &names {
            for rtype in [Rtype::A, Rtype::AAAA] {
                let of_type: Vec<&(Name<Bytes>, IpAddr, u32)> = addresses
                    .iter()
                    .filter(|(owner, address, _)| {
                        owner == name && address.is_ipv4() == (rtype == Rtype::A)
                    })
                    .collect();
                let Some(glue_ttl) = of_type.iter().map(|(_, _, ttl)| *ttl).min() else {
                    continue;
                };
                let capped = self.delegations.insert_addresses(
                    name,
                    rtype,
                    Rank::Glue,
                    of_type.iter().map(|(_, address, _)| *address).collect(),
                    glue_ttl.min(self.max_ttl).max(1),
                    now,
                );
                work.note_limit(Limit::AddressesPerNameServer, capped);
            }
        }
        let count = names.len();
        self.delegations
            .insert_root(names.into(), ttl.min(self.max_ttl).max(1), now);
        Ok(count)
    }
}

/// The A and AAAA records of the additional section of `wire` owned by one of `names`
/// (lower-cased): (owner, address, TTL). A malformed section gives what was read before it.
fn additional_addresses(wire: &Bytes, names: &[Name<Bytes>]) -> Vec<(Name<Bytes>, IpAddr, u32)> {
    let mut found = Vec::new();
    let Ok(message) = Message::from_octets(wire.clone()) else {
        return found;
    };
    let Ok(section) = message.additional() else {
        return found;
    };
    for record in section {
        let Ok(record) = record else {
            break;
        };
        if record.class() != Class::IN {
            continue;
        }
        let Some(owner) = names.iter().find(|n| record.owner().name_eq(*n)) else {
            continue;
        };
        let ttl = record.ttl().as_secs();
        let address = match record.rtype() {
            Rtype::A => record
                .to_record::<A>()
                .ok()
                .flatten()
                .map(|r| IpAddr::V4(r.data().addr())),
            Rtype::AAAA => record
                .to_record::<Aaaa>()
                .ok()
                .flatten()
                .map(|r| IpAddr::V6(r.data().addr())),
            _ => None,
        };
        if let Some(address) = address {
            found.push((owner.clone(), address, ttl));
        }
    }
    found
}
