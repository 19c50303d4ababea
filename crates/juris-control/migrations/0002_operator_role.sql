-- The `operator` role (between viewer and editor): runs the resolver (cache flush and stats)
-- without touching orders. SQLite cannot change a CHECK constraint in place: the tokens
-- table is rebuilt with the same rows.
CREATE TABLE tokens_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hash        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'editor', 'approver', 'admin')),
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    revoked_at  TEXT
);
INSERT INTO tokens_new (id, hash, role, name, created_at, created_by, revoked_at)
    SELECT id, hash, role, name, created_at, created_by, revoked_at FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_new RENAME TO tokens;
