//! Per-day counters: answers blocked (and shadow matches) per order × client jurisdiction ×
//! UTC day, kept in the store (`daily_counts`, migration 0004) for
//! `control.stats_retention_days` days. No client address is ever stored.
//!
//! The resolver counts in memory (`juris_server::OrderCounters`, one map update per blocked
//! answer); `juris serve` adds what was counted since its last flush with
//! [`Control::record_daily`] every minute and at shutdown: never a store write per query. The
//! counts of a flush go to the UTC day of the flush (a minute's worth may land on the next
//! day around midnight).
//!
//! ```
//! use std::sync::Arc;
//! use juris_control::{Control, ControlConfig, Store, SystemClock};
//! use juris_control::stats::CountDelta;
//!
//! let control = Control::new(Store::open_in_memory()?, &ControlConfig::default(), Arc::new(SystemClock))?;
//! let delta = CountDelta { order: "IT-1".into(), jurisdiction: "IT".into(), blocked: 3, shadow: 0 };
//! control.record_daily(&[delta.clone()])?;
//! control.record_daily(&[delta])?;
//! let stats = control.order_stats("IT-1", 7)?;
//! assert_eq!(stats.blocked, 6);
//! assert_eq!(stats.counts.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use jiff::civil::Date;
use jiff::tz::TimeZone;
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::control::Control;
use crate::error::ControlError;

/// Days shown when a request does not say.
pub const DEFAULT_DAYS: u32 = 30;

/// What was counted since the last flush, for one order × jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountDelta {
    /// The order id.
    pub order: String,
    /// The client's jurisdiction: two letters, or `unknown`.
    pub jurisdiction: String,
    /// Answers it blocked.
    pub blocked: u64,
    /// Answers it would have blocked (shadow state).
    pub shadow: u64,
}

/// One order's counts on one day in one jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The client's jurisdiction: two letters, or `unknown`.
    pub jurisdiction: String,
    /// Answers blocked.
    pub blocked: u64,
    /// Shadow matches (answers it would have blocked).
    pub shadow: u64,
}

/// `GET /v1/orders/{id}/stats`: one order per day × jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStats {
    /// The order id (orders from order files are counted too, so it need not be in the store).
    pub order: String,
    /// The first day of the window (UTC, `YYYY-MM-DD`).
    pub from: String,
    /// The last day of the window: today (UTC).
    pub to: String,
    /// Days in the window.
    pub days: u32,
    /// Days the store keeps (`control.stats_retention_days`).
    pub retention_days: u32,
    /// Days × jurisdictions with a count, by day then jurisdiction (days without any are left
    /// out).
    pub counts: Vec<DayCount>,
    /// Answers blocked in the window.
    pub blocked: u64,
    /// Shadow matches in the window.
    pub shadow: u64,
}

/// One day of [`DailyStats`]: every order and jurisdiction together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayTotal {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Answers blocked.
    pub blocked: u64,
    /// Shadow matches.
    pub shadow: u64,
}

/// `GET /v1/stats/daily`: every order together, per day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyStats {
    /// The first day of the window (UTC, `YYYY-MM-DD`).
    pub from: String,
    /// The last day: today (UTC).
    pub to: String,
    /// Days in the window.
    pub days: u32,
    /// Days the store keeps.
    pub retention_days: u32,
    /// Every day of the window, oldest first (zero on days without a count).
    pub totals: Vec<DayTotal>,
}

