-- The console's operators (support staff): separate identities from account owners, each
-- with a role, a password (argon2id), an authenticator app (seed sealed with the server
-- key, bound to the operator's id) and its replay guard; single-use enrolment links (24 h,
-- stored hashed) and console sessions (token stored hashed). Times are Unix milliseconds.

CREATE TABLE operators (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL,
    password_hash  TEXT,
    totp_secret    TEXT,
    totp_last_step BIGINT NOT NULL DEFAULT 0,
    enrolled_at    BIGINT,
    disabled_at    BIGINT,
    created_at     BIGINT NOT NULL
);

CREATE TABLE operator_enrolments (
    token_hash    TEXT PRIMARY KEY,
    operator_id   TEXT NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    password_hash TEXT,
    totp_secret   TEXT,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX operator_enrolments_by_operator ON operator_enrolments (operator_id);

CREATE TABLE operator_sessions (
    token_hash     TEXT PRIMARY KEY,
    operator_id    TEXT NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    last_active_at BIGINT NOT NULL
);
CREATE INDEX operator_sessions_by_operator ON operator_sessions (operator_id);
