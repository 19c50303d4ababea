//! The control plane's command-line client: `juris order|import|export|audit|token|cache ...`.
//!
//! Online commands talk HTTP to the admin API (`--api URL`, default `http://127.0.0.1:8053`;
//! token from `--token` or `JURIS_TOKEN`) through a typed client: requests are built with
//! `percent-encoding` (path segments) and `form_urlencoded` (query strings), answers are read
//! into the API's own view types (`juris_control::api`, `OrderView`, `FeedAck`, ...), errors
//! into its `ErrorBody`. Offline commands open the store directly (`--data-dir DIR`):
//! `juris token create --role R` (how the first admin is bootstrapped) and
//! `juris audit verify`.
//!
//! ```text
//!  clap (Command) ─► run_with ─► Client::call::<View>(method, api_path(segments, query), body)
//!                             └► offline: Store ─► Control (token create, audit verify)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use juris_control::api::{
    AuditLog, CacheFlushRequest, CacheFlushView, CacheStats, ErrorBody, OrderList, Removed,
    Suspended,
};
use juris_control::feeds::{CumulativeFeed, FeedAck, RpzImportReport};
use juris_control::{
    Control, ControlConfig, ControlError, OrderView, Role, Store, SystemClock, TargetStatus,
    TargetView,
};
use juris_policy::{Order, TargetKind};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The data directory the server uses by default (`server.data_dir`).
pub const DEFAULT_DATA_DIR: &str = "juris-data";

/// Where the API is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// URL of the admin API.
    #[arg(
        long,
        global = true,
        env = "JURIS_API",
        default_value = "http://127.0.0.1:8053"
    )]
    pub api: String,
    /// Bearer token (default: the JURIS_TOKEN environment variable).
    #[arg(long, global = true, env = "JURIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate(s) (PEM) the API's HTTPS certificate must chain to, for `--api
    /// https://...` (default: the Mozilla roots built in). A self-signed certificate can be its
    /// own CA.
    #[arg(long, global = true, env = "JURIS_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate chain (PEM) for an API that asks for one (`[control]
    /// tls_client_ca`); with --client-key.
    #[arg(long, global = true, env = "JURIS_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, global = true, env = "JURIS_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
}

/// The control-plane commands, for the binary to embed.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Orders: apply, list, show, targets, lifecycle.
    Order(OrderCmd),
    /// Import feeds, lists and RPZ zones.
    Import(ImportCmd),
    /// Export RPZ zones, orders, transparency reports, feed acknowledgements.
    Export(ExportCmd),
    /// The audit log.
    Audit(AuditCmd),
    /// API tokens (offline, on the store).
    Token(TokenCmd),
    /// The resolver's cache (role operator): flush, stats.
    Cache(CacheCmd),
    /// Mirror candidates mined from resolved names: list, accept, dismiss.
    Candidates(CandidatesCmd),
}

/// `juris candidates [--order ID] [accept|dismiss NAME --order ID]`
#[derive(Debug, clap::Args)]
pub struct CandidatesCmd {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Only candidates for this order.
    #[arg(long)]
    pub order: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<CandidatesAction>,
}