/// The days from `from` to `to` inclusive, as `YYYY-MM-DD` (empty when `to < from` or the
/// texts are not dates).
pub fn days_between(from: &str, to: &str) -> Vec<String> {
    let (Ok(from), Ok(to)) = (from.parse::<Date>(), to.parse::<Date>()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut day = from;
    while day <= to && out.len() < 100_000 {
        out.push(day.to_string());
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    out
}

impl Control {
    /// Days of per-day counters the store keeps.
    pub fn stats_retention_days(&self) -> u32 {
        self.stats_retention_days
    }

    /// Today by the control plane's clock, in UTC.
    fn today(&self) -> Date {
        self.now().to_zoned(TimeZone::UTC).date()
    }

    /// The first day of a window of `days` days ending today; `days` must be within the
    /// retention.
    fn window(&self, days: u32) -> Result<(Date, Date), ControlError> {
        if days == 0 || days > self.stats_retention_days {
            return Err(ControlError::invalid(
                "days",
                format!(
                    "{days}: give 1 to {} (control.stats_retention_days)",
                    self.stats_retention_days
                ),
            ));
        }
        let today = self.today();
        let from = today
            .checked_sub(jiff::Span::new().days(i64::from(days) - 1))
            .map_err(|e| ControlError::invalid("days", e.to_string()))?;
        Ok((from, today))
    }

    /// Adds `counts` to today's (UTC) counters and deletes the days older than the retention.
    /// One transaction; no audit entry and no change notification (counters are not orders).
    pub fn record_daily(&self, counts: &[CountDelta]) -> Result<(), ControlError> {
        let today = self.today();
        let keep = i64::from(self.stats_retention_days) - 1;
        let oldest = today
            .checked_sub(jiff::Span::new().days(keep))
            .unwrap_or(Date::MIN)
            .to_string();
        let day = today.to_string();
        self.counted(self.store.write(|tx| {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO daily_counts (day, order_id, jurisdiction, blocked, shadow)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (day, order_id, jurisdiction)
                 DO UPDATE SET blocked = blocked + ?4, shadow = shadow + ?5",
            )?;
            let (mut blocked, mut shadow) = (0_i64, 0_i64);
            for count in counts.iter().filter(|c| c.blocked > 0 || c.shadow > 0) {
                let b = i64::try_from(count.blocked).unwrap_or(i64::MAX);
                let s = i64::try_from(count.shadow).unwrap_or(i64::MAX);
                upsert.execute(params![day, count.order, count.jurisdiction, b, s])?;
                blocked = blocked.saturating_add(b);
                shadow = shadow.saturating_add(s);
            }
            tx.prepare_cached(
                "INSERT INTO daily_totals (day, blocked, shadow) VALUES (?1, ?2, ?3)
                 ON CONFLICT (day) DO UPDATE SET blocked = blocked + ?2, shadow = shadow + ?3",
            )?
            .execute(params![day, blocked, shadow])?;
            tx.prepare_cached("DELETE FROM daily_counts WHERE day < ?1")?
                .execute(params![oldest])?;
            tx.prepare_cached("DELETE FROM daily_totals WHERE day < ?1")?
                .execute(params![oldest])?;
            Ok(())
        }))
    }

    /// Order `id`'s counts per day × jurisdiction over the last `days` days (today included).
    pub fn order_stats(&self, id: &str, days: u32) -> Result<OrderStats, ControlError> {
        let (from, to) = self.window(days)?;
        let counts = self.counted(self.store.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT day, jurisdiction, blocked, shadow FROM daily_counts
                 WHERE order_id = ?1 AND day >= ?2 ORDER BY day, jurisdiction",
            )?;
            let rows = statement.query_map(params![id, from.to_string()], |row| {
                Ok(DayCount {
                    day: row.get(0)?,
                    jurisdiction: row.get(1)?,
                    blocked: row.get(2)?,
                    shadow: row.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        }))?;
        Ok(OrderStats {
            order: id.to_owned(),
            from: from.to_string(),
            to: to.to_string(),
            days,
            retention_days: self.stats_retention_days,
            blocked: counts.iter().map(|c| c.blocked).sum(),
            shadow: counts.iter().map(|c| c.shadow).sum(),
            counts,
        })
    }

    /// Every order's counts together, per day, over the last `days` days (today included).
    pub fn daily_stats(&self, days: u32) -> Result<DailyStats, ControlError> {
        let (from, to) = self.window(days)?;
        let found: Vec<DayTotal> = self.counted(self.store.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT day, blocked, shadow FROM daily_totals WHERE day >= ?1 ORDER BY day",
            )?;
            let rows = statement.query_map(params![from.to_string()], |row| {
                Ok(DayTotal {
                    day: row.get(0)?,
                    blocked: row.get(1)?,
                    shadow: row.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        }))?;
        let (from, to) = (from.to_string(), to.to_string());
        let totals = days_between(&from, &to)
            .into_iter()
            .map(|day| {
                found
                    .iter()
                    .find(|t| t.day == day)
                    .cloned()
                    .unwrap_or(DayTotal {
                        day,
                        blocked: 0,
                        shadow: 0,
                    })
            })
            .collect();
        Ok(DailyStats {
            from,
            to,
            days,
            retention_days: self.stats_retention_days,
            totals,
        })
    }
}
