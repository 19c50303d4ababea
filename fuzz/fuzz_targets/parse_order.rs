//! libFuzzer target over the order parser (JSON, validation, compilation, name checks): the body is `juris_fuzz::targets::parse_order`, which the stable
//! mutation fuzzer (`cargo test -p juris-fuzz`, `juris-fuzz parse_order`) runs too. Run with
//! `cargo +nightly fuzz run parse_order` from `fuzz/` (docs/fuzzing.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| juris_fuzz::targets::parse_order(data));
