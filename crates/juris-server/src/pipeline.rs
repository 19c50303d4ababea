//! The query pipeline, one code path for every transport.
//!
//! ```text
//!  bytes ─► access list ─► parse ─► question screening ─► HOOK classify
//!        ─► HOOK withdrawn? REFUSED + EDE 18
//!        ─► HOOK check_query (query name) ─► block? synthesised answer (crate::block)
//!        ─► ANY? RFC 8482 answer
//!        ─► cache (fresh) ─► HOOK check_answer ─► block? synthesised : render_answer
//!        ─► cache (stale or miss) ─► Outcome::Resolve(PendingQuery)
//!              └─► Pipeline::answer_pending (async): Resolver::resolve
//!                    ok    ─► HOOK check_answer ─► block? synthesised : render_answer
//!                    error ─► stale entry? render it (stale TTL, EDE 3) : SERVFAIL + EDE
//! ```
//! [`Pipeline::handle`] is synchronous and allocation-free when no order matches (cache hits
//! are answered inline by the transport's own thread); only misses allocate a
//! [`PendingQuery`] and go async, and only blocks allocate their verdict and EDE text. The
//! cache holds unfiltered answers only: blocked answers are synthesised per query.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domain::base::iana::{Class, Rtype};
use domain::base::Name;
use juris_geo::{CountryCode, Jurisdiction};
use juris_policy::{Block, CompiledPolicy};
use juris_resolver::cache::{
    query_wants_ad, AnswerCache, AnswerKind, CacheKeyRef, CachedAnswer, FlushScope, Freshness,
};
use juris_resolver::clock::{timestamp, SharedClock};
use juris_resolver::wire::{HEADER_LEN, MAX_NAME_LEN};
use juris_resolver::{FlushReport, Question, Resolver};

use crate::acl::AccessList;
use crate::block::{self, BlockSettings, Trigger};
use crate::config::{DeniedAction, ServerConfig};
use crate::counters::Counters;
use crate::error_map::{self, ErrorAnswer};
use crate::hooks::{self, Tally};
use crate::hot::HotAnswers;
use crate::policy::{policy_country, PolicyEngine};
use crate::proxy::ProxyTrust;
use crate::query::{parse_query, ClientSubnet, NameBuf, ParseConfig, ParseError, Query};
use crate::ratelimit::{RateClass, RateLimitConfig, RateLimiter, Verdict};
use crate::synth::{
    self, opt_len, write_opt, EcsReply, ExtendedError, OptReply, Rcode, ReplyTo, ResponseBuilder,
};

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP (responses limited to the client's payload size, TC=1 beyond it).
    Udp,
    /// TCP (RFC 7766; responses up to 65535 bytes, never TC).
    Tcp,
    /// DNS over TLS (RFC 7858; as TCP for the response size).
    Dot,
    /// DNS over HTTPS (RFC 8484; as TCP for the response size).
    Doh,
    /// DNS over QUIC (RFC 9250; as TCP for the response size).
    Doq,
}

impl Transport {
    /// Whether the transport is encrypted (DoT, DoH, DoQ): responses to padded queries are
    /// padded there (RFC 8467), never over plain UDP or TCP.
    pub fn is_encrypted(self) -> bool {
        matches!(self, Transport::Dot | Transport::Doh | Transport::Doq)
    }

    /// Position in [`crate::counters::TRANSPORT_LABELS`].
    #[inline]
    pub fn index(self) -> usize {
        match self {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Dot => 2,
            Transport::Doh => 3,
            Transport::Doq => 4,
        }
    }

    /// `udp`, `tcp`, `dot`, `doh` or `doq`.
    pub fn label(self) -> &'static str {
        crate::counters::TRANSPORT_LABELS[self.index()].1
    }
}

/// Who asked, as the jurisdiction classifier will need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientContext {
    /// The client's address and port as seen by the socket.
    pub client: SocketAddr,
    /// How the query arrived.
    pub transport: Transport,
    /// Index of the listener (in [`ServerConfig::listeners`]) that received it.
    pub listener: usize,
    /// EDNS Client Subnet from the query (filled in by the pipeline after parsing; to be
    /// trusted only from configured forwarders).
    pub client_subnet: Option<ClientSubnet>,
}

/// What the transport must do with a query.
#[derive(Debug)]
pub enum Outcome {
    /// Send the first `n` bytes of the output buffer.
    Respond(usize),
    /// Send nothing.
    Drop,
    /// Resolve asynchronously with [`Pipeline::answer_pending`], then send its result.
    Resolve(Box<PendingQuery>),
}

/// A query that missed the cache (or hit a stale entry), owned so it can cross to the async
/// runtime.
#[derive(Debug)]
pub struct PendingQuery {
    id: u16,
    query_flags: u16,
    question: [u8; MAX_NAME_LEN + 4],
    question_len: usize,
    name: NameBuf,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    opt: Option<OptReply>,
    limit: usize,
    stale: Option<Arc<CachedAnswer>>,
    structured_errors: bool,
    jurisdiction: Jurisdiction,
    context: ClientContext,
    /// When the query went to the resolver (for the miss latency histogram).
    started: std::time::Instant,
    /// The query as received, kept only when answers are observed (query log, dnstap).
    observed_query: Option<Box<[u8]>>,
}

impl PendingQuery {
    fn new(
        query: &Query<'_>,
        reply: &ReplyTo<'_>,
        stale: Option<Arc<CachedAnswer>>,
        jurisdiction: Jurisdiction,
        context: ClientContext,
    ) -> Self {
        let source = query.question();
        let mut question = [0u8; MAX_NAME_LEN + 4];
        let question_len = source.len().min(question.len());
        question[..question_len].copy_from_slice(&source[..question_len]);
        Self {
            id: query.id,
            query_flags: query.flags,
            question,
            question_len,
            name: query.name_buf(),
            qtype: query.qtype,
            qclass: query.qclass,
            dnssec_ok: query.dnssec_ok(),
            opt: reply.opt,
            limit: reply.limit,
            stale,
            structured_errors: query.edns.is_some_and(|e| e.wants_structured_errors),
            jurisdiction,
            context,
            started: std::time::Instant::now(),
            observed_query: None,
        }
    }

    /// The client this query came from.
    pub fn context(&self) -> &ClientContext {
        &self.context
    }

    /// The client's jurisdiction, as classified when the query arrived.
    pub fn jurisdiction(&self) -> &Jurisdiction {
        &self.jurisdiction
    }

    fn reply(&self) -> ReplyTo<'_> {
        ReplyTo {
            id: self.id,
            query_flags: self.query_flags,
            question: Some(&self.question[..self.question_len]),
            opt: self.opt,
            limit: self.limit,
        }
    }

    fn client_name(&self) -> &[u8] {
        &self.question[..self.question_len.saturating_sub(4)]
    }
}

/// What resolving a [`PendingQuery`] gave: the answer, or the error to answer with
/// (`Pipeline::resolve_pending`), before the stale-data rules and the policy.
#[derive(Debug)]
pub(crate) struct Resolution(Result<Arc<CachedAnswer>, ErrorAnswer>);

/// Settings the pipeline reads per query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PipelineConfig {
    parse: ParseConfig,
    denied: DeniedAction,
    any_answer_ttl: u32,
    stale_client_timeout: Duration,
}

