//! Every fuzz target over every file of its corpus (`fuzz/corpus/<target>/`): what libFuzzer
//! kept for its coverage, the hand-written seeds and the inputs of past crashes, replayed
//! without an instrumented build (a fixed crash stays fixed).
#![allow(
    clippy::expect_used,
    reason = "test helpers: a missing corpus fails the test"
)]

fn replay(name: &str) {
    let target = juris_fuzz::target(name).expect("a known target");
    let corpus = juris_fuzz::corpus(name).expect("the corpus is readable");
    assert!(!corpus.is_empty(), "fuzz/corpus/{name}/ has no input");
    for (path, input) in &corpus {
        if std::panic::catch_unwind(|| (target.run)(input)).is_err() {
            panic!("{name} panicked on {}", path.display());
        }
    }
}

#[test]
fn parse_query_replays_its_corpus() {
    replay("parse_query");
}

#[test]
fn upstream_response_replays_its_corpus() {
    replay("upstream_response");
}

#[test]
fn parse_order_replays_its_corpus() {
    replay("parse_order");
}

#[test]
fn rpz_import_replays_its_corpus() {
    replay("rpz_import");
}

#[test]
fn feed_import_replays_its_corpus() {
    replay("feed_import");
}

/// Every target has a corpus directory and every corpus directory a target (a renamed target
/// would otherwise leave its corpus unreplayed).
#[test]
fn corpus_directories_match_the_targets() {
    let mut dirs: Vec<String> = std::fs::read_dir(juris_fuzz::corpus_root())
        .expect("fuzz/corpus/ is readable")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    dirs.sort();
    let mut names: Vec<&str> = juris_fuzz::TARGETS.iter().map(|t| t.name).collect();
    names.sort_unstable();
    assert_eq!(dirs, names);
}
