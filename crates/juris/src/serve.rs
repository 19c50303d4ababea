//! `juris serve`: wires the cache, the resolver, the policy and the listeners together and
//! waits for a signal. SIGINT and SIGTERM drain and shut down (`server.drain_timeout_ms`);
//! SIGHUP reloads the GeoIP database, re-reads the orders, reloads the TLS certificate of the
//! encrypted listeners and applies the configuration's live keys (`crate::reload`). Started as
//! root it switches to `--user` once everything is bound; systemd hears READY, RELOADING,
//! STOPPING and watchdog pings (`crate::lifecycle`; docs/design/0023).
//!
//! ```text
//!  Settings ─► Classifier (GeoIP, trusted ECS)      ─┐
//!           ─► OrderLoader::load ─► PolicyHandle     ─┼─► PolicyEngine ─► juris_server::start_with_policy
//!           ─► cache + resolver                      ─┘
//!  startup: the first order load runs here, on the main thread, before the listeners start
//!  threads: order loader actor (inotify + poll every 200 ms, SCHED_IDLE; runs every later
//!           load: SIGHUP and store changes send it a wake-up) · status writer
//!           (DATA_DIR/status.json every 2 s)
//!  shutdown: SIGTERM/SIGINT are never held up by a load: the loader gets
//!           LOADER_STOP_BOUND to finish, then is left to end with the process; before
//!           that, TCP/DoT/DoH connections drain (answer what they read) within
//!           server.drain_timeout_ms while /readyz says 503
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use juris_geo::Classifier;
use juris_resolver::cache::AnswerCache;
use juris_resolver::clock::{SharedClock, SystemClock};
use juris_resolver::Resolver;
use juris_server::{ListenerConfig, PolicyEngine, PolicyHandle, ServerConfig};
use tracing::{error, info, warn};

use crate::config::{LogFormat, Settings};
use crate::fleet::follower::Follower;
use crate::fleet::publisher::Publisher;
use crate::fleet::rpz_feed::RpzFeed;
use crate::lifecycle;
use crate::orders::{
    FileSource, FleetSource, LoaderHandle, OrderLoader, OrderSource, RpzFeedSource, Safeguards,
    StoreSource,
};
use crate::status::Status;

/// How often `DATA_DIR/status.json` is rewritten.
const STATUS_INTERVAL: Duration = Duration::from_secs(2);
/// How long shutdown waits for a load in progress (it runs at the lowest priority and may not
/// progress at all on a busy machine; nothing it does needs to finish).
const LOADER_STOP_BOUND: Duration = Duration::from_secs(2);

