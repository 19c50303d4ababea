//! Fuzzes the hot-path query parser: it must never panic, and what it accepts must be
//! self-consistent. Run with `cargo +nightly fuzz run parse_query` from `fuzz/`.
#![no_main]

use juris_server::query::{parse_query, ParseConfig, ParseError};
use juris_server::synth::{write_rcode_response, ReplyTo, Rcode};
use juris_server::Transport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = ParseConfig::default();
    match parse_query(data, &config) {
        Ok(query) => {
            assert_eq!(query.name().len(), query.client_name().len());
            assert!(query.name().eq_ignore_ascii_case(query.client_name()));
            assert!((512..=usize::from(config.max_udp_payload)).contains(&query.udp_limit()));
            // Every accepted query can be answered within its UDP limit.
            let mut out = [0u8; 512];
            let reply = ReplyTo::for_query(&query, config.max_udp_payload, Transport::Udp);
            let len = write_rcode_response(&mut out, &reply, Rcode::SERVFAIL, None);
            assert!(len.is_some_and(|len| len <= 512));
        }
        Err(ParseError::Respond(error)) => {
            assert!(data.len() >= 12);
            let mut out = [0u8; 512];
            let reply = ReplyTo::for_error(&error, config.max_udp_payload);
            assert!(write_rcode_response(&mut out, &reply, error.rcode, None).is_some());
        }
        Err(ParseError::Drop(_)) => {}
    }
});
