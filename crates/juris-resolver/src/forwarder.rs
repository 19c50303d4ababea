//! Forward mode: every question goes to configured upstream resolvers (RD=1), the fastest
//! healthy one first; the answer is cached like a recursive one.
//!
//! Health: each upstream has a smoothed RTT; timeouts and error RCODEs push it down the order
//! and, when repeated, take it out of rotation for a back-off period after which it is tried
//! again (see [`crate::infra`]).
//!
//! # Limitations
//! - The upstreams' answers are trusted as they are (no bailiwick checks: they are
//!   resolvers, not authorities); only records of class IN are kept.
//! - Configured upstreams are used even on loopback: they are the operator's explicit choice,
//!   so `allow_loopback_upstreams` governs only addresses learnt from the DNS.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use domain::base::iana::Rcode;
use domain::base::{Name, Rtype};
use tokio::time::Instant;

use crate::infra::InfraCache;
use crate::names::{rrsig_covers, Rr};
use crate::outstanding::Outstanding;
use crate::recursor::{Outcome, Work};
use crate::resolver::{Question, ResolveError, ResolverConfig};
use crate::tcp_pool::{TcpLimits, TcpPool};
use crate::upstream::{self, QueryOptions, UpstreamError};

/// The forwarding engine.
#[derive(Debug)]
pub(crate) struct Forwarder {
    config: Arc<ResolverConfig>,
    upstreams: Vec<SocketAddr>,
    infra: InfraCache,
    /// Upstream queries out (the total cap; zones are the upstreams' business).
    outstanding: Outstanding,
    /// This resolver's upstream TCP connections (`resolver.limits.tcp_*`).
    tcp: Arc<TcpPool>,
}

impl Forwarder {
    pub(crate) fn new(config: Arc<ResolverConfig>, upstreams: Vec<SocketAddr>) -> Self {
        let outstanding = Outstanding::new(config.limits.max_outstanding, 0);
        let infra = InfraCache::with_max(crate::resolver::table_bound(config.limits.infra_servers));
        let tcp = Arc::new(TcpPool::new(TcpLimits::from(&config.limits)));
        Self {
            config,
            upstreams,
            infra,
            outstanding,
            tcp,
        }
    }

    /// The upstream TCP connections of this engine.
    #[cfg(test)]
    pub(crate) fn tcp_pool(&self) -> &TcpPool {
        &self.tcp
    }

    /// Asks the upstreams in health order until one gives a usable answer.
    pub(crate) async fn forward(
        &self,
        question: &Question,
        work: &mut Work,
    ) -> Result<Outcome, ResolveError> {
        let root: Name<Bytes> = Name::root_bytes();
        let order = self.infra.order(&root, self.upstreams.clone());
        for server in order {
            let started = Instant::now();
            work.count_query(self.config.limits.max_upstream_queries, started)?;
            let options = QueryOptions {
                recursion_desired: true,
                // juris validates itself: the upstream hands over bogus data too (and DO=1
                // is always sent), so the EDE is ours.
                checking_disabled: question.checking_disabled
                    || (self.config.dnssec.enabled
                        && !self
                            .config
                            .dnssec
                            .forwarders_without_dnssec
                            .contains(&server)),
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
                let _permit = self
                    .outstanding
                    .acquire(None)
                    .map_err(|limit| work.limit(limit))?;
                upstream::ask(
                    &self.infra,
                    server,
                    &question.name,
                    question.qtype,
                    &options,
                )
                .await
            };
            match answer {
                Ok(response)
                    if response.rcode == Rcode::NOERROR || response.rcode == Rcode::NXDOMAIN =>
                {
                    self.infra.record_rtt(server, started.elapsed());
                    work.answered_by = Some(server);
                    // SOA, NSEC/NSEC3 and their RRSIGs: the negative answer's proof, or a
                    // wildcard expansion's.
                    let authority = response
                        .authority
                        .into_iter()
                        .filter(is_negative_proof)
                        .collect();
                    return Ok(Outcome {
                        rcode: response.rcode,
                        answer: response.answer,
                        authority,
                        verbatim: Some(response.wire),
                    });
                }
                Ok(response) => {
                    tracing::debug!(%server, rcode = %response.rcode, "forwarder failed");
                    self.infra.record_failure(server);
                }
                Err(UpstreamError::Timeout) => {
                    tracing::debug!(%server, "forwarder timeout");
                    self.infra.record_timeout(server);
                    if Instant::now() >= work.deadline {
                        return Err(ResolveError::Timeout);
                    }
                }
                Err(error) => {
                    tracing::debug!(%server, %error, "forwarder error");
                    self.infra.record_failure(server);
                }
            }
        }
        Err(ResolveError::NoReachableAuthority("forwarders".into()))
    }
}

fn is_negative_proof(record: &Rr) -> bool {
    matches!(record.rtype(), Rtype::SOA | Rtype::NSEC | Rtype::NSEC3)
        || rrsig_covers(record)
            .is_some_and(|t| matches!(t, Rtype::SOA | Rtype::NSEC | Rtype::NSEC3))
}
