-- juris control plane, schema version 1.
-- Applied by `juris_control::store` inside one transaction; `schema_version` records it.

-- One row per order. `document` is the order document (juris_policy::Order) as JSON WITHOUT its
-- targets (they live in `targets`) and WITHOUT its state (authoritative copy in `state`).
CREATE TABLE orders (
    id          TEXT PRIMARY KEY NOT NULL,
    document    TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('draft', 'shadow', 'active', 'suspended', 'lifted')),
    kind        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Targets with provenance. `value` is normalised (punycode lower case, or a prefix with host
-- bits clear). `status`: 'enforced', 'needs_review' (held by a safeguard; `review_reason` says
-- why; never handed to the resolver) or 'overridden' (an admin released a held target).
CREATE TABLE targets (
    order_id       TEXT NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,
    value          TEXT NOT NULL,
    added_at       TEXT NOT NULL,
    added_by       TEXT NOT NULL,
    feed           TEXT,
    evidence       TEXT,
    status         TEXT NOT NULL CHECK (status IN ('enforced', 'needs_review', 'overridden')),
    review_reason  TEXT,
    override_by    TEXT,
    override_reason TEXT,
    PRIMARY KEY (order_id, kind, value)
) WITHOUT ROWID;
CREATE INDEX targets_by_value ON targets (kind, value);

-- Every state change of every order.
CREATE TABLE transitions (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id    TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX transitions_by_order ON transitions (order_id, seq);

-- Machine feeds: each bound to one order; `state` is the last accepted cumulative state (JSON).
CREATE TABLE feeds (
    name         TEXT PRIMARY KEY NOT NULL,
    order_id     TEXT NOT NULL,
    state        TEXT NOT NULL,
    checksums    TEXT NOT NULL,
    imported_at  TEXT NOT NULL,
    last_import  INTEGER NOT NULL
);

CREATE TABLE feed_imports (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    feed         TEXT NOT NULL,
    at           TEXT NOT NULL,
    actor        TEXT NOT NULL,
    checksums    TEXT NOT NULL,
    added        INTEGER NOT NULL,
    lifted       INTEGER NOT NULL,
    unchanged    INTEGER NOT NULL
);

-- The per-item acknowledgement of one import (Piracy-Shield style).
CREATE TABLE feed_acks (
    import_id   INTEGER NOT NULL REFERENCES feed_imports(id),
    item        TEXT NOT NULL,
    list        TEXT NOT NULL CHECK (list IN ('fqdn', 'ipv4', 'ipv6')),
    status      TEXT NOT NULL CHECK (status IN ('processed', 'unprocessed', 'lifted')),
    reason      TEXT CHECK (reason IS NULL OR reason IN ('ALREADY_BLOCKED', 'UNDEFINED', 'UNKNOWN')),
    detail      TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX feed_acks_by_import ON feed_acks (import_id);

-- API tokens: only the SHA-256 of the token is kept.
CREATE TABLE tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hash        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'approver', 'admin')),
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    revoked_at  TEXT
);

-- The audit log: append-only, hash-chained (see src/audit.rs for the canonical encoding).
-- `before`/`after` are JSON texts, hashed exactly as stored. Never a client address.
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY NOT NULL,
    time       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    object     TEXT NOT NULL,
    before     TEXT,
    after      TEXT,
    reason     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

-- Append-only at the SQL level too (defence in depth: whoever can write the file can drop these,
-- which is why the chain exists).
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
