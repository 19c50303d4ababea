//! `juris`: a public DNS resolver that obeys legal blocking orders exactly where they apply.
//!
//! ```text
//! juris serve [--config FILE] [--listen ADDR:PORT]... [--root-hints FILE] [--forward ADDR[:PORT]]...
//!             [--data-dir DIR] [--threads N] [--orders PATH] [--geoip FILE]
//!             [--listen-tls ADDR:PORT]... [--listen-https ADDR:PORT]... [--listen-quic ADDR:PORT]...
//!             [--tls-cert FILE --tls-key FILE]
//!             [--trust-anchor FILE]... [--negative-trust-anchor NAME]... [--no-dnssec]
//! juris explain NAME --client ADDR [--ecs SUBNET] [--country CC | --listener ADDR:PORT] [--qtype T]
//!               [--structured] [--config FILE] [--orders PATH] [--geoip FILE] [--data-dir DIR] [--json]
//! juris status [--data-dir DIR] [--config FILE] [--json]
//! juris check-config FILE
//! juris cert self-signed --name NAME
//! juris geoip import FILE.csv --out countries.mmdb   (rows start,end,country or prefix,country)
//! juris order apply FILE | list | show ID | add-target ID VALUE | remove-target ID VALUE
//!             | override-target ID VALUE --reason R | shadow ID | activate ID | suspend ID|--all | lift ID
//!             [--api URL] [--token TOKEN]          (token default: $JURIS_TOKEN)
//!             [--ca-cert FILE] [--client-cert FILE --client-key FILE]   (for --api https://...)
//! juris import feed NAME FILE [--order ID] | list ORDER FILE | rpz ORDER FILE
//! juris export rpz --jurisdiction CC | orders | transparency [--format csv] | ack FEED
//! juris audit log [--api URL] | verify [--data-dir DIR]
//! juris token create --role viewer|editor|approver|admin [--name N] [--data-dir DIR]
//! juris tsig generate NAME [--algorithm hmac-sha256]
//! juris serve ... [--xfr-listen ADDR:PORT] [--tsig-key NAME:ALGORITHM:BASE64SECRET]... [--notify ADDR:PORT]...
//!                 [--follow ADDR:PORT]
//! juris serve ... [--user NAME]          (started as root: switch to NAME after binding)
//! juris package-assets --out DIR         (hidden: man pages and completions for packaging)
//! ```
#![forbid(unsafe_code)]

