//! The feeds pages: every feed with its last import and SHA-256 checksums, the imports in
//! progress (from memory, so they show while an import holds the store; the page then reloads
//! itself every 2 s), and per feed its import history and the per-item acknowledgement of an
//! import. The same `Control` methods as `GET /v1/feeds`, `/v1/imports`,
//! `/v1/feeds/{name}/imports` and `/v1/feeds/{name}/ack`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use maud::{html, Markup};

use super::view::{page, refreshing_page, time_text};
use super::{blocking, query_form, segment, user, PageResult, Shared};
use crate::feeds::{FeedChecksums, RunningImport};

/// Acknowledgement items shown on a feed's page.
const ACK_ITEMS_SHOWN: usize = 500;
/// Imports listed on a feed's page.
const IMPORTS_SHOWN: u32 = 50;
/// How often a page with an import in progress reloads itself.
const PROGRESS_REFRESH_SECONDS: u32 = 2;

fn running_section(running: &[RunningImport]) -> Markup {
    html! {
        section aria-labelledby="running" {
            h2 id="running" { "Imports in progress" }
            @if running.is_empty() {
                p { "None." }
            } @else {
                p { "This page reloads every " (PROGRESS_REFRESH_SECONDS) " s while an import runs." }
                ul.progress { @for r in running {
                    li {
                        label for=(format!("progress-{}", r.feed)) { "Feed " (r.feed) " (by " (r.actor) ", since " (time_text(&r.started_at)) "): "
                            (r.done) " of " (r.total) " items" }
                        " "
                        progress id=(format!("progress-{}", r.feed)) max=(r.total.max(1)) value=(r.done) { (r.done) " of " (r.total) }
                    }
                } }
            }
        }
    }
}

fn checksums(sums: &FeedChecksums) -> Markup {
    html! {
        dl.sums {
            dt { "fqdn" } dd { code { (sums.fqdn) } }
            dt { "ipv4" } dd { code { (sums.ipv4) } }
            dt { "ipv6" } dd { code { (sums.ipv6) } }
        }
    }
}

/// `GET /ui/feeds`.
pub(crate) async fn feeds(State(console): State<Shared>, headers: HeaderMap) -> PageResult {
    let user = user(&console, &headers).await?;
    let control = console.api.control.clone();
    let running = control.running_imports();
    // Not waiting for the store while an import is being written: the progress shows alone.
    // Otherwise the list waits for the store's short readers and writers (a transparency
    // rebuild after a commit, design 0041), which a `try` would take for an import.
    let importing = !running.is_empty();
    let list = blocking(move || {
        if importing {
            control.feeds_now().transpose()
        } else {
            control.feeds().map(Some)
        }
    })
    .await?;
    let body = html! {
        p { "Machine feeds (Piracy Shield style): each import is the feed's complete state with the SHA-256 of each list, "
            "checked before anything is written; every item is acknowledged. Imported with "
            code { "juris import feed" } " or " code { "POST /v1/feeds/NAME" } "." }
        (running_section(&running))
        section aria-labelledby="feeds" {
            h2 id="feeds" { "Feeds" }
            @match &list {
                None => { p role="status" { "The store is busy writing an import; the list of feeds follows when it is done." } },
                Some(list) if list.is_empty() => { p { "No feed has been imported yet." } },
                Some(list) => {
                    div.scroll tabindex="0" { table {
                        thead { tr { th scope="col" { "Feed" } th scope="col" { "Order" } th scope="col" { "Last import" }
                            th scope="col" { "SHA-256 of the lists" } } }
                        tbody { @for f in list {
                            tr {
                                td { a href=(format!("/ui/feeds/{}", segment(&f.name))) { (f.name) } }
                                td { a href=(format!("/ui/orders/{}", segment(&f.order))) { (f.order) } }
                                td { "#" (f.last_import) ", " (time_text(&f.imported_at)) }
                                td { (checksums(&f.sha256)) }
                            }
                        } }
                    } }
                },
            }
        }
    };
    let refresh = (!running.is_empty()).then_some(PROGRESS_REFRESH_SECONDS);
    Ok(refreshing_page(
        "Feeds",
        Some(&user),
        "/ui/feeds",
        body,
        refresh,
    ))
}

/// `GET /ui/feeds/{name}[?import=N]`: the import history and one import's acknowledgement.
pub(crate) async fn feed(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
    uri: Uri,
) -> PageResult {
    let user = user(&console, &headers).await?;
    let import: Option<i64> = query_form(&uri).text("import").parse().ok();
    let control = console.api.control.clone();
    let key = name.clone();
    let (imports, ack) = blocking(move || {
        let imports = control.feed_imports(&key, IMPORTS_SHOWN)?;
        let ack = control.feed_ack(&key, import)?;
        Ok((imports, ack))
    })
    .await?;
    let count = |status: &str| ack.items.iter().filter(|i| i.status == status).count();
    let path = format!("/ui/feeds/{}", segment(&name));
    let body = html! {
        p { "Feeds order " a href=(format!("/ui/orders/{}", segment(&ack.order))) { (ack.order) } "." }
        section aria-labelledby="imports" {
            h2 id="imports" { "Imports" }
            div.scroll tabindex="0" { table {
                caption { "The newest " (imports.len()) " import(s)" }
                thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "By" }
                    th scope="col" { "Added" } th scope="col" { "Lifted" } th scope="col" { "Unchanged" } } }
                tbody { @for i in &imports {
                    tr {
                        td { @if i.import_id == ack.import_id { strong { (i.import_id) } } @else {
                            a href=(format!("{path}?import={}", i.import_id)) { (i.import_id) } } }
                        td { (time_text(&i.at)) } td { (i.actor) }
                        td { (i.added) } td { (i.lifted) } td { (i.unchanged) }
                    }
                } }
            } }
        }
        section aria-labelledby="ack" {
            h2 id="ack" { "Acknowledgement of import #" (ack.import_id) }
            dl {
                dt { "Imported" } dd { (time_text(&ack.imported_at)) }
                dt { "Items" } dd { (count("processed")) " processed, " (count("unprocessed")) " not processed, " (count("lifted")) " lifted" }
            }
            h3 { "SHA-256 of the lists (verified)" }
            (checksums(&ack.sha256))
            @if ack.items.len() > ACK_ITEMS_SHOWN {
                p { "The first " (ACK_ITEMS_SHOWN) " of " (ack.items.len()) " items are shown; "
                    code { (format!("GET /v1/feeds/{name}/ack?import={}", ack.import_id)) } " has them all." }
            }
            div.scroll tabindex="0" { table {
                thead { tr { th scope="col" { "Item" } th scope="col" { "List" } th scope="col" { "Status" }
                    th scope="col" { "Reason" } th scope="col" { "Detail" } } }
                tbody { @for i in ack.items.iter().take(ACK_ITEMS_SHOWN) {
                    tr {
                        td { (i.item) } td { (i.list) } td { (i.status) }
                        td { @if let Some(r) = i.reason { (r.as_str()) } }
                        td { @if let Some(d) = &i.detail { (d) } }
                    }
                } }
            } }
        }
    };
    Ok(page(
        &format!("Feed {name}"),
        Some(&user),
        "/ui/feeds",
        body,
    ))
}