/// What to do with one candidate.
#[derive(Debug, clap::Subcommand)]
pub enum CandidatesAction {
    /// Add NAME (and everything below it) to an extension of the order, with the signals as
    /// evidence, through the safeguards. Audited.
    Accept {
        /// The candidate (a registrable domain, e.g. kickasstorrents2.to).
        name: String,
        /// The order it was flagged for.
        #[arg(long)]
        order: String,
        /// The extension to add it to (default: an extension of the order in the store, else
        /// a new one, ORDER-ext).
        #[arg(long)]
        extension: Option<String>,
        /// Why (audited).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Do not show NAME again for the order. Audited.
    Dismiss {
        /// The candidate.
        name: String,
        /// The order it was flagged for.
        #[arg(long)]
        order: String,
        /// Why (audited).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// `juris cache ...`
#[derive(Debug, clap::Args)]
pub struct CacheCmd {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub action: CacheAction,
}

/// Cache commands.
#[derive(Debug, clap::Subcommand)]
pub enum CacheAction {
    /// Flush the whole cache, one name (every type: positive, negative, delegation data), or
    /// with --subtree the name and everything below it. Audited.
    Flush {
        /// The name (`example.com`); without it, everything.
        name: Option<String>,
        /// Also every name below NAME.
        #[arg(long, requires = "name")]
        subtree: bool,
        /// Why (audited).
        #[arg(long, default_value = "")]
        reason: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Entries, bytes, hits and misses of the answer cache.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `juris order ...`
#[derive(Debug, clap::Args)]
pub struct OrderCmd {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub action: OrderAction,
}

/// What to do with orders.
#[derive(Debug, clap::Subcommand)]
pub enum OrderAction {
    /// Create or update an order from an order document (JSON). A `state` in the document is
    /// applied as a transition.
    Apply {
        /// The order document.
        file: PathBuf,
        /// Why (audited).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List orders.
    List {
        /// draft, shadow, active, suspended, lifted or expired.
        #[arg(long)]
        state: Option<String>,
        /// Orders binding clients in this country (* for global orders only).
        #[arg(long)]
        jurisdiction: Option<String>,
        /// Order kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only orders with targets held for review.
        #[arg(long)]
        needs_review: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an order (JSON: document, targets with provenance and status, history).
    Show {
        /// Order id.
        id: String,
    },
    /// Add a target (an extension: a "future domain").
    AddTarget {
        /// Order id.
        id: String,
        /// Name, address or prefix.
        value: String,
        /// subtree, domain, ip, nsdname, nsip.
        #[arg(long = "type", default_value = "domain", value_parser = parse_kind)]
        kind: TargetKind,
        /// Evidence reference (URL, document id).
        #[arg(long)]
        evidence: Option<String>,
        /// Who found or asked for the target (e.g. the rights holder); default: the token's
        /// name. The audit entry names the token that added it either way.
        #[arg(long)]
        added_by: Option<String>,
        /// When the target was found (RFC 3339); default: now.
        #[arg(long)]
        added_at: Option<jiff::Timestamp>,
        /// Why (audited).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Remove a target.
    RemoveTarget {
        /// Order id.
        id: String,
        /// Name, address or prefix.
        value: String,
        /// subtree, domain, ip, nsdname, nsip.
        #[arg(long = "type", default_value = "domain", value_parser = parse_kind)]
        kind: TargetKind,
        /// Why (audited).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Release a target held for review (admin).
    OverrideTarget {
        /// Order id.
        id: String,
        /// Name, address or prefix.
        value: String,
        /// subtree, domain, ip, nsdname, nsip.
        #[arg(long = "type", default_value = "domain", value_parser = parse_kind)]
        kind: TargetKind,
        /// Why (required, audited).
        #[arg(long)]
        reason: String,
    },
    /// Shadow: count what the order would block, never enforce.
    Shadow(Transition),
    /// Activate (enforce).
    Activate(Transition),
    /// Suspend one order, or all (`--all`: the kill switch).
    Suspend {
        /// Order id (omit with --all).
        id: Option<String>,
        /// Suspend every active and shadow order.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// Why (audited).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift (final).
    Lift(Transition),
}

/// An order id and a reason.
#[derive(Debug, clap::Args)]
pub struct Transition {
    /// Order id.
    pub id: String,
    /// Why (audited).
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `juris import ...`
#[derive(Debug, clap::Args)]
pub struct ImportCmd {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub source: ImportSource,
}

/// What to import.
#[derive(Debug, clap::Subcommand)]
pub enum ImportSource {
    /// A cumulative feed (JSON with fqdn/ipv4/ipv6 lists and their SHA-256; docs/feeds.md).
    Feed {
        /// Feed name.
        name: String,
        /// The feed file.
        file: PathBuf,
        /// The order it feeds (required on the first import).
        #[arg(long)]
        order: Option<String>,
        /// Why (audited).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// A plain list, one name per line, into an order.
    List {
        /// Order id.
        order: String,
        /// The list.
        file: PathBuf,
        /// domain or subtree.
        #[arg(long = "type", default_value = "domain", value_parser = parse_kind)]
        kind: TargetKind,
        /// Why (audited).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// An RPZ zone file into an order.
    Rpz {
        /// Order id.
        order: String,
        /// The zone file.
        file: PathBuf,
        /// Why (audited).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// `juris export ...`
#[derive(Debug, clap::Args)]
pub struct ExportCmd {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub what: ExportWhat,
}

/// What to export.
#[derive(Debug, clap::Subcommand)]
pub enum ExportWhat {
    /// The RPZ zone of what is enforced now in one jurisdiction.
    Rpz {
        /// Country code, or * for global orders.
        #[arg(long)]
        jurisdiction: String,
        /// Zone name (default CODE.rpz.invalid).
        #[arg(long)]
        zone: Option<String>,
    },
    /// Every order in full (JSON).
    Orders,
    /// The transparency report.
    Transparency {
        /// json or csv.
        #[arg(long, default_value = "json")]
        format: String,
        /// Only orders binding this country.
        #[arg(long)]
        jurisdiction: Option<String>,
    },
    /// The acknowledgement of a feed import (JSON).
    Ack {
        /// Feed name.
        feed: String,
        /// Import number (default: the last).
        #[arg(long)]
        import: Option<i64>,
    },
}

/// `juris audit ...`
#[derive(Debug, clap::Args)]
pub struct AuditCmd {
    #[command(subcommand)]
    pub action: AuditAction,
}

/// Audit commands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditAction {
    /// Show the audit log (through the API).
    Log {
        #[command(flatten)]
        api: ApiArgs,
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify the hash chain, offline on the store. Exits non-zero if it is broken.
    Verify {
        /// The server's data directory.
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

/// `juris token ...`
#[derive(Debug, clap::Args)]
pub struct TokenCmd {
    #[command(subcommand)]
    pub action: TokenAction,
}

/// Token commands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenAction {
    /// Create a token, offline on the store, and print it (only its hash is kept).
    Create {
        /// viewer, operator, editor, approver or admin.
        #[arg(long, value_enum)]
        role: Role,
        /// The token's name (recorded as the actor in the audit log).
        #[arg(long, default_value = "admin")]
        name: String,
        /// The server's data directory.
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

/// Errors of the CLI.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API answered with an error.
    #[error("{field}: {reason} (HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The field at fault.
        field: String,
        /// Why.
        reason: String,
    },
    /// The API could not be reached.
    #[error("cannot reach the API at {url}: {message}")]
    Http {
        /// URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Error.
        source: std::io::Error,
    },
    /// An offline operation failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The audit chain is broken.
    #[error("audit log broken at entry {seq}: {problem}")]
    AuditBroken {
        /// First bad entry.
        seq: i64,
        /// What is wrong.
        problem: String,
    },
    /// A bad combination of arguments.
    #[error("{0}")]
    Usage(String),
}

/// Runs a control-plane command, printing to stdout (results) and stderr (progress).
pub fn run(command: Command) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_with(command, &mut stdout.lock(), &mut stderr.lock())
}

/// [`run`] with explicit output streams (tests).
pub fn run_with(
    command: Command,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<(), CliError> {
    match command {
        Command::Order(cmd) => order(&Client::new(&cmd.api)?, cmd.action, out),
        Command::Import(cmd) => import(&Client::new(&cmd.api)?, cmd.source, out, progress),
        Command::Export(cmd) => export(&Client::new(&cmd.api)?, cmd.what, out),
        Command::Audit(cmd) => audit(cmd.action, out),
        Command::Token(cmd) => token(cmd.action, out),
        Command::Cache(cmd) => cache(&Client::new(&cmd.api)?, cmd.action, out),
        Command::Candidates(cmd) => candidates(&Client::new(&cmd.api)?, cmd, out),
    }
}

/// `GET /v1/explain` on the running server (`juris explain --api`): its pipeline, policy,
/// cache and, with `resolve`, its resolver.
pub fn explain_remote(
    api: &ApiArgs,
    request: &juris_control::ExplainRequest,
) -> Result<juris_control::ExplainView, CliError> {
    let resolve = request.resolve.map(|r| r.to_string());
    let path = api_path(
        &["v1", "explain"],
        &[
            ("name", request.name.as_deref()),
            ("client", request.client.as_deref()),
            ("country", request.country.as_deref()),
            ("listener", request.listener.as_deref()),
            ("ecs", request.ecs.as_deref()),
            ("qtype", request.qtype.as_deref()),
            ("resolve", resolve.as_deref()),
        ],
    );
    Client::new(api)?.call("GET", &path, None)
}

fn candidates(client: &Client, cmd: CandidatesCmd, out: &mut dyn Write) -> Result<(), CliError> {
    use juris_control::candidates::{CandidateDecision, CandidateList, CandidateOutcome};
    let (name, decision, verb) = match cmd.action {
        None => {
            let path = api_path(&["v1", "candidates"], &[("order", cmd.order.as_deref())]);
            let list: CandidateList = client.call("GET", &path, None)?;
            if cmd.json {
                return write(out, to_pretty(&list)?);
            }
            let mut text = String::new();
            if !list.enabled {
                text.push_str("candidate mining is off (candidates.enabled = false)\n");
            }
            for candidate in &list.candidates {
                text.push_str(&format!(
                    "{}  seen {} times ({} .. {})  e.g. {}\n",
                    candidate.name,
                    candidate.count,
                    candidate.first_seen,
                    candidate.last_seen,
                    candidate.names.join(" ")
                ));
                for matched in &candidate.matches {
                    let signals: Vec<String> = matched
                        .signals
                        .iter()
                        .map(|s| format!("{} [{}]", s.signal, s.detail))
                        .collect();
                    text.push_str(&format!(
                        "  order {} (target {}): {}\n",
                        matched.order,
                        matched.target,
                        signals.join(", ")
                    ));
                }
            }
            text.push_str(&format!(
                "{} candidates; {} domains remembered, {} evicted, {} resolved names dropped",
                list.candidates.len(),
                list.domains,
                list.evicted,
                list.dropped
            ));
            return write(out, text);
        }
        Some(CandidatesAction::Accept {
            name,
            order,
            extension,
            reason,
        }) => (
            name,
            CandidateDecision {
                order,
                extension,
                reason,
            },
            "accept",
        ),
        Some(CandidatesAction::Dismiss {
            name,
            order,
            reason,
        }) => (
            name,
            CandidateDecision {
                order,
                extension: None,
                reason,
            },
            "dismiss",
        ),
    };
    let path = api_path(&["v1", "candidates", &name, verb], &[]);
    let outcome: CandidateOutcome = client.call_json("POST", &path, &decision)?;
    if cmd.json {
        return write(out, to_pretty(&outcome)?);
    }
    let text = match &outcome.extension {
        Some(extension) => format!(
            "{} {} for order {}: added to extension {} ({}){} (audit entry {})",
            outcome.name,
            outcome.decision,
            outcome.order,
            extension,
            outcome
                .extension_state
                .as_deref()
                .unwrap_or("unknown state"),
            if outcome.held {
                ", held for review (protected list)"
            } else {
                ""
            },
            outcome.audit_seq
        ),
        None => format!(
            "{} {} for order {} (audit entry {})",
            outcome.name, outcome.decision, outcome.order, outcome.audit_seq
        ),
    };
    write(out, text)
}

fn cache(client: &Client, action: CacheAction, out: &mut dyn Write) -> Result<(), CliError> {
    match action {
        CacheAction::Flush {
            name,
            subtree,
            reason,
            json,
        } => {
            let request = CacheFlushRequest {
                name,
                subtree,
                reason,
            };
            let path = api_path(&["v1", "cache", "flush"], &[]);
            let flushed: CacheFlushView = client.call_json("POST", &path, &request)?;
            if json {
                return write(out, to_pretty(&flushed)?);
            }
            let what = match (&flushed.name, flushed.subtree) {
                (None, _) => "the whole cache".to_owned(),
                (Some(name), false) => name.clone(),
                (Some(name), true) => format!("{name} and below"),
            };
            let removed = flushed.removed;
            write(
                out,
                format!(
                    "flushed {what}: {} answers, {} zone cuts, {} name server addresses, \
                     {} remembered failures (audit entry {})",
                    removed.answers,
                    removed.delegations,
                    removed.addresses,
                    removed.failures,
                    flushed.audit_seq
                ),
            )
        }
        CacheAction::Stats { json } => {
            let path = api_path(&["v1", "cache", "stats"], &[]);
            let stats: CacheStats = client.call("GET", &path, None)?;
            if json {
                return write(out, to_pretty(&stats)?);
            }
            write(
                out,
                format!(
                    "entries   {}\nbytes     {} of {}\nhits      {} ({} hot)\nmisses    {}\nflushes   {}",
                    stats.entries,
                    stats.bytes,
                    stats.max_bytes,
                    stats.hits,
                    stats.hits_hot,
                    stats.misses,
                    stats.flushes
                ),
            )
        }
    }
}

fn to_pretty(value: &impl Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::Usage(e.to_string()))
}

fn parse_kind(text: &str) -> Result<TargetKind, String> {
    TargetKind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == text)
        .ok_or_else(|| {
            format!("{text:?} is not a target type (subtree, domain, ip, nsdname, nsip)")
        })
}

fn write(out: &mut dyn Write, text: impl AsRef<str>) -> Result<(), CliError> {
    writeln!(out, "{}", text.as_ref()).map_err(|source| CliError::Io {
        path: "stdout".into(),
        source,
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A path segment may hold anything but what would end or split it.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An API path: `segments` percent-encoded and joined by `/`, then the query string of the
/// parameters that are set and not empty (`application/x-www-form-urlencoded`).
fn api_path(segments: &[&str], query: &[(&str, Option<&str>)]) -> String {
    let mut path = String::new();
    for segment in segments {
        path.push('/');
        path.extend(utf8_percent_encode(segment, SEGMENT));
    }
    let mut form = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (key, value) in query {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            form.append_pair(key, value);
            any = true;
        }
    }
    if any {
        path.push('?');
        path.push_str(&form.finish());
    }
    path
}

/// A blocking HTTP client for the admin API: requests in, the API's own view types out.
struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// The TLS settings of `--api https://...`: `--ca-cert` (else the Mozilla roots), and
/// `--client-cert` with `--client-key`. Errors name the flag and the file.
fn tls_config(args: &ApiArgs) -> Result<ureq::tls::TlsConfig, CliError> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CliError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    let certificates = |path: &Path, flag: &str| -> Result<Vec<Certificate<'static>>, CliError> {
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&read(path)?) {
            match item {
                Ok(PemItem::Certificate(cert)) => certs.push(cert),
                Ok(_) => {}
                Err(e) => {
                    return Err(CliError::Usage(format!(
                        "{flag} {}: not PEM: {e}",
                        path.display()
                    )))
                }
            }
        }
        if certs.is_empty() {
            return Err(CliError::Usage(format!(
                "{flag} {}: no PEM certificate in it",
                path.display()
            )));
        }
        Ok(certs)
    };
    let mut tls = TlsConfig::builder();
    if let Some(path) = &args.ca_cert {
        tls = tls.root_certs(RootCerts::from(certificates(path, "--ca-cert")?));
    }
    match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key_path)) => {
            let chain = certificates(cert, "--client-cert")?;
            let key = PrivateKey::from_pem(&read(key_path)?).map_err(|e| {
                CliError::Usage(format!(
                    "--client-key {}: no usable PEM private key: {e}",
                    key_path.display()
                ))
            })?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        (Some(_), None) => return Err(CliError::Usage("--client-cert needs --client-key".into())),
        (None, Some(_)) => return Err(CliError::Usage("--client-key needs --client-cert".into())),
    }
    Ok(tls.build())
}

/// What went wrong talking to the API, with a hint when TLS is why.
fn http_error(error: &ureq::Error) -> String {
    use rustls::{AlertDescription, Error as Tls};
    let tls = match error {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io.get_ref().and_then(|e| e.downcast_ref::<Tls>()),
        _ => None,
    };
    let hint = match tls {
        Some(Tls::InvalidCertificate(_)) => {
            " (the API's certificate is not trusted: give the CA that issued it with --ca-cert \
             FILE, and use the name or address the certificate is for)"
        }
        Some(Tls::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied,
        )) => {
            " (the API refused this client: it asks for a client certificate issued by its \
             control.tls_client_ca; give one with --client-cert FILE --client-key FILE)"
        }
        _ => "",
    };
    format!("{error}{hint}")
}

/// A request body and its media type.
type Body<'a> = Option<(&'a str, Vec<u8>)>;

impl Client {
    fn new(args: &ApiArgs) -> Result<Client, CliError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls_config(args)?)
            .build()
            .into();
        Ok(Client {
            base: args.api.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
            agent,
        })
    }

    /// The response body of a successful request; an error answer becomes [`CliError::Api`]
    /// naming the field.
    fn text(&self, method: &str, path: &str, body: Body<'_>) -> Result<String, CliError> {
        let url = format!("{}{path}", self.base);
        let http = |e: ureq::Error| CliError::Http {
            url: url.clone(),
            message: http_error(&e),
        };
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let response = match method {
            "GET" => {
                let mut request = self.agent.get(&url);
                if let Some(value) = &authorization {
                    request = request.header("Authorization", value);
                }
                request.call().map_err(http)?
            }
            _ => {
                let mut request = if method == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                if let Some(value) = &authorization {
                    request = request.header("Authorization", value);
                }
                match body {
                    Some((content_type, bytes)) => request
                        .header("Content-Type", content_type)
                        .send(&bytes[..])
                        .map_err(http)?,
                    None => request.send_empty().map_err(http)?,
                }
            }
        };
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .with_config()
            .limit(1 << 32)
            .read_to_string()
            .map_err(http)?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(ErrorBody { error }) => {
                let reason = if error.errors.len() > 1 {
                    error
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.reason))
                        .collect::<Vec<_>>()
                        .join("; ")
                } else {
                    error.reason
                };
                CliError::Api {
                    status,
                    field: error.field,
                    reason,
                }
            }
            Err(_) => CliError::Api {
                status,
                field: String::new(),
                reason: text,
            },
        })
    }

    /// A request whose answer is the view type `T`.
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Body<'_>,
    ) -> Result<T, CliError> {
        let text = self.text(method, path, body)?;
        serde_json::from_str(&text).map_err(|e| CliError::Http {
            url: format!("{}{path}", self.base),
            message: format!("the API answered something this client does not understand: {e}"),
        })
    }

    /// A request with a JSON body.
    fn call_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, CliError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CliError::Usage(e.to_string()))?;
        self.call(method, path, Some(("application/json", bytes)))
    }

