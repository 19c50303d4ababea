//! Tests of the loader (one directory of order files, loaded by hand) and of its actor.
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use juris_control::ProtectedList;
use juris_policy::{
    name_to_wire, CompileOptions, CompiledPolicy, Country, Timestamp, ValidatedOrder,
    ValidationOptions, Verdict,
};
use juris_server::PolicyHandle;

use super::diff::Body;
use super::files::{order_files, parse_order};
use super::priority::lower_thread_priority;
use super::publish::{install_compacted, reap};
use super::watch::LoaderThread;
use super::*;

/// A loader of the order files under `path` (a directory or one file), with the shipped
/// protected list.
fn file_loader(path: &Path, handle: &Arc<PolicyHandle>) -> OrderLoader {
    OrderLoader::new(
        vec![Box::new(FileSource::new(path.to_owned()))],
        Safeguards::new(ProtectedList::defaults()),
        Arc::clone(handle),
    )
}

const ORDER: &str = r#"{"id": "IT-1", "kind": "court_order", "authority": "Tribunale di Milano",
    "jurisdictions": ["IT"], "action": "nxdomain", "state": "active",
    "targets": [{"type": "subtree", "value": "kickasstorrents.to"}]}"#;

/// An order document: `targets` are `(type, value)`.
fn order(id: &str, jurisdiction: &str, state: &str, targets: &[(&str, &str)]) -> String {
    let targets: Vec<String> = targets
        .iter()
        .map(|(kind, value)| format!(r#"{{"type": "{kind}", "value": "{value}"}}"#))
        .collect();
    format!(
        r#"{{"id": "{id}", "kind": "court_order", "authority": "Court {id}",
        "jurisdictions": ["{jurisdiction}"], "action": "nxdomain", "state": "{state}",
        "targets": [{}]}}"#,
        targets.join(", ")
    )
}

/// Writes like an editor: a temporary file, then a rename (new inode).
fn write(dir: &Path, name: &str, text: &str) {
    let temp = dir.join(format!(".{name}.tmp"));
    fs::write(&temp, text).unwrap();
    fs::rename(&temp, dir.join(name)).unwrap();
}

/// What a full compile of the files under `dir` gives (the reference).
fn compiled_from_scratch(dir: &Path) -> CompiledPolicy {
    let orders: Vec<ValidatedOrder> = order_files(dir)
        .unwrap()
        .iter()
        .map(|file| {
            parse_order(file, &fs::read(file).unwrap())
                .unwrap()
                .validate(&ValidationOptions::default())
                .unwrap()
        })
        .collect();
    CompiledPolicy::compile(&orders, &CompileOptions::default()).unwrap()
}

const NAMES: &[&str] = &[
    "kickasstorrents.to",
    "www.kickasstorrents.to",
    "notkickasstorrents.to",
    "a.example",
    "www.a.example",
    "b.example",
    "www.b.example",
    "c.example",
    "x.c.example",
    "d.example",
    "new.example",
    "www.new.example",
    "big-7.example",
    "www.big-7.example",
    "big-19999.example",
    "big-20000.example",
    "www.big-20001.example",
    "unrelated.org",
];

fn verdicts(policy: &CompiledPolicy) -> Vec<(String, Option<&'static str>, Verdict)> {
    let now: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    let mut out = Vec::new();
    for name in NAMES {
        let wire = name_to_wire(name).unwrap();
        for country in [Some("IT"), Some("DE"), None] {
            let client = country.map(|c| c.parse::<Country>().unwrap());
            out.push((
                (*name).to_owned(),
                country,
                policy.check_name(&wire, client, now),
            ));
        }
    }
    out
}

/// The published policy answers exactly like a full compile of the same files.
fn assert_same_answers(handle: &PolicyHandle, dir: &Path) {
    let published = handle.current();
    let reference = compiled_from_scratch(dir);
    assert_eq!(verdicts(&published), verdicts(&reference));
    assert_eq!(published.stats().orders, reference.stats().orders);
}

fn blocks(handle: &PolicyHandle, name: &str, country: &str) -> Option<String> {
    let now: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    handle
        .current()
        .check_name(
            &name_to_wire(name).unwrap(),
            Some(country.parse().unwrap()),
            now,
        )
        .block()
        .map(|b| b.order().id.clone())
}

