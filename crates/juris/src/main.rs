//! `juris`: a public DNS resolver that obeys legal blocking orders exactly where they apply.
//!
//! ```text
//! juris serve [--config FILE] [--listen ADDR:PORT]... [--root-hints FILE] [--forward ADDR[:PORT]]...
//!             [--data-dir DIR] [--threads N]
//! juris check-config FILE
//! ```
#![forbid(unsafe_code)]

mod config;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Overrides, RawConfig, Settings};

#[derive(Debug, Parser)]
#[command(name = "juris", version, about = "A DNS resolver that obeys legal orders exactly where they apply")]
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
        });
        Ok(Settings::from_raw(&raw)?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.settings().and_then(serve::run),
        Command::CheckConfig { file } => check_config(&file),
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
