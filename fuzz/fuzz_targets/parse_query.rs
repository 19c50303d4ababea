//! libFuzzer target over the hot-path query parser: the body is `juris_fuzz::targets::parse_query`, which the stable
//! mutation fuzzer (`cargo test -p juris-fuzz`, `juris-fuzz parse_query`) runs too. Run with
//! `cargo +nightly fuzz run parse_query` from `fuzz/` (docs/fuzzing.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| juris_fuzz::targets::parse_query(data));
