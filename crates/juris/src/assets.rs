//! `juris package-assets --out DIR` (hidden): the man pages and shell completions generated
//! from the clap definitions, for the Debian package (docs/design/0023-packaging-and-lifecycle.md).
//!
//! ```text
//!  DIR/man/juris.1, juris-serve.1, juris-order.1, juris-order-apply.1, ...  (clap_mangen)
//!  DIR/completions/juris.bash, _juris, juris.fish                          (clap_complete)
//! ```
//!
//! A subcommand of the binary rather than a build script: the definitions live in the binary
//! crate (`main.rs`, `cli.rs`), and what is generated always matches the binary it ships with.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::Shell;

/// Writes every man page and completion file under `out`; returns the files written.
pub fn write(command: clap::Command, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    clap_mangen::generate_to(command.clone(), &man)
        .with_context(|| format!("man pages: cannot write to {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut command = command.clone();
        clap_complete::generate_to(shell, &mut command, "juris", &completions).with_context(
            || {
                format!(
                    "{shell} completions: cannot write to {}",
                    completions.display()
                )
            },
        )?;
    }
    let mut written = Vec::new();
    for dir in [&man, &completions] {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries {
            written.push(
                entry
                    .with_context(|| format!("cannot read {}", dir.display()))?
                    .path(),
            );
        }
    }
    written.sort();
    Ok(written)
}
