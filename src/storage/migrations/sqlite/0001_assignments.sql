-- Access package assignments. Optional properties are NULL when unset.
-- expiredDateTime is kept as the Timestamp's seconds and nanos plus the offset it was
-- written with, so that it reads back exactly as sent.
CREATE TABLE assignments (
    id                     TEXT    NOT NULL PRIMARY KEY,
    catalog_id             TEXT,
    access_package_id      TEXT    NOT NULL,
    assignment_policy_id   TEXT    NOT NULL,
    target_id              TEXT    NOT NULL,
    assignment_status      TEXT,
    assignment_state       TEXT,
    is_extended            INTEGER,
    expired_seconds        INTEGER,
    expired_nanos          INTEGER,
    expired_offset_minutes INTEGER,
    CHECK ((expired_seconds IS NULL) = (expired_nanos IS NULL)),
    CHECK ((expired_seconds IS NULL) = (expired_offset_minutes IS NULL))
);
