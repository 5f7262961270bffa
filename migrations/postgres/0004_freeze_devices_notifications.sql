-- Freeze links, device removal/blocking/trust, new-device confirmation, the
-- notification inbox and signed webhooks.

CREATE TABLE freeze_links (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

ALTER TABLE devices ADD COLUMN trusted_at BIGINT;
ALTER TABLE devices ADD COLUMN removed_at BIGINT;

CREATE TABLE blocked_fingerprints (
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, fingerprint)
);

-- A session from an unrecognised device is unusable until the mailed link confirms it.
ALTER TABLE sessions ADD COLUMN confirm_token_hash TEXT;
ALTER TABLE sessions ADD COLUMN confirmed_at BIGINT;
CREATE INDEX sessions_by_confirm_token ON sessions (confirm_token_hash);

CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    read_at    BIGINT
);
CREATE INDEX notifications_by_account ON notifications (account_id, created_at DESC);

CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    secret_enc  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    disabled_at BIGINT
);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    delivered_at    BIGINT,
    dead_at         BIGINT,
    last_status     BIGINT,
    last_error      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE delivered_at IS NULL AND dead_at IS NULL;