/// Three small orders in a directory, loaded.
fn three_orders() -> (tempfile::TempDir, Arc<PolicyHandle>, OrderLoader) {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.json",
        &order("A", "IT", "active", &[("domain", "a.example")]),
    );
    write(
        dir.path(),
        "b.json",
        &order("B", "IT", "active", &[("subtree", "b.example")]),
    );
    write(
        dir.path(),
        "c.json",
        &order("C", "DE", "active", &[("subtree", "c.example")]),
    );
    let handle = Arc::new(PolicyHandle::default());
    let mut loader = file_loader(dir.path(), &handle);
    let loaded = loader.load(1).unwrap();
    assert!(loaded.full && loaded.published && loaded.rejected.is_empty());
    assert_eq!(
        (loaded.generation, loaded.orders, loaded.validated),
        (1, 3, 3)
    );
    (dir, handle, loader)
}

#[test]
fn a_directory_of_orders_loads_and_a_bad_change_keeps_the_last_good_policy() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("it-1.json"), ORDER).unwrap();
    fs::write(dir.path().join("notes.txt"), "not an order").unwrap();
    let handle = Arc::new(PolicyHandle::default());
    let mut loader = file_loader(dir.path(), &handle);
    let loaded = loader.load(1).unwrap();
    assert_eq!((loaded.generation, loaded.orders), (1, 1));
    assert_eq!(handle.load().generation(), 1);

    // A bad target: the error names the file and the field; generation 1 stays.
    let bad = ORDER.replace("kickasstorrents.to", "to");
    fs::write(dir.path().join("it-2.json"), bad.replace("IT-1", "IT-2")).unwrap();
    let loaded = loader.load(2).unwrap();
    assert!(!loaded.published);
    let error = loaded.rejected[0].to_string();
    assert!(
        error.contains("it-2.json") && error.contains("targets[0].value"),
        "{error}"
    );
    assert_eq!(handle.load().generation(), 1);
    assert!(loader.last_error().is_some());

    // A duplicate id across files.
    fs::write(dir.path().join("it-2.json"), ORDER).unwrap();
    let error = loader.load(3).unwrap().rejected[0].to_string();
    assert!(
        error.contains("more than once") && error.contains("it-2.json"),
        "{error}"
    );

    // Syntax errors name the file and the place.
    fs::write(dir.path().join("it-2.json"), "{").unwrap();
    let error = loader.load(4).unwrap().rejected[0].to_string();
    assert!(
        error.contains("it-2.json") && error.contains("line 1"),
        "{error}"
    );
    assert_eq!(handle.load().generation(), 1);

    // Nothing changed that was in force: no new generation, and the error is gone.
    fs::remove_file(dir.path().join("it-2.json")).unwrap();
    let loaded = loader.load(5).unwrap();
    assert!(!loaded.published && loaded.rejected.is_empty());
    assert_eq!(loaded.generation, 1);
    assert!(loader.last_error().is_none());
    assert_eq!(handle.changed_at(), Some(1));
}

#[test]
fn poll_notices_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("order.json");
    fs::write(&file, ORDER).unwrap();
    let handle = Arc::new(PolicyHandle::default());
    let mut loader = file_loader(&file, &handle);
    loader.load(1).unwrap();
    loader.poll(2);
    assert_eq!(handle.load().generation(), 1, "no change, no reload");
    fs::write(&file, ORDER.replace("\"active\"", "\"lifted\"")).unwrap();
    loader.poll(3);
    assert_eq!(handle.load().generation(), 2);
    assert_eq!(blocks(&handle, "www.kickasstorrents.to", "IT"), None);
}