/// Runs until SIGINT or SIGTERM. `document` is the configuration file as read at start;
/// `reread` reads and validates it again (SIGHUP): of what it says, the keys in
/// [`reload::LIVE_KEYS`] are put in force live, other changed keys are named as needing a
/// restart. `user`: `--user` (see [`lifecycle::plan`]).
pub fn run(
    settings: Settings,
    user: Option<&str>,
    document: toml::Value,
    reread: impl Fn() -> anyhow::Result<(Settings, toml::Value)>,
) -> anyhow::Result<()> {
    let log_level = init_logging(&settings.log_level, settings.log_format)?;
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "server.data_dir: cannot create {}",
            settings.data_dir.display()
        )
    })?;
    // Started as root: whom to become once everything is bound.
    let account = lifecycle::plan(user, nix::unistd::geteuid().as_raw(), lifecycle::lookup)?;

    // The published protected lists (`juris safeguards update`), read now and on SIGHUP.
    settings.load_protected()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let control = crate::control::open(&settings, Arc::clone(&clock))?;
    let follower = match settings.fleet.follow {
        Some(primary) => {
            let follower = Arc::new(Follower::new(&settings.fleet, &settings.data_dir)?);
            start_following(&follower);
            // An edge runs no store of its own: order changes are refused with the primary's
            // address.
            control.set_follower(primary.to_string());
            Some(follower)
        }
        None => None,
    };
    let publisher = match settings.fleet.xfr_listen {
        Some(_) => {
            let publisher = Arc::new(Publisher::new(&settings.fleet)?);
            // A restart keeps the serial and serves deltas from before it.
            publisher.persist_to(&settings.data_dir);
            // Orders show where they are in force; deadlines wait for every follower.
            control.set_fleet(Arc::clone(&publisher) as Arc<dyn juris_control::FleetProof>);
            Some(publisher)
        }
        None => None,
    };
    let rpz_feeds = start_rpz_feeds(&settings)?;
    let store = follower.is_none().then(|| Arc::clone(&control));
    let (engine, mut loader) = policy_engine_fleet(
        &settings,
        clock.unix_seconds(),
        store,
        publisher.clone(),
        follower.clone(),
        rpz_feeds.clone(),
    )?;
    // Mirror candidates compare with the name targets the loader holds (`docs/candidates.md`).
    let name_targets = match (&mut loader, settings.candidates.enabled) {
        (Some(loader), true) => Some(loader.share_name_targets()),
        _ => None,
    };
    if let (Some(publisher), Some(address)) = (&publisher, settings.fleet.xfr_listen) {
        publisher.start(address)?;
    }
    if follower.is_some() || !rpz_feeds.is_empty() {
        let (follower, feeds) = (follower.clone(), rpz_feeds.clone());
        engine.notify.set(Box::new(move |zone, from| {
            follower.as_ref().is_some_and(|f| f.notified(zone, from))
                || feeds.iter().any(|feed| feed.notified(zone, from))
        }));
    }
    let cache = Arc::new(AnswerCache::new(settings.cache.clone()));
    let resolver =
        Resolver::new(settings.resolver.clone(), cache, clock.clone()).context("resolver")?;
    match &settings.resolver.mode {
        juris_resolver::Mode::Recursive { root_hints } => {
            info!(root_servers = root_hints.len(), "recursive mode")
        }
        juris_resolver::Mode::Forward { upstreams } => {
            info!(?upstreams, "forwarding mode")
        }
    }

    let mut config = server_config(&settings);
    let server = match juris_server::start_with_policy(
        config.clone(),
        resolver.clone(),
        clock.clone(),
        engine.clone(),
    ) {
        Ok(server) => server,
        // The embedded defaults include [::1]: a machine without IPv6 still gets a server.
        Err(e) if settings.default_listeners => {
            warn!(error = %e, "default listeners failed; retrying on IPv4 loopback only");
            config.listeners.retain(|l| l.addr.is_ipv4());
            juris_server::start_with_policy(config, resolver, clock.clone(), engine.clone())
                .context("starting listeners")?
        }
        Err(e) => return Err(e).context("starting listeners"),
    };
    for listener in server.listeners() {
        info!(addr = %listener.addr, udp = listener.udp, tcp = listener.tcp, "listening");
    }
    // The query log and dnstap: writer threads fed from bounded channels (never waited for).
    let mut answer_sinks = Vec::new();
    if let Some(querylog) = &settings.querylog {
        answer_sinks.push(crate::querylog::start(querylog)?);
        info!(path = %querylog.path.as_ref().map_or("stderr".into(), |p| p.display().to_string()), "query log on");
    }
    if let Some(dnstap) = &settings.dnstap {
        answer_sinks.push(crate::dnstap::start(dnstap)?);
        info!(socket = %dnstap.socket.display(), "dnstap on");
    }
    server.pipeline().observe_answers(answer_sinks);
    // DoT, DoH, DoQ: the same pipeline (and policy), on the server's runtime.
    let transports = match &settings.transports {
        Some(transports) => {
            let runtime = server
                .runtime_handle()
                .context("encrypted listeners: the server runtime is gone")?;
            let started =
                juris_transport::start(transports, Arc::clone(server.pipeline()), &runtime)
                    .context("starting encrypted listeners")?;
            for listener in started.listeners() {
                info!(addr = %listener.addr, protocol = %listener.protocol, "listening");
            }
            Some(started)
        }
        None => None,
    };

    let candidates = match name_targets {
        Some(targets) => {
            let runtime = server
                .runtime_handle()
                .context("candidate mining: the server runtime is gone")?;
            crate::candidates::Candidates::start(
                &settings.candidates,
                server.pipeline(),
                &runtime,
                targets,
                settings.protected.clone(),
            )
        }
        None => crate::candidates::Candidates::disabled(),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    // The loader actor: it owns the loader from here on; others send it wake-ups.
    let (loader, loader_thread) = match loader {
        Some(loader) => {
            let now = clock.clone();
            let (handle, thread) =
                crate::orders::spawn(loader, move || now.unix_seconds(), settings.watch_interval)
                    .context("order loader thread")?;
            let runtime = server
                .runtime_handle()
                .context("control store watcher: the server runtime is gone")?;
            for feed in &rpz_feeds {
                feed.spawn(handle.clone())?;
            }
            if let Some(follower) = &follower {
                follower.spawn(handle.clone())?;
            } else {
                crate::control::watch_store(&control, handle.clone(), &runtime);
            }
            (Some(handle), Some(thread))
        }
        None => (None, None),
    };
    // The admin API (control plane), on the server's runtime.
    let stats: crate::control::StatsCell = Arc::new(Mutex::new(server.stats()));
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel();
    let (public_stop, public_stopped) = tokio::sync::oneshot::channel();
    let phase = Arc::new(crate::control::Phase::default());
    // HTTPS for the API and the public listener: the files are read here, as root if started so.
    let https = match (&settings.api_tls, settings.api_listen) {
        (Some(tls), Some(_)) => Some(crate::api_tls::HttpsConfig::load(tls)?),
        _ => None,
    };
    if let Some(address) = settings.api_listen {
        let runtime = server
            .runtime_handle()
            .context("admin API: the server runtime is gone")?;
        // The loader's status channel: reading it never waits for a load.
        let status = loader.clone();
        let policy_error = Arc::new(move || status.as_ref().and_then(|l| l.status().last_error));
        let mut view = crate::control::LiveServer::new(
            Arc::clone(server.pipeline()),
            Arc::clone(&stats),
            policy_error,
            candidates,
            Arc::clone(&phase),
        );
        let role: Option<Arc<dyn Fn() -> serde_json::Value + Send + Sync>> =
            match (&publisher, &follower) {
                (Some(publisher), _) => {
                    let publisher = Arc::clone(publisher);
                    Some(Arc::new(move || publisher.status()))
                }
                (None, Some(follower)) => {
                    let follower = Arc::clone(follower);
                    Some(Arc::new(move || follower.status()))
                }
                (None, None) => None,
            };
        if let (None, Some(follower)) = (&publisher, &follower) {
            let ready = Arc::clone(follower);
            view = view.with_fleet_ready(Arc::new(move || ready.readiness()));
        }
        if role.is_some() || !rpz_feeds.is_empty() {
            // The RPZ feeds are shown under `fleet.rpz_feeds`, beside the role's fields.
            let feeds = rpz_feeds.clone();
            view = view.with_fleet(Arc::new(move || {
                let mut status = role
                    .as_ref()
                    .map_or_else(|| serde_json::json!({ "role": "none" }), |role| role());
                if let (Some(object), false) = (status.as_object_mut(), feeds.is_empty()) {
                    let list: Vec<serde_json::Value> = feeds.iter().map(|f| f.status()).collect();
                    object.insert("rpz_feeds".into(), serde_json::Value::Array(list));
                }
                status
            }));
        }
        let state = juris_control::ApiState {
            control: Arc::clone(&control),
            server: Arc::new(view),
        };
        // Inside the runtime: the transparency page's builder starts with the routers (its
        // first build is then under way before the first request).
        let entered = runtime.enter();
        if let Some(public) = settings.public_listen {
            let router = juris_control::console::public_router(state.clone());
            let key = crate::control::PUBLIC_KEY;
            crate::control::start_http(
                public,
                key,
                router,
                https.as_ref(),
                &runtime,
                public_stopped,
            )?;
        }
        let router = juris_control::api::router(state);
        drop(entered);
        let key = "control.api_listen";
        let started =
            crate::control::start_http(address, key, router, https.as_ref(), &runtime, api_stopped);
        match started {
            Ok(_) => {}
            // The default port may be taken (another juris on the machine): the resolver still
            // runs; a configured address must bind.
            Err(e) if settings.control.api_listen == juris_control::DEFAULT_API_LISTEN => {
                warn!("admin API not started: {e:#} (set control.api_listen or --api-listen)")
            }
            Err(e) => return Err(e),
        }
    }
    // Every listener is bound: root is no longer needed.
    // The state directory and what root wrote in it (the store) become the user's first.
    if let Some(account) = &account {
        lifecycle::give_data_dir(account, &settings.data_dir)?;
        lifecycle::drop_to(account)?;
    }
    let status = StatusWriter {
        daily: Some(Arc::new(crate::control::DailyFlusher::new(
            Arc::clone(&control),
            Arc::clone(&engine.counters),
            Duration::from_secs(u64::from(settings.control.stats_flush_seconds)),
        ))),
        engine: engine.clone(),
        orders: loader
            .as_ref()
            .map(|l| (settings.orders.clone(), l.clone())),
        data_dir: settings.data_dir.clone(),
    };
    status.write(true);
    threads.push(status.clone().spawn(Arc::clone(&stop))?);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    phase.serving();
    lifecycle::ready("serving");
    let shutdown = wait_for_shutdown(|| {
        lifecycle::reloading();
        // Before the orders are read again: they are validated with the new list.
        match settings.load_protected() {
            Ok(true) => {
                info!("SIGHUP: new protected list in force; every order is validated again")
            }
            Ok(false) => info!("SIGHUP: protected list unchanged"),
            Err(e) => {
                error!("SIGHUP: protected list NOT reloaded, the previous one stays in force: {e}")
            }
        }
        reload(&engine, loader.as_ref());
        let live = Live {
            engine: &engine,
            pipeline: server.pipeline(),
            log_level: log_level.as_ref(),
        };
        reload_config(&live, &document, &reread);
        if let Some(transports) = &transports {
            match transports.reload_certificates() {
                Ok(()) => info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => error!(
                    "SIGHUP: TLS certificate NOT reloaded, the previous one stays in force: {e}"
                ),
            }
        }
        if let Some(https) = &https {
            match https.reload() {
                Ok(()) => info!("SIGHUP: admin API certificate and client CA reloaded"),
                Err(e) => error!(
                    "SIGHUP: admin API certificate NOT reloaded, the previous one stays in \
                     force: {e:#}"
                ),
            }
        }
        lifecycle::ready("serving (reloaded)");
    });
    // systemd's watchdog (WatchdogSec=): pinged from this loop, which also serves signals.
    let watchdog = async {
        match lifecycle::watchdog_interval() {
            Some(interval) => loop {
                lifecycle::watchdog();
                tokio::time::sleep(interval).await;
            },
            None => std::future::pending::<()>().await,
        }
    };
    // While waiting, the API's counters are refreshed every second.
    let refresh = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            *stats.lock().unwrap_or_else(PoisonError::into_inner) = server.stats();
        }
    };
    runtime.block_on(async {
        tokio::select! {
            result = shutdown => result,
            () = refresh => Ok(()),
            () = watchdog => Ok(()),
        }
    })?;
    phase.draining();
    lifecycle::stopping();
    // Drain: nothing new is accepted; open TCP, DoT and DoH connections answer what they have
    // read, within server.drain_timeout_ms. The admin API stays up meanwhile (/readyz: 503).
    if let Some(transports) = &transports {
        transports.shutdown();
    }
    server.drain();
    info!(
        bound_ms = settings.drain_timeout.as_millis() as u64,
        "shutting down: draining connections"
    );
    let deadline = std::time::Instant::now() + settings.drain_timeout;
    let open =
        transports.as_ref().map_or(0, |t| t.wait_drained(deadline)) + server.wait_drained(deadline);
    if open > 0 {
        warn!(
            open,
            "drain bound reached: closing the connections still open"
        );
    } else {
        info!("connections drained");
    }
    let _ = api_stop.send(());
    let _ = public_stop.send(());
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    if let Some(thread) = loader_thread {
        thread.stop(LOADER_STOP_BOUND);
    }
    if let Some(follower) = &follower {
        // A change the follower's thread had not written to the snapshot yet.
        follower.flush_snapshot();
    }
    if let Some(publisher) = &publisher {
        // The followers' serials as last seen (the proof's thread writes them as they come).
        publisher.save_proof();
    }
    server.shutdown();
    status.write(false);
    if let Some(daily) = &status.daily {
        daily.flush_logged();
    }
    Ok(())
}

