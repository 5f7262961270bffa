-- API keys: HMAC secrets sealed at rest, Ed25519/RSA public keys only.
CREATE TABLE api_keys (
    api_key            TEXT PRIMARY KEY,
    account_id         TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    label              TEXT NOT NULL,
    key_type           TEXT NOT NULL,
    secret_enc         TEXT,
    public_key         TEXT,
    permissions        TEXT NOT NULL,
    ip_allowlist       TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    created_ip         TEXT NOT NULL,
    created_device     TEXT NOT NULL,
    created_unusual    BOOLEAN NOT NULL,
    expires_at         BIGINT,
    last_used_at       BIGINT,
    last_used_ip       TEXT,
    warned_7d_at       BIGINT,
    warned_1d_at       BIGINT,
    deleted_at         BIGINT
);
CREATE INDEX api_keys_by_account ON api_keys (account_id) WHERE deleted_at IS NULL;
CREATE INDEX api_keys_expiring ON api_keys (expires_at) WHERE deleted_at IS NULL AND expires_at IS NOT NULL;
