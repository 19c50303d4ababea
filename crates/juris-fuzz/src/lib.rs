//! The fuzz targets: every parser that reads bytes someone else wrote, as a function that
//! takes any bytes and must not panic ([`targets`]).
//!
//! ```text
//!  fuzz/run.sh TARGET SECONDS ─► juris-libfuzzer (this crate's `libfuzzer` feature, built
//!     with sanitizer coverage on stable) ─► libFuzzer: inputs steered by new edges and
//!     comparisons ─► targets::TARGET(bytes); a panic = a bug, the input is kept
//!  cargo test -p juris-fuzz ─► every file of fuzz/corpus/<target>/ through its target
//! ```
//!
//! The corpus (`fuzz/corpus/<target>/`) is what libFuzzer found to reach new code, merged
//! back by `fuzz/run.sh merge`, plus hand-written seeds and the inputs of past crashes: the
//! test replays it, so a fixed crash stays fixed without an instrumented build
//! (docs/fuzzing.md, design 0046).

use std::path::{Path, PathBuf};

pub mod targets;

/// One fuzz target: a name (its corpus directory) and the function that must never panic.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Directory name under `fuzz/corpus/`.
    pub name: &'static str,
    /// Runs one input.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "parse_query",
        run: targets::parse_query,
    },
    Target {
        name: "upstream_response",
        run: targets::upstream_response,
    },
    Target {
        name: "parse_order",
        run: targets::parse_order,
    },
    Target {
        name: "rpz_import",
        run: targets::rpz_import,
    },
    Target {
        name: "feed_import",
        run: targets::feed_import,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

/// `fuzz/corpus/` of the repository.
pub fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

/// The corpus of `target`: every file of its directory with its path, sorted by name.
pub fn corpus(target: &str) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let dir = corpus_root().join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    let mut inputs = Vec::new();
    for path in paths {
        if path.is_file() {
            let input = std::fs::read(&path)?;
            inputs.push((path, input));
        }
    }
    Ok(inputs)
}