/// The classifier and the policy as configured: the same for `serve` and `explain`. The
/// orders (files, and the control plane's store when given) are loaded through the loader
/// that also handles every later change.
pub fn policy_engine_with_store(
    settings: &Settings,
    now: u64,
    store: Option<Arc<juris_control::Control>>,
) -> anyhow::Result<(PolicyEngine, Option<OrderLoader>)> {
    policy_engine_fleet(settings, now, store, None, None, Vec::new())
}

/// The configured third-party RPZ feeds, each after its first transfer (bounded; a failure
/// is logged and the feed's thread keeps trying: until one succeeds its order is not in force).
fn start_rpz_feeds(settings: &Settings) -> anyhow::Result<Vec<Arc<RpzFeed>>> {
    let mut feeds = Vec::new();
    for feed_settings in &settings.rpz_feeds {
        let feed = Arc::new(RpzFeed::new(feed_settings.clone(), &settings.data_dir)?);
        match feed.transfer_once() {
            Ok(_) => info!(
                feed = feed.name(),
                "RPZ feed: following {}", feed_settings.zone
            ),
            Err(e) => {
                warn!(
                    feed = feed.name(),
                    "RPZ feed: the first transfer failed: {e}"
                );
                match feed.load_snapshot() {
                    Ok(true) => {}
                    Ok(false) => warn!(
                        feed = feed.name(),
                        "RPZ feed: no snapshot in the data directory: its order is not in force until a transfer succeeds"
                    ),
                    Err(e) => error!(
                        feed = feed.name(),
                        "RPZ feed: the snapshot is unusable, its order is not in force until a transfer succeeds: {e}"
                    ),
                }
            }
        }
        feeds.push(feed);
    }
    Ok(feeds)
}

