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
-- The same counters summed over every order and jurisdiction, per day (the dashboard's chart
-- reads a few hundred rows, not every order's).
CREATE TABLE daily_totals (
    day      TEXT PRIMARY KEY NOT NULL,
    blocked  INTEGER NOT NULL DEFAULT 0,
    shadow   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Console speed with 10,000 orders and 1,000,000 targets (docs/performance.md):
-- per-order target counts kept by triggers (the order list and the status read 10,000 rows,
-- not 1,000,000), and the audit entries of one object found by index (an order's page).
CREATE TABLE order_target_counts (
    order_id  TEXT PRIMARY KEY NOT NULL,
    targets   INTEGER NOT NULL DEFAULT 0,
    held      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO order_target_counts (order_id, targets, held)
    SELECT order_id, COUNT(*), SUM(status = 'needs_review') FROM targets GROUP BY order_id;
CREATE TRIGGER targets_counted_insert AFTER INSERT ON targets
BEGIN
    INSERT INTO order_target_counts (order_id, targets, held)
        VALUES (NEW.order_id, 1, NEW.status = 'needs_review')
        ON CONFLICT (order_id) DO UPDATE
        SET targets = targets + 1, held = held + (NEW.status = 'needs_review');
END;
CREATE TRIGGER targets_counted_delete AFTER DELETE ON targets
BEGIN
    UPDATE order_target_counts
        SET targets = targets - 1, held = held - (OLD.status = 'needs_review')
        WHERE order_id = OLD.order_id;
END;
CREATE TRIGGER targets_counted_status AFTER UPDATE OF status ON targets
BEGIN
    UPDATE order_target_counts
        SET held = held - (OLD.status = 'needs_review') + (NEW.status = 'needs_review')
        WHERE order_id = NEW.order_id;
END;
CREATE INDEX audit_by_object ON audit (object, seq);
