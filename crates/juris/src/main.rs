//! `juris`: a public DNS resolver that obeys legal blocking orders exactly where they apply.
//!
//! ```text
//! juris serve [--config FILE] [--listen ADDR:PORT]... [--root-hints FILE] [--forward ADDR[:PORT]]...
//!             [--data-dir DIR] [--threads N] [--orders PATH] [--geoip FILE]
//! juris explain NAME --client ADDR [--ecs SUBNET] [--country CC] [--qtype T] [--structured]
//!               [--config FILE] [--orders PATH] [--geoip FILE] [--json]
//! juris status [--data-dir DIR] [--config FILE] [--json]
//! juris check-config FILE
//! ```
#![forbid(unsafe_code)]

mod config;
mod decode;
mod explain;
mod orders;
mod serve;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Overrides, RawConfig, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "juris",
    version,
    about = "A DNS resolver that obeys legal orders exactly where they apply"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the resolver (on the embedded defaults when no --config is given).
    Serve(ServeArgs),
    /// Validate a configuration file and name the first bad key.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// What NAME gets for a client, and why: through the same code as a real query.
    Explain(ExplainArgs),
    /// Print what a running (or the last) `juris serve` wrote to DATA_DIR/status.json.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// The query name.
    name: String,
    /// The client's address (looked up in the GeoIP database like a real query's source).
    #[arg(long, value_name = "ADDR")]
    client: std::net::IpAddr,
    /// Send an EDNS Client Subnet option (believed only if --client is a trusted forwarder).
    #[arg(long, value_name = "SUBNET")]
    ecs: Option<String>,
    /// Ask as if on a listener pinned to this country.
    #[arg(long, value_name = "CC")]
    country: Option<String>,
    /// Query type.
    #[arg(long, value_name = "T", default_value = "A")]
    qtype: String,
    /// Signal structured DNS error support in the query.
    #[arg(long)]
    structured: bool,
    /// TOML configuration file (the one `serve` uses).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Order documents (file or directory; replaces `policy.orders`).
    #[arg(long, value_name = "PATH")]
    orders: Option<PathBuf>,
    /// GeoIP database (MMDB; replaces `geoip.mmdb`).
    #[arg(long, value_name = "FILE")]
    geoip: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// State directory of the server (default: `server.data_dir` of --config, or the default).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the JSON document as is.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML configuration file (strict: unknown keys are errors).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address for UDP and TCP (repeatable; replaces `server.listen`).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<String>,
    /// Root hints file (named.root format); default: built-in IANA root hints.
    #[arg(long, value_name = "FILE")]
    root_hints: Option<PathBuf>,
    /// Forward every query to this upstream (repeatable; switches to forwarding).
    #[arg(long, value_name = "ADDR[:PORT]")]
    forward: Vec<String>,
    /// State directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// UDP worker threads (0 = one per CPU).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Order documents: a JSON file or a directory of *.json (watched; replaces `policy.orders`).
    #[arg(long, value_name = "PATH")]
    orders: Option<PathBuf>,
    /// GeoIP database in MaxMind DB format (replaces `geoip.mmdb`; reloaded on SIGHUP).
    #[arg(long, value_name = "FILE")]
    geoip: Option<PathBuf>,
}

impl ServeArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut raw = match &self.config {
            Some(path) => RawConfig::from_file(path)?,
            None => RawConfig::default(),
        };
        raw.apply(&Overrides {
            listen: self.listen.clone(),
            root_hints: self.root_hints.clone(),
            forward: self.forward.clone(),
            data_dir: self.data_dir.clone(),
            threads: self.threads,
            orders: self.orders.clone(),
            geoip: self.geoip.clone(),
        });
        Ok(Settings::from_raw(&raw)?)
    }
}

fn explain(args: &ExplainArgs) -> anyhow::Result<()> {
    let mut raw = match &args.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    raw.apply(&Overrides {
        orders: args.orders.clone(),
        geoip: args.geoip.clone(),
        ..Overrides::default()
    });
    let settings = Settings::from_raw(&raw)?;
    let ecs = args
        .ecs
        .as_deref()
        .map(|text| {
            config::parse_prefix(text)
                .ok_or_else(|| anyhow::anyhow!("--ecs {text:?}: not an address or prefix"))
        })
        .transpose()?;
    let country = args
        .country
        .as_deref()
        .map(|text| {
            config::parse_jurisdiction(text).ok_or_else(|| {
                anyhow::anyhow!("--country {text:?}: not an ISO 3166-1 alpha-2 code")
            })
        })
        .transpose()?;
    let report = explain::explain(
        &settings,
        &explain::Request {
            name: args.name.clone(),
            qtype: args.qtype.clone(),
            client: args.client,
            ecs,
            country,
            structured: args.structured,
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let data_dir = match (&args.data_dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(path)) => Settings::from_raw(&RawConfig::from_file(path)?)?.data_dir,
        (None, None) => Settings::from_raw(&RawConfig::default())?.data_dir,
    };
    let status = status::Status::read(&data_dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.render());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.settings().and_then(serve::run),
        Command::CheckConfig { file } => check_config(&file),
        Command::Explain(args) => explain(&args),
        Command::Status(args) => status(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("juris: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let raw = RawConfig::from_file(file)?;
    Settings::from_raw(&raw)?;
    println!("{}: ok", file.display());
    Ok(())
}