/// mimalloc instead of glibc's malloc (design 0049).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api_tls;
mod assets;
mod candidates;
mod cli;
mod config;
mod control;
mod decode;
mod dnstap;
mod explain;
mod fleet;
mod lifecycle;
mod orders;
mod querylog;
mod reload;
mod safeguards;
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
    /// Certificates for the encrypted listeners (DoT, DoH, DoQ).
    #[command(subcommand)]
    Cert(CertCommand),
    /// GeoIP databases: build a country MMDB from a free CSV.
    #[command(subcommand)]
    Geoip(GeoipCommand),
    /// Orders in the control plane: apply, list, show, targets, lifecycle (through the API).
    Order(crate::cli::OrderCmd),
    /// Import a cumulative feed, a plain list or an RPZ zone (through the API).
    Import(crate::cli::ImportCmd),
    /// Export an RPZ zone, the orders, a transparency report, a feed acknowledgement.
    Export(crate::cli::ExportCmd),
    /// The audit log: `log` (through the API), `verify` (offline on the store).
    Audit(crate::cli::AuditCmd),
    /// API tokens, offline on the store: `token create --role R` bootstraps the first admin.
    Token(crate::cli::TokenCmd),
    /// The resolver's cache, through the API (role operator): flush, stats.
    Cache(crate::cli::CacheCmd),
    /// Mirror candidates mined from resolved names, for review (through the API): list them
    /// (`--order ID`), `accept NAME --order ID` (into an extension), `dismiss NAME --order ID`.
    Candidates(crate::cli::CandidatesCmd),
    /// TSIG keys for the fleet's zone transfers.
    #[command(subcommand)]
    Tsig(TsigCommand),
    /// The protected list: add the operators' published lists of shared infrastructure.
    #[command(subcommand)]
    Safeguards(SafeguardsCommand),
    /// Write the man pages and shell completions (for packaging; docs/design/0023).
    #[command(hide = true)]
    PackageAssets {
        /// Directory that gets `man/*.1` and `completions/{juris.bash,_juris,juris.fish}`.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SafeguardsCommand {
    /// Convert an operator's published list (Cloudflare ips-v4/ips-v6, Google goog.json or
    /// cloud.json, AWS ip-ranges.json, Fastly public-ip-list, Azure service tags, or one prefix
    /// or name per line) into DATA_DIR/protected/SOURCE.json, replacing the list of that name.
    /// `juris serve` applies it from its next start.
    Update {
        /// The downloaded file.
        file: PathBuf,
        /// The list's name (a-z, 0-9, '-', '_'), e.g. `cloudflare`, `aws-cloudfront`.
        #[arg(long, value_name = "NAME")]
        source: String,
        /// Only the prefixes of this service (AWS `service`, Google cloud.json `service`,
        /// Azure service tag `name` or `systemService`), e.g. CLOUDFRONT.
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        /// Where the file was published (recorded for provenance; juris fetches nothing).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        #[command(flatten)]
        place: DataDirArgs,
    },
    /// The published lists in DATA_DIR/protected/.
    List {
        #[command(flatten)]
        place: DataDirArgs,
    },
}

/// Where the data directory is: --data-dir, else `server.data_dir` of --config, else the
/// default (`juris status`, `juris safeguards`).
#[derive(Debug, Args)]
struct DataDirArgs {
    /// State directory (default: `server.data_dir` of --config, or the default).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl DataDirArgs {
    fn data_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(match (&self.data_dir, &self.config) {
            (Some(dir), _) => dir.clone(),
            (None, Some(path)) => Settings::from_raw(&RawConfig::from_file(path)?)?.data_dir,
            (None, None) => PathBuf::from(config::DEFAULT_DATA_DIR),
        })
    }
}

