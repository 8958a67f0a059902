-- Access package assignments, clustered by id (the default order of lists).
-- Optional properties are NULL when unset. expiredDateTime is kept as 100 ns ticks
-- since the Unix epoch (the instant, for ordering and comparing) plus the offset it
-- was written with, so that it reads back exactly as sent.
CREATE TABLE assignments (
    id                     TEXT    NOT NULL PRIMARY KEY,
    catalog_id             TEXT,
    access_package_id      TEXT    NOT NULL,
    assignment_policy_id   TEXT    NOT NULL,
    target_id              TEXT    NOT NULL,
    assignment_status      TEXT,
    assignment_state       TEXT,
    is_extended            INTEGER,
    expired_ticks          INTEGER,
    expired_offset_minutes INTEGER,
    CHECK ((expired_ticks IS NULL) = (expired_offset_minutes IS NULL))
) WITHOUT ROWID;

-- One index per filterable property, with id second so that a filtered page
-- continues from its key instead of scanning from the start.
CREATE INDEX assignments_catalog_id ON assignments (catalog_id, id);
CREATE INDEX assignments_access_package_id ON assignments (access_package_id, id);
CREATE INDEX assignments_assignment_policy_id ON assignments (assignment_policy_id, id);
CREATE INDEX assignments_target_id ON assignments (target_id, id);
CREATE INDEX assignments_assignment_status ON assignments (assignment_status, id);
CREATE INDEX assignments_assignment_state ON assignments (assignment_state, id);
CREATE INDEX assignments_is_extended ON assignments (is_extended, id);
-- Ordering by expiredDateTime: unset sorts first, as the smallest value.
CREATE INDEX assignments_expired ON assignments (COALESCE(expired_ticks, -9223372036854775808), id);