/// The pipeline shared by every listener.
#[derive(Debug)]
pub struct Pipeline {
    config: PipelineConfig,
    /// `server.allow`; replaced whole on SIGHUP ([`Pipeline::set_allow`]).
    access: arc_swap::ArcSwap<AccessList>,
    /// Trusted PROXY protocol senders; `None` (the default) when the protocol is off.
    proxy: Option<ProxyTrust>,
    resolver: Resolver,
    cache: Arc<AnswerCache>,
    clock: SharedClock,
    async_counters: Arc<Counters>,
    engine: PolicyEngine,
    /// Country pin per listener index.
    pins: Vec<Option<CountryCode>>,
    /// Address of each configured listener (by index).
    listen_addrs: Vec<SocketAddr>,
    block: BlockSettings,
    /// `server.rate_limit` in force, `None` when no rate is set; replaced whole on SIGHUP
    /// ([`Pipeline::set_rate_limit`]).
    rate_limit: arc_swap::ArcSwapOption<RateLimiter>,
    /// Whether `rate_limit` is `Some` (read first, so that the UDP path pays one relaxed load
    /// when limiting is off).
    rate_limit_on: std::sync::atomic::AtomicBool,
    /// Prefixes dropped in the kernel (design 0050); outlives the limiters a SIGHUP replaces.
    kernel_drop: Arc<crate::kdrop::KernelDrop>,
    /// Where resolved names go for mining (set once, by `observe_resolved`).
    resolved: std::sync::OnceLock<crate::observe::ResolvedSink>,
    /// Where answered queries go (query log, dnstap; set once, by `observe_answers`).
    answers: std::sync::OnceLock<Vec<crate::telemetry::AnswerSink>>,
    /// DNS cookie secrets; `None` when cookies are off (`server.cookies.enabled = false`).
    /// Replaced on SIGHUP ([`Pipeline::set_cookies`]).
    cookies: arc_swap::ArcSwapOption<crate::cookie::ServerCookies>,
    /// The settings `cookies` was made from (what a reload compares with).
    cookie_config: std::sync::Mutex<crate::cookie::CookieConfig>,
}

/// How one query is judged: the country pin of each listener index, and where the hooks report
/// what they decided (the order counters for a real query, a recorder for explain).
pub(crate) struct Judge<'a, T: Tally> {
    pub(crate) pins: &'a [Option<CountryCode>],
    pub(crate) tally: &'a T,
    /// The rate limiter, for a UDP query when `server.rate_limit` is on ([`crate::ratelimit`]).
    pub(crate) limiter: Option<&'a RateLimiter>,
}

/// What the policy needs to know to answer one query: the policy in force, who asked, what.
struct PolicyContext<'a> {
    policy: &'a CompiledPolicy,
    jurisdiction: &'a Jurisdiction,
    query_name: &'a [u8],
    structured_errors: bool,
}

const QTYPE_ANY: u16 = 255;