    /// A JSON answer re-indented for people (`--json`, `show`, exports), not interpreted.
    fn pretty(&self, path: &str) -> Result<String, CliError> {
        let value: serde_json::Value = self.call("GET", path, None)?;
        Ok(serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string()))
    }
}

/// `KIND VALUE` of a target, as the API names it in bodies.
#[derive(Debug, Serialize)]
struct TargetKey<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    value: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    added_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    added_at: Option<jiff::Timestamp>,
}

impl<'a> TargetKey<'a> {
    fn new(kind: TargetKind, value: &'a str) -> Self {
        TargetKey {
            kind: kind.as_str(),
            value,
            evidence: None,
            added_by: None,
            added_at: None,
        }
    }
}

/// `{"targets": [...]}`.
#[derive(Debug, Serialize)]
struct TargetsBody<'a> {
    targets: Vec<TargetKey<'a>>,
}

fn summarize(view: &OrderView) -> String {
    let held: Vec<&TargetView> = view
        .targets
        .iter()
        .filter(|t| t.status == TargetStatus::NeedsReview)
        .collect();
    let mut text = format!(
        "order {}: {} ({} targets, {} held for review)",
        view.order.id,
        view.effective_state,
        view.targets.len(),
        held.len()
    );
    for target in held {
        text.push('\n');
        text.push_str(&held_line(target));
    }
    text
}

