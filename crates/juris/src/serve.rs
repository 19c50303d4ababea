//! `juris serve`: wires the cache, the resolver and the listeners together and waits for a
//! signal. SIGINT and SIGTERM shut down cleanly; SIGHUP reloads what can be reloaded.

use std::sync::Arc;

use anyhow::Context;
use juris_resolver::cache::AnswerCache;
use juris_resolver::clock::{SharedClock, SystemClock};
use juris_resolver::Resolver;
use juris_server::{ListenerConfig, ServerConfig};
use tracing::{info, warn};

use crate::config::Settings;

/// Runs until SIGINT or SIGTERM.
pub fn run(settings: Settings) -> anyhow::Result<()> {
    init_logging(&settings.log_level)?;
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "server.data_dir: cannot create {}",
            settings.data_dir.display()
        )
    })?;

    let clock: SharedClock = Arc::new(SystemClock);
    let cache = Arc::new(AnswerCache::new(settings.cache.clone()));
    let resolver = Resolver::new(settings.resolver.clone(), cache, clock.clone())
        .context("resolver")?;
    match &settings.resolver.mode {
        juris_resolver::Mode::Recursive { root_hints } => {
            info!(root_servers = root_hints.len(), "recursive mode")
        }
        juris_resolver::Mode::Forward { upstreams } => {
            info!(?upstreams, "forwarding mode")
        }
    }

    let mut config = server_config(&settings);
    let server = match juris_server::start(config.clone(), resolver.clone(), clock.clone()) {
        Ok(server) => server,
        // The embedded defaults include [::1]: a machine without IPv6 still gets a server.
        Err(e) if settings.default_listeners => {
            warn!(error = %e, "default listeners failed; retrying on IPv4 loopback only");
            config.listeners.retain(|l| l.addr.is_ipv4());
            juris_server::start(config, resolver, clock).context("starting listeners")?
        }
        Err(e) => return Err(e).context("starting listeners"),
    };
    for listener in server.listeners() {
        info!(addr = %listener.addr, udp = listener.udp, tcp = listener.tcp, "listening");
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    runtime.block_on(wait_for_shutdown())?;
    info!("shutting down");
    server.shutdown();
    Ok(())
}

fn server_config(settings: &Settings) -> ServerConfig {
    ServerConfig {
        listeners: settings
            .listeners
            .iter()
            .map(|l| ListenerConfig {
                addr: l.addr,
                udp: l.udp,
                tcp: l.tcp,
            })
            .collect(),
        threads: settings.threads,
        allow: settings.allow.clone(),
        tcp_idle_timeout: settings.tcp_idle_timeout,
        tcp_max_connections: settings.tcp_max_connections,
        max_udp_payload: settings.max_udp_payload,
        ..ServerConfig::default()
    }
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
            _ = hangup.recv() => info!("SIGHUP: nothing to reload yet"),
        }
    }
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env).context("RUST_LOG")?,
        _ => EnvFilter::try_new(level).context("log.level")?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