impl Pipeline {
    /// A pipeline answering from `resolver`'s cache and resolving misses with it, enforcing
    /// the orders of `engine`. Fails only if `config` does not pass
    /// [`ServerConfig::validate`].
    pub fn new(
        config: &ServerConfig,
        resolver: Resolver,
        clock: SharedClock,
        engine: PolicyEngine,
    ) -> Result<Self, &'static str> {
        config.validate()?;
        let block = BlockSettings::new(&config.policy).ok_or("policy: bad SOA names")?;
        let kernel_drop = Arc::new(crate::kdrop::KernelDrop::new(kernel_drop_settings(
            &config.rate_limit,
            !config.proxy_protocol_from.is_empty(),
        )));
        // The configured withdrawn jurisdictions, published with the policy (a configuration
        // reload publishes them again: `PolicyHandle::publish_withdrawn`).
        engine
            .policy
            .publish_withdrawn(config.policy.withdrawn.clone());
        Ok(Self {
            config: PipelineConfig {
                parse: ParseConfig {
                    max_udp_payload: config.max_udp_payload,
                    structured_error_option_code: config.structured_error_option_code,
                },
                denied: config.denied,
                any_answer_ttl: config.any_answer_ttl,
                stale_client_timeout: config.stale_client_timeout,
            },
            access: arc_swap::ArcSwap::from_pointee(AccessList::new(&config.allow)),
            proxy: ProxyTrust::new(&config.proxy_protocol_from),
            cache: Arc::clone(resolver.cache()),
            resolver,
            clock,
            async_counters: Arc::new(Counters::default()),
            engine,
            pins: config.listeners.iter().map(|l| l.country).collect(),
            listen_addrs: config.listeners.iter().map(|l| l.addr).collect(),
            block,
            rate_limit: arc_swap::ArcSwapOption::from(config.rate_limit.is_enabled().then(|| {
                Arc::new(RateLimiter::with_kernel_drop(
                    config.rate_limit.clone(),
                    Arc::clone(&kernel_drop),
                ))
            })),
            rate_limit_on: std::sync::atomic::AtomicBool::new(config.rate_limit.is_enabled()),
            kernel_drop,
            resolved: std::sync::OnceLock::new(),
            answers: std::sync::OnceLock::new(),
            cookies: arc_swap::ArcSwapOption::from(
                crate::cookie::ServerCookies::new(&config.cookies).map(Arc::new),
            ),
            cookie_config: std::sync::Mutex::new(config.cookies.clone()),
        })
    }

    /// Hands every name resolved from now on (misses that went to the resolver, not cache
    /// hits) to `sink`, which drops them when full. Set once; `false` if already set.
    pub fn observe_resolved(&self, sink: crate::observe::ResolvedSink) -> bool {
        self.resolved.set(sink).is_ok()
    }

    /// Hands every answered query from now on to each of `sinks` (the query log, dnstap),
    /// which drop what they cannot take at once. Set once; `false` if already set.
    pub fn observe_answers(&self, sinks: Vec<crate::telemetry::AnswerSink>) -> bool {
        !sinks.is_empty() && self.answers.set(sinks).is_ok()
    }

    /// Answers each answer sink dropped so far, by its name (`querylog`, `dnstap`).
    pub fn answer_drops(&self) -> Vec<(&'static str, u64)> {
        self.answers
            .get()
            .map(|sinks| sinks.iter().map(|s| (s.name(), s.dropped())).collect())
            .unwrap_or_default()
    }

    /// Resolves `name` (wire form) for `qtype` (class IN, DO=0) outside any client's query:
    /// candidate mining looks up the blocked targets' name servers and addresses this way.
    /// No policy is applied. `None` if the name is not a valid wire name.
    pub async fn lookup(
        &self,
        name: &[u8],
        qtype: u16,
    ) -> Option<Result<Arc<CachedAnswer>, juris_resolver::ResolveError>> {
        let name = Name::from_octets(Bytes::copy_from_slice(name)).ok()?;
        let question = Question {
            name,
            qtype: Rtype::from_int(qtype),
            qclass: Class::IN,
            dnssec_ok: false,
            checking_disabled: false,
        };
        Some(self.resolver.resolve(&question).await)
    }

    /// The policy engine (policy in force, classifier, counters).
    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    /// The jurisdiction of a client, exactly as [`Pipeline::handle`] decides it (the
    /// `client_subnet` in `context` is what the query carried).
    pub fn classify(&self, context: &ClientContext) -> Jurisdiction {
        hooks::classify(&self.engine, &self.pins, context)
    }

    /// The country pin of each listener index.
    pub(crate) fn pins(&self) -> &[Option<CountryCode>] {
        &self.pins
    }

    /// How queries are parsed.
    pub fn parse_config(&self) -> ParseConfig {
        self.config.parse
    }

    /// The index of the configured listener on `addr` (for [`crate::explain::Arrival`]).
    pub fn listener_index(&self, addr: SocketAddr) -> Option<usize> {
        self.listen_addrs.iter().position(|a| *a == addr)
    }

    /// Whether service is withdrawn in `country`.
    pub fn is_withdrawn(&self, country: CountryCode) -> bool {
        self.engine.policy.is_withdrawn(country)
    }

    /// Counters written by the async side (misses, TCP).
    pub fn async_counters(&self) -> &Arc<Counters> {
        &self.async_counters
    }

    /// Flushes what `scope` covers from the resolver's caches ([`Resolver::flush`]), then
    /// voids every worker's hot verdicts, so the next query for a flushed name is resolved
    /// again whichever transport and worker it reaches (`docs/design/0017-cache-control.md`).
    pub fn flush_cache(&self, scope: FlushScope<'_>) -> FlushReport {
        let report = self.resolver.flush(scope);
        self.engine.policy.void_verdicts();
        report
    }

    /// How often each resolver work limit was hit (NXNS and loop guards), for `/metrics`.
    pub fn resolver_limit_hits(&self) -> Vec<(juris_resolver::Limit, u64)> {
        self.resolver.limit_hits()
    }

    /// The shared answer cache (for its size and counters).
    pub fn cache(&self) -> &Arc<AnswerCache> {
        &self.cache
    }

    /// Resolves the question of `packet` as a query that missed the cache would be (access
    /// list and policy aside), so that the answer is live in the cache for a following
    /// [`Pipeline::explain`] (`juris explain --resolve`). `Err` says why not (a malformed
    /// query, or the resolution failed).
    pub async fn resolve_for_explain(&self, packet: &[u8]) -> Result<(), String> {
        let query = parse_query(packet, &self.parse_config())
            .map_err(|error| format!("malformed query: {error:?}"))?;
        let name = Name::from_octets(Bytes::copy_from_slice(query.name()))
            .map_err(|error| format!("query name: {error}"))?;
        let question = Question {
            name,
            qtype: Rtype::from_int(query.qtype),
            qclass: Class::from_int(query.qclass),
            dnssec_ok: query.dnssec_ok(),
            checking_disabled: query.checking_disabled(),
        };
        self.resolver
            .resolve(&question)
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    /// The load balancers whose PROXY headers are believed; `None` when the protocol is off
    /// (`ServerConfig::proxy_protocol_from` empty).
    pub fn proxy(&self) -> Option<&ProxyTrust> {
        self.proxy.as_ref()
    }

    /// Whether `client` may query (the access list).
    pub fn allows(&self, client: std::net::IpAddr) -> bool {
        self.access.load().allows(client)
    }

    /// Replaces the access list (`server.allow`): the next query on every listener and
    /// transport is checked against it.
    pub fn set_allow(&self, allow: &[ipnet::IpNet]) {
        self.access.store(Arc::new(AccessList::new(allow)));
    }

    /// Replaces the rate limits (`server.rate_limit`, SIGHUP): the accounts start afresh
    /// unless the settings are the ones in force. `Err` (nothing changes) when they do not
    /// validate.
    pub fn set_rate_limit(&self, config: &RateLimitConfig) -> Result<(), &'static str> {
        config.validate()?;
        if self.rate_limit.load().as_deref().map(RateLimiter::config)
            == config.is_enabled().then_some(config)
        {
            return Ok(());
        }
        self.kernel_drop
            .configure(kernel_drop_settings(config, self.proxy.is_some()));
        let limiter = config.is_enabled().then(|| {
            Arc::new(RateLimiter::with_kernel_drop(
                config.clone(),
                Arc::clone(&self.kernel_drop),
            ))
        });
        self.rate_limit_on
            .store(limiter.is_some(), std::sync::atomic::Ordering::Relaxed);
        self.rate_limit.store(limiter);
        Ok(())
    }

    /// Replaces the DNS cookie settings (`server.cookies`, SIGHUP): a changed secret takes
    /// effect at once, the one it replaces stays accepted as the previous secret
    /// ([`crate::cookie::ServerCookies::reloaded`]). `Err` (nothing changes) when they do not
    /// validate.
    pub fn set_cookies(&self, config: &crate::cookie::CookieConfig) -> Result<(), &'static str> {
        config.validate()?;
        let mut old = self
            .cookie_config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.cookies.load_full();
        let next = crate::cookie::ServerCookies::reloaded(current.as_deref(), &old, config);
        self.cookies.store(next.map(Arc::new));
        *old = config.clone();
        Ok(())
    }

    /// The rate limiter in force, if any (its settings and table size).
    pub fn rate_limiter(&self) -> Option<Arc<RateLimiter>> {
        self.rate_limit.load_full()
    }

    /// The prefixes dropped in the kernel ([`crate::kdrop`]).
    pub fn kernel_drop(&self) -> &Arc<crate::kdrop::KernelDrop> {
        &self.kernel_drop
    }

    /// The pipeline clock's Unix seconds, for [`Pipeline::handle_at`].
    pub fn now(&self) -> u64 {
        self.clock.unix_seconds()
    }

    /// Processes one query message. `out` should hold at least the largest response the
    /// transport allows (`max_udp_payload` for UDP, 65535 for TCP); a smaller buffer only
    /// causes truncation. Never allocates except for [`Outcome::Resolve`]. An answer given
    /// at once is timed into the "hit" latency histogram (the stream transports come here;
    /// a UDP worker times its batches itself).
    pub fn handle(
        &self,
        packet: &[u8],
        context: ClientContext,
        out: &mut [u8],
        counters: &Counters,
    ) -> Outcome {
        let started = std::time::Instant::now();
        let outcome = self.handle_at(packet, context, out, counters, self.now());
        if let Outcome::Respond(_) = outcome {
            counters.hit_latency(started.elapsed(), 1);
        }
        outcome
    }

    /// [`Pipeline::handle`] at a time the caller read from [`Pipeline::now`] (a batch of
    /// datagrams shares one clock read).
    pub fn handle_at(
        &self,
        packet: &[u8],
        context: ClientContext,
        out: &mut [u8],
        counters: &Counters,
        now: u64,
    ) -> Outcome {
        self.handle_with(packet, context, out, counters, now, None)
    }

    /// [`Pipeline::handle_at`] for a UDP worker with its own table of hot answers
    /// ([`crate::hot`]): a fresh hit that no order can touch is answered from it without
    /// classifying the client or consulting the policy.
    pub fn handle_hot(
        &self,
        packet: &[u8],
        context: ClientContext,
        out: &mut [u8],
        counters: &Counters,
        now: u64,
        hot: &mut HotAnswers,
    ) -> Outcome {
        self.handle_with(packet, context, out, counters, now, Some(hot))
    }

    fn handle_with(
        &self,
        packet: &[u8],
        context: ClientContext,
        out: &mut [u8],
        counters: &Counters,
        now: u64,
        hot: Option<&mut HotAnswers>,
    ) -> Outcome {
        counters.query(context.transport);
        // One relaxed load when rate limiting is off (the default).
        let guard = (context.transport == Transport::Udp
            && self
                .rate_limit_on
                .load(std::sync::atomic::Ordering::Relaxed))
        .then(|| self.rate_limit.load());
        let limiter = guard.as_ref().and_then(|g| g.as_deref());
        // Answers observed (query log, dnstap): the same path with a recording tally.
        if let Some(sinks) = self.answers.get() {
            return self.handle_observed(packet, context, out, counters, now, hot, sinks, limiter);
        }
        let judge = Judge {
            pins: &self.pins,
            tally: &*self.engine.counters,
            limiter,
        };
        let outcome = self.handle_counted(packet, context, out, counters, now, hot, &judge);
        count_outcome(counters, context.transport, out, &outcome);
        outcome
    }

    /// [`Pipeline::handle_with`] when answers are observed: the order that blocked and the
    /// cache use are recorded on the way, and the answer is offered to every sink.
    #[cold]
    #[inline(never)]
    #[allow(
        clippy::too_many_arguments,
        reason = "the per-query facts, kept unbundled on the hot path"
    )]
    fn handle_observed(
        &self,
        packet: &[u8],
        context: ClientContext,
        out: &mut [u8],
        counters: &Counters,
        now: u64,
        hot: Option<&mut HotAnswers>,
        sinks: &[crate::telemetry::AnswerSink],
        limiter: Option<&RateLimiter>,
    ) -> Outcome {
        let started = std::time::Instant::now();
        let recording = Recording::new(&self.engine.counters);
        let judge = Judge {
            pins: &self.pins,
            tally: &recording,
            limiter,
        };
        let outcome = self.handle_counted(packet, context, out, counters, now, hot, &judge);
        count_outcome(counters, context.transport, out, &outcome);
        match outcome {
            Outcome::Respond(len) => {
                let cache = if recording.cached.get() {
                    crate::telemetry::CacheUse::Hit
                } else {
                    crate::telemetry::CacheUse::None
                };
                self.offer_answer(
                    sinks,
                    &context,
                    packet,
                    out.get(..len).unwrap_or_default(),
                    cache,
                    started.elapsed(),
                    recording.order.take(),
                );
                Outcome::Respond(len)
            }
            Outcome::Resolve(mut pending) => {
                pending.observed_query = Some(packet.into());
                pending.started = started;
                Outcome::Resolve(pending)
            }
            Outcome::Drop => Outcome::Drop,
        }
    }

    #[allow(clippy::too_many_arguments, reason = "one answer's facts")]
    fn offer_answer(
        &self,
        sinks: &[crate::telemetry::AnswerSink],
        context: &ClientContext,
        query: &[u8],
        response: &[u8],
        cache: crate::telemetry::CacheUse,
        latency: Duration,
        order: Option<Arc<juris_policy::OrderInfo>>,
    ) {
        let answered = Arc::new(crate::telemetry::Answered {
            time: std::time::SystemTime::now(),
            transport: context.transport,
            client: context.client,
            server: self.listen_addrs.get(context.listener).copied(),
            query: query.into(),
            response: response.into(),
            cache,
            latency,
            order,
        });
        for sink in sinks {
            sink.offer(&answered);
        }
    }

    /// The whole answer path ([`Pipeline::handle`] and [`Pipeline::explain`] both come here).
    #[allow(
        clippy::too_many_arguments,
        reason = "the per-query facts, kept unbundled on the hot path"
    )]
    pub(crate) fn handle_counted<T: Tally>(
        &self,
        packet: &[u8],
        mut context: ClientContext,
        out: &mut [u8],
        counters: &Counters,
        now: u64,
        hot: Option<&mut HotAnswers>,
        judge: &Judge<'_, T>,
    ) -> Outcome {
        if !self.access.load().allows(context.client.ip()) {
            counters.refused_by_acl();
            let outcome = self.refuse_client(packet, out);
            return limit_unparsed(judge, counters, context, out, outcome, now);
        }
        // NOTIFY (RFC 1996), for a fleet edge: the receiver schedules a transfer, which is
        // authenticated itself; the NOTIFY only says when to look.
        if let Some(receiver) = self.engine.notify.get() {
            if let Some((id, query_flags, question)) = crate::query::parse_notify(packet) {
                let zone = question
                    .get(..question.len().saturating_sub(4))
                    .unwrap_or_default();
                let rcode = if receiver(zone, context.client.ip()) {
                    Rcode::NOERROR
                } else {
                    Rcode::REFUSED
                };
                return respond_or_drop(write_notify_response(
                    out,
                    id,
                    query_flags,
                    question,
                    rcode,
                ));
            }
        }
        let payload = self.config.parse.max_udp_payload;
        let mut query = match parse_query(packet, &self.config.parse) {
            Ok(query) => query,
            Err(ParseError::Drop(_)) => return Outcome::Drop,
            Err(ParseError::Respond(error)) => {
                let reply = ReplyTo::for_error(&error, payload);
                let written = if error.question.is_some() {
                    synth::write_rcode_response(out, &reply, error.rcode, None)
                } else {
                    synth::write_header_only(out, error.id, error.flags, error.rcode)
                };
                let outcome = respond_or_drop(written);
                return limit_unparsed(judge, counters, context, out, outcome, now);
            }
        };
        context.client_subnet = query.edns.and_then(|e| e.client_subnet);
        // DNS cookies (RFC 7873 §5.2): verified before anything else looks at the query, so
        // `cookie_valid` is known to every later step; the answer's COOKIE option goes into
        // the OPT that every response path appends (the hot answers' rendered bytes included).
        // The secrets are loaded only for a query that carries a cookie.
        let cookie = match query.edns.as_mut() {
            Some(edns) => edns.cookie.and_then(|option| {
                let cookies = self.cookies.load();
                let answer = cookies
                    .as_deref()?
                    .answer(&option, context.client.ip(), now);
                edns.cookie_valid = answer.valid;
                Some(answer)
            }),
            None => None,
        };
        let mut reply = ReplyTo::for_query(&query, payload, context.transport);
        if let (Some(cookie), Some(opt)) = (cookie, reply.opt.as_mut()) {
            opt.cookie = Some(cookie.reply);
            // RFC 7873 §5.2.3: a server cookie that does not verify gets BADCOOKIE with a
            // fresh one, over UDP only (a stream transport has shown the client's address).
            if cookie.bad_server_cookie && context.transport == Transport::Udp {
                counters.bad_cookie();
                return respond_or_drop(synth::write_rcode_response(
                    out,
                    &reply,
                    Rcode::BADCOOKIE,
                    None,
                ));
            }
        }
        // RFC 7871 §7.2.1: a trusted forwarder's Client Subnet is answered, scope 0 until the
        // answer is found to depend on the client's jurisdiction (`Pipeline::scope_ecs`).
        if let (Some(subnet), Some(opt)) = (context.client_subnet, reply.opt.as_mut()) {
            if self
                .engine
                .classifier
                .is_trusted_forwarder(context.client.ip())
            {
                opt.ecs = Some(EcsReply::for_query(subnet));
            }
        }

        let limiter = match limit_query(judge.limiter, &query, &reply, context, out, counters, now)
        {
            Ok(limiter) => limiter,
            Err(outcome) => return outcome,
        };
        let outcome = self.answer_query(
            &query, context, reply, out, counters, now, hot, judge, limiter,
        );
        limit_response(limiter, counters, context.client.ip(), out, outcome, now)
    }

    /// [`Pipeline::handle_counted`] past parsing and the query rate limit. `limiter`: the
    /// client's rate limits (`None`: not limited), for its cache misses.
    #[allow(
        clippy::too_many_arguments,
        reason = "the per-query facts, kept unbundled on the hot path"
    )]
    #[inline]
    fn answer_query<T: Tally>(
        &self,
        query: &Query<'_>,
        context: ClientContext,
        mut reply: ReplyTo<'_>,
        out: &mut [u8],
        counters: &Counters,
        now: u64,
        hot: Option<&mut HotAnswers>,
        judge: &Judge<'_, T>,
        limiter: Option<&RateLimiter>,
    ) -> Outcome {
        if let Some(error) = error_map::for_question(query.qtype, query.qclass) {
            return respond_error(out, &reply, &error);
        }

        // The worker's hot answers: a fresh answer no order can touch needs no classification
        // and no policy lookup (ANY is never cached, so never found here).
        // (Located only when there is a table: TCP and encrypted transports have none.)
        let key = query.cache_key();
        let mut hot = hot.map(|table| {
            let (index, hash) = table.locate(&key);
            (table, index, hash)
        });
        // Not clean, but judged under the verdict epoch in force: the client's jurisdiction
        // decides (a German client of a name only Italy blocks is a hot hit; design 0026).
        // Not for a trusted forwarder's ECS, whose scope would depend on the verdict.
        let mut classified = None;
        if let Some((table, index, hash)) = hot.as_mut() {
            if let Some(slot) = table.fresh(*index, *hash, &key, now) {
                let epoch = self.engine.policy.epoch();
                let hit = !self.engine.policy.any_withdrawn()
                    && (slot.is_clean_for(epoch)
                        || (reply.opt.as_ref().is_none_or(|opt| opt.ecs.is_none())
                            && !slot.needs_judging(epoch)
                            && {
                                let jurisdiction =
                                    hooks::classify(&self.engine, judge.pins, &context);
                                let country = policy_country(jurisdiction.country);
                                classified = Some(jurisdiction);
                                slot.spares(epoch, country)
                            }));
                if hit {
                    counters.hot_hit();
                    judge.tally.answered_from_cache();
                    return match render_hot(out, &reply, query.client_name(), slot, now) {
                        Some(len) => Outcome::Respond(len),
                        None => respond_error(out, &reply, &error_map::for_task_failure()),
                    };
                }
            }
        }

        // HOOK: jurisdiction of the client (juris-geo), unless decided above.
        let jurisdiction = classified
            .take()
            .unwrap_or_else(|| hooks::classify(&self.engine, judge.pins, &context));
        judge.tally.classified(&jurisdiction);
        // HOOK: service withdrawn in that jurisdiction.
        if hooks::withdrawn(judge.tally, &self.engine.policy, &jurisdiction).is_some() {
            self.scope_ecs(&mut reply, &jurisdiction, || true);
            return respond_error(out, &reply, &error_map::for_withdrawn());
        }
        // The epoch before the policy: a verdict remembered under it is for this policy or newer.
        let epoch = self.engine.policy.epoch();
        let policy = self.engine.policy.load();
        judge.tally.consulted(&policy);
        let policy_context = PolicyContext {
            policy: &policy,
            jurisdiction: &jurisdiction,
            query_name: query.name(),
            structured_errors: query.edns.is_some_and(|e| e.wants_structured_errors),
        };
        // HOOK: policy on the query name (juris-policy); a block is synthesised here.
        if let Some(block) = hooks::check_query(
            judge.tally,
            &policy,
            query.name(),
            &jurisdiction,
            timestamp(now),
        ) {
            self.scope_ecs(&mut reply, &jurisdiction, || true);
            return self.respond_block(out, &reply, &policy_context, &block, Trigger::QueryName);
        }

        if query.qtype == QTYPE_ANY {
            self.scope_ecs(&mut reply, &jurisdiction, || {
                policy.may_apply_to_name(query.name()) || self.engine.policy.any_withdrawn()
            });
            return respond_or_drop(synth::write_any_answer(
                out,
                &reply,
                self.config.any_answer_ttl,
            ));
        }

        // The hot slot's answer when it is there and fresh (above, it was found not clean for
        // this policy), else the shared cache, whose fresh answer refills the slot.
        // A new epoch may be a flush: the slot's answer is used only if the cache's flush
        // generation is still the one it was taken at.
        let hot_answer = hot.as_mut().and_then(|(table, index, hash)| {
            let slot = table.fresh(*index, *hash, &key, now)?;
            if slot.needs_judging(epoch) {
                if !slot.taken_at(self.cache.generation()) {
                    return None;
                }
                slot.judge(key.name, &policy, epoch);
            }
            slot.answer().map(Arc::clone)
        });
        let answer = match hot_answer {
            Some(answer) => answer,
            None => match (self.cache.generation(), self.cache.get(&key, now)) {
                (generation, Some((answer, Freshness::Fresh))) => {
                    if answer.prefetch_due(now) && judge.tally.resolves() {
                        self.prefetch(&key, query.flags);
                    }
                    if let Some((table, index, hash)) = hot {
                        let stamp = crate::hot::Stamp { epoch, generation };
                        table.insert(index, hash, &key, &answer, &policy, stamp, now);
                    }
                    answer
                }
                // RD=0: answered from the cache only (RFC 1034 §4.3.1), never resolved.
                _ if query.flags & crate::query::flags::RD == 0 => {
                    counters.cache_miss();
                    return respond_error(out, &reply, &error_map::for_not_recursive());
                }
                (_, stale_or_none) => {
                    // A client over its rate of misses (a random-subdomain flood) is turned
                    // away before any upstream work.
                    if let Some(outcome) = over_rate(
                        limiter,
                        RateClass::Misses,
                        &reply,
                        context,
                        out,
                        counters,
                        now,
                    ) {
                        counters.cache_miss();
                        return outcome;
                    }
                    let stale = stale_or_none.map(|(answer, _)| answer);
                    return Outcome::Resolve(Box::new(PendingQuery::new(
                        query,
                        &reply,
                        stale,
                        jurisdiction,
                        context,
                    )));
                }
            },
        };
        counters.cache_hit();
        judge.tally.answered_from_cache();
        let block = self.answer_block(judge.tally, &answer, &policy_context, now);
        self.scope_ecs(&mut reply, &jurisdiction, || {
            depends_on_jurisdiction(&self.engine, &policy, query.name(), &answer)
        });
        self.respond_judged(
            out,
            &reply,
            query.client_name(),
            &answer,
            &policy_context,
            now,
            None,
            block,
        )
    }

    /// RFC 7871 §7.2.1: when the response to a trusted forwarder's Client Subnet depends on
    /// the jurisdiction that subnet decided (`depends`, asked only then), its SCOPE
    /// PREFIX-LENGTH is the prefix of the GeoIP network that decided it; otherwise it stays 0,
    /// so a downstream cache shares the answer among all its clients
    /// (`docs/design/0017-cache-control.md`).
    fn scope_ecs(
        &self,
        reply: &mut ReplyTo<'_>,
        jurisdiction: &Jurisdiction,
        depends: impl FnOnce() -> bool,
    ) {
        let Some(ecs) = reply.opt.as_mut().and_then(|opt| opt.ecs.as_mut()) else {
            return;
        };
        // Only a subnet that was looked up can make the answer depend on it (a listener pin
        // or an opted-out client decides the same for every address).
        if jurisdiction.ecs_prefix_len.is_none() || !depends() {
            return;
        }
        ecs.scope_prefix = self
            .engine
            .classifier
            .ecs_scope(ecs.query.address, ecs.query.source_prefix);
    }

    /// A client outside the allow list: header-only REFUSED, or nothing.
    fn refuse_client(&self, packet: &[u8], out: &mut [u8]) -> Outcome {
        let (Some(&[id_high, id_low, flags_high, flags_low]), DeniedAction::Refuse) =
            (packet.get(..4), self.config.denied)
        else {
            return Outcome::Drop;
        };
        let flags = u16::from_be_bytes([flags_high, flags_low]);
        if packet.len() < 12 || flags & crate::query::flags::QR != 0 {
            return Outcome::Drop;
        }
        respond_or_drop(synth::write_header_only(
            out,
            u16::from_be_bytes([id_high, id_low]),
            flags,
            Rcode::REFUSED,
        ))
    }

    /// A synthesised blocked answer (never cached).
    fn respond_block(
        &self,
        out: &mut [u8],
        reply: &ReplyTo<'_>,
        policy: &PolicyContext<'_>,
        block: &Block,
        trigger: Trigger,
    ) -> Outcome {
        respond_or_drop(block::write_block(
            out,
            reply,
            policy.query_name,
            block,
            trigger,
            policy.structured_errors,
            &self.block,
            // The SOA serial says which policy generation decided (mod 2^32).
            policy.policy.generation() as u32,
        ))
    }

    /// HOOK: policy on the answer's CNAME targets and addresses (juris-policy).
    #[inline]
    fn answer_block(
        &self,
        tally: &impl Tally,
        answer: &CachedAnswer,
        policy: &PolicyContext<'_>,
        now: u64,
    ) -> Option<(Box<Block>, Trigger)> {
        hooks::check_answer(
            tally,
            policy.policy,
            answer,
            policy.jurisdiction,
            timestamp(now),
        )
    }

    /// The response for an answer whose policy verdict ([`Pipeline::answer_block`]) is `block`:
    /// the blocked answer, or the rendered one. Cache hits and resolved misses both come here.
    #[allow(
        clippy::too_many_arguments,
        reason = "the per-query facts, kept unbundled on the hot path"
    )]
    fn respond_judged(
        &self,
        out: &mut [u8],
        reply: &ReplyTo<'_>,
        client_name: &[u8],
        answer: &CachedAnswer,
        policy: &PolicyContext<'_>,
        now: u64,
        stale: Option<(u32, ExtendedError<'_>)>,
        block: Option<(Box<Block>, Trigger)>,
    ) -> Outcome {
        if let Some((block, trigger)) = block {
            return self.respond_block(out, reply, policy, &block, trigger);
        }
        // DNSSEC bogus: SERVFAIL with the validator's EDE, unless the client set CD.
        if let Some(bogus) = answer.security().bogus() {
            if reply.query_flags & crate::codes::flags::CD == 0 {
                let ede = error_map::for_bogus(bogus);
                return respond_or_drop(synth::write_rcode_response(
                    out,
                    reply,
                    Rcode::SERVFAIL,
                    Some(&ede),
                ));
            }
        }
        let (stale_ttl, ede) = match &stale {
            Some((ttl, ede)) => (Some(*ttl), Some(ede)),
            None => (None, None),
        };
        // Insecure only for unsupported algorithms or digests: EDE 1 or 2 as information.
        let info;
        let ede = match (ede, answer.security().unsupported()) {
            (None, Some(what)) => {
                info = error_map::for_unsupported(what);
                Some(&info)
            }
            (ede, _) => ede,
        };
        match render_answer(out, reply, client_name, answer, now, stale_ttl, ede) {
            Some(len) => Outcome::Respond(len),
            None => respond_error(out, reply, &error_map::for_task_failure()),
        }
    }

    /// Resolves a query that missed the cache and returns the response to send, written at
    /// offset `reserve` of the returned buffer (TCP reserves 2 bytes for the length prefix).
    /// `None` means send nothing.
    pub async fn answer_pending(&self, pending: PendingQuery, reserve: usize) -> Option<Vec<u8>> {
        let resolution = self.resolve_pending(&pending).await;
        let mut out = Vec::new();
        let len = self.write_pending(&pending, resolution, |size| {
            out.resize(reserve + size, 0);
            &mut out[reserve..]
        })?;
        out.truncate(reserve + len);
        Some(out)
    }

    /// The asynchronous half of [`Pipeline::answer_pending`]: the resolution. The UDP workers
    /// call the two halves themselves, so a miss's response is written straight into the
    /// worker's send batch (no buffer of its own, `crate::udp`).
    pub(crate) async fn resolve_pending(&self, pending: &PendingQuery) -> Resolution {
        let result = match self.resolver_question(pending) {
            None => Err(error_map::for_task_failure()),
            Some(question) => match &pending.stale {
                Some(_) => {
                    let resolver = self.resolver.clone();
                    // Spawned, so resolution continues (and refreshes the cache) even when
                    // the client timer below fires first.
                    let task = tokio::spawn(async move { resolver.resolve(&question).await });
                    match tokio::time::timeout(self.config.stale_client_timeout, task).await {
                        Ok(Ok(Ok(fresh))) => Ok(fresh),
                        _ => Err(error_map::for_task_failure()),
                    }
                }
                None => self
                    .resolver
                    .resolve(&question)
                    .await
                    .map_err(|e| error_map::for_resolve_error(&e)),
            },
        };
        Resolution(result)
    }

    /// The synchronous half of [`Pipeline::answer_pending`]: judges the resolution under the
    /// policy in force and writes the response into the buffer `buffer` returns for the size
    /// it asks (at least what the response needs, capped by the client's limit; a smaller
    /// buffer truncates as a small client payload size would). Returns the response's
    /// length; `None`: send nothing.
    pub(crate) fn write_pending<'o>(
        &self,
        pending: &PendingQuery,
        resolution: Resolution,
        buffer: impl FnOnce(usize) -> &'o mut [u8],
    ) -> Option<usize> {
        let mut reply = pending.reply();
        let now = self.clock.unix_seconds();
        let counters = &self.async_counters;
        // RFC 8767 §4: a SERVFAIL from fresh resolution is a failure too when stale data exists.
        let result = match resolution.0 {
            Ok(fresh) if pending.stale.is_some() && fresh.kind() == AnswerKind::ServerFailure => {
                Err(error_map::for_task_failure())
            }
            other => other,
        };
        let (answer, stale) = match (result, &pending.stale) {
            (Ok(fresh), _) => {
                if let Some(sink) = self.resolved.get() {
                    sink.offer(pending.name.as_slice(), &fresh);
                }
                (fresh, None)
            }
            (Err(_), Some(stale)) => {
                counters.stale_served();
                let ttl = self.cache.config().stale_answer_ttl;
                (
                    Arc::clone(stale),
                    Some((ttl, error_map::for_stale(stale.kind()))),
                )
            }
            (Err(error), None) => {
                let out = buffer(1024);
                let len = write_error(out, &reply, &error)?;
                let response = &out[..len];
                counters.response(pending.context.transport, response);
                counters.miss_latency(pending.started.elapsed());
                self.offer_resolved(pending, response, None);
                return Some(len);
            }
        };
        let padding = if reply.opt.is_some_and(|opt| opt.padding) {
            synth::RESPONSE_PADDING_BLOCK
        } else {
            0
        };
        let info = answer
            .security()
            .unsupported()
            .map(error_map::for_unsupported);
        let ecs_len = reply
            .opt
            .and_then(|opt| opt.ecs)
            .map_or(0, |ecs| ecs.option_len())
            + reply
                .opt
                .and_then(|opt| opt.cookie)
                .map_or(0, |_| crate::cookie::CookieReply::OPTION_LEN);
        let extra = stale
            .as_ref()
            .map_or_else(|| opt_len(info.as_ref()), |(_, ede)| opt_len(Some(ede)))
            + ecs_len
            + padding;
        let policy = self.engine.policy.load();
        let policy_context = PolicyContext {
            policy: &policy,
            jurisdiction: &pending.jurisdiction,
            query_name: pending.name.as_slice(),
            structured_errors: pending.structured_errors,
        };
        let recording = Recording::new(&self.engine.counters);
        let block = self.answer_block(&recording, &answer, &policy_context, now);
        self.scope_ecs(&mut reply, &pending.jurisdiction, || {
            depends_on_jurisdiction(&self.engine, &policy, pending.name.as_slice(), &answer)
        });
        // What the response needs (a truncated one needs less), at least room for an error
        // with its EDE text; a blocked answer (SOA, EDE text, maybe JSON) gets 4 KiB.
        let size = match block {
            Some(_) => 4096 + padding,
            None => (answer.len() + extra).min(reply.limit).max(1024),
        };
        let out = buffer(size);
        let outcome = self.respond_judged(
            out,
            &reply,
            pending.client_name(),
            &answer,
            &policy_context,
            now,
            stale,
            block,
        );
        match outcome {
            Outcome::Respond(len) => {
                let response = &out[..len];
                counters.response(pending.context.transport, response);
                counters.miss_latency(pending.started.elapsed());
                self.offer_resolved(pending, response, recording.order.take());
                Some(len)
            }
            Outcome::Drop | Outcome::Resolve(_) => None,
        }
    }

    /// Offers a resolved query's response to the answer sinks, when it was observed.
    fn offer_resolved(
        &self,
        pending: &PendingQuery,
        response: &[u8],
        order: Option<Arc<juris_policy::OrderInfo>>,
    ) {
        if let (Some(sinks), Some(query)) = (self.answers.get(), &pending.observed_query) {
            self.offer_answer(
                sinks,
                &pending.context,
                query,
                response,
                crate::telemetry::CacheUse::Miss,
                pending.started.elapsed(),
                order,
            );
        }
    }

    /// Starts the background refresh of a cached answer near its expiry (cache.prefetch).
    #[cold]
    fn prefetch(&self, key: &CacheKeyRef<'_>, query_flags: u16) {
        let Ok(name) = Name::from_octets(Bytes::copy_from_slice(key.name)) else {
            return;
        };
        self.resolver.prefetch(&Question {
            name,
            qtype: Rtype::from_int(key.qtype),
            qclass: Class::from_int(key.qclass),
            dnssec_ok: key.dnssec_ok,
            checking_disabled: query_flags & crate::query::flags::CD != 0,
        });
    }

    fn resolver_question(&self, pending: &PendingQuery) -> Option<Question> {
        let name = Name::from_octets(Bytes::copy_from_slice(pending.name.as_slice())).ok()?;
        Some(Question {
            name,
            qtype: Rtype::from_int(pending.qtype),
            qclass: Class::from_int(pending.qclass),
            dnssec_ok: pending.dnssec_ok,
            checking_disabled: pending.query_flags & crate::query::flags::CD != 0,
        })
    }
}