#[test]
fn one_added_target_revalidates_only_its_order_and_answers_like_a_full_compile() {
    let (dir, handle, mut loader) = three_orders();
    assert_same_answers(&handle, dir.path());
    let before = loader.validations;

    write(
        dir.path(),
        "b.json",
        &order(
            "B",
            "IT",
            "active",
            &[("subtree", "b.example"), ("subtree", "new.example")],
        ),
    );
    let loaded = loader.load(2).unwrap();
    assert!(loaded.published && !loaded.full, "{loaded:?}");
    assert_eq!((loaded.generation, loaded.validated), (2, 1));
    assert_eq!(loader.validations, before + 1, "only b.json was validated");
    assert_eq!(
        handle.current().stats().overlay_names,
        1,
        "one name in the overlay"
    );
    assert_eq!(
        blocks(&handle, "www.new.example", "IT").as_deref(),
        Some("B")
    );
    assert_same_answers(&handle, dir.path());

    // Touching a file without changing it re-reads it but validates nothing.
    let text = fs::read_to_string(dir.path().join("a.json")).unwrap();
    write(dir.path(), "a.json", &text);
    let loaded = loader.load(3).unwrap();
    assert!(!loaded.published && loaded.validated == 0, "{loaded:?}");
    assert_eq!(handle.current().generation(), 2);

    // A new file, and a metadata-only change (lift), in one load.
    write(
        dir.path(),
        "d.json",
        &order("D", "IT", "active", &[("domain", "d.example")]),
    );
    write(
        dir.path(),
        "c.json",
        &order("C", "DE", "lifted", &[("subtree", "c.example")]),
    );
    let loaded = loader.load(4).unwrap();
    assert_eq!((loaded.generation, loaded.validated), (3, 2));
    assert_eq!(blocks(&handle, "x.c.example", "DE"), None);
    assert_eq!(blocks(&handle, "d.example", "IT").as_deref(), Some("D"));
    assert_same_answers(&handle, dir.path());
}

#[test]
fn an_invalid_edit_keeps_that_orders_last_good_version_and_other_edits_still_apply() {
    let (dir, handle, mut loader) = three_orders();
    // B broken (a TLD target): B's last good version keeps blocking.
    write(
        dir.path(),
        "b.json",
        &order("B", "IT", "lifted", &[("subtree", "example")]),
    );
    let loaded = loader.load(2).unwrap();
    assert!(!loaded.published);
    let error = loaded.rejected[0].to_string();
    assert!(
        error.contains("b.json") && error.contains("targets[0].value"),
        "{error}"
    );
    assert_eq!(blocks(&handle, "www.b.example", "IT").as_deref(), Some("B"));
    assert!(loader.last_error().unwrap().contains("b.json"));

    // A later edit of another order applies while B is still broken.
    write(
        dir.path(),
        "a.json",
        &order(
            "A",
            "IT",
            "active",
            &[("domain", "a.example"), ("domain", "new.example")],
        ),
    );
    let loaded = loader.load(3).unwrap();
    assert!(loaded.published, "{loaded:?}");
    assert_eq!(loaded.rejected.len(), 1, "b.json is still reported");
    assert_eq!(loaded.validated, 2, "a.json, and b.json again");
    assert_eq!(blocks(&handle, "new.example", "IT").as_deref(), Some("A"));
    assert_eq!(blocks(&handle, "www.b.example", "IT").as_deref(), Some("B"));

    // A file moving its id to another file's id is refused; the other file's order stays.
    write(
        dir.path(),
        "d.json",
        &order("C", "IT", "active", &[("domain", "d.example")]),
    );
    let loaded = loader.load(4).unwrap();
    assert!(loaded
        .rejected
        .iter()
        .any(|e| e.to_string().contains("d.json") && e.to_string().contains("more than once")));
    assert_eq!(blocks(&handle, "x.c.example", "DE").as_deref(), Some("C"));
    fs::remove_file(dir.path().join("d.json")).unwrap();

    // Fixing B applies it, and the error is cleared.
    write(
        dir.path(),
        "b.json",
        &order("B", "IT", "lifted", &[("subtree", "b.example")]),
    );
    let loaded = loader.load(5).unwrap();
    assert!(loaded.published && loaded.rejected.is_empty());
    assert!(loader.last_error().is_none());
    assert_eq!(blocks(&handle, "www.b.example", "IT"), None);
    assert_same_answers(&handle, dir.path());
}

