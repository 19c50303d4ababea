//! Mirror candidates in the running server (issue #14 item 3; `docs/candidates.md`): a task on
//! the server's runtime takes the names the resolver resolved from a bounded channel (filled on
//! the miss path, dropped when full: `juris_server::observe`) into the bounded
//! [`juris_control::candidates::Miner`]; another looks up the blocked targets' name servers
//! and addresses through the resolver, a few per round, so that the name-server and address
//! signals have something to compare with (blocked names are never resolved for clients).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use juris_control::candidates::{
    CandidateList, CandidatesConfig, DomainKeys, Miner, Observation, Reference,
};
use juris_control::{ProtectedList, SharedProtected};
use juris_server::observe::{NameKey, Resolved, ResolvedSink};
use juris_server::Pipeline;

use crate::orders::NameTargets;

const QTYPE_A: u16 = 1;
const QTYPE_AAAA: u16 = 28;
/// How often the profiler looks for targets it has not looked up yet.
const PROFILE_TICK: Duration = Duration::from_secs(1);
/// How often the resolved names queued by the miss path are mined (design 0026).
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);
/// How long the miss path lets through one name per registrable domain (design 0042).
const SEEN_WINDOW: Duration = Duration::from_secs(10);
/// Slots of the miss path's seen-filter (12 bytes each).
const SEEN_SLOTS: usize = 16_384;
/// The miner thread's nice value: below the resolver's workers.
const MINER_NICE: i32 = 10;

/// What a blocked target resolved to, and when.
#[derive(Debug, Clone)]
struct Profile {
    name_servers: Vec<String>,
    addresses: Vec<IpAddr>,
    at: Instant,
}

/// The mining state the API reads.
pub struct Candidates {
    enabled: bool,
    miner: Mutex<Miner>,
    profiles: Mutex<HashMap<String, Profile>>,
    targets: NameTargets,
    max_targets: usize,
    protected: SharedProtected,
    sink: Option<ResolvedSink>,
}

impl Candidates {
    /// Mining switched off: lists nothing.
    pub fn disabled() -> Arc<Candidates> {
        Arc::new(Candidates {
            enabled: false,
            miner: Mutex::new(Miner::new(1)),
            profiles: Mutex::default(),
            targets: NameTargets::default(),
            max_targets: 0,
            protected: SharedProtected::new(ProtectedList::defaults()),
            sink: None,
        })
    }

    /// Starts mining on `runtime`: resolved names of `pipeline` from now on, against the name
    /// targets the loader keeps in `targets`.
    pub fn start(
        config: &CandidatesConfig,
        pipeline: &Arc<Pipeline>,
        runtime: &tokio::runtime::Handle,
        targets: NameTargets,
        protected: SharedProtected,
    ) -> Arc<Candidates> {
        // The miss path keys each resolved name by its registrable domain (a hash with a
        // per-process seed: names cannot be crafted to hide a domain behind another's slot)
        // and lets one name per domain through per window (designs 0042, 0047).
        let keys = DomainKeys::new();
        let key: NameKey = Arc::new(move |wire: &[u8]| keys.key(wire));
        let (sink, receiver) = ResolvedSink::filtered(config.queue, SEEN_SLOTS, key);
        pipeline.observe_resolved(sink.clone());
        let candidates = Arc::new(Candidates {
            enabled: true,
            miner: Mutex::new(Miner::new(config.max_domains)),
            profiles: Mutex::default(),
            targets,
            max_targets: config.max_targets,
            protected,
            sink: Some(sink),
        });
        let miner = Arc::downgrade(&candidates);
        let clock = Arc::downgrade(pipeline);
        if let Err(error) = std::thread::Builder::new()
            .name("juris-miner".into())
            .spawn(move || drain(receiver, miner, clock))
        {
            tracing::warn!(%error, "candidate mining: no miner thread, nothing is mined");
        }
        let profiler = Arc::clone(&candidates);
        let pipeline = Arc::clone(pipeline);
        let interval = Duration::from_secs(config.profile_interval);
        let per_round = config.profiles_per_round;
        runtime.spawn(async move {
            let mut next_round = Instant::now();
            loop {
                let due = profiler.due(interval, per_round, Instant::now() >= next_round);
                if Instant::now() >= next_round {
                    next_round = Instant::now() + interval;
                }
                for name in due {
                    let profile = profile(&pipeline, &name).await;
                    if let Ok(mut profiles) = profiler.profiles.lock() {
                        profiles.insert(name, profile);
                    }
                }
                tokio::time::sleep(PROFILE_TICK).await;
            }
        });
        candidates
    }

    /// Targets to look up now: those never looked up, and (in a full round) those looked up
    /// longer than `interval` ago; at most `limit`.
    fn due(&self, interval: Duration, limit: usize, full_round: bool) -> Vec<String> {
        let targets = self.target_list();
        let Ok(mut profiles) = self.profiles.lock() else {
            return Vec::new();
        };
        // Forget the profiles of targets no longer compared (orders changed).
        if full_round {
            let wanted: std::collections::HashSet<&str> = self
                .compared(&targets)
                .iter()
                .map(|(_, name)| name.as_str())
                .collect();
            profiles.retain(|name, _| wanted.contains(name.as_str()));
        }
        let mut due: Vec<String> = Vec::new();
        for (_, name) in self.compared(&targets) {
            let stale = match profiles.get(name) {
                None => true,
                Some(profile) => full_round && profile.at.elapsed() >= interval,
            };
            if stale && !due.contains(name) {
                due.push(name.clone());
                if due.len() >= limit {
                    break;
                }
            }
        }
        due
    }