fn held_line(target: &TargetView) -> String {
    format!(
        "  held for review: {} {}: {}",
        target.kind.as_str(),
        target.value,
        target.review_reason.as_deref().unwrap_or("")
    )
}

fn order(client: &Client, action: OrderAction, out: &mut dyn Write) -> Result<(), CliError> {
    let reason_q = |reason: &str| -> Vec<(&'static str, Option<String>)> {
        vec![("reason", Some(reason.to_owned()))]
    };
    let path = |segments: &[&str], query: &[(&'static str, Option<String>)]| {
        let query: Vec<(&str, Option<&str>)> =
            query.iter().map(|(k, v)| (*k, v.as_deref())).collect();
        api_path(segments, &query)
    };
    match action {
        OrderAction::Apply { file, reason } => {
            let bytes = read_file(&file)?;
            // Parse locally first: errors name the field before anything is sent.
            let order: Order = juris_control::parse_json(&bytes)?;
            let path = path(&["v1", "orders", &order.id], &reason_q(&reason));
            let view: OrderView = client.call("PUT", &path, Some(("application/json", bytes)))?;
            write(out, summarize(&view))
        }
        OrderAction::List {
            state,
            jurisdiction,
            kind,
            needs_review,
            json,
        } => {
            let path = api_path(
                &["v1", "orders"],
                &[
                    ("state", state.as_deref()),
                    ("jurisdiction", jurisdiction.as_deref()),
                    ("kind", kind.as_deref()),
                    ("needs_review", needs_review.then_some("true")),
                ],
            );
            if json {
                return write(out, client.pretty(&path)?);
            }
            let list: OrderList = client.call("GET", &path, None)?;
            write(
                out,
                format!(
                    "{:<24} {:<10} {:<16} {:<12} {:>8} {:>5}  AUTHORITY",
                    "ID", "STATE", "KIND", "JURISDICTIONS", "TARGETS", "HELD"
                ),
            )?;
            for o in list.orders {
                write(
                    out,
                    format!(
                        "{:<24} {:<10} {:<16} {:<12} {:>8} {:>5}  {}",
                        o.id,
                        o.effective_state,
                        o.kind,
                        o.jurisdictions.join(","),
                        o.targets,
                        o.needs_review,
                        o.authority
                    ),
                )?;
            }
            Ok(())
        }
        OrderAction::Show { id } => {
            write(out, client.pretty(&api_path(&["v1", "orders", &id], &[]))?)
        }
        OrderAction::AddTarget {
            id,
            value,
            kind,
            evidence,
            added_by,
            added_at,
            reason,
        } => {
            let body = TargetsBody {
                targets: vec![TargetKey {
                    kind: kind.as_str(),
                    value: &value,
                    evidence: evidence.as_deref(),
                    added_by: added_by.as_deref(),
                    added_at,
                }],
            };
            let report: RpzImportReport = client.call_json(
                "POST",
                &path(&["v1", "orders", &id, "targets"], &reason_q(&reason)),
                &body,
            )?;
            print_add_report(&report, out)
        }
        OrderAction::RemoveTarget {
            id,
            value,
            kind,
            reason,
        } => {
            let body = TargetsBody {
                targets: vec![TargetKey::new(kind, &value)],
            };
            let result: Removed = post_target(client, &id, "remove", &reason, &body)?;
            for removed in result.removed {
                write(out, format!("removed {removed}"))?;
            }
            Ok(())
        }
        OrderAction::OverrideTarget {
            id,
            value,
            kind,
            reason,
        } => {
            let body = TargetKey::new(kind, &value);
            let target: TargetView = post_target(client, &id, "override", &reason, &body)?;
            write(
                out,
                format!(
                    "{} {} is now {}",
                    target.kind.as_str(),
                    target.value,
                    target.status.as_str()
                ),
            )
        }
        OrderAction::Shadow(t) => transition(client, "shadow", &t.id, &t.reason, out),
        OrderAction::Activate(t) => transition(client, "activate", &t.id, &t.reason, out),
        OrderAction::Lift(t) => transition(client, "lift", &t.id, &t.reason, out),
        OrderAction::Suspend { id, all, reason } => match (id, all) {
            (_, true) => {
                let result: Suspended = client.call(
                    "POST",
                    &path(&["v1", "suspend-all"], &reason_q(&reason)),
                    None,
                )?;
                write(out, format!("suspended {} orders", result.suspended.len()))?;
                for id in result.suspended {
                    write(out, format!("  {id}"))?;
                }
                Ok(())
            }
            (Some(id), false) => transition(client, "suspend", &id, &reason, out),
            (None, false) => Err(CliError::Usage(
                "give an order id, or --all to suspend every order".into(),
            )),
        },
    }
}

/// `POST /v1/orders/ID/targets/ACTION?reason=...` with a JSON body.
fn post_target<T: DeserializeOwned>(
    client: &Client,
    id: &str,
    action: &str,
    reason: &str,
    body: &impl Serialize,
) -> Result<T, CliError> {
    let path = api_path(
        &["v1", "orders", id, "targets", action],
        &[("reason", Some(reason))],
    );
    client.call_json("POST", &path, body)
}

fn transition(
    client: &Client,
    verb: &str,
    id: &str,
    reason: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let view: OrderView = client.call(
        "POST",
        &api_path(&["v1", "orders", id, verb], &[("reason", Some(reason))]),
        None,
    )?;
    write(out, summarize(&view))
}

fn print_add_report(report: &RpzImportReport, out: &mut dyn Write) -> Result<(), CliError> {
    write(
        out,
        format!(
            "added {}, held for review {}, already present {}",
            report.report.added.len(),
            report.report.held.len(),
            report.report.existing.len()
        ),
    )?;
    for held in &report.report.held {
        write(out, held_line(held))?;
    }
    for warning in &report.warnings {
        write(out, format!("  warning: {warning}"))?;
    }
    Ok(())
}

fn import(
    client: &Client,
    source: ImportSource,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<(), CliError> {
    let started = Instant::now();
    let mut note = |text: String| {
        let _ = writeln!(
            progress,
            "[{:>6.2}s] {text}",
            started.elapsed().as_secs_f64()
        );
    };
    match source {
        ImportSource::Feed {
            name,
            file,
            order,
            reason,
        } => {
            let bytes = read_file(&file)?;
            note(format!("read {} ({} bytes)", file.display(), bytes.len()));
            let feed = CumulativeFeed::from_json(&bytes)?;
            feed.verify()?;
            note(format!(
                "checksums verified: {} fqdn, {} ipv4, {} ipv6; sending to {}",
                feed.fqdn.len(),
                feed.ipv4.len(),
                feed.ipv6.len(),
                client.base
            ));
            let path = api_path(
                &["v1", "feeds", &name],
                &[("order", order.as_deref()), ("reason", Some(&reason))],
            );
            let ack: FeedAck = client.call("POST", &path, Some(("application/json", bytes)))?;
            note("imported".into());
            let count = |status: &str| ack.items.iter().filter(|i| i.status == status).count();
            write(
                out,
                format!(
                    "feed {name} import {}: added {}, lifted {}, unchanged {}; {} processed, {} unprocessed",
                    ack.import_id,
                    ack.added,
                    ack.lifted,
                    ack.unchanged,
                    count("processed"),
                    count("unprocessed")
                ),
            )?;
            for item in ack.items.iter().filter(|i| i.status == "unprocessed") {
                write(
                    out,
                    format!(
                        "  unprocessed {} {}: {}",
                        item.item,
                        item.reason.map(|r| r.as_str()).unwrap_or(""),
                        item.detail.as_deref().unwrap_or("")
                    ),
                )?;
            }
            Ok(())
        }
        ImportSource::List {
            order,
            file,
            kind,
            reason,
        } => {
            let format = [("format", Some("plain")), ("type", Some(kind.as_str()))];
            import_file(client, &order, &file, &format, &reason, out, &mut note)
        }
        ImportSource::Rpz {
            order,
            file,
            reason,
        } => import_file(
            client,
            &order,
            &file,
            &[("format", Some("rpz"))],
            &reason,
            out,
            &mut note,
        ),
    }
}

/// `juris import list|rpz`: the file as text into the order's import route.
fn import_file(
    client: &Client,
    order: &str,
    file: &Path,
    format: &[(&str, Option<&str>)],
    reason: &str,
    out: &mut dyn Write,
    note: &mut dyn FnMut(String),
) -> Result<(), CliError> {
    let bytes = read_file(file)?;
    let lines = bytes.iter().filter(|b| **b == b'\n').count();
    note(format!(
        "read {} ({} bytes, {lines} lines); sending to {}",
        file.display(),
        bytes.len(),
        client.base
    ));
    let mut query = format.to_vec();
    query.push(("reason", Some(reason)));
    let path = api_path(&["v1", "orders", order, "import"], &query);
    let report: RpzImportReport = client.call("POST", &path, Some(("text/plain", bytes)))?;
    note("imported".into());
    print_add_report(&report, out)
}

fn export(client: &Client, what: ExportWhat, out: &mut dyn Write) -> Result<(), CliError> {
    let text = match what {
        ExportWhat::Rpz { jurisdiction, zone } => client.text(
            "GET",
            &api_path(
                &["v1", "export", "rpz"],
                &[
                    ("jurisdiction", Some(&jurisdiction)),
                    ("zone", zone.as_deref()),
                ],
            ),
            None,
        )?,
        ExportWhat::Orders => client.pretty("/v1/export/orders")?,
        ExportWhat::Transparency {
            format,
            jurisdiction,
        } => {
            let path = api_path(
                &["v1", "export", "transparency"],
                &[
                    ("format", Some(&format)),
                    ("jurisdiction", jurisdiction.as_deref()),
                ],
            );
            if format == "json" {
                client.pretty(&path)?
            } else {
                client.text("GET", &path, None)?
            }
        }
        ExportWhat::Ack { feed, import } => {
            let import = import.map(|i| i.to_string());
            client.pretty(&api_path(
                &["v1", "feeds", &feed, "ack"],
                &[("import", import.as_deref())],
            ))?
        }
    };
    write(out, text.trim_end())
}

fn open_offline(data_dir: &Path) -> Result<Control, CliError> {
    let store = Store::open(data_dir)?;
    Ok(Control::new(
        store,
        &ControlConfig::default(),
        Arc::new(SystemClock),
    )?)
}

/// For a `target.*` audit entry, the targets it added, held or removed, each with who added
/// it and the evidence: `\n         + subtree x.to (added by FIMI, evidence URL)`. Empty for other
/// entries and for entries whose JSON is not the expected shape.
fn audited_targets(action: &str, after: Option<&str>, before: Option<&str>) -> String {
    let parse = |text: Option<&str>| -> Option<serde_json::Value> {
        text.and_then(|t| serde_json::from_str(t).ok())
    };
    let mut lines = Vec::new();
    let mut push = |sign: &str, target: &serde_json::Value| {
        let field = |name: &str| target.get(name).and_then(serde_json::Value::as_str);
        let (Some(kind), Some(value)) = (field("type"), field("value")) else {
            return;
        };
        let mut line = format!("\n         {sign} {kind} {value}");
        let mut about = Vec::new();
        if let Some(by) = field("added_by") {
            about.push(format!("added by {by}"));
        }
        if let Some(at) = field("added_at") {
            about.push(format!("at {at}"));
        }
        if let Some(evidence) = field("evidence") {
            about.push(format!("evidence {evidence}"));
        }
        if field("status") == Some("needs_review") {
            about.push("held for review".to_owned());
        }
        if !about.is_empty() {
            line.push_str(&format!(" ({})", about.join(", ")));
        }
        lines.push(line);
    };
    match action {
        "target.add" | "feed.import" => {
            if let Some(after) = parse(after) {
                for list in ["added", "held"] {
                    for target in after
                        .get(list)
                        .and_then(|l| l.as_array())
                        .into_iter()
                        .flatten()
                    {
                        push("+", target);
                    }
                }
            }
        }
        "target.remove" => {
            for target in parse(before)
                .as_ref()
                .and_then(|b| b.as_array())
                .into_iter()
                .flatten()
            {
                push("-", target);
            }
        }
        _ => {}
    }
    lines.concat()
}

fn audit(action: AuditAction, out: &mut dyn Write) -> Result<(), CliError> {
    match action {
        AuditAction::Log {
            api,
            after,
            limit,
            json,
        } => {
            let client = Client::new(&api)?;
            let (after, limit) = (after.to_string(), limit.to_string());
            let path = api_path(
                &["v1", "audit"],
                &[("after", Some(&after)), ("limit", Some(&limit))],
            );
            if json {
                return write(out, client.pretty(&path)?);
            }
            let log: AuditLog = client.call("GET", &path, None)?;
            for entry in log.entries {
                let reason = if entry.reason.is_empty() {
                    String::new()
                } else {
                    format!("— {}", entry.reason)
                };
                write(
                    out,
                    format!(
                        "{:>6} {} {:<12} {:<18} {} {}{}",
                        entry.seq,
                        entry.time,
                        entry.actor,
                        entry.action,
                        entry.object,
                        reason,
                        audited_targets(
                            &entry.action,
                            entry.after.as_deref(),
                            entry.before.as_deref()
                        )
                    ),
                )?;
            }
            Ok(())
        }
        AuditAction::Verify { data_dir } => {
            let control = open_offline(&data_dir)?;
            let report = control.audit_verify()?;
            match report.first_bad {
                None => write(
                    out,
                    format!(
                        "audit log intact: {} entries, head {}",
                        report.entries, report.head
                    ),
                ),
                Some(bad) => Err(CliError::AuditBroken {
                    seq: bad.seq,
                    problem: bad.problem,
                }),
            }
        }
    }
}

fn token(action: TokenAction, out: &mut dyn Write) -> Result<(), CliError> {
    match action {
        TokenAction::Create {
            role,
            name,
            data_dir,
        } => {
            let control = open_offline(&data_dir)?;
            let token = control.create_token("local", role, &name)?;
            write(out, token)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[test]
    fn commands_parse() {
        let cli = Cli::try_parse_from([
            "juris",
            "order",
            "apply",
            "o.json",
            "--api",
            "http://x:1",
            "--token",
            "t",
        ])
        .unwrap();
        match cli.command {
            Command::Order(OrderCmd {
                api,
                action: OrderAction::Apply { file, .. },
            }) => {
                assert_eq!(api.api, "http://x:1");
                assert_eq!(api.token.as_deref(), Some("t"));
                assert_eq!(file, PathBuf::from("o.json"));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from([
            "juris",
            "order",
            "add-target",
            "X",
            "bad.to",
            "--type",
            "subtree",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Order(OrderCmd {
                action: OrderAction::AddTarget {
                    kind: TargetKind::Subtree,
                    ..
                },
                ..
            })
        ));
        assert!(
            Cli::try_parse_from(["juris", "order", "add-target", "X", "a", "--type", "zone"])
                .is_err()
        );
        let cli = Cli::try_parse_from([
            "juris",
            "token",
            "create",
            "--role",
            "admin",
            "--data-dir",
            "d",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Token(TokenCmd {
                action: TokenAction::Create {
                    role: Role::Admin,
                    ..
                }
            })
        ));
        for args in [
            &["juris", "order", "list", "--state", "active"][..],
            &["juris", "order", "suspend", "--all"],
            &["juris", "order", "lift", "X", "--reason", "appeal"],
            &["juris", "import", "feed", "ps", "f.json", "--order", "PS"],
            &["juris", "import", "rpz", "X", "z.rpz"],
            &["juris", "import", "list", "X", "l.txt"],
            &["juris", "export", "rpz", "--jurisdiction", "IT"],
            &["juris", "export", "transparency", "--format", "csv"],
            &["juris", "audit", "log"],
            &["juris", "audit", "verify", "--data-dir", "d"],
        ] {
            Cli::try_parse_from(args).unwrap();
        }
    }

    #[test]
    fn paths_and_query_strings_are_encoded() {
        assert_eq!(
            api_path(
                &["v1", "orders", "IT 1/2"],
                &[("reason", Some("court order 1/2 & more")), ("x", None)]
            ),
            "/v1/orders/IT%201%2F2?reason=court+order+1%2F2+%26+more"
        );
        assert_eq!(
            api_path(&["v1", "audit"], &[("reason", Some(""))]),
            "/v1/audit"
        );
    }

    #[test]
    fn target_kinds_parse_by_their_document_names() {
        assert_eq!(parse_kind("subtree"), Ok(TargetKind::Subtree));
        assert_eq!(parse_kind("nsip"), Ok(TargetKind::Nsip));
        assert!(parse_kind("zone").is_err());
    }

    #[test]
    fn offline_token_create_and_audit_verify() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        run_with(
            Command::Token(TokenCmd {
                action: TokenAction::Create {
                    role: Role::Admin,
                    name: "first-admin".into(),
                    data_dir: dir.path().into(),
                },
            }),
            &mut out,
            &mut err,
        )
        .unwrap();
        let token = String::from_utf8(out).unwrap().trim().to_owned();
        assert!(token.starts_with("juris_") && token.len() == 70, "{token}");
        let control = open_offline(dir.path()).unwrap();
        assert_eq!(control.authenticate(&token).unwrap().name, "first-admin");
        drop(control);
        let mut out = Vec::new();
        run_with(
            Command::Audit(AuditCmd {
                action: AuditAction::Verify {
                    data_dir: dir.path().into(),
                },
            }),
            &mut out,
            &mut err,
        )
        .unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("audit log intact: 1 entries"));
    }
}