/// Whether some order could treat clients of different jurisdictions differently for this
/// answer: the name, a CNAME target or an address may be under an order, or service is
/// withdrawn somewhere (the inverse of a hot slot's "clean").
fn depends_on_jurisdiction(
    engine: &PolicyEngine,
    policy: &CompiledPolicy,
    name: &[u8],
    answer: &CachedAnswer,
) -> bool {
    engine.policy.any_withdrawn() || !crate::hot::untouchable(policy, name, answer)
}

/// Renders a cached (or freshly resolved) answer for one client: copy with ID, flags, case
/// and TTLs patched, then the client's OPT (our payload size, DO echoed, `ede`), ARCOUNT
/// fixed. If the result would exceed `reply.limit` (or `out`), writes header + question +
/// OPT with TC=1 instead. Allocation-free.
pub fn render_answer(
    out: &mut [u8],
    reply: &ReplyTo<'_>,
    client_name: &[u8],
    answer: &CachedAnswer,
    now: u64,
    stale_ttl: Option<u32>,
    ede: Option<&ExtendedError<'_>>,
) -> Option<usize> {
    let opt = reply.opt.map_or(0, |opt| opt.len(ede));
    let total = answer.len() + opt;
    if total > reply.limit || total > out.len() {
        let mut builder = ResponseBuilder::start(out, reply, Rcode(u16::from(answer.rcode())))?;
        builder.set_truncated();
        return builder.finish(ede);
    }
    let len = answer.write_response(
        out,
        reply.id,
        reply.query_flags,
        client_name,
        now,
        stale_ttl,
    )?;
    append_opt(out, len, reply, ede)
}

