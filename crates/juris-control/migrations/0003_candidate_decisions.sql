-- Mirror candidates a person accepted or dismissed (issue #14 item 3). A dismissal is
-- remembered so the candidate is not shown again for that order; an acceptance records the
-- evidence and where the name went (the target row and the audit log have it too).
CREATE TABLE candidate_decisions (
    name        TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    decision    TEXT NOT NULL CHECK (decision IN ('accepted', 'dismissed')),
    decided_by  TEXT NOT NULL,
    decided_at  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    evidence    TEXT,
    extension   TEXT,
    PRIMARY KEY (name, order_id)
);