#[test]
fn removing_a_file_removes_its_order_and_ids_may_move_between_files() {
    let (dir, handle, mut loader) = three_orders();
    fs::remove_file(dir.path().join("b.json")).unwrap();
    let loaded = loader.load(2).unwrap();
    assert!(loaded.published && !loaded.full && loaded.validated == 0);
    assert_eq!(loaded.orders, 2);
    assert_eq!(blocks(&handle, "www.b.example", "IT"), None);
    assert!(handle.current().order_by_id("B").is_none());
    assert_same_answers(&handle, dir.path());

    // Two files swap their ids (and targets) in one change.
    write(
        dir.path(),
        "a.json",
        &order("C", "DE", "active", &[("subtree", "c.example")]),
    );
    write(
        dir.path(),
        "c.json",
        &order("A", "IT", "active", &[("domain", "a.example")]),
    );
    let loaded = loader.load(3).unwrap();
    assert!(loaded.rejected.is_empty(), "{loaded:?}");
    assert_eq!(loaded.orders, 2);
    assert_same_answers(&handle, dir.path());

    // Every file removed: an empty policy.
    fs::remove_file(dir.path().join("a.json")).unwrap();
    fs::remove_file(dir.path().join("c.json")).unwrap();
    let loaded = loader.load(4).unwrap();
    assert_eq!(loaded.orders, 0);
    assert_eq!(blocks(&handle, "a.example", "IT"), None);
    assert_same_answers(&handle, dir.path());
}

#[test]
fn compaction_folds_the_overlay_and_keeps_answers_and_generation() {
    let (dir, handle, mut loader) = three_orders();
    loader.compactor.compact_at = Some(2);
    write(
        dir.path(),
        "a.json",
        &order("A", "IT", "active", &[("domain", "new.example")]),
    );
    let loaded = loader.load(2).unwrap();
    assert_eq!(loaded.generation, 2);
    loader.compactor.wait_for_compaction();
    let compacted = handle.current();
    assert_eq!(compacted.generation(), 2, "compaction keeps the generation");
    let stats = compacted.stats();
    assert_eq!(
        (stats.overlay_names, stats.masked_names),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(handle.changed_at(), Some(2));
    assert_same_answers(&handle, dir.path());

    // The next change builds on the compacted base.
    write(
        dir.path(),
        "c.json",
        &order(
            "C",
            "DE",
            "active",
            &[("subtree", "c.example"), ("domain", "d.example")],
        ),
    );
    loader.load(3).unwrap();
    assert_eq!(handle.current().stats().overlay_names, 1);
    assert_same_answers(&handle, dir.path());
}

#[test]
fn a_compaction_of_an_old_generation_is_not_published() {
    let (dir, handle, mut loader) = three_orders();
    write(
        dir.path(),
        "a.json",
        &order("A", "IT", "active", &[("domain", "new.example")]),
    );
    loader.load(2).unwrap();
    let old = Arc::clone(&loader.compactor.published.lock().unwrap().current);
    let compacted = old.compact().unwrap();
    write(
        dir.path(),
        "a.json",
        &order("A", "IT", "lifted", &[("domain", "new.example")]),
    );
    loader.load(3).unwrap();
    assert!(!install_compacted(
        &loader.compactor.published,
        &handle,
        &old,
        compacted
    ));
    assert_eq!(handle.current().generation(), 3);
    assert_same_answers(&handle, dir.path());
}

#[test]
fn large_orders_keep_a_digest_and_still_update_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..=RETAIN_TARGETS + 20_000)
        .map(|i| format!("big-{i}.example"))
        .collect();
    let big = |state: &str, names: &[String]| {
        let targets: Vec<(&str, &str)> = names.iter().map(|n| ("domain", n.as_str())).collect();
        order("BIG", "IT", state, &targets)
    };
    write(dir.path(), "big.json", &big("active", &names));
    let others: Vec<(&str, &str)> = names.iter().map(|n| ("subtree", n.as_str())).collect();
    write(
        dir.path(),
        "big2.json",
        &order("BIG2", "DE", "active", &others),
    );
    write(
        dir.path(),
        "a.json",
        &order("A", "IT", "active", &[("domain", "a.example")]),
    );
    let handle = Arc::new(PolicyHandle::default());
    let mut loader = file_loader(dir.path(), &handle);
    loader.load(1).unwrap();
    let key = SourceId::File(dir.path().join("big.json"));
    assert!(matches!(loader.known[&key].body, Body::Digest(_)));
    assert_same_answers(&handle, dir.path());

    // Metadata only: an update without touching the index.
    write(dir.path(), "big.json", &big("shadow", &names));
    let loaded = loader.load(2).unwrap();
    assert!(loaded.published && !loaded.full);
    assert_eq!(handle.current().stats().overlay_names, 0);
    assert_eq!(blocks(&handle, "big-7.example", "IT"), None);
    assert_same_answers(&handle, dir.path());

    // A target removed: the whole order is put again (overlay, as BIG2's targets are not
    // at hand for a full compile), answers exact.
    write(dir.path(), "big.json", &big("active", &names[8..]));
    loader.compactor.compact_at = Some(usize::MAX);
    let loaded = loader.load(3).unwrap();
    assert!(loaded.published && !loaded.full);
    assert_eq!(blocks(&handle, "big-7.example", "IT"), None);
    assert_eq!(
        blocks(&handle, "big-8.example", "IT").as_deref(),
        Some("BIG")
    );
    assert_same_answers(&handle, dir.path());
}