/// What an edge starts from, before the first load: the validated orders of its snapshot
/// when they are usable (design 0043: the follower's thread then resumes by IXFR from the
/// snapshot's serial); else the primary's zone, or else the records of the snapshot (the
/// primary may be down), or else nothing yet (the follower's thread keeps trying).
fn start_following(follower: &Follower) {
    match follower.start_from_snapshot() {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => warn!(
            primary = %follower.primary(),
            "fleet: the snapshot's validated orders are not used (a transfer, or the snapshot's records validated again, instead): {e}"
        ),
    }
    match follower.transfer_once() {
        Ok(_) => info!(primary = %follower.primary(), "fleet: following the primary"),
        Err(e) => {
            warn!(primary = %follower.primary(), "fleet: the first transfer failed: {e}");
            match follower.load_snapshot() {
                Ok(true) => {}
                Ok(false) => warn!(
                    "fleet: no snapshot in the data directory: no orders are enforced until a transfer succeeds"
                ),
                Err(e) => error!("fleet: the snapshot is unusable, no orders are enforced until a transfer succeeds: {e}"),
            }
        }
    }
}

/// [`policy_engine_with_store`], plus the fleet: a primary's `publisher` gets the orders in
/// force after every load; an edge's `follower` is a source of orders.
pub fn policy_engine_fleet(
    settings: &Settings,
    now: u64,
    store: Option<Arc<juris_control::Control>>,
    publisher: Option<Arc<Publisher>>,
    follower: Option<Arc<Follower>>,
    rpz_feeds: Vec<Arc<RpzFeed>>,
) -> anyhow::Result<(PolicyEngine, Option<OrderLoader>)> {
    let edge = follower.is_some();
    let classifier = Classifier::from_settings(&settings.geo).context("geoip")?;
    if let Some(database) = classifier.database() {
        let info = database.info();
        info!(
            path = %info.path.display(),
            database_type = %info.database_type,
            field_path = %info.field_path,
            "GeoIP database loaded"
        );
    }
    let handle = Arc::new(PolicyHandle::default());
    let mut sources: Vec<Box<dyn OrderSource>> = Vec::new();
    if let Some(path) = &settings.orders {
        sources.push(Box::new(FileSource::new(path.clone())));
    }
    if let Some(store) = store {
        sources.push(Box::new(StoreSource::new(store)));
    }
    if let Some(follower) = follower {
        sources.push(Box::new(FleetSource::new(follower)));
    }
    if !rpz_feeds.is_empty() {
        sources.push(Box::new(RpzFeedSource::new(rpz_feeds)));
    }
    let loader = if sources.is_empty() {
        None
    } else {
        let safeguards = Safeguards::shared(settings.protected.clone());
        let mut loader = OrderLoader::new(sources, safeguards, Arc::clone(&handle));
        if let Some(publisher) = publisher {
            loader.set_publisher(publisher);
        }
        let context = || match &settings.orders {
            Some(path) => format!("policy.orders: cannot load {}", path.display()),
            None if edge => "cannot load the orders of the fleet primary".to_owned(),
            None => "cannot load the orders of the control store".to_owned(),
        };
        let loaded = loader.load(now).with_context(context)?;
        // At startup there is no last good version to keep: an invalid order stops the start,
        // as before the loader became incremental (later changes only reject that order).
        // An edge starts anyway (its orders are the primary's; the others are in force).
        for error in &loaded.rejected {
            if edge {
                error!("an order of the fleet primary is INVALID here and NOT applied: {error}");
            }
        }
        if let (Some(error), false) = (loaded.rejected.into_iter().next(), edge) {
            return Err(anyhow::Error::new(error).context(context()));
        }
        info!(
            sources = loader.describe(),
            generation = loaded.generation,
            orders = loaded.orders,
            "orders loaded"
        );
        Some(loader)
    };
    Ok((PolicyEngine::new(handle, Arc::new(classifier)), loader))
}

