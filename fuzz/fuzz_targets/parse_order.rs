//! Fuzzes the order parser and everything an order document reaches: strict JSON parsing,
//! validation (IDNA, limits, jurisdictions), compilation, and a check of each target name.
//! Nothing may panic, whatever the bytes.

#![no_main]

use juris_policy::{
    name_to_wire, CompileOptions, CompiledPolicy, Order, TargetValue, Timestamp, ValidationOptions,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
    let Ok(policy) = CompiledPolicy::compile(std::slice::from_ref(&order), &CompileOptions::default())
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
    // The raw bytes as a wire name too: malformed names must be allowed, never panic.
    let _ = policy.check_name(data, None, now);
});