/// Waits (bounded) until `check` holds; the watcher works in the background.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A loader actor whose poll interval is an hour: whatever it picks up, it got from events
/// or wake-ups. `dir` is the loader's path: a directory or one order file.
fn watched(dir: &Path) -> (Arc<PolicyHandle>, LoaderHandle, LoaderThread) {
    let handle = Arc::new(PolicyHandle::default());
    let mut loader = file_loader(dir, &handle);
    loader.load(1).unwrap();
    let (loader, thread) = spawn(loader, || 2, Duration::from_secs(3600)).unwrap();
    eventually("the loader runs", || loader.status().running);
    (handle, loader, thread)
}

#[test]
fn a_new_file_is_enforced_on_its_event_without_waiting_for_the_poll() {
    let (dir, _, _) = three_orders();
    let (handle, loader, thread) = watched(dir.path());
    assert_eq!(blocks(&handle, "new.example", "IT"), None);

    // Renamed into place (what editors and the benchmark do).
    write(
        dir.path(),
        "new.json",
        &order("NEW", "IT", "active", &[("domain", "new.example")]),
    );
    eventually("the renamed file is enforced", || {
        blocks(&handle, "new.example", "IT").as_deref() == Some("NEW")
    });

    // Written in place, in two writes with a pause: read once complete (or, at worst, read
    // half-written, rejected, and read again on its close): the order ends up in force.
    {
        use std::io::Write;
        let text = order("INPLACE", "DE", "active", &[("subtree", "inplace.example")]);
        let (head, tail) = text.split_at(text.len() / 2);
        let mut file = fs::File::create(dir.path().join("inplace.json")).unwrap();
        file.write_all(head.as_bytes()).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        file.write_all(tail.as_bytes()).unwrap();
    }
    eventually("the file written in place is enforced", || {
        blocks(&handle, "www.inplace.example", "DE").as_deref() == Some("INPLACE")
    });

    // Removed.
    fs::remove_file(dir.path().join("new.json")).unwrap();
    eventually("the removed file is lifted", || {
        blocks(&handle, "new.example", "IT").is_none()
    });
    // Files that are not orders (hidden, other extensions) are left alone.
    let generation = handle.current().generation();
    fs::write(dir.path().join("notes.txt"), "x").unwrap();
    fs::write(dir.path().join(".hidden.json"), "{").unwrap();
    assert_eq!(loader.status().last_error, None);
    assert_same_answers(&handle, dir.path());

    assert!(thread.stop(Duration::from_secs(20)), "the loader stopped");
    assert!(!loader.status().running);
    assert!(handle.current().generation() >= generation);
}