/// SIGHUP: reload the GeoIP database and ask the loader to re-read the orders (a wake-up: it
/// never waits for a load); failures keep what is in force.
fn reload(engine: &PolicyEngine, loader: Option<&LoaderHandle>) {
    match engine.classifier.reload() {
        Ok(Some(info)) => info!(path = %info.path.display(), "SIGHUP: GeoIP database reloaded"),
        Ok(None) => info!("SIGHUP: no GeoIP database configured"),
        Err(e) => {
            error!("SIGHUP: GeoIP database NOT reloaded, the previous one stays in force: {e}")
        }
    }
    if let Some(loader) = loader {
        loader.reload("SIGHUP");
    }
}

/// Sets the log filter (`log.level`); `None` when `RUST_LOG` decides instead.
type LogLevel = Box<dyn Fn(&str) -> anyhow::Result<()>>;

/// What a SIGHUP can change in the running server.
struct Live<'a> {
    engine: &'a PolicyEngine,
    pipeline: &'a juris_server::Pipeline,
    log_level: Option<&'a LogLevel>,
}

/// SIGHUP: read the configuration again; put `policy.withdraw`, `server.allow`, `log.level`,
/// `server.rate_limit` and `server.cookies` in force, and name every other key that changed since start as needing a restart (not
/// applied). A configuration that does not read or validate changes nothing.
fn reload_config(
    live: &Live<'_>,
    started: &toml::Value,
    reread: &dyn Fn() -> anyhow::Result<(Settings, toml::Value)>,
) {
    let (settings, document) = match reread() {
        Ok(read) => read,
        Err(e) => {
            error!("SIGHUP: configuration NOT reloaded, nothing in it changes: {e:#}");
            return;
        }
    };
    let (changed_live, restart) =
        crate::reload::partition(crate::reload::changed_keys(started, &document));
    let withdrawn = settings.policy.withdrawn;
    if *live.engine.policy.withdrawn() != withdrawn {
        let list: Vec<String> = withdrawn.iter().map(ToString::to_string).collect();
        info!(withdrawn = ?list, "SIGHUP: policy.withdraw reloaded");
    }
    live.engine.policy.publish_withdrawn(withdrawn);
    live.pipeline.set_allow(&settings.allow);
    if let Err(reason) = live.pipeline.set_rate_limit(&settings.rate_limit) {
        // Validated with the file already; kept for safety.
        error!("SIGHUP: server.rate_limit NOT reloaded: {reason}");
    }
    if let Err(reason) = live.pipeline.set_cookies(&settings.cookies) {
        error!("SIGHUP: server.cookies NOT reloaded: {reason}");
    }
    if !restart.is_empty() {
        error!(
            "SIGHUP: changed keys NOT applied, they need a restart: {}",
            restart.join(", ")
        );
    }
    info!(
        changed_since_start = %changed_live.join(", "),
        "SIGHUP: configuration reloaded (log.level, server.allow, server.rate_limit, server.cookies, policy.withdraw in force)"
    );
    // Last, so that the lines above are written at the level they were asked at.
    match live.log_level {
        Some(set) => {
            if let Err(e) = set(&settings.log_level) {
                error!("SIGHUP: log.level NOT reloaded: {e:#}");
            }
        }
        None if changed_live.iter().any(|k| k == "log.level") => {
            warn!("SIGHUP: RUST_LOG is set and decides the log filter: log.level not applied")
        }
        None => {}
    }
}

