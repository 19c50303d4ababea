//! The command-line client: `juris order|import|export|audit|token ...`.
//!
//! Online commands talk HTTP to the admin API (`--api URL`, default `http://127.0.0.1:8053`;
//! token from `--token` or `JURIS_TOKEN`). Offline commands open the store directly
//! (`--data-dir DIR`): `juris token create --role R` (how the first admin is bootstrapped) and
//! `juris audit verify`. The binary embeds [`Command`]'s variants and calls [`run`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use juris_policy::{Order, TargetKind};
use serde_json::{json, Value};

use crate::control::{Control, ControlConfig, Role, SystemClock};
use crate::error::ControlError;
use crate::store::Store;

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
        /// viewer, editor, approver or admin.
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
        Command::Order(cmd) => order(&Client::new(&cmd.api), cmd.action, out),
        Command::Import(cmd) => import(&Client::new(&cmd.api), cmd.source, out, progress),
        Command::Export(cmd) => export(&Client::new(&cmd.api), cmd.what, out),
        Command::Audit(cmd) => audit(cmd.action, out),
        Command::Token(cmd) => token(cmd.action, out),
    }
}

fn parse_kind(text: &str) -> Result<TargetKind, String> {
    serde_json::from_value(Value::String(text.to_owned()))
        .map_err(|_| format!("{text:?} is not a target type (subtree, domain, ip, nsdname, nsip)"))
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

fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", encode(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A small blocking HTTP client for the API.
struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn new(args: &ApiArgs) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Client {
            base: args.api.trim_end_matches('/').to_owned(),
            token: args.token.clone(),
            agent,
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<String, CliError> {
        let url = format!("{}{path}", self.base);
        let http = |e: ureq::Error| CliError::Http {
            url: url.clone(),
            message: e.to_string(),
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
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let field = error["error"]["field"].as_str().unwrap_or("").to_owned();
        let mut reason = error["error"]["reason"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or(text);
        if let Some(all) = error["error"]["errors"].as_array().filter(|a| a.len() > 1) {
            reason = all
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["field"].as_str().unwrap_or(""),
                        e["reason"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
        }
        Err(CliError::Api {
            status,
            field,
            reason,
        })
    }

    fn json(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        let body = body.map(|v| ("application/json", v.to_string().into_bytes()));
        let text = self.request(method, path, body)?;
        serde_json::from_str(&text).map_err(|e| CliError::Http {
            url: path.to_owned(),
            message: format!("the API answered something that is not JSON: {e}"),
        })
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn summarize(view: &Value) -> String {
    let order = &view["order"];
    let targets = view["targets"].as_array().map(Vec::len).unwrap_or(0);
    let held: Vec<String> = view["targets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .filter(|t| t["status"] == "needs_review")
                .map(|t| {
                    format!(
                        "  held for review: {} {}: {}",
                        t["type"].as_str().unwrap_or(""),
                        t["value"].as_str().unwrap_or(""),
                        t["review_reason"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut text = format!(
        "order {}: {} ({} targets, {} held for review)",
        order["id"].as_str().unwrap_or(""),
        view["effective_state"].as_str().unwrap_or(""),
        targets,
        held.len()
    );
    for line in held {
        text.push('\n');
        text.push_str(&line);
    }
    text
}

fn order(client: &Client, action: OrderAction, out: &mut dyn Write) -> Result<(), CliError> {
    let reason_q = |reason: &str| query(&[("reason", Some(reason))]);
    match action {
        OrderAction::Apply { file, reason } => {
            let bytes = read_file(&file)?;
            // Parse locally first: errors name the field before anything is sent.
            let order: Order = crate::parse_json(&bytes)?;
            let path = format!("/v1/orders/{}{}", encode(&order.id), reason_q(&reason));
            let text = client.request("PUT", &path, Some(("application/json", bytes)))?;
            let view: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            write(out, summarize(&view))
        }
        OrderAction::List {
            state,
            jurisdiction,
            kind,
            needs_review,
            json,
        } => {
            let needs = needs_review.then_some("true");
            let path = format!(
                "/v1/orders{}",
                query(&[
                    ("state", state.as_deref()),
                    ("jurisdiction", jurisdiction.as_deref()),
                    ("kind", kind.as_deref()),
                    ("needs_review", needs),
                ])
            );
            let value = client.json("GET", &path, None)?;
            if json {
                return write(out, pretty(&value));
            }
            write(
                out,
                format!(
                    "{:<24} {:<10} {:<16} {:<12} {:>8} {:>5}  AUTHORITY",
                    "ID", "STATE", "KIND", "JURISDICTIONS", "TARGETS", "HELD"
                ),
            )?;
            for o in value["orders"].as_array().cloned().unwrap_or_default() {
                let jurisdictions: Vec<&str> = o["jurisdictions"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                write(
                    out,
                    format!(
                        "{:<24} {:<10} {:<16} {:<12} {:>8} {:>5}  {}",
                        o["id"].as_str().unwrap_or(""),
                        o["effective_state"].as_str().unwrap_or(""),
                        o["kind"].as_str().unwrap_or(""),
                        jurisdictions.join(","),
                        o["targets"],
                        o["needs_review"],
                        o["authority"].as_str().unwrap_or("")
                    ),
                )?;
            }
            Ok(())
        }
        OrderAction::Show { id } => {
            let value = client.json("GET", &format!("/v1/orders/{}", encode(&id)), None)?;
            write(out, pretty(&value))
        }
        OrderAction::AddTarget {
            id,
            value,
            kind,
            evidence,
            reason,
        } => {
            let body =
                json!({"targets": [{"type": kind.as_str(), "value": value, "evidence": evidence}]});
            let report = client.json(
                "POST",
                &format!("/v1/orders/{}/targets{}", encode(&id), reason_q(&reason)),
                Some(body),
            )?;
            print_add_report(&report, out)
        }
        OrderAction::RemoveTarget {
            id,
            value,
            kind,
            reason,
        } => {
            let body = json!({"targets": [{"type": kind.as_str(), "value": value}]});
            let result = client.json(
                "POST",
                &format!(
                    "/v1/orders/{}/targets/remove{}",
                    encode(&id),
                    reason_q(&reason)
                ),
                Some(body),
            )?;
            for removed in result["removed"].as_array().cloned().unwrap_or_default() {
                write(out, format!("removed {}", removed.as_str().unwrap_or("")))?;
            }
            Ok(())
        }
        OrderAction::OverrideTarget {
            id,
            value,
            kind,
            reason,
        } => {
            let body = json!({"type": kind.as_str(), "value": value});
            let target = client.json(
                "POST",
                &format!(
                    "/v1/orders/{}/targets/override{}",
                    encode(&id),
                    reason_q(&reason)
                ),
                Some(body),
            )?;
            write(
                out,
                format!(
                    "{} {} is now {}",
                    target["type"].as_str().unwrap_or(""),
                    target["value"].as_str().unwrap_or(""),
                    target["status"].as_str().unwrap_or("")
                ),
            )
        }
        OrderAction::Shadow(t) => transition(client, "shadow", &t.id, &t.reason, out),
        OrderAction::Activate(t) => transition(client, "activate", &t.id, &t.reason, out),
        OrderAction::Lift(t) => transition(client, "lift", &t.id, &t.reason, out),
        OrderAction::Suspend { id, all, reason } => match (id, all) {
            (_, true) => {
                let result = client.json(
                    "POST",
                    &format!("/v1/suspend-all{}", reason_q(&reason)),
                    None,
                )?;
                let ids = result["suspended"].as_array().cloned().unwrap_or_default();
                write(out, format!("suspended {} orders", ids.len()))?;
                for id in ids {
                    write(out, format!("  {}", id.as_str().unwrap_or("")))?;
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

fn transition(
    client: &Client,
    verb: &str,
    id: &str,
    reason: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let view = client.json(
        "POST",
        &format!(
            "/v1/orders/{}/{verb}{}",
            encode(id),
            query(&[("reason", Some(reason))])
        ),
        None,
    )?;
    write(out, summarize(&view))
}

fn print_add_report(report: &Value, out: &mut dyn Write) -> Result<(), CliError> {
    let count = |key: &str| report[key].as_array().map(Vec::len).unwrap_or(0);
    write(
        out,
        format!(
            "added {}, held for review {}, already present {}",
            count("added"),
            count("held"),
            count("existing")
        ),
    )?;
    for held in report["held"].as_array().cloned().unwrap_or_default() {
        write(
            out,
            format!(
                "  held for review: {} {}: {}",
                held["type"].as_str().unwrap_or(""),
                held["value"].as_str().unwrap_or(""),
                held["review_reason"].as_str().unwrap_or("")
            ),
        )?;
    }
    for warning in report["warnings"].as_array().cloned().unwrap_or_default() {
        write(
            out,
            format!("  warning: {}", warning.as_str().unwrap_or("")),
        )?;
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
            let feed = crate::feeds::CumulativeFeed::from_json(&bytes)?;
            feed.verify()?;
            note(format!(
                "checksums verified: {} fqdn, {} ipv4, {} ipv6; sending to {}",
                feed.fqdn.len(),
                feed.ipv4.len(),
                feed.ipv6.len(),
                client.base
            ));
            let path = format!(
                "/v1/feeds/{}{}",
                encode(&name),
                query(&[("order", order.as_deref()), ("reason", Some(&reason))])
            );
            let text = client.request("POST", &path, Some(("application/json", bytes)))?;
            let ack: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            note("imported".into());
            let items = ack["items"].as_array().cloned().unwrap_or_default();
            let processed = items.iter().filter(|i| i["status"] == "processed").count();
            let unprocessed = items
                .iter()
                .filter(|i| i["status"] == "unprocessed")
                .count();
            write(
                out,
                format!(
                    "feed {name} import {}: added {}, lifted {}, unchanged {}; {processed} processed, {unprocessed} unprocessed",
                    ack["import_id"], ack["added"], ack["lifted"], ack["unchanged"]
                ),
            )?;
            for item in items.iter().filter(|i| i["status"] == "unprocessed") {
                write(
                    out,
                    format!(
                        "  unprocessed {} {}: {}",
                        item["item"].as_str().unwrap_or(""),
                        item["reason"].as_str().unwrap_or(""),
                        item["detail"].as_str().unwrap_or("")
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
            let bytes = read_file(&file)?;
            let lines = bytes.iter().filter(|b| **b == b'\n').count();
            note(format!(
                "read {} ({} bytes, {lines} lines); sending to {}",
                file.display(),
                bytes.len(),
                client.base
            ));
            let path = format!(
                "/v1/orders/{}/import{}",
                encode(&order),
                query(&[
                    ("format", Some("plain")),
                    ("type", Some(kind.as_str())),
                    ("reason", Some(&reason))
                ])
            );
            let text = client.request("POST", &path, Some(("text/plain", bytes)))?;
            note("imported".into());
            print_add_report(&serde_json::from_str(&text).unwrap_or(Value::Null), out)
        }
        ImportSource::Rpz {
            order,
            file,
            reason,
        } => {
            let bytes = read_file(&file)?;
            note(format!(
                "read {} ({} bytes); sending to {}",
                file.display(),
                bytes.len(),
                client.base
            ));
            let path = format!(
                "/v1/orders/{}/import{}",
                encode(&order),
                query(&[("format", Some("rpz")), ("reason", Some(&reason))])
            );
            let text = client.request("POST", &path, Some(("text/plain", bytes)))?;
            note("imported".into());
            print_add_report(&serde_json::from_str(&text).unwrap_or(Value::Null), out)
        }
    }
}

fn export(client: &Client, what: ExportWhat, out: &mut dyn Write) -> Result<(), CliError> {
    let text = match what {
        ExportWhat::Rpz { jurisdiction, zone } => client.request(
            "GET",
            &format!(
                "/v1/export/rpz{}",
                query(&[
                    ("jurisdiction", Some(&jurisdiction)),
                    ("zone", zone.as_deref())
                ])
            ),
            None,
        )?,
        ExportWhat::Orders => pretty(&client.json("GET", "/v1/export/orders", None)?),
        ExportWhat::Transparency {
            format,
            jurisdiction,
        } => {
            let text = client.request(
                "GET",
                &format!(
                    "/v1/export/transparency{}",
                    query(&[
                        ("format", Some(&format)),
                        ("jurisdiction", jurisdiction.as_deref())
                    ])
                ),
                None,
            )?;
            if format == "json" {
                pretty(&serde_json::from_str(&text).unwrap_or(Value::Null))
            } else {
                text
            }
        }
        ExportWhat::Ack { feed, import } => {
            let import = import.map(|i| i.to_string());
            pretty(&client.json(
                "GET",
                &format!(
                    "/v1/feeds/{}/ack{}",
                    encode(&feed),
                    query(&[("import", import.as_deref())])
                ),
                None,
            )?)
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

fn audit(action: AuditAction, out: &mut dyn Write) -> Result<(), CliError> {
    match action {
        AuditAction::Log {
            api,
            after,
            limit,
            json,
        } => {
            let client = Client::new(&api);
            let value = client.json(
                "GET",
                &format!(
                    "/v1/audit{}",
                    query(&[
                        ("after", Some(&after.to_string())),
                        ("limit", Some(&limit.to_string()))
                    ])
                ),
                None,
            )?;
            if json {
                return write(out, pretty(&value));
            }
            for entry in value["entries"].as_array().cloned().unwrap_or_default() {
                write(
                    out,
                    format!(
                        "{:>6} {} {:<12} {:<18} {} {}",
                        entry["seq"],
                        entry["time"].as_str().unwrap_or(""),
                        entry["actor"].as_str().unwrap_or(""),
                        entry["action"].as_str().unwrap_or(""),
                        entry["object"].as_str().unwrap_or(""),
                        entry["reason"]
                            .as_str()
                            .filter(|r| !r.is_empty())
                            .map(|r| format!("— {r}"))
                            .unwrap_or_default()
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
#[allow(clippy::unwrap_used, reason = "In tests a panic is the failure report")]
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
    fn query_strings_are_encoded() {
        assert_eq!(
            query(&[("reason", Some("court order 1/2")), ("x", None)]),
            "?reason=court%20order%201%2F2"
        );
        assert_eq!(query(&[("reason", Some(""))]), "");
    }
}
