-- Access package assignments; the same schema as the SQLite backend's.
-- Optional properties are NULL when unset. expiredDateTime is kept as 100 ns ticks
-- since the Unix epoch (the instant, for ordering and comparing) plus the offset it
-- was written with, so that it reads back exactly as sent.
-- Text compares byte-wise (COLLATE "C"), as SQLite's BINARY does, whatever the
-- database's locale: ids order the same on both backends and their index is plain.
CREATE TABLE assignments (
    id                     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    catalog_id             TEXT COLLATE "C",
    access_package_id      TEXT COLLATE "C" NOT NULL,
    assignment_policy_id   TEXT COLLATE "C" NOT NULL,
    target_id              TEXT COLLATE "C" NOT NULL,
    assignment_status      TEXT COLLATE "C",
    assignment_state       TEXT COLLATE "C",
    is_extended            BOOLEAN,
    expired_ticks          BIGINT,
    expired_offset_minutes INTEGER,
    CHECK ((expired_ticks IS NULL) = (expired_offset_minutes IS NULL))
);

-- One index per filterable property, with id second so that a filtered page
-- continues from its key instead of scanning from the start.
CREATE INDEX assignments_catalog_id ON assignments (catalog_id, id);
CREATE INDEX assignments_access_package_id ON assignments (access_package_id, id);
CREATE INDEX assignments_assignment_policy_id ON assignments (assignment_policy_id, id);
CREATE INDEX assignments_target_id ON assignments (target_id, id);
CREATE INDEX assignments_assignment_status ON assignments (assignment_status, id);
CREATE INDEX assignments_assignment_state ON assignments (assignment_state, id);
CREATE INDEX assignments_is_extended ON assignments (is_extended, id);
-- Ordering by expiredDateTime: unset sorts first, as the smallest value. The
-- expression must stay exactly sql::EXPIRED_SORT for queries to use the index
-- (the literal is a BIGINT: PostgreSQL folds the minus into the constant).
CREATE INDEX assignments_expired ON assignments (COALESCE(expired_ticks, -9223372036854775808), id);
