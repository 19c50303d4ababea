//! libFuzzer target over the RPZ zone importer: the body is `juris_fuzz::targets::rpz_import`, which the stable
//! mutation fuzzer (`cargo test -p juris-fuzz`, `juris-fuzz rpz_import`) runs too. Run with
//! `cargo +nightly fuzz run rpz_import` from `fuzz/` (docs/fuzzing.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| juris_fuzz::targets::rpz_import(data));