#[derive(Clone)]
struct StatusWriter {
    engine: PolicyEngine,
    /// The orders' path and the loader (its status channel: never waits for a load).
    orders: Option<(Option<PathBuf>, LoaderHandle)>,
    data_dir: PathBuf,
    /// The per-day counters' flush to the store (every `control.stats_flush_seconds`).
    daily: Option<Arc<crate::control::DailyFlusher>>,
}

impl StatusWriter {
    fn write(&self, running: bool) {
        let (source, last_error) = match &self.orders {
            Some((path, loader)) => (path.clone(), loader.status().last_error),
            None => (None, None),
        };
        let status = Status::collect(
            &self.engine,
            source.as_deref(),
            last_error.as_deref(),
            running,
        );
        if let Err(e) = status.write(&self.data_dir) {
            warn!("status: {e:#}");
        }
    }

    fn spawn(self, stop: Arc<AtomicBool>) -> anyhow::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("juris-status".into())
            .spawn(move || {
                let tick = Duration::from_millis(100);
                let mut waited = Duration::ZERO;
                let mut since_flush = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    waited += tick;
                    since_flush += tick;
                    if waited >= STATUS_INTERVAL {
                        waited = Duration::ZERO;
                        self.write(true);
                    }
                    if let Some(daily) = self.daily.as_ref().filter(|d| since_flush >= d.interval) {
                        since_flush = Duration::ZERO;
                        daily.flush_logged();
                    }
                }
            })
            .context("status thread")
    }
}

