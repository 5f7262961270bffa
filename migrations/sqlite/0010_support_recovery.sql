-- Getting the account back: password-reset and recovery links (single use, stored hashed),
-- support access for an owner who cannot sign in (a mailed code opens it; token hashed,
-- 1 hour), support tickets with their messages (internal notes never shown to the owner),
-- and the reviewed recovery requests (two-person rule, decision, reason). An approved
-- recovery marks the account: a new password and a new second factor come first.

ALTER TABLE accounts ADD COLUMN recovery_required BOOLEAN NOT NULL DEFAULT FALSE;
-- After an email change the old address keeps receiving security mail for 48 hours.
ALTER TABLE accounts ADD COLUMN previous_email TEXT;
ALTER TABLE accounts ADD COLUMN previous_email_until BIGINT;

-- Email changes: the code mailed to the new address (keyed HMAC), then, once confirmed,
-- the link mailed to the old address that cancels the change for 48 hours (hashed).
CREATE TABLE email_changes (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    old_email         TEXT NOT NULL,
    new_email         TEXT NOT NULL,
    code_mac          TEXT NOT NULL,
    attempts          BIGINT NOT NULL,
    code_expires_at   BIGINT NOT NULL,
    cancel_token_hash TEXT UNIQUE,
    confirmed_at      BIGINT,
    cancel_until      BIGINT,
    cancelled_at      BIGINT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX email_changes_by_account ON email_changes (account_id, created_at);

CREATE TABLE password_links (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX password_links_by_account ON password_links (account_id, purpose);

CREATE TABLE support_access (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX support_access_by_account ON support_access (account_id);

CREATE TABLE tickets (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    status      TEXT NOT NULL,
    noticed_at  BIGINT,
    description TEXT NOT NULL,
    details     TEXT NOT NULL,
    requests    TEXT NOT NULL,
    recovery_id TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX tickets_by_account ON tickets (account_id, created_at);
CREATE INDEX tickets_by_status ON tickets (status, created_at);

CREATE TABLE ticket_messages (
    id         TEXT PRIMARY KEY,
    ticket_id  TEXT NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    author     TEXT NOT NULL,
    body       TEXT NOT NULL,
    internal   BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ticket_messages_by_ticket ON ticket_messages (ticket_id, created_at);

ALTER TABLE recovery_requests ADD COLUMN frozen_at BIGINT;
ALTER TABLE recovery_requests ADD COLUMN needs_two BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE recovery_requests ADD COLUMN first_approver TEXT;
ALTER TABLE recovery_requests ADD COLUMN decided_by TEXT;
ALTER TABLE recovery_requests ADD COLUMN decision_reason TEXT;
ALTER TABLE recovery_requests ADD COLUMN decided_at BIGINT;
CREATE INDEX recovery_requests_by_status ON recovery_requests (status, created_at);
CREATE INDEX recovery_requests_by_account ON recovery_requests (account_id, created_at);
UPDATE recovery_requests SET kind = 'second_factor_reset' WHERE kind = 'authenticator_reset';
UPDATE recovery_requests SET status = 'submitted' WHERE status = 'pending_review';

-- Identity evidence attached to a recovery request: JPEG, PNG or PDF, at most 5 MiB and 3
-- files, sealed (XChaCha20-Poly1305, bound to the request and the file's number), deleted
-- 30 days after the decision.
CREATE TABLE recovery_evidence (
    recovery_id  TEXT NOT NULL REFERENCES recovery_requests (id) ON DELETE CASCADE,
    n            BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    sealed       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (recovery_id, n)
);
