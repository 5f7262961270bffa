-- The withdrawal guard: platform credentials, the withdrawals Rampart decided (with the
-- original answer, so a repeated request_id gets the same one), the feed of releases and
-- recalls the platform reads by cursor, the owner's allowlist and settings, per-key
-- withdrawal rules, the addresses an account used or allowlisted (indexed by their
-- look-alike key), internal transfers and deposits, and the cases operators open when they
-- freeze accounts that received stolen funds.

CREATE TABLE platform_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

CREATE TABLE withdrawal_settings (
    account_id        TEXT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    allowlist_enabled BOOLEAN NOT NULL,
    delay_days        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE withdrawal_addresses (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    asset      TEXT NOT NULL,
    network    TEXT NOT NULL,
    address    TEXT NOT NULL,
    memo       TEXT,
    label      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    usable_at  BIGINT NOT NULL,
    removed_at BIGINT
);
CREATE INDEX withdrawal_addresses_by_destination
    ON withdrawal_addresses (account_id, asset, network, address) WHERE removed_at IS NULL;

CREATE TABLE known_addresses (
    account_id     TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    address        TEXT NOT NULL,
    lookalike_key  TEXT NOT NULL,
    first_seen_at  BIGINT NOT NULL,
    PRIMARY KEY (account_id, address)
);
CREATE INDEX known_addresses_by_lookalike ON known_addresses (account_id, lookalike_key);

CREATE TABLE key_withdraw_rules (
    api_key    TEXT PRIMARY KEY REFERENCES api_keys (api_key) ON DELETE CASCADE,
    rules      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE withdrawals (
    id                TEXT PRIMARY KEY,
    request_id        TEXT NOT NULL UNIQUE,
    request_hash      TEXT NOT NULL,
    account_id        TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    asset             TEXT NOT NULL,
    network           TEXT NOT NULL,
    amount            TEXT NOT NULL,
    address           TEXT NOT NULL,
    memo              TEXT,
    via               TEXT NOT NULL,
    api_key           TEXT,
    state             TEXT NOT NULL,
    answer            TEXT NOT NULL,
    reasons           TEXT NOT NULL,
    release_at        BIGINT,
    cancel_token_hash TEXT UNIQUE,
    cancel_reason     TEXT,
    txid              TEXT,
    created_at        BIGINT NOT NULL,
    released_at       BIGINT,
    broadcast_at      BIGINT,
    confirmed_at      BIGINT,
    cancelled_at      BIGINT
);
CREATE INDEX withdrawals_by_account ON withdrawals (account_id, created_at);
CREATE INDEX withdrawals_due ON withdrawals (release_at) WHERE state = 'held';
CREATE INDEX withdrawals_by_key ON withdrawals (api_key, created_at) WHERE api_key IS NOT NULL;

-- Releases and recalls in commit order: appending locks the head row, so a cursor never
-- skips an entry that commits late.
CREATE TABLE withdrawal_feed (
    seq           BIGINT PRIMARY KEY,
    withdrawal_id TEXT NOT NULL REFERENCES withdrawals (id) ON DELETE CASCADE,
    event         TEXT NOT NULL,
    at            BIGINT NOT NULL
);
CREATE TABLE withdrawal_feed_head (
    id  BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO withdrawal_feed_head (id, seq) VALUES (1, 0);

CREATE TABLE transfers (
    id              TEXT PRIMARY KEY,
    request_id      TEXT NOT NULL UNIQUE,
    request_hash    TEXT NOT NULL,
    from_account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    to_account_id   TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    asset           TEXT NOT NULL,
    amount          TEXT NOT NULL,
    state           TEXT NOT NULL,
    answer          TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX transfers_from ON transfers (from_account_id, created_at);
CREATE INDEX transfers_to ON transfers (to_account_id, created_at);

CREATE TABLE deposits (
    id           TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL UNIQUE,
    request_hash TEXT NOT NULL,
    account_id   TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    asset        TEXT NOT NULL,
    network      TEXT NOT NULL,
    amount       TEXT NOT NULL,
    address      TEXT,
    txid         TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX deposits_by_account ON deposits (account_id, created_at);

CREATE TABLE cases (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    source_account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    reason            TEXT NOT NULL,
    operator          TEXT NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX cases_by_account ON cases (account_id, created_at);