/// [`render_answer`] from a hot slot: the slot's response, rendered for this second, copied
/// and patched exactly as [`CachedAnswer::write_response`] patches (ID, RD/CD, the client's
/// case), then the OPT. Allocation-free.
fn render_hot(
    out: &mut [u8],
    reply: &ReplyTo<'_>,
    client_name: &[u8],
    slot: &mut crate::hot::Slot,
    now: u64,
) -> Option<usize> {
    let opt = reply.opt.map_or(0, |opt| opt.len(None));
    let rendered = slot.rendered(now)?;
    let len = rendered.len();
    if len + opt > reply.limit || len + opt > out.len() {
        let answer = Arc::clone(slot.answer()?);
        return render_answer(out, reply, client_name, &answer, now, None, None);
    }
    out[..len].copy_from_slice(rendered);
    out[0..2].copy_from_slice(&reply.id.to_be_bytes());
    // The rendered flags are the stored ones with RD and CD clear: echo the query's.
    out[2] |= ((reply.query_flags & 0x0110) >> 8) as u8;
    // AD (pre-rendered on secure data) stays only for CD=0 queries with AD=1 or DO=1.
    if out[3] & 0x20 != 0
        && !query_wants_ad(reply.query_flags, reply.opt.is_some_and(|o| o.dnssec_ok))
    {
        out[3] &= !0x20;
    }
    out[3] |= (reply.query_flags & 0x0010) as u8;
    let name_end = HEADER_LEN + client_name.len();
    if name_end <= len && client_name.eq_ignore_ascii_case(&out[HEADER_LEN..name_end]) {
        out[HEADER_LEN..name_end].copy_from_slice(client_name);
    }
    append_opt(out, len, reply, None)
}

