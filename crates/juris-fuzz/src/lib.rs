//! Fuzzing on stable Rust: the fuzz targets (every parser that reads bytes someone else
//! wrote) and a small mutation fuzzer that runs them.
//!
//! ```text
//!  corpus (fuzz/corpus/<target>/*) ──► mutate (bit flips, byte edits, cuts, inserted
//!  and repeated chunks, splices of two inputs; seeded, reproducible) ──► target(bytes)
//!                                           a panic = a bug: the input is written out
//! ```
//!
//! `cargo test -p juris-fuzz` runs every target over its corpus and a few thousand mutants
//! (CI); `cargo run --release -p juris-fuzz -- TARGET --seconds N` runs one for longer
//! (docs/fuzzing.md). The same target functions back the libFuzzer targets in `fuzz/` for
//! whoever has a nightly toolchain.
//!
//! # Limitations
//! - Not coverage-guided: mutants of the corpus, not inputs steered by new edges (cargo-afl or
//!   cargo-fuzz do that; neither runs on this machine's stable toolchain without network
//!   downloads). Mutants that find nothing new are not kept.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

/// The corpus of `target`: every file of its directory, sorted by name (an empty input when
/// there is none).
pub fn corpus(target: &str) -> std::io::Result<Vec<Vec<u8>>> {
    let dir = corpus_root().join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    let mut inputs = Vec::new();
    for path in paths {
        if path.is_file() {
            inputs.push(std::fs::read(path)?);
        }
    }
    if inputs.is_empty() {
        inputs.push(Vec::new());
    }
    Ok(inputs)
}

/// Largest mutant (bytes).
const MAX_INPUT: usize = 16 * 1024;

/// One mutant of `seeds` (1 to 4 stacked mutations of one seed, or a splice of two).
pub fn mutate(seeds: &[Vec<u8>], rng: &mut impl Rng) -> Vec<u8> {
    let mut input = seeds[rng.gen_range(0..seeds.len())].clone();
    for _ in 0..rng.gen_range(1..=4) {
        let len = input.len();
        match rng.gen_range(0..8) {
            // Flip one bit.
            0 if len > 0 => {
                let at = rng.gen_range(0..len);
                input[at] ^= 1 << rng.gen_range(0..8);
            }
            // Set a byte to an interesting value.
            1 if len > 0 => {
                let at = rng.gen_range(0..len);
                input[at] = [0, 1, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xff][rng.gen_range(0..8)];
            }
            // Random byte.
            2 if len > 0 => {
                let at = rng.gen_range(0..len);
                input[at] = rng.gen();
            }
            // Cut the end.
            3 if len > 0 => input.truncate(rng.gen_range(0..len)),
            // Remove a chunk.
            4 if len > 1 => {
                let start = rng.gen_range(0..len - 1);
                let end = rng.gen_range(start + 1..=len.min(start + 16));
                input.drain(start..end);
            }
            // Insert random bytes.
            5 => {
                let at = rng.gen_range(0..=len);
                let bytes: Vec<u8> = (0..rng.gen_range(1..=8)).map(|_| rng.gen()).collect();
                input.splice(at..at, bytes);
            }
            // Repeat a chunk (lengths, labels, list items).
            6 if len > 0 => {
                let start = rng.gen_range(0..len);
                let end = rng.gen_range(start..=len.min(start + 32));
                let chunk = input[start..end].to_vec();
                let at = rng.gen_range(0..=input.len());
                input.splice(at..at, chunk);
            }
            // Splice: this input's head, another seed's tail.
            _ => {
                let other = &seeds[rng.gen_range(0..seeds.len())];
                let head = rng.gen_range(0..=len);
                let tail = rng.gen_range(0..=other.len());
                input.truncate(head);
                input.extend_from_slice(&other[tail..]);
            }
        }
    }
    input.truncate(MAX_INPUT);
    input
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Inputs run (the corpus included).
    pub inputs: u64,
}

/// Runs `target` on its corpus, then on mutants from `seed` until `more` says stop (it gets
/// the number of mutants run so far). A panicking input is written to
/// `target/fuzz-crashes/<target>-<n>` before the panic goes on.
pub fn run(
    target: Target,
    seed: u64,
    mut more: impl FnMut(u64) -> bool,
) -> std::io::Result<Report> {
    let seeds = corpus(target.name)?;
    let mut report = Report::default();
    for input in &seeds {
        run_one(target, input);
        report.inputs += 1;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mutants = 0;
    while more(mutants) {
        let input = mutate(&seeds, &mut rng);
        run_one(target, &input);
        mutants += 1;
        report.inputs += 1;
    }
    Ok(report)
}

fn run_one(target: Target, input: &[u8]) {
    if let Err(panic) = std::panic::catch_unwind(|| (target.run)(input)) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-crashes");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{}-{:016x}", target.name, fingerprint(input)));
        let _ = std::fs::write(&path, input);
        eprintln!(
            "fuzz target {} panicked; input ({} bytes) written to {}",
            target.name,
            input.len(),
            path.display()
        );
        std::panic::resume_unwind(panic);
    }
}

/// FNV-1a of the input (a file name for a crash).
fn fingerprint(input: &[u8]) -> u64 {
    input.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