#[test]
fn reloads_asked_from_other_threads_run_on_the_loader_thread() {
    let (dir, _, _) = three_orders();
    // One order file (not a directory): its events come from its parent directory.
    let file = dir.path().join("a.json");
    let (handle, loader, thread) = watched(&file);
    assert_eq!(blocks(&handle, "a.example", "IT").as_deref(), Some("A"));

    // A change of another file in the directory is not this loader's business.
    write(
        dir.path(),
        "b.json",
        &order("B", "IT", "lifted", &[("subtree", "b.example")]),
    );
    // The one file, rewritten in place (its mtime may stay within one clock tick: the
    // content hash tells).
    fs::write(
        &file,
        order("A", "IT", "active", &[("domain", "a2.example")]),
    )
    .unwrap();
    eventually("the file's event is seen", || {
        blocks(&handle, "a2.example", "IT").as_deref() == Some("A")
    });
    assert_eq!(handle.current().stats().orders, 1);

    // SIGHUP-like: a wake-up from this thread; the load runs on the loader's thread and its
    // outcome shows in the status.
    let generation = handle.current().generation();
    let loads = loader.status().loads;
    loader.reload("test");
    eventually("the asked-for load ran", || loader.status().loads > loads);
    assert_eq!(handle.current().generation(), generation, "nothing changed");
    // A broken file, then a wake-up: the status carries the error, the order stays.
    fs::write(&file, "{").unwrap();
    loader.reload("test");
    eventually("the error is in the status", || {
        loader
            .status()
            .last_error
            .is_some_and(|e| e.contains("a.json"))
    });
    assert_eq!(blocks(&handle, "a2.example", "IT").as_deref(), Some("A"));
    assert!(thread.stop(Duration::from_secs(20)));
    // Once stopped, wake-ups go nowhere (and do not block).
    loader.reload("after stop");
    assert!(!loader.status().running);
}

#[test]
fn a_replaced_policy_is_dropped_by_the_loader_once_no_reader_holds_it() {
    let (dir, handle, mut loader) = three_orders();
    let reader = handle.load();
    write(
        dir.path(),
        "a.json",
        &order("A", "IT", "active", &[("domain", "new.example")]),
    );
    loader.load(2).unwrap();
    // A query still holds generation 1: it is not freed (by anyone) yet.
    assert_eq!(reap(&loader.compactor.published), 0);
    assert_eq!(loader.compactor.published.lock().unwrap().retired.len(), 1);
    assert_eq!(reader.generation(), 1);
    drop(reader);
    // The reader let go without freeing it; the loader frees it.
    assert_eq!(reap(&loader.compactor.published), 1);
    assert!(loader
        .compactor
        .published
        .lock()
        .unwrap()
        .retired
        .is_empty());
    assert!(Arc::ptr_eq(
        &loader.compactor.published.lock().unwrap().current,
        &handle.current()
    ));
}

#[test]
fn the_loader_thread_runs_at_the_lowest_priority() {
    let priority = std::thread::spawn(lower_thread_priority).join().unwrap();
    assert!(["SCHED_IDLE", "nice 19"].contains(&priority), "{priority}");
}

/// Issue 16: file orders went through validation without the Public Suffix List (store
/// orders had it) and without the protected list. Every source now gets both: an order with
/// such a target is held, with the reason, until it records an override.
#[test]
fn file_orders_get_the_public_suffix_list_and_the_protected_list() {
    let (dir, handle, mut loader) = three_orders();

    // A public suffix (not a TLD: the policy crate refuses those on its own).
    write(
        dir.path(),
        "psl.json",
        &order("PSL", "IT", "active", &[("subtree", "co.uk")]),
    );
    // Below a protected name (Amazon CloudFront, in the shipped defaults; `cloudfront.net`
    // itself is a public suffix).
    write(
        dir.path(),
        "cdn.json",
        &order("CDN", "IT", "active", &[("subtree", "d111.cloudfront.net")]),
    );
    let loaded = loader.load(2).unwrap();
    assert!(!loaded.published, "{loaded:?}");
    let errors: Vec<String> = loaded.rejected.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("psl.json") && e.contains("public suffix")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("cdn.json")
            && e.contains("held")
            && e.contains("protected name cloudfront.net")),
        "{errors:?}"
    );
    assert!(loader.last_error().unwrap().contains("cdn.json"));
    assert_eq!(blocks(&handle, "www.co.uk", "IT"), None);
    assert_eq!(blocks(&handle, "x.d111.cloudfront.net", "IT"), None);

    // Recorded overrides lift both holds.
    let overridden = |id: &str, value: &str| {
        order(id, "IT", "active", &[("subtree", value)]).replace(
            r#""targets":"#,
            &format!(
                r#""overrides": [{{"target": "{value}", "reason": "court said so"}}], "targets":"#
            ),
        )
    };
    write(dir.path(), "psl.json", &overridden("PSL", "co.uk"));
    write(
        dir.path(),
        "cdn.json",
        &overridden("CDN", "d111.cloudfront.net"),
    );
    let loaded = loader.load(3).unwrap();
    assert!(loaded.published && loaded.rejected.is_empty(), "{loaded:?}");
    assert_eq!(blocks(&handle, "www.co.uk", "IT").as_deref(), Some("PSL"));
    assert_eq!(
        blocks(&handle, "x.d111.cloudfront.net", "IT").as_deref(),
        Some("CDN")
    );
}