fn safeguards(command: &SafeguardsCommand) -> anyhow::Result<()> {
    match command {
        SafeguardsCommand::Update {
            file,
            source,
            service,
            url,
            place,
        } => {
            let (path, list) = safeguards::update(
                &place.data_dir()?,
                file,
                source,
                service.as_deref(),
                url.as_deref(),
            )?;
            println!(
                "wrote {} ({} format, {} prefixes, {} names, sha256 {}); juris serve applies it \
                 from its next start",
                path.display(),
                list.format,
                list.prefixes.len(),
                list.names.len(),
                list.sha256
            );
            Ok(())
        }
        SafeguardsCommand::List { place } => {
            print!(
                "{}",
                safeguards::render_list(&safeguards::read_all(&place.data_dir()?)?)
            );
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
enum TsigCommand {
    /// Print a new random key as a `--tsig-key` value and as a BIND `key` clause.
    Generate {
        /// The key's name (the same on both ends of a transfer).
        name: String,
        /// hmac-sha256 (default), hmac-sha1, hmac-sha384, hmac-sha512.
        #[arg(long, value_name = "ALGORITHM", default_value = "hmac-sha256")]
        algorithm: String,
    },
}

#[derive(Debug, Subcommand)]
enum GeoipCommand {
    /// Build a country database (MaxMind DB, read by `geoip.mmdb`) from a CSV with rows
    /// `start,end,country` (ip-location-db, DB-IP lite, iptoasn) or `prefix,country`; `-` reads
    /// standard input. Progress goes to stderr.
    Import {
        /// The CSV file (commas or tabs; a header line, `#` comments and empty lines are
        /// skipped; country `ZZ` or `None` leaves the range out).
        file: PathBuf,
        /// The database to write (replaced atomically).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Report progress every N lines.
        #[arg(long, value_name = "N", default_value_t = 100_000)]
        progress_every: u64,
    },
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Write a self-signed certificate and its key to cert.pem and key.pem in the current
    /// directory (never overwriting), for trying DoT, DoH and DoQ at once.
    SelfSigned {
        /// The server name the certificate is for (with `localhost`, 127.0.0.1 and ::1 too).
        #[arg(long, value_name = "NAME")]
        name: String,
    },
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
    /// Ask on this configured listener (`server.listen`): its country pin applies.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "country")]
    listener: Option<std::net::SocketAddr>,
    /// Query type.
    #[arg(long, value_name = "T", default_value = "A")]
    qtype: String,
    /// Signal structured DNS error support in the query.
    #[arg(long)]
    structured: bool,
    /// Resolve the question first, then explain with its live answer: the report shows its
    /// validation state and the checks of its CNAME targets, addresses and name servers.
    /// With --api the running server resolves (its resolver and cache); without, a resolver
    /// with serve's settings in this process.
    #[arg(long)]
    resolve: bool,
    /// Ask the running server's admin API instead (its policy, cache and resolver), e.g.
    /// `http://127.0.0.1:8053`; --config, --orders, --geoip and --data-dir do not apply then.
    #[arg(long, value_name = "URL", conflicts_with_all = ["config", "orders", "geoip", "data_dir"])]
    api: Option<String>,
    /// Bearer token for --api (default: the JURIS_TOKEN environment variable).
    #[arg(long, env = "JURIS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate(s) (PEM) for `--api https://...` (default: the Mozilla roots built in).
    #[arg(long, env = "JURIS_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Client certificate chain (PEM) for an API that asks for one; with --client-key.
    #[arg(long, env = "JURIS_CLIENT_CERT", value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, env = "JURIS_CLIENT_KEY", value_name = "FILE")]
    client_key: Option<PathBuf>,
    /// TOML configuration file (the one `serve` uses).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Order documents (file or directory; replaces `policy.orders`).
    #[arg(long, value_name = "PATH")]
    orders: Option<PathBuf>,
    /// GeoIP database (MMDB; replaces `geoip.mmdb`).
    #[arg(long, value_name = "FILE")]
    geoip: Option<PathBuf>,
    /// State directory whose order store (`control.sqlite3`) is read too (replaces
    /// `server.data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    place: DataDirArgs,
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
    /// DNS over TLS listen address (repeatable; replaces `server.listen_tls`).
    #[arg(long, value_name = "ADDR:PORT")]
    listen_tls: Vec<String>,
    /// DNS over HTTPS listen address, path /dns-query (repeatable; replaces `server.listen_https`).
    #[arg(long, value_name = "ADDR:PORT")]
    listen_https: Vec<String>,
    /// DNS over QUIC listen address (repeatable; replaces `server.listen_quic`).
    #[arg(long, value_name = "ADDR:PORT")]
    listen_quic: Vec<String>,
    /// Certificate chain for the encrypted listeners, PEM (replaces `tls.cert`; reloaded on SIGHUP).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert, PEM (replaces `tls.key`).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Admin API listen address, or `none` (replaces `control.api_listen`; default
    /// 127.0.0.1:8053).
    #[arg(long, value_name = "ADDR:PORT")]
    api_listen: Option<String>,
    /// DNSSEC trust anchor file, DS or DNSKEY lines (repeatable; replaces
    /// `dnssec.trust_anchors`; default: the built-in IANA root KSKs).
    #[arg(long, value_name = "FILE")]
    trust_anchor: Vec<PathBuf>,
    /// Treat this domain and everything below it as insecure (repeatable; RFC 7646).
    #[arg(long, value_name = "NAME")]
    negative_trust_anchor: Vec<String>,
    /// Do not validate DNSSEC (sets `dnssec.enabled = false`).
    #[arg(long)]
    no_dnssec: bool,
    /// Publish the policy as zones (AXFR/IXFR, TCP and UDP) here (replaces `fleet.xfr_listen`).
    #[arg(long, value_name = "ADDR:PORT")]
    xfr_listen: Option<String>,
    /// TSIG key for transfers (repeatable; replaces `fleet.tsig_keys`): a primary accepts any,
    /// an edge signs with the first. `juris tsig generate NAME` makes one.
    #[arg(long, value_name = "NAME:ALGORITHM:BASE64SECRET")]
    tsig_key: Vec<String>,
    /// Tell this follower of every change by NOTIFY (repeatable; replaces `fleet.notify`).
    #[arg(long, value_name = "ADDR:PORT")]
    notify: Vec<String>,
    /// Follow this fleet primary: take the orders from its zones (replaces `fleet.follow`).
    #[arg(long, value_name = "ADDR:PORT")]
    follow: Option<String>,
    /// Started as root: the user to switch to once every listener is bound (default: `juris`
    /// when that user exists; `root` stays root). The state directory is given to it first.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
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
            listen_tls: self.listen_tls.clone(),
            listen_https: self.listen_https.clone(),
            listen_quic: self.listen_quic.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            api_listen: self.api_listen.clone(),
            trust_anchors: self.trust_anchor.clone(),
            negative_trust_anchors: self.negative_trust_anchor.clone(),
            no_dnssec: self.no_dnssec,
            xfr_listen: self.xfr_listen.clone(),
            tsig_keys: self.tsig_key.clone(),
            notify: self.notify.clone(),
            follow: self.follow.clone(),
        });
        for flag in &self.tsig_key {
            crate::fleet::TsigKey::parse_flag(flag)
                .map_err(|e| anyhow::anyhow!("--tsig-key: {e}"))?;
        }
        Ok(Settings::from_raw(&raw)?)
    }
}