/// Appends the client's OPT (if it sent one) after the `len` bytes of a rendered answer and
/// counts it in ARCOUNT.
#[inline]
fn append_opt(
    out: &mut [u8],
    len: usize,
    reply: &ReplyTo<'_>,
    ede: Option<&ExtendedError<'_>>,
) -> Option<usize> {
    let Some(opt) = reply.opt else {
        return Some(len);
    };
    let written = write_opt(out.get_mut(len..)?, opt, 0, ede, len)?;
    let arcount = u16::from_be_bytes([out[10], out[11]]).checked_add(1)?;
    out[10..12].copy_from_slice(&arcount.to_be_bytes());
    Some(len + written)
}

/// The query rate limit of a parsed query: `Err` with what to do when the client's prefix is
/// over its query rate (drop, or a truncated answer every `slip`-th time); otherwise the
/// limiter for its response, `None` when the client is exempt: a valid server cookie proves
/// its address (RFC 7873 §5.2.3; `Edns::cookie_valid`).
#[inline]
fn limit_query<'l>(
    limiter: Option<&'l RateLimiter>,
    query: &Query<'_>,
    reply: &ReplyTo<'_>,
    context: ClientContext,
    out: &mut [u8],
    counters: &Counters,
    now: u64,
) -> Result<Option<&'l RateLimiter>, Outcome> {
    let Some(limiter) = limiter else {
        return Ok(None);
    };
    if query.edns.is_some_and(|e| e.cookie_valid) {
        return Ok(None);
    }
    match over_rate(
        Some(limiter),
        RateClass::Queries,
        reply,
        context,
        out,
        counters,
        now,
    ) {
        None => Ok(Some(limiter)),
        Some(outcome) => Err(outcome),
    }
}

