-- Security mails an owner switched off (the inbox still has them). Switching one off is
-- weakening: it lands here only when its 48-hour pending change is applied.
CREATE TABLE mail_mutes (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    muted_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind)
);