/// The listeners' configuration (also what `explain` runs its pipeline with).
pub fn server_config(settings: &Settings) -> ServerConfig {
    ServerConfig {
        listeners: settings
            .listeners
            .iter()
            .map(|l| ListenerConfig {
                addr: l.addr,
                udp: l.udp,
                tcp: l.tcp,
                country: l.country,
            })
            .collect(),
        threads: settings.threads,
        allow: settings.allow.clone(),
        proxy_protocol_from: settings.proxy_protocol_from.clone(),
        tcp_idle_timeout: settings.tcp_idle_timeout,
        tcp_max_connections: settings.tcp_max_connections,
        udp_receive_buffer: settings.udp_receive_buffer,
        hot_answer_slots: settings.hot_answer_slots,
        tcp_max_in_flight: settings.tcp_max_in_flight,
        max_udp_payload: settings.max_udp_payload,
        structured_error_option_code: settings.structured_error_option_code,
        policy: settings.policy.clone(),
        rate_limit: settings.rate_limit.clone(),
        cookies: settings.cookies.clone(),
        ..ServerConfig::default()
    }
}

async fn wait_for_shutdown(mut on_hangup: impl FnMut()) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
            _ = hangup.recv() => on_hangup(),
        }
    }
}

/// Logs to stderr through `log.level` (or `RUST_LOG` when set) in `log.format`; returns how
/// to change `log.level` later (`None` under `RUST_LOG`).
fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<Option<LogLevel>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{reload, EnvFilter, Layer, Registry};
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => (EnvFilter::try_new(env).context("RUST_LOG")?, true),
        _ => (EnvFilter::try_new(level).context("log.level")?, false),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Text => Box::new(lines),
        LogFormat::Json => Box::new(lines.json()),
    };
    Registry::default()
        .with(filter)
        .with(lines)
        .try_init()
        .context("logging")?;
    if from_env {
        return Ok(None);
    }
    Ok(Some(Box::new(move |level: &str| {
        let filter = EnvFilter::try_new(level).context("log.level")?;
        handle.reload(filter).context("log.level")
    })))
}