/// The kernel drop settings in force: off when no rate is set, and off behind PROXY-protocol
/// load balancers, whose datagrams carry the balancer's address, not the client's that the
/// limiter accounts (the kernel could never match a listed client prefix).
fn kernel_drop_settings(
    config: &RateLimitConfig,
    behind_proxy: bool,
) -> crate::kdrop::KernelDropConfig {
    if !config.is_enabled() || config.kernel_drop.after == 0 {
        return crate::kdrop::KernelDropConfig::default();
    }
    if behind_proxy {
        tracing::warn!(
            "server.rate_limit.kernel_drop_after is ignored: with proxy_protocol_from the \
             datagrams' source is the load balancer, not the client"
        );
        return crate::kdrop::KernelDropConfig::default();
    }
    config.kernel_drop
}

/// Counts one query of `class` (queries, misses) against the client's rate: `None` within
/// it (or no limiter), otherwise what to do instead of answering (drop, or every `slip`-th
/// time a truncated answer), counted.
#[inline]
fn over_rate(
    limiter: Option<&RateLimiter>,
    class: RateClass,
    reply: &ReplyTo<'_>,
    context: ClientContext,
    out: &mut [u8],
    counters: &Counters,
    now: u64,
) -> Option<Outcome> {
    match limiter?.check(context.client.ip(), class, now) {
        Verdict::Pass => None,
        Verdict::Drop => {
            counters.rate_limited(class, false);
            Some(Outcome::Drop)
        }
        Verdict::Slip => {
            counters.rate_limited(class, true);
            Some(respond_or_drop(write_truncated(out, reply)))
        }
    }
}

/// RRL: a UDP response about to be sent to `client` (not exempt) beyond its class's rate is
/// dropped or sent truncated ([`crate::ratelimit`]).
#[inline]
fn limit_response(
    limiter: Option<&RateLimiter>,
    counters: &Counters,
    client: std::net::IpAddr,
    out: &mut [u8],
    outcome: Outcome,
    now: u64,
) -> Outcome {
    let (Some(limiter), Outcome::Respond(len)) = (limiter, &outcome) else {
        return outcome;
    };
    let len = *len;
    if !limiter.limits_responses(client) {
        return outcome;
    }
    let Some(response) = out.get(..len) else {
        return outcome;
    };
    let class = limiter.class_of(response);
    match limiter.check(client, class, now) {
        Verdict::Pass => outcome,
        Verdict::Drop => {
            counters.rate_limited(class, false);
            Outcome::Drop
        }
        Verdict::Slip => {
            counters.rate_limited(class, true);
            respond_or_drop(crate::ratelimit::truncate_response(out, len))
        }
    }
}

/// [`limit_response`] for a response written before the query was parsed (access list,
/// parser errors): no cookie can exempt it.
fn limit_unparsed<T: Tally>(
    judge: &Judge<'_, T>,
    counters: &Counters,
    context: ClientContext,
    out: &mut [u8],
    outcome: Outcome,
    now: u64,
) -> Outcome {
    limit_response(
        judge.limiter,
        counters,
        context.client.ip(),
        out,
        outcome,
        now,
    )
}

/// A truncated answer to `reply` (TC=1, the question, the client's OPT): a rate-limited
/// client asked to come back over TCP.
fn write_truncated(out: &mut [u8], reply: &ReplyTo<'_>) -> Option<usize> {
    let mut builder = ResponseBuilder::start(out, reply, Rcode::NOERROR)?;
    builder.set_truncated();
    builder.finish(None)
}

fn write_error(out: &mut [u8], reply: &ReplyTo<'_>, error: &ErrorAnswer) -> Option<usize> {
    synth::write_rcode_response(out, reply, error.rcode, error.ede.as_ref())
}

fn respond_error(out: &mut [u8], reply: &ReplyTo<'_>, error: &ErrorAnswer) -> Outcome {
    respond_or_drop(write_error(out, reply, error))
}

