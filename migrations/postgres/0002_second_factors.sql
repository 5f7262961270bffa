-- Second factors (authenticator app, backup codes, passkeys), step-up, sign-in
-- challenges, delayed weakening, withdrawal locks, emailed action codes, password
-- history and recovery requests.

ALTER TABLE accounts ADD COLUMN require_passkey BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sessions ADD COLUMN stepped_up_at BIGINT;
ALTER TABLE sessions ADD COLUMN method TEXT NOT NULL DEFAULT 'password';
ALTER TABLE logins ADD COLUMN method TEXT NOT NULL DEFAULT 'password';

CREATE TABLE totp_secrets (
    account_id TEXT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    secret_enc TEXT NOT NULL,
    enabled_at BIGINT,
    last_step  BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE backup_codes (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    code_mac   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (account_id, code_mac)
);

CREATE TABLE passkeys (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    credential_id TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    passkey       TEXT NOT NULL,
    counter       BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    removed_at    BIGINT
);
CREATE INDEX passkeys_by_account ON passkeys (account_id);

-- WebAuthn ceremony states, single use.
CREATE TABLE ceremonies (
    id         TEXT PRIMARY KEY,
    account_id TEXT,
    kind       TEXT NOT NULL,
    state      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- A correct password waiting for its second factor.
CREATE TABLE signin_challenges (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    client       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    completed_at BIGINT,
    alerted_at   BIGINT
);
CREATE INDEX signin_challenges_open ON signin_challenges (created_at) WHERE completed_at IS NULL AND alerted_at IS NULL;

CREATE TABLE pending_changes (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind              TEXT NOT NULL,
    target            TEXT,
    cancel_token_hash TEXT NOT NULL UNIQUE,
    requested_at      BIGINT NOT NULL,
    effective_at      BIGINT NOT NULL,
    cancelled_at      BIGINT,
    applied_at        BIGINT
);
CREATE INDEX pending_changes_due ON pending_changes (effective_at) WHERE cancelled_at IS NULL AND applied_at IS NULL;

CREATE TABLE withdrawal_locks (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    reason     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    until      BIGINT NOT NULL
);
CREATE INDEX withdrawal_locks_by_account ON withdrawal_locks (account_id, until);

CREATE TABLE action_codes (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    code_mac   TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, purpose)
);

CREATE TABLE password_history (
    account_id    TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX password_history_by_account ON password_history (account_id, created_at DESC);

CREATE TABLE recovery_requests (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
