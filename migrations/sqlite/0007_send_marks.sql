-- "At most one X per interval per key" (alert mails, repeated-registration mails, resends):
-- the last time each key was allowed. Claimed with one atomic upsert, so several instances
-- agree on who may send.
CREATE TABLE send_marks (
    key     TEXT PRIMARY KEY,
    last_at BIGINT NOT NULL
);