/// The answer to a NOTIFY: QR, opcode NOTIFY, AA, the question echoed.
fn write_notify_response(
    out: &mut [u8],
    id: u16,
    query_flags: u16,
    question: &[u8],
    rcode: Rcode,
) -> Option<usize> {
    let len = 12 + question.len();
    let buffer = out.get_mut(..len)?;
    use crate::query::flags;
    let header_flags = flags::QR | (query_flags & flags::OPCODE) | flags::AA | (rcode.0 & 0x0f);
    buffer[..2].copy_from_slice(&id.to_be_bytes());
    buffer[2..4].copy_from_slice(&header_flags.to_be_bytes());
    buffer[4..6].copy_from_slice(&1u16.to_be_bytes());
    buffer[6..12].fill(0);
    buffer[12..].copy_from_slice(question);
    Some(len)
}

pub(crate) fn respond_or_drop(written: Option<usize>) -> Outcome {
    match written {
        Some(len) => Outcome::Respond(len),
        None => Outcome::Drop,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use super::*;
    use juris_resolver::cache::CacheConfig;
    use juris_resolver::wire;

    fn answer(count: usize) -> CachedAnswer {
        let mut m = vec![0, 0, 0x81, 0x80, 0, 1, 0, count as u8, 0, 0, 0, 0];
        m.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        for i in 0..count {
            m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, i as u8]);
        }
        CachedAnswer::from_message(&m, 100, &CacheConfig::default()).unwrap()
    }

    fn reply(opt: bool, limit: usize) -> ReplyTo<'static> {
        ReplyTo {
            id: 7,
            query_flags: 0x0100,
            question: Some(b"\x01A\x00\x00\x01\x00\x01"),
            opt: opt.then_some(OptReply {
                udp_payload_size: 1232,
                dnssec_ok: true,
                padding: false,
                ecs: None,
                cookie: None,
            }),
            limit,
        }
    }

    #[test]
    fn a_client_with_a_valid_server_cookie_is_exempt_from_the_rate_limits() {
        use crate::ratelimit::{RateLimitConfig, Rates};
        let mut rates = Rates::default();
        rates.set(RateClass::Queries, 1);
        rates.set(RateClass::Answers, 1);
        let limiter = RateLimiter::new(RateLimitConfig {
            rates,
            slip: 0,
            ..RateLimitConfig::default()
        });
        // A query with an OPT record (EDNS 0, no options).
        let mut packet = vec![0, 9, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        packet.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        packet.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        let parsed = parse_query(&packet, &ParseConfig::default()).unwrap();
        let mut with_cookie = parsed;
        with_cookie.edns.as_mut().unwrap().cookie_valid = true;
        let context = ClientContext {
            client: "192.0.2.1:5300".parse().unwrap(),
            transport: Transport::Udp,
            listener: 0,
            client_subnet: None,
        };
        let counters = Counters::default();
        let mut out = [0u8; 512];
        let mut check = |query: &Query<'_>| {
            let reply = ReplyTo::for_query(query, 1232, Transport::Udp);
            limit_query(
                Some(&limiter),
                query,
                &reply,
                context,
                &mut out,
                &counters,
                1,
            )
            .map(|l| l.is_some())
        };
        assert!(matches!(check(&parsed), Ok(true)), "within the rate");
        assert!(matches!(check(&parsed), Err(Outcome::Drop)), "over it");
        for _ in 0..100 {
            assert!(
                matches!(check(&with_cookie), Ok(false)),
                "exempt, responses too"
            );
        }
        assert!(matches!(check(&parsed), Err(Outcome::Drop)));
        assert_eq!(counters.snapshot().rate_limited[0][0], 2);
    }

    #[test]
    fn kernel_drops_are_off_without_rates_and_behind_proxy_load_balancers() {
        use crate::kdrop::KernelDropConfig;
        use crate::ratelimit::{RateLimitConfig, Rates};
        let mut rates = Rates::default();
        rates.set(RateClass::Misses, 10);
        let wanted = KernelDropConfig {
            after: 50,
            ..KernelDropConfig::default()
        };
        let limits = RateLimitConfig {
            rates,
            kernel_drop: wanted,
            ..RateLimitConfig::default()
        };
        assert_eq!(kernel_drop_settings(&limits, false), wanted);
        assert_eq!(kernel_drop_settings(&limits, true).after, 0, "behind PROXY");
        let no_rates = RateLimitConfig {
            kernel_drop: wanted,
            ..RateLimitConfig::default()
        };
        assert_eq!(
            kernel_drop_settings(&no_rates, false).after,
            0,
            "no rate set"
        );
    }

    #[test]
    fn render_appends_opt_and_fixes_arcount() {
        let entry = answer(2);
        let mut out = [0u8; 512];
        let ede = ExtendedError {
            info_code: 3,
            extra_text: "stale answer",
        };
        let len = render_answer(
            &mut out,
            &reply(true, 512),
            b"\x01A\x00",
            &entry,
            110,
            Some(30),
            Some(&ede),
        )
        .unwrap();
        assert_eq!(len, entry.len() + opt_len(Some(&ede)));
        assert_eq!(&out[10..12], &[0, 1], "ARCOUNT counts the OPT");
        assert_eq!(out[13], b'A', "client case");
        let first = wire::record_at(&out[..len], entry.question_end()).unwrap();
        assert_eq!(wire::u32_at(&out, first.ttl_at).unwrap(), 30, "stale TTL");
        let opt_at = entry.len();
        assert_eq!(&out[opt_at..opt_at + 3], &[0, 0, 41]);
        assert_eq!(out[opt_at + 7], 0x80, "DO echoed");
    }

    #[test]
    fn render_truncates_over_the_limit() {
        let entry = answer(40);
        assert!(entry.len() > 512);
        let mut out = [0u8; 4096];
        let len = render_answer(
            &mut out,
            &reply(false, 512),
            b"\x01a\x00",
            &entry,
            100,
            None,
            None,
        )
        .unwrap();
        assert_eq!(len, 12 + 7);
        assert_eq!(out[2] & 0x02, 0x02, "TC");
        assert_eq!(&out[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        // The same answer fits a TCP limit.
        let len = render_answer(
            &mut out,
            &reply(false, 65535),
            b"\x01a\x00",
            &entry,
            100,
            None,
            None,
        )
        .unwrap();
        assert_eq!(len, entry.len());
        assert_eq!(out[2] & 0x02, 0);
        // A too-small output buffer truncates rather than panics.
        let mut small = [0u8; 100];
        let len = render_answer(
            &mut small,
            &reply(true, 65535),
            b"\x01a\x00",
            &entry,
            100,
            None,
            None,
        )
        .unwrap();
        assert_eq!(small[2] & 0x02, 0x02);
        assert!(len <= 100);
    }
}

/// Counts what [`Pipeline::handle_counted`] decided: the response by transport and RCODE, a
/// drop, or a miss.
#[inline]
fn count_outcome(counters: &Counters, transport: Transport, out: &[u8], outcome: &Outcome) {
    match outcome {
        Outcome::Respond(len) => counters.response(transport, out.get(..*len).unwrap_or_default()),
        Outcome::Drop => counters.dropped(),
        Outcome::Resolve(_) => counters.cache_miss(),
    }
}

/// The order counters, plus what an observed answer needs: the order that blocked it and
/// whether it came from the cache.
struct Recording<'a> {
    counters: &'a crate::policy::OrderCounters,
    order: std::cell::Cell<Option<Arc<juris_policy::OrderInfo>>>,
    cached: std::cell::Cell<bool>,
}

impl<'a> Recording<'a> {
    fn new(counters: &'a crate::policy::OrderCounters) -> Self {
        Self {
            counters,
            order: std::cell::Cell::new(None),
            cached: std::cell::Cell::new(false),
        }
    }
}

impl Tally for Recording<'_> {
    fn withdrawn(&self, country: juris_geo::CountryCode) {
        Tally::withdrawn(self.counters, country);
    }

    fn blocked(
        &self,
        block: &juris_policy::Block,
        trigger: Trigger,
        country: Option<juris_policy::Country>,
    ) {
        Tally::blocked(self.counters, block, trigger, country);
        self.order.set(Some(Arc::clone(&block.fired.order)));
    }

    fn shadow(&self, matched: &juris_policy::Match, country: Option<juris_policy::Country>) {
        Tally::shadow(self.counters, matched, country);
    }

    fn answered_from_cache(&self) {
        self.cached.set(true);
    }
}