fn explain(args: &ExplainArgs) -> anyhow::Result<()> {
    if let Some(api) = &args.api {
        return explain_remote(args, api);
    }
    let mut raw = match &args.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    raw.apply(&Overrides {
        orders: args.orders.clone(),
        geoip: args.geoip.clone(),
        data_dir: args.data_dir.clone(),
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
            listener: args.listener,
            structured: args.structured,
            resolve: args.resolve,
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

/// `juris explain --api URL`: the running server explains (and resolves, with --resolve).
fn explain_remote(args: &ExplainArgs, api: &str) -> anyhow::Result<()> {
    if args.structured {
        anyhow::bail!("--structured does not apply with --api (the API explains a plain query)");
    }
    let request = juris_control::ExplainRequest {
        name: Some(args.name.clone()),
        client: Some(args.client.to_string()),
        country: args.country.clone(),
        listener: args.listener.map(|l| l.to_string()),
        ecs: args.ecs.clone(),
        qtype: Some(args.qtype.clone()),
        resolve: args.resolve.then_some(true),
        ..juris_control::ExplainRequest::default()
    };
    let api = cli::ApiArgs {
        api: api.to_owned(),
        token: args.token.clone(),
        ca_cert: args.ca_cert.clone(),
        client_cert: args.client_cert.clone(),
        client_key: args.client_key.clone(),
    };
    let view = cli::explain_remote(&api, &request)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", explain::render_view(&view, args.client));
    }
    Ok(())
}

fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let status = status::Status::read(&args.place.data_dir()?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.render());
    }
    Ok(())
}

