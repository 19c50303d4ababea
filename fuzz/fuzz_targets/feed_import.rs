//! libFuzzer target over the cumulative feed importer: the body is `juris_fuzz::targets::feed_import`, which the stable
//! mutation fuzzer (`cargo test -p juris-fuzz`, `juris-fuzz feed_import`) runs too. Run with
//! `cargo +nightly fuzz run feed_import` from `fuzz/` (docs/fuzzing.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| juris_fuzz::targets::feed_import(data));
