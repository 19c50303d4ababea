-- Per-day counters (issue #13): answers blocked (and shadow matches: answers a shadow order
-- would have blocked) per order × client jurisdiction × UTC day. Never a client address.
-- Flushed from the resolver's in-memory counters (juris serve: every minute and at shutdown),
-- never per query; rows older than `control.stats_retention_days` are deleted at each flush.
-- No foreign key: orders from order files are counted too.
CREATE TABLE daily_counts (
    day           TEXT NOT NULL,     -- YYYY-MM-DD, UTC
    order_id      TEXT NOT NULL,
    jurisdiction  TEXT NOT NULL,     -- two letters, or 'unknown'
    blocked       INTEGER NOT NULL DEFAULT 0,
    shadow        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, order_id, jurisdiction)
) WITHOUT ROWID;
CREATE INDEX daily_counts_by_order ON daily_counts (order_id, day);
