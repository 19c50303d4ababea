//! Bar charts as server-rendered inline SVG: no script, no inline style (the CSP forbids
//! both): geometry in SVG attributes, colours from classes in the stylesheet (so dark mode
//! applies). Each chart names itself (`role="img"` with a label that gives the total and the
//! busiest day) and is followed by the same numbers as a table, for screen readers and for
//! reading exact values.

use maud::{html, Markup};

use crate::stats::{days_between, DayCount};

/// Height of the drawing area, in SVG units.
const HEIGHT: u64 = 60;
/// Width of one day's slot, in SVG units (the bar is one unit narrower).
const SLOT: u64 = 10;
/// Per-jurisdiction charts drawn on an order's page; the rest are summed into "others".
const JURISDICTIONS_DRAWN: usize = 6;

/// One bar per day. `label` says what is counted (`blocked answers`); `values` are (day,
/// count) oldest first.
pub(crate) fn bars(label: &str, values: &[(String, u64)], class: &str) -> Markup {
    let max = values.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let total: u64 = values.iter().map(|(_, v)| *v).sum();
    let busiest = values
        .iter()
        .filter(|(_, v)| *v == max && max > 0)
        .map(|(day, _)| day.as_str())
        .next_back();
    let summary = match (values.first(), values.last(), busiest) {
        (Some((from, _)), Some((to, _)), Some(busiest)) => format!(
            "{label} per day from {from} to {to}: {total} in all, at most {max} (on {busiest})"
        ),
        (Some((from, _)), Some((to, _)), None) => {
            format!("{label} per day from {from} to {to}: none")
        }
        _ => format!("{label}: no days"),
    };
    let width = (values.len() as u64).max(1) * SLOT;
    html! {
        svg.bars role="img" aria-label=(summary) viewBox=(format!("0 0 {width} {HEIGHT}"))
            preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg" {
            line.axis x1="0" y1=(HEIGHT) x2=(width) y2=(HEIGHT) {}
            @for (i, (day, value)) in values.iter().enumerate() {
                @if *value > 0 {
                    @let h = (value * (HEIGHT - 2)).div_ceil(max.max(1)).max(1);
                    rect class=(class) x=(i as u64 * SLOT) y=(HEIGHT - h) width=(SLOT - 1) height=(h) {
                        title { (day) ": " (value) }
                    }
                }
            }
        }
    }
}

/// Every day from `from` to `to` with its value from `pick` (zero when absent).
pub(crate) fn series(
    from: &str,
    to: &str,
    counts: &[DayCount],
    pick: impl Fn(&DayCount) -> u64,
) -> Vec<(String, u64)> {
    days_between(from, to)
        .into_iter()
        .map(|day| {
            let value = counts.iter().filter(|c| c.day == day).map(&pick).sum();
            (day, value)
        })
        .collect()
}

/// An order's counts per day, one small chart per jurisdiction (the busiest
/// [`JURISDICTIONS_DRAWN`], the rest together), then the table of every non-zero day ×
/// jurisdiction.
pub(crate) fn per_jurisdiction(
    from: &str,
    to: &str,
    counts: &[DayCount],
    what: &str,
    pick: impl Fn(&DayCount) -> u64 + Copy,
) -> Markup {
    let mut totals: Vec<(String, u64)> = Vec::new();
    for c in counts {
        match totals.iter_mut().find(|(j, _)| *j == c.jurisdiction) {
            Some((_, n)) => *n += pick(c),
            None => totals.push((c.jurisdiction.clone(), pick(c))),
        }
    }
    totals.retain(|(_, n)| *n > 0);
    totals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let drawn: Vec<&str> = totals
        .iter()
        .take(JURISDICTIONS_DRAWN)
        .map(|(j, _)| j.as_str())
        .collect();
    let others: Vec<DayCount> = counts
        .iter()
        .filter(|c| !drawn.contains(&c.jurisdiction.as_str()))
        .cloned()
        .collect();
    let rows: Vec<&DayCount> = counts.iter().filter(|c| pick(c) > 0).collect();
    html! {
        @if totals.is_empty() {
            p { "None from " (from) " to " (to) "." }
        } @else {
            div.charts {
                @for code in &drawn {
                    @let mine: Vec<DayCount> = counts.iter().filter(|c| c.jurisdiction == *code).cloned().collect();
                    figure.chart {
                        figcaption { (code) ": " (mine.iter().map(pick).sum::<u64>()) }
                        (bars(&format!("{what} in {code}"), &series(from, to, &mine, pick), "bar"))
                    }
                }
                @if totals.len() > drawn.len() {
                    figure.chart {
                        figcaption { "Other jurisdictions: " (others.iter().map(pick).sum::<u64>()) }
                        (bars(&format!("{what} in other jurisdictions"), &series(from, to, &others, pick), "bar"))
                    }
                }
            }
            details {
                summary { "The numbers per day and jurisdiction" }
                div.scroll tabindex="0" { table {
                    caption { (what) " per UTC day and client jurisdiction, " (from) " to " (to) " (days without any are left out)" }
                    thead { tr { th scope="col" { "Day (UTC)" } th scope="col" { "Jurisdiction" } th scope="col" { "Answers" } } }
                    tbody { @for c in &rows {
                        tr { td { (c.day) } td { (c.jurisdiction) } td { (pick(c)) } }
                    } }
                } }
            }
        }
    }
}

/// The window choices under a chart: links to the same page with `?days=N`.
pub(crate) fn windows(path: &str, current: u32, retention: u32) -> Markup {
    html! {
        nav.windows aria-label="Days shown" {
            @for days in [7_u32, 30, 90, 365] {
                @if days <= retention {
                    @if days == current {
                        a href=(format!("{path}?days={days}")) aria-current="true" { (days) " days" }
                    } @else {
                        a href=(format!("{path}?days={days}")) { (days) " days" }
                    }
                }
            }
        }
    }
}
