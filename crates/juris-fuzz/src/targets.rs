//! The fuzz targets: each takes any bytes and must not panic (assertions inside check what
//! an accepted input promises).
#![allow(
    clippy::expect_used,
    reason = "a broken promise about an accepted input must panic: that panic is the fuzzer's finding"
)]

use juris_policy::{
    name_to_wire, CompileOptions, CompiledPolicy, Order, TargetValue, Timestamp, ValidationOptions,
};
use juris_server::query::{parse_query as parse, ParseConfig, ParseError};
use juris_server::synth::{write_rcode_response, Rcode, ReplyTo};
use juris_server::Transport;

/// The hot-path query parser: never panics, and what it accepts is self-consistent and can
/// be answered within its UDP limit.
pub fn parse_query(data: &[u8]) {
    let config = ParseConfig::default();
    match parse(data, &config) {
        Ok(query) => {
            assert_eq!(query.name().len(), query.client_name().len());
            assert!(query.name().eq_ignore_ascii_case(query.client_name()));
            assert!((512..=usize::from(config.max_udp_payload)).contains(&query.udp_limit()));
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
}

/// The resolver's reading of upstream responses (any server, or a spoofer, sends them).
pub fn upstream_response(data: &[u8]) {
    juris_resolver::fuzzing::upstream_response(data);
}

/// The order parser and everything an order document reaches: strict JSON, validation
/// (IDNA, limits, jurisdictions), compilation, a check of each target name, and the raw
/// bytes as a wire name.
pub fn parse_order(data: &[u8]) {
    let Ok(order) = Order::from_json(data) else {
        return;
    };
    let options = ValidationOptions {
        max_targets: 10_000,
        ..ValidationOptions::default()
    };
    let Ok(order) = order.validate(&options) else {
        return;
    };
    let Ok(policy) =
        CompiledPolicy::compile(std::slice::from_ref(&order), &CompileOptions::default())
    else {
        return;
    };
    let now = Timestamp::UNIX_EPOCH;
    for target in order.targets() {
        if let TargetValue::Name(name) = target.value() {
            let wire = name_to_wire(name).expect("a validated name converts to wire format");
            let _ = policy.explain_name(&wire, None, now);
        }
    }
    let _ = policy.check_name(data, None, now);
}

/// The RPZ zone importer (text; invalid UTF-8 is refused before it, as the API does).
pub fn rpz_import(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(zone) = juris_control::rpz::parse(text) {
        for record in &zone.records {
            assert!(record.line >= 1);
        }
    }
}

/// The cumulative feed importer: strict JSON, then the checksums.
pub fn feed_import(data: &[u8]) {
    if let Ok(feed) = juris_control::feeds::CumulativeFeed::from_json(data) {
        let _ = feed.verify();
    }
}
