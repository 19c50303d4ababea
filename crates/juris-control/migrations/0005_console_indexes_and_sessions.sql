-- Console speed with 10,000 orders and 1,000,000 targets, second part (issue #13,
-- docs/design/0041-console-paged-queries-transparency-sessions.md): the order list filters, searches,
-- counts and pages in SQL, and the dashboard reads kept aggregates, so no console request reads
-- every order. Everything below is kept by triggers on `orders` and `order_target_counts`, so
-- every writer (this process, the offline CLI, a script with plain SQL) keeps it true.

-- The order document's dates as Unix seconds (NULL when absent), for range queries by index.
ALTER TABLE orders ADD COLUMN comply_ts REAL
    GENERATED ALWAYS AS (unixepoch(json_extract(document, '$.comply_by'), 'subsec')) VIRTUAL;
ALTER TABLE orders ADD COLUMN expires_ts REAL
    GENERATED ALWAYS AS (unixepoch(json_extract(document, '$.expires_at'), 'subsec')) VIRTUAL;

-- No plain index on `state` or `kind` (the list's state and kind filters scan `orders`): with
-- `orders (state, id)` and `orders (kind, id)` the bench's 10,000-item feed import (4 s before)
-- was still running after 6 CPU minutes, inside the "blocked elsewhere" join of `targets` and
-- `orders` by state; without them it took 3.6 s again.
-- Orders that may expire (the `expired` filter and count, the dashboard's correction).
CREATE INDEX orders_live_expiry ON orders (expires_ts)
    WHERE state IN ('active', 'shadow', 'suspended');
-- Deadlines of orders not enforced yet (the dashboard's and the status's deadline list).
CREATE INDEX orders_open_deadline ON orders (comply_ts)
    WHERE state IN ('draft', 'shadow', 'suspended');
-- Deadlines of active orders (a fleet primary's: active but maybe not on every follower).
CREATE INDEX orders_active_deadline ON orders (comply_ts) WHERE state = 'active';
-- Orders with targets held for review (the review queue).
CREATE INDEX order_target_counts_held ON order_target_counts (order_id) WHERE held > 0;

-- The jurisdictions of each order as written, upper case (`*`, `EU`, or a country).
CREATE TABLE order_jurisdictions (
    code      TEXT NOT NULL,
    order_id  TEXT NOT NULL,
    PRIMARY KEY (code, order_id)
) WITHOUT ROWID;
CREATE INDEX order_jurisdictions_by_order ON order_jurisdictions (order_id, code);

-- Per jurisdiction as written: the active orders and their targets (the dashboard's "in force";
-- orders whose `expires_at` has passed are subtracted when read, found by `orders_live_expiry`).
CREATE TABLE jurisdiction_in_force (
    code     TEXT PRIMARY KEY NOT NULL,
    orders   INTEGER NOT NULL DEFAULT 0,
    targets  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Orders per stored state, and the targets of every order (the status and the dashboard).
CREATE TABLE order_state_counts (
    state   TEXT PRIMARY KEY NOT NULL,
    orders  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE target_totals (
    one      INTEGER PRIMARY KEY CHECK (one = 1),
    targets  INTEGER NOT NULL DEFAULT 0,
    held     INTEGER NOT NULL DEFAULT 0
);

-- Text search (id, reference, authority; case-insensitive substrings) by a trigram index.
-- `order_text` has its own INTEGER PRIMARY KEY (stable under VACUUM, unlike `orders`' rowid).
CREATE TABLE order_text (
    row        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    reference  TEXT NOT NULL,
    authority  TEXT NOT NULL
);
CREATE VIRTUAL TABLE order_text_index USING fts5 (
    id, reference, authority,
    content = 'order_text', content_rowid = 'row', tokenize = 'trigram'
);
CREATE TRIGGER order_text_insert AFTER INSERT ON order_text
BEGIN
    INSERT INTO order_text_index (rowid, id, reference, authority)
        VALUES (NEW.row, NEW.id, NEW.reference, NEW.authority);
END;
CREATE TRIGGER order_text_delete AFTER DELETE ON order_text
BEGIN
    INSERT INTO order_text_index (order_text_index, rowid, id, reference, authority)
        VALUES ('delete', OLD.row, OLD.id, OLD.reference, OLD.authority);
END;
CREATE TRIGGER order_text_update AFTER UPDATE ON order_text
BEGIN
    INSERT INTO order_text_index (order_text_index, rowid, id, reference, authority)
        VALUES ('delete', OLD.row, OLD.id, OLD.reference, OLD.authority);
    INSERT INTO order_text_index (rowid, id, reference, authority)
        VALUES (NEW.row, NEW.id, NEW.reference, NEW.authority);
END;

-- Back-fill from the orders stored now.
INSERT INTO order_jurisdictions (code, order_id)
    SELECT DISTINCT upper(trim(j.value)), o.id FROM orders o, json_each(o.document, '$.jurisdictions') j;
INSERT INTO jurisdiction_in_force (code, orders, targets)
    SELECT j.code, COUNT(*), COALESCE(SUM(c.targets), 0)
    FROM order_jurisdictions j JOIN orders o ON o.id = j.order_id AND o.state = 'active'
    LEFT JOIN order_target_counts c ON c.order_id = o.id
    GROUP BY j.code;
INSERT INTO order_state_counts (state, orders) SELECT state, COUNT(*) FROM orders GROUP BY state;
INSERT INTO target_totals (one, targets, held)
    SELECT 1, COALESCE(SUM(targets), 0), COALESCE(SUM(held), 0) FROM order_target_counts;
INSERT INTO order_text (id, reference, authority)
    SELECT id, COALESCE(json_extract(document, '$.reference'), ''),
           COALESCE(json_extract(document, '$.authority'), '')
    FROM orders;

-- Keeping them. An order's jurisdictions come in and go out through `order_jurisdictions`, whose
-- triggers move the sums of the order while it is active (its state read from `orders`).
CREATE TRIGGER order_jurisdictions_in AFTER INSERT ON order_jurisdictions
BEGIN
    INSERT INTO jurisdiction_in_force (code, orders, targets)
        SELECT NEW.code, 1,
               COALESCE((SELECT targets FROM order_target_counts WHERE order_id = NEW.order_id), 0)
        WHERE (SELECT state FROM orders WHERE id = NEW.order_id) = 'active'
        ON CONFLICT (code) DO UPDATE SET orders = orders + 1, targets = targets + excluded.targets;
END;
CREATE TRIGGER order_jurisdictions_out AFTER DELETE ON order_jurisdictions
BEGIN
    UPDATE jurisdiction_in_force
        SET orders = orders - 1,
            targets = targets - COALESCE((SELECT targets FROM order_target_counts WHERE order_id = OLD.order_id), 0)
        WHERE code = OLD.code AND (SELECT state FROM orders WHERE id = OLD.order_id) = 'active';
END;

-- A new order: counted, its text indexed, the rest as for a changed document (below).
CREATE TRIGGER orders_kept_insert AFTER INSERT ON orders
BEGIN
    INSERT INTO order_state_counts (state, orders) VALUES (NEW.state, 1)
        ON CONFLICT (state) DO UPDATE SET orders = orders + 1;
    INSERT INTO order_text (id, reference, authority) VALUES (NEW.id, '', '');
    UPDATE orders SET document = document WHERE id = NEW.id;
END;

-- A changed document or state: the order's part taken out as it was (before the update: its
-- row still has the old state) and put back as it is (after).
CREATE TRIGGER orders_taken_out BEFORE UPDATE OF document, state ON orders
BEGIN
    UPDATE order_state_counts SET orders = orders - 1 WHERE state = OLD.state;
    DELETE FROM order_jurisdictions WHERE order_id = OLD.id;
END;
CREATE TRIGGER orders_kept_update AFTER UPDATE OF document, state ON orders
BEGIN
    INSERT INTO order_state_counts (state, orders) VALUES (NEW.state, 1)
        ON CONFLICT (state) DO UPDATE SET orders = orders + 1;
    INSERT OR IGNORE INTO order_jurisdictions (code, order_id)
        SELECT upper(trim(value)), NEW.id FROM json_each(NEW.document, '$.jurisdictions');
    UPDATE order_text
        SET reference = COALESCE(json_extract(NEW.document, '$.reference'), ''),
            authority = COALESCE(json_extract(NEW.document, '$.authority'), '')
        WHERE id = NEW.id;
END;

-- A deleted order (before its targets go by the cascade: their counts then touch nothing).
CREATE TRIGGER orders_kept_delete BEFORE DELETE ON orders
BEGIN
    UPDATE order_state_counts SET orders = orders - 1 WHERE state = OLD.state;
    DELETE FROM order_jurisdictions WHERE order_id = OLD.id;
    DELETE FROM order_text WHERE id = OLD.id;
END;

-- An order's target counts moved (the triggers of migration 0004 keep `order_target_counts`).
CREATE TRIGGER target_counts_kept_insert AFTER INSERT ON order_target_counts
BEGIN
    UPDATE target_totals SET targets = targets + NEW.targets, held = held + NEW.held WHERE one = 1;
    UPDATE jurisdiction_in_force SET targets = targets + NEW.targets
        WHERE (SELECT state FROM orders WHERE id = NEW.order_id) = 'active'
          AND code IN (SELECT code FROM order_jurisdictions WHERE order_id = NEW.order_id);
END;
CREATE TRIGGER target_counts_kept_update AFTER UPDATE OF targets, held ON order_target_counts
BEGIN
    UPDATE target_totals
        SET targets = targets + NEW.targets - OLD.targets, held = held + NEW.held - OLD.held
        WHERE one = 1;
    UPDATE jurisdiction_in_force SET targets = targets + NEW.targets - OLD.targets
        WHERE NEW.targets != OLD.targets
          AND (SELECT state FROM orders WHERE id = NEW.order_id) = 'active'
          AND code IN (SELECT code FROM order_jurisdictions WHERE order_id = NEW.order_id);
END;

-- A version per order, moved by every change of the order or of its targets: the transparency
-- page re-renders only the orders whose version moved since its last build. The target
-- triggers of migration 0004 are replaced by ones that also move it (and the status trigger
-- by one for any update of a target row).
ALTER TABLE order_target_counts ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
DROP TRIGGER targets_counted_insert;
DROP TRIGGER targets_counted_delete;
DROP TRIGGER targets_counted_status;
CREATE TRIGGER targets_counted_insert AFTER INSERT ON targets
BEGIN
    INSERT INTO order_target_counts (order_id, targets, held, version)
        VALUES (NEW.order_id, 1, NEW.status = 'needs_review', 1)
        ON CONFLICT (order_id) DO UPDATE
        SET targets = targets + 1, held = held + (NEW.status = 'needs_review'), version = version + 1;
END;
CREATE TRIGGER targets_counted_delete AFTER DELETE ON targets
BEGIN
    UPDATE order_target_counts
        SET targets = targets - 1, held = held - (OLD.status = 'needs_review'), version = version + 1
        WHERE order_id = OLD.order_id;
END;
CREATE TRIGGER targets_counted_update AFTER UPDATE ON targets
BEGIN
    UPDATE order_target_counts
        SET held = held - (OLD.status = 'needs_review') + (NEW.status = 'needs_review'),
            version = version + 1
        WHERE order_id = NEW.order_id;
END;
CREATE TRIGGER orders_versioned AFTER UPDATE ON orders
BEGIN
    INSERT INTO order_target_counts (order_id, version) VALUES (NEW.id, 1)
        ON CONFLICT (order_id) DO UPDATE SET version = version + 1;
END;

-- Console sessions (survive a restart). Only the SHA-256 of the session id (the cookie's value)
-- is kept; the form's CSRF token is derived from the id, so it is not stored either. A session
-- stands for its token: revoking the token ends it (the lookup joins `tokens`), and the console
-- deletes the rows of a revoked token, of a sign-out and of expired sessions.
CREATE TABLE console_sessions (
    id_hash     TEXT PRIMARY KEY NOT NULL,
    token_id    INTEGER NOT NULL REFERENCES tokens(id),
    created_at  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL      -- Unix seconds
) WITHOUT ROWID;
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
CREATE INDEX console_sessions_by_token ON console_sessions (token_id);
