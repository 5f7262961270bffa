-- Incident response: keys the owner (or "Secure my account") suspended, the settings lock,
-- the incidents an owner opened, and the platform's official channels that anyone can check.

ALTER TABLE api_keys ADD COLUMN suspended_at BIGINT;

CREATE TABLE settings_locks (
    account_id       TEXT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    locked_at        BIGINT NOT NULL,
    -- The lock ends at `until`; asking to end it early moves `until` to the request time
    -- plus `early_end_delay` (never later than it was).
    until            BIGINT NOT NULL,
    early_end_delay  BIGINT NOT NULL,
    end_requested_at BIGINT
);

CREATE TABLE incidents (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    opened_at  BIGINT NOT NULL,
    via        TEXT NOT NULL,
    steps      TEXT NOT NULL
);
CREATE INDEX incidents_by_account ON incidents (account_id, opened_at);

CREATE TABLE official_channels (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    normalized TEXT NOT NULL,
    display    TEXT NOT NULL,
    note       TEXT NOT NULL,
    added_at   BIGINT NOT NULL,
    added_by   TEXT NOT NULL,
    UNIQUE (kind, normalized)
);