    /// The name targets (order id, name) as the loader lists them, by order; only the
    /// first `max_targets` are compared ([`Candidates::compared`]).
    fn target_list(&self) -> Arc<Vec<(String, String)>> {
        self.targets
            .lock()
            .map(|targets| Arc::clone(&targets))
            .unwrap_or_default()
    }

    fn compared<'a>(&self, targets: &'a [(String, String)]) -> &'a [(String, String)] {
        &targets[..targets.len().min(self.max_targets)]
    }

    /// The candidates now (dismissals not yet filtered: the API does that with the store).
    pub fn list(&self) -> CandidateList {
        if !self.enabled {
            return CandidateList::default();
        }
        let references: Vec<Reference> = {
            let profiles = self.profiles.lock().map(|p| p.clone()).unwrap_or_default();
            let targets = self.target_list();
            let references = self
                .compared(&targets)
                .iter()
                .map(|(order, name)| {
                    let profile = profiles.get(name);
                    Reference {
                        order: order.clone(),
                        name: name.clone(),
                        name_servers: profile.map(|p| p.name_servers.clone()).unwrap_or_default(),
                        addresses: profile.map(|p| p.addresses.clone()).unwrap_or_default(),
                    }
                })
                .collect();
            references
        };
        let Ok(miner) = self.miner.lock() else {
            return CandidateList::default();
        };
        CandidateList {
            enabled: true,
            domains: miner.len(),
            dropped: self.sink.as_ref().map_or(0, ResolvedSink::dropped),
            held_back: self.sink.as_ref().map_or(0, ResolvedSink::held),
            evicted: miner.evicted(),
            candidates: miner.candidates(&references, &self.protected.get()),
        }
    }
}

impl std::fmt::Debug for Candidates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidates")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// The miner thread: drains the queue filled on the miss path every [`DRAIN_INTERVAL`], in
/// batches, never waiting on the channel (a receiver parked in `recv()` would be woken by every
/// resolution: a cross-thread wake-up per cache miss, which cost W2 ~28 µs of CPU per answer;
/// with nobody waiting, `try_send` on the miss path is a few atomic operations). Its own thread
/// at a lower priority, not a task of the runtime, so mining never delays an answer. Ends when
/// the server's pipeline or the mining state is gone.
fn drain(
    mut receiver: tokio::sync::mpsc::Receiver<Resolved>,
    miner: Weak<Candidates>,
    clock: Weak<juris_server::Pipeline>,
) {
    if !juris_server::lower_thread_priority(MINER_NICE) {
        tracing::debug!("candidate mining: the miner thread keeps its priority");
    }
    let mut window = Instant::now();
    loop {
        std::thread::sleep(DRAIN_INTERVAL);
        let (Some(candidates), Some(clock)) = (miner.upgrade(), clock.upgrade()) else {
            return;
        };
        if window.elapsed() >= SEEN_WINDOW {
            window = Instant::now();
            if let Some(sink) = &candidates.sink {
                sink.next_window();
            }
        }
        let Ok(mut miner) = candidates.miner.lock() else {
            return;
        };
        loop {
            match receiver.try_recv() {
                Ok(resolved) => miner.observe(observation(&resolved, clock.now() as i64)),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
    }
}

fn observation(resolved: &Resolved, at: i64) -> Observation {
    let answer = &resolved.answer;
    Observation {
        name: juris_policy::wire_to_text(&resolved.name),
        cname_targets: answer
            .cname_targets()
            .iter()
            .map(|t| juris_policy::wire_to_text(t))
            .collect(),
        addresses: answer.addresses().to_vec(),
        name_servers: answer
            .name_servers()
            .names()
            .iter()
            .map(|n| juris_policy::wire_to_text(n))
            .collect(),
        at,
        repeats: resolved.repeats,
    }
}

/// The name servers and addresses of `name` (A and AAAA), as the resolver finds them.
async fn profile(pipeline: &Pipeline, name: &str) -> Profile {
    let mut profile = Profile {
        name_servers: Vec::new(),
        addresses: Vec::new(),
        at: Instant::now(),
    };
    let Ok(wire) = juris_policy::name_to_wire(name) else {
        return profile;
    };
    for qtype in [QTYPE_A, QTYPE_AAAA] {
        let Some(Ok(answer)) = pipeline.lookup(&wire, qtype).await else {
            continue;
        };
        profile.addresses.extend_from_slice(answer.addresses());
        if profile.name_servers.is_empty() {
            profile.name_servers = answer
                .name_servers()
                .names()
                .iter()
                .map(|n| juris_policy::wire_to_text(n))
                .collect();
        }
    }
    profile
}
