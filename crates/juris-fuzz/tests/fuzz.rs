//! Every fuzz target over its corpus and a bounded number of mutants (a short run for CI;
//! `JURIS_FUZZ_CASES` sets the number, `JURIS_FUZZ_SEED` the seed: reproducible).

fn cases() -> u64 {
    std::env::var("JURIS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn seed() -> u64 {
    std::env::var("JURIS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6a75_7269_73)
}

fn fuzz(name: &str) {
    let target = juris_fuzz::target(name).expect("a known target");
    let cases = cases();
    let report = juris_fuzz::run(target, seed(), |n| n < cases).expect("the corpus is readable");
    let corpus = juris_fuzz::corpus(name)
        .expect("the corpus is readable")
        .len() as u64;
    assert_eq!(report.inputs, corpus + cases);
}

#[test]
fn parse_query_never_panics() {
    fuzz("parse_query");
}

#[test]
fn upstream_response_never_panics() {
    fuzz("upstream_response");
}

#[test]
fn parse_order_never_panics() {
    fuzz("parse_order");
}

#[test]
fn rpz_import_never_panics() {
    fuzz("rpz_import");
}

#[test]
fn feed_import_never_panics() {
    fuzz("feed_import");
}

/// The mutator is deterministic for a seed (a CI failure can be replayed).
#[test]
fn mutants_are_reproducible() {
    use rand::SeedableRng;
    let seeds = vec![b"\x00\x01abc".to_vec(), b"xyz".to_vec()];
    let run = || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        (0..50)
            .map(|_| juris_fuzz::mutate(&seeds, &mut rng))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}
