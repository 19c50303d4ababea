//! libFuzzer target over the resolver's reading of upstream responses: the body is `juris_fuzz::targets::upstream_response`, which the stable
//! mutation fuzzer (`cargo test -p juris-fuzz`, `juris-fuzz upstream_response`) runs too. Run with
//! `cargo +nightly fuzz run upstream_response` from `fuzz/` (docs/fuzzing.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| juris_fuzz::targets::upstream_response(data));