fn main() -> ExitCode {
    juris_server::tune_allocator();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.settings().and_then(|settings| {
            let document = reload::document(args.config.as_deref())?;
            serve::run(settings, args.user.as_deref(), document, || {
                Ok((args.settings()?, reload::document(args.config.as_deref())?))
            })
        }),
        Command::CheckConfig { file } => check_config(&file),
        Command::Explain(args) => explain(&args),
        Command::Status(args) => status(&args),
        Command::Cert(CertCommand::SelfSigned { name }) => self_signed(&name),
        Command::Geoip(GeoipCommand::Import {
            file,
            out,
            progress_every,
        }) => geoip_import(&file, &out, progress_every),
        Command::Order(cmd) => control_cli(crate::cli::Command::Order(cmd)),
        Command::Import(cmd) => control_cli(crate::cli::Command::Import(cmd)),
        Command::Export(cmd) => control_cli(crate::cli::Command::Export(cmd)),
        Command::Audit(cmd) => control_cli(crate::cli::Command::Audit(cmd)),
        Command::Token(cmd) => control_cli(crate::cli::Command::Token(cmd)),
        Command::Cache(cmd) => control_cli(crate::cli::Command::Cache(cmd)),
        Command::Candidates(cmd) => control_cli(crate::cli::Command::Candidates(cmd)),
        Command::Tsig(TsigCommand::Generate { name, algorithm }) => {
            tsig_generate(&name, &algorithm)
        }
        Command::Safeguards(command) => safeguards(&command),
        Command::PackageAssets { out } => package_assets(&out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("juris: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `juris geoip import FILE --out OUT`: streams the CSV, writes OUT.tmp, renames it to OUT.
fn geoip_import(file: &std::path::Path, out: &std::path::Path, every: u64) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::BufReader;
    let name = file.display().to_string();
    let input: Box<dyn std::io::BufRead> = if name == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let opened = std::fs::File::open(file).with_context(|| format!("cannot read {name}"))?;
        Box::new(BufReader::with_capacity(1 << 16, opened))
    };
    let mut progress = |lines: u64| eprintln!("juris geoip import: {name}: {lines} lines read");
    let (writer, report) =
        juris_geo::import::import_csv(input, every, &mut progress).map_err(|e| match e {
            juris_geo::import::ImportError::Write(e) => anyhow::anyhow!("{e}"),
            e => anyhow::anyhow!("{name}: {e}"),
        })?;
    let mut temporary = out.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    writer
        .write_to(&temporary)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::rename(&temporary, out)
        .with_context(|| format!("cannot rename {} to {}", temporary.display(), out.display()))?;
    eprintln!(
        "juris geoip import: wrote {} ({} rows, {} networks, {} countries; {} rows with ZZ/None left out)",
        out.display(),
        report.rows,
        report.networks,
        report.countries,
        report.unknown
    );
    Ok(())
}

fn self_signed(name: &str) -> anyhow::Result<()> {
    // The error's text already names the file and the cause (no `{:#}` chain wanted).
    let (cert, key) = juris_transport::cert::write_self_signed(std::path::Path::new("."), name)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "wrote {} and {} (self-signed for {name}; clients must be told to trust it)",
        cert.display(),
        key.display()
    );
    println!(
        "try: juris serve --tls-cert {} --tls-key {}   (DoT and DoQ on 127.0.0.1:8853, DoH on https://127.0.0.1:8443/dns-query)",
        cert.display(),
        key.display()
    );
    Ok(())
}

fn tsig_generate(name: &str, algorithm: &str) -> anyhow::Result<()> {
    let key = crate::fleet::TsigKey::generate(name, algorithm).map_err(anyhow::Error::msg)?;
    println!("--tsig-key {}", key.flag());
    println!();
    print!("{}", key.bind_clause());
    Ok(())
}

fn package_assets(out: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    for path in assets::write(Cli::command(), out)? {
        println!("{}", path.display());
    }
    Ok(())
}

fn control_cli(command: crate::cli::Command) -> anyhow::Result<()> {
    crate::cli::run(command).map_err(|e| anyhow::anyhow!("{e}"))
}

fn check_config(file: &std::path::Path) -> anyhow::Result<()> {
    let raw = RawConfig::from_file(file)?;
    Settings::from_raw(&raw)?;
    println!("{}: ok", file.display());
    Ok(())
}
