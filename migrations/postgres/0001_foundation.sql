-- Accounts, email confirmation, devices, sessions, login history, throttling,
-- the hash-chained audit log and the mail outbox. Times are Unix milliseconds.

CREATE TABLE accounts (
    id                 TEXT PRIMARY KEY,
    uid                TEXT NOT NULL UNIQUE,
    email              TEXT NOT NULL UNIQUE,
    password_hash      TEXT NOT NULL,
    email_confirmed_at BIGINT,
    anti_phishing_code TEXT,
    created_at         BIGINT NOT NULL,
    frozen_at          BIGINT
);

CREATE TABLE email_confirmations (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    code_mac   TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash  TEXT UNIQUE,
    fingerprint TEXT NOT NULL,
    model       TEXT NOT NULL,
    os          TEXT NOT NULL,
    browser     TEXT NOT NULL,
    user_agent  TEXT NOT NULL,
    ip          TEXT NOT NULL,
    city        TEXT,
    country     TEXT,
    first_seen  BIGINT NOT NULL,
    last_active BIGINT NOT NULL
);
CREATE INDEX devices_by_account ON devices (account_id, last_active DESC);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device_id    TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    end_reason   TEXT
);
CREATE INDEX sessions_by_account ON sessions (account_id);

CREATE TABLE logins (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    success    BOOLEAN NOT NULL,
    reason     TEXT NOT NULL,
    ip         TEXT NOT NULL,
    city       TEXT,
    country    TEXT,
    device_id  TEXT,
    model      TEXT NOT NULL,
    os         TEXT NOT NULL,
    browser    TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX logins_by_account ON logins (account_id, at DESC);

CREATE TABLE throttle (
    key          TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    last_failure BIGINT NOT NULL
);

CREATE TABLE audit_head (
    id   SMALLINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_events (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    account_id TEXT,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    ip         TEXT,
    device     TEXT,
    detail     TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_by_account ON audit_events (account_id, seq);

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    account_id      TEXT,
    to_addr         TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body_text       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    sent_at         BIGINT,
    dead_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_recent ON outbox (created_at DESC);