/// The configured protected list is the one applied (an extra name, and the defaults off).
#[test]
fn the_configured_protected_list_holds_file_orders() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.json",
        &order("A", "IT", "active", &[("domain", "www.intranet.example")]),
    );
    write(
        dir.path(),
        "b.json",
        &order("B", "IT", "active", &[("subtree", "d111.cloudfront.net")]),
    );
    let config = juris_control::ProtectedConfig {
        defaults: false,
        names: vec!["intranet.example".into()],
        prefixes: Vec::new(),
    };
    let handle = Arc::new(PolicyHandle::default());
    let mut loader = OrderLoader::new(
        vec![Box::new(FileSource::new(dir.path().to_owned()))],
        Safeguards::new(ProtectedList::from_config(&config).unwrap()),
        Arc::clone(&handle),
    );
    let loaded = loader.load(1).unwrap();
    assert_eq!(loaded.rejected.len(), 1, "{loaded:?}");
    assert!(loaded.rejected[0].to_string().contains("a.json"));
    assert_eq!(
        blocks(&handle, "x.d111.cloudfront.net", "IT").as_deref(),
        Some("B")
    );
}

/// A source whose reads after the first block until released: a load that cannot progress
/// (on a busy machine, a load at the lowest priority is just that).
#[derive(Debug)]
struct Stuck {
    reads: u32,
    entered: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl OrderSource for Stuck {
    fn describe(&self) -> String {
        "stuck".to_owned()
    }

    fn read(
        &mut self,
        _known: &std::collections::BTreeMap<SourceId, super::diff::Known>,
        _sink: &mut dyn FnMut(SourceId, super::source::Version),
    ) -> Result<(), OrdersError> {
        self.reads += 1;
        if self.reads > 1 {
            let _ = self.entered.send(());
            let _ = self.release.recv();
        }
        Ok(())
    }

    fn reviews_protected_targets(&self) -> bool {
        false
    }
}

/// Issue 16: nothing waits for a load. While the loader is stuck in one, a wake-up returns at
/// once, the status stays readable, and stopping the loader gives up after its bound instead
/// of waiting for the load (the thread ends once the load does).
#[test]
fn a_stuck_load_blocks_neither_wake_ups_nor_status_nor_stop() {
    let (entered, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release) = std::sync::mpsc::channel();
    let source = Stuck {
        reads: 0,
        entered,
        release,
    };
    let handle = Arc::new(PolicyHandle::default());
    let mut loader = OrderLoader::new(
        vec![Box::new(source)],
        Safeguards::new(ProtectedList::defaults()),
        Arc::clone(&handle),
    );
    loader.load(1).unwrap();
    let (loader, thread) = spawn(loader, || 2, Duration::from_secs(3600)).unwrap();
    eventually("the loader runs", || loader.status().running);

    loader.reload("first");
    entered_rx.recv().unwrap();
    // The loader is inside a load now.
    loader.reload("second");
    loader.reload("third");
    let status = loader.status();
    assert!(status.running && status.last_error.is_none(), "{status:?}");
    assert!(
        !thread.stop(Duration::from_millis(100)),
        "stop waited for a stuck load"
    );
    // Released, the load ends and the thread sees the stop.
    release_tx.send(()).unwrap();
    drop(release_tx);
    eventually("the loader ends after its load", || {
        !loader.status().running
    });
}
