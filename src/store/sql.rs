//! The SQL shared by both backends. `sql_store!` implements every storage trait for a
//! store struct with `write` and `read` pools; the backends differ only in the row-locking
//! clauses passed in (`FOR UPDATE`, `SKIP LOCKED`: PostgreSQL needs them to serialise
//! concurrent instances, SQLite serialises writers by itself and has no such syntax).

macro_rules! sql_store {
    ($store:ident, $db:ty, for_update: $for_update:literal, skip_locked: $skip_locked:literal) => {
        use async_trait::async_trait;
        use sqlx::Row as _;

        use crate::clock::Millis;
        use crate::domain::audit::{chain_hash, AuditRecord};
        use crate::domain::throttle::{ThrottlePolicy, ThrottleState};
        use crate::store::*;

        type Tx<'c> = sqlx::Transaction<'c, $db>;

        const AUDIT_COLUMNS: &str =
            "seq, at, account_id, actor, action, ip, device, detail, prev_hash, hash";
        const MAIL_COLUMNS: &str =
            "id, account_id, to_addr, subject, body_text, created_at, attempts, sent_at, dead_at, last_error";
        const DEVICE_COLUMNS: &str = "id, account_id, token_hash, fingerprint, model, os, browser, user_agent, ip, city, country, first_seen, last_active";
        const ACCOUNT_COLUMNS: &str = "id, uid, email, password_hash, email_confirmed_at, anti_phishing_code, created_at, frozen_at";

        fn audit_record(row: &<$db as sqlx::Database>::Row) -> Result<AuditRecord, sqlx::Error> {
            Ok(AuditRecord {
                seq: row.try_get("seq")?,
                at: row.try_get("at")?,
                account_id: row.try_get("account_id")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                ip: row.try_get("ip")?,
                device: row.try_get("device")?,
                detail: row.try_get("detail")?,
                prev_hash: row.try_get("prev_hash")?,
                hash: row.try_get("hash")?,
            })
        }

        impl $store {
            /// Writes a change's audit events (extending the hash chain) and queues its mails,
            /// inside the change's transaction.
            async fn write_effects(tx: &mut Tx<'_>, fx: &Effects) -> StoreResult<()> {
                if !fx.audit.is_empty() {
                    let head = sqlx::query(concat!("SELECT seq, hash FROM audit_head WHERE id = 1 ", $for_update))
                        .fetch_one(&mut **tx)
                        .await?;
                    let mut seq: i64 = head.try_get("seq")?;
                    let mut hash: String = head.try_get("hash")?;
                    for e in &fx.audit {
                        seq += 1;
                        let detail = e.detail.to_string();
                        let next = chain_hash(
                            &hash,
                            seq,
                            e.at,
                            e.account_id.as_deref(),
                            &e.actor,
                            &e.action,
                            e.ip.as_deref(),
                            e.device.as_deref(),
                            &detail,
                        );
                        sqlx::query(
                            "INSERT INTO audit_events (seq, at, account_id, actor, action, ip, device, detail, prev_hash, hash) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                        )
                        .bind(seq)
                        .bind(e.at)
                        .bind(&e.account_id)
                        .bind(&e.actor)
                        .bind(&e.action)
                        .bind(&e.ip)
                        .bind(&e.device)
                        .bind(&detail)
                        .bind(&hash)
                        .bind(&next)
                        .execute(&mut **tx)
                        .await?;
                        hash = next;
                    }
                    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                        .bind(seq)
                        .bind(&hash)
                        .execute(&mut **tx)
                        .await?;
                }
                for m in &fx.mails {
                    sqlx::query(
                        "INSERT INTO outbox (id, account_id, to_addr, subject, body_text, created_at, attempts, next_attempt_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
                    )
                    .bind(&m.id)
                    .bind(&m.account_id)
                    .bind(&m.to)
                    .bind(&m.subject)
                    .bind(&m.body_text)
                    .bind(m.created_at)
                    .bind(m.created_at)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }

            async fn insert_confirmation(tx: &mut Tx<'_>, c: &Confirmation) -> StoreResult<()> {
                sqlx::query("DELETE FROM email_confirmations WHERE account_id = $1")
                    .bind(&c.account_id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO email_confirmations (account_id, code_mac, expires_at, attempts, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&c.account_id)
                .bind(&c.code_mac)
                .bind(c.expires_at)
                .bind(c.attempts)
                .bind(c.created_at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl AccountStore for $store {
            async fn create_account(&self, a: &Account, c: &Confirmation, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO accounts (id, uid, email, password_hash, email_confirmed_at, anti_phishing_code, created_at, frozen_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&a.id)
                .bind(&a.uid)
                .bind(&a.email)
                .bind(&a.password_hash)
                .bind(a.email_confirmed_at)
                .bind(&a.anti_phishing_code)
                .bind(a.created_at)
                .bind(a.frozen_at)
                .execute(&mut *tx)
                .await;
                if let Err(e) = inserted {
                    if is_unique_violation(&e) {
                        let msg = e.to_string();
                        return Err(StoreError::Conflict(if msg.contains("uid") { "uid" } else { "email" }));
                    }
                    return Err(e.into());
                }
                Self::insert_confirmation(&mut tx, c).await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
                let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = $1");
                Ok(sqlx::query_as(&sql).bind(email).fetch_optional(&self.read).await?)
            }

            async fn account_by_id(&self, id: &str) -> StoreResult<Option<Account>> {
                let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.read).await?)
            }

            async fn confirmation(&self, account_id: &str) -> StoreResult<Option<Confirmation>> {
                Ok(sqlx::query_as(
                    "SELECT account_id, code_mac, expires_at, attempts, created_at FROM email_confirmations WHERE account_id = $1",
                )
                .bind(account_id)
                .fetch_optional(&self.write)
                .await?)
            }

            async fn replace_confirmation(&self, c: &Confirmation, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                Self::insert_confirmation(&mut tx, c).await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn confirmation_failed(&self, account_id: &str, fx: &Effects) -> StoreResult<i64> {
                let mut tx = self.write.begin().await?;
                let row = sqlx::query(
                    "UPDATE email_confirmations SET attempts = attempts + 1 WHERE account_id = $1 RETURNING attempts",
                )
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?;
                let attempts = match row {
                    Some(r) => r.try_get("attempts")?,
                    None => 0,
                };
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(attempts)
            }

            async fn confirm_email(&self, account_id: &str, now: Millis, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query("UPDATE accounts SET email_confirmed_at = $1 WHERE id = $2 AND email_confirmed_at IS NULL")
                    .bind(now)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM email_confirmations WHERE account_id = $1")
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_anti_phishing_code(&self, account_id: &str, code: &str, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query("UPDATE accounts SET anti_phishing_code = $1 WHERE id = $2")
                    .bind(code)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait]
        impl SessionStore for $store {
            async fn record_sign_in(&self, r: &SignInRecord, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                let d = &r.device;
                if r.device_is_new {
                    sqlx::query(
                        "INSERT INTO devices (id, account_id, token_hash, fingerprint, model, os, browser, user_agent, ip, city, country, first_seen, last_active) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    )
                    .bind(&d.id)
                    .bind(&d.account_id)
                    .bind(&d.token_hash)
                    .bind(&d.fingerprint)
                    .bind(&d.model)
                    .bind(&d.os)
                    .bind(&d.browser)
                    .bind(&d.user_agent)
                    .bind(&d.ip)
                    .bind(&d.city)
                    .bind(&d.country)
                    .bind(d.first_seen)
                    .bind(d.last_active)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query(
                        "UPDATE devices SET fingerprint = $1, model = $2, os = $3, browser = $4, user_agent = $5, ip = $6, \
                         city = $7, country = $8, last_active = $9 WHERE id = $10 AND account_id = $11",
                    )
                    .bind(&d.fingerprint)
                    .bind(&d.model)
                    .bind(&d.os)
                    .bind(&d.browser)
                    .bind(&d.user_agent)
                    .bind(&d.ip)
                    .bind(&d.city)
                    .bind(&d.country)
                    .bind(d.last_active)
                    .bind(&d.id)
                    .bind(&d.account_id)
                    .execute(&mut *tx)
                    .await?;
                }
                let s = &r.session;
                sqlx::query(
                    "INSERT INTO sessions (id, account_id, device_id, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&s.id)
                .bind(&s.account_id)
                .bind(&s.device_id)
                .bind(s.created_at)
                .bind(s.last_seen_at)
                .bind(s.expires_at)
                .execute(&mut *tx)
                .await?;
                Self::insert_login(&mut tx, &r.login).await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn record_failed_login(&self, login: &Login, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                Self::insert_login(&mut tx, login).await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn device_by_token(&self, account_id: &str, token_hash: &str) -> StoreResult<Option<Device>> {
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE token_hash = $1 AND account_id = $2");
                Ok(sqlx::query_as(&sql).bind(token_hash).bind(account_id).fetch_optional(&self.read).await?)
            }

            async fn session_auth(&self, session_id: &str) -> StoreResult<Option<SessionAuth>> {
                let row = sqlx::query(
                    "SELECT s.id, s.account_id, s.device_id, s.created_at AS s_created_at, s.last_seen_at, s.expires_at, \
                     a.uid, a.email, a.password_hash, a.email_confirmed_at, a.anti_phishing_code, a.created_at, a.frozen_at \
                     FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.id = $1 AND s.ended_at IS NULL",
                )
                .bind(session_id)
                .fetch_optional(&self.read)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let session = Session {
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    device_id: row.try_get("device_id")?,
                    created_at: row.try_get("s_created_at")?,
                    last_seen_at: row.try_get("last_seen_at")?,
                    expires_at: row.try_get("expires_at")?,
                };
                let account = Account {
                    id: session.account_id.clone(),
                    uid: row.try_get("uid")?,
                    email: row.try_get("email")?,
                    password_hash: row.try_get("password_hash")?,
                    email_confirmed_at: row.try_get("email_confirmed_at")?,
                    anti_phishing_code: row.try_get("anti_phishing_code")?,
                    created_at: row.try_get("created_at")?,
                    frozen_at: row.try_get("frozen_at")?,
                };
                Ok(Some(SessionAuth { session, account }))
            }

            async fn touch_session(&self, session_id: &str, device_id: &str, now: Millis) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND ended_at IS NULL")
                    .bind(now)
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE devices SET last_active = $1 WHERE id = $2 AND last_active < $3")
                    .bind(now)
                    .bind(device_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn end_session(&self, session_id: &str, reason: &str, now: Millis, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query("UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE id = $3 AND ended_at IS NULL")
                    .bind(now)
                    .bind(reason)
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn devices(&self, account_id: &str, since: Millis) -> StoreResult<Vec<Device>> {
                let sql = format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE account_id = $1 AND last_active >= $2 ORDER BY last_active DESC, id"
                );
                Ok(sqlx::query_as(&sql).bind(account_id).bind(since).fetch_all(&self.read).await?)
            }

            async fn logins(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Login>> {
                Ok(sqlx::query_as(
                    "SELECT id, account_id, success, reason, ip, city, country, device_id, model, os, browser, at \
                     FROM logins WHERE account_id = $1 ORDER BY at DESC, id LIMIT $2",
                )
                .bind(account_id)
                .bind(limit)
                .fetch_all(&self.read)
                .await?)
            }
        }

        impl $store {
            async fn insert_login(tx: &mut Tx<'_>, l: &Login) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO logins (id, account_id, success, reason, ip, city, country, device_id, model, os, browser, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&l.id)
                .bind(&l.account_id)
                .bind(l.success)
                .bind(&l.reason)
                .bind(&l.ip)
                .bind(&l.city)
                .bind(&l.country)
                .bind(&l.device_id)
                .bind(&l.model)
                .bind(&l.os)
                .bind(&l.browser)
                .bind(l.at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl ThrottleStore for $store {
            async fn throttle_attempt(&self, key: &str, policy: &ThrottlePolicy, now: Millis) -> StoreResult<Result<(), Millis>> {
                let mut tx = self.write.begin().await?;
                sqlx::query(
                    "INSERT INTO throttle (key, failures, window_start, last_failure) VALUES ($1, 0, $2, $3) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(concat!(
                    "SELECT failures, window_start, last_failure FROM throttle WHERE key = $1 ",
                    $for_update
                ))
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
                let failures: i64 = row.try_get("failures")?;
                let state = (failures > 0).then(|| -> Result<ThrottleState, sqlx::Error> {
                    Ok(ThrottleState {
                        failures,
                        window_start: row.try_get("window_start")?,
                        last_failure: row.try_get("last_failure")?,
                    })
                });
                let state = state.transpose()?;
                let verdict = policy.check(state, now);
                if verdict.is_ok() {
                    let next = policy.fail(state, now);
                    sqlx::query("UPDATE throttle SET failures = $1, window_start = $2, last_failure = $3 WHERE key = $4")
                        .bind(next.failures)
                        .bind(next.window_start)
                        .bind(next.last_failure)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(verdict)
            }

            async fn throttle_clear(&self, key: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM throttle WHERE key = $1").bind(key).execute(&self.write).await?;
                Ok(())
            }

            async fn throttle_refund(&self, key: &str) -> StoreResult<()> {
                sqlx::query("UPDATE throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0")
                    .bind(key)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl AuditStore for $store {
            async fn append_audit(&self, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn audit_events(&self, after: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
                let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");
                let rows = sqlx::query(&sql).bind(after).bind(limit).fetch_all(&self.read).await?;
                Ok(rows.iter().map(audit_record).collect::<Result<_, _>>()?)
            }

            async fn audit_head(&self) -> StoreResult<(i64, String)> {
                self.read_audit_head().await
            }

            async fn audit_for_account(&self, account_id: &str, limit: i64) -> StoreResult<Vec<AuditRecord>> {
                let sql = format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE account_id = $1 ORDER BY seq DESC LIMIT $2"
                );
                let rows = sqlx::query(&sql).bind(account_id).bind(limit).fetch_all(&self.read).await?;
                Ok(rows.iter().map(audit_record).collect::<Result<_, _>>()?)
            }
        }

        impl $store {
            async fn read_audit_head(&self) -> StoreResult<(i64, String)> {
                let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.read).await?;
                Ok((row.try_get("seq")?, row.try_get("hash")?))
            }
        }

        #[async_trait]
        impl OutboxStore for $store {
            async fn claim_mails(&self, now: Millis, lease_until: Millis, limit: i64) -> StoreResult<Vec<OutboxMail>> {
                let sql = format!(
                    "UPDATE outbox SET lease_until = $1, attempts = attempts + 1 WHERE id IN (\
                       SELECT id FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $2 \
                       AND (lease_until IS NULL OR lease_until <= $3) ORDER BY created_at, id LIMIT $4 {}) \
                     RETURNING {MAIL_COLUMNS}",
                    $skip_locked
                );
                let mut mails: Vec<OutboxMail> = sqlx::query_as(&sql)
                    .bind(lease_until)
                    .bind(now)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.write)
                    .await?;
                mails.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
                Ok(mails)
            }

            async fn mail_sent(&self, id: &str, now: Millis) -> StoreResult<()> {
                sqlx::query("UPDATE outbox SET sent_at = $1, lease_until = NULL, last_error = NULL WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn mail_failed(&self, id: &str, error: &str, retry_at: Millis, dead: bool, now: Millis) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE outbox SET last_error = $1, next_attempt_at = $2, lease_until = NULL, dead_at = $3 WHERE id = $4",
                )
                .bind(error)
                .bind(retry_at)
                .bind(if dead { Some(now) } else { None })
                .bind(id)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn recent_mails(&self, limit: i64) -> StoreResult<Vec<OutboxMail>> {
                let sql = format!("SELECT {MAIL_COLUMNS} FROM outbox ORDER BY created_at DESC, id DESC LIMIT $1");
                Ok(sqlx::query_as(&sql).bind(limit).fetch_all(&self.read).await?)
            }
        }
    };
}
