//! The libFuzzer executable (`fuzz/run.sh`, docs/fuzzing.md): every target of
//! [`juris_fuzz::TARGETS`] in one instrumented binary (one build and one link for all),
//! `JURIS_FUZZ_TARGET` naming the one to run, since libFuzzer owns the command line.
#![no_main]
#![allow(
    unsafe_code,
    reason = "fuzz_target! exports the #[no_mangle] entry points libFuzzer calls"
)]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static TARGET: OnceLock<juris_fuzz::Target> = OnceLock::new();

fuzz_target!(
    init: {
        let name = std::env::var("JURIS_FUZZ_TARGET").unwrap_or_default();
        let Some(target) = juris_fuzz::target(&name) else {
            let names: Vec<&str> = juris_fuzz::TARGETS.iter().map(|t| t.name).collect();
            eprintln!("JURIS_FUZZ_TARGET={name:?}: not a fuzz target (one of {names:?})");
            std::process::exit(2);
        };
        let _ = TARGET.set(target);
    },
    |data: &[u8]| {
        if let Some(target) = TARGET.get() {
            (target.run)(data);
        }
    }
);
