//! The SQL shared by both backends. `sql_store!` implements every storage trait for a
//! store struct with `write` and `read` pools; the backends differ only in the row-locking
//! clauses passed in (`FOR UPDATE`, `SKIP LOCKED`: PostgreSQL needs them to serialise
//! concurrent instances, SQLite serialises writers by itself and has no such syntax).

macro_rules! sql_store {
    ($store:ident, $db:ty, for_update: $for_update:literal, skip_locked: $skip_locked:literal, notify_sql: $notify_sql:literal) => {
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
        const DEVICE_COLUMNS: &str = "id, account_id, token_hash, fingerprint, model, os, browser, user_agent, ip, city, country, first_seen, last_active, trusted_at";
        const ACCOUNT_COLUMNS: &str = "id, uid, email, password_hash, email_confirmed_at, anti_phishing_code, created_at, frozen_at, require_passkey";

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
                let mut endpoints: Option<Vec<String>> = None;
                for m in &fx.mails {
                    if let Some(link) = &m.freeze_link {
                        sqlx::query("INSERT INTO freeze_links (token_hash, account_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                            .bind(&link.token_hash)
                            .bind(&link.account_id)
                            .bind(m.created_at)
                            .bind(link.expires_at)
                            .execute(&mut **tx)
                            .await?;
                    }
                    if let (true, Some(account_id)) = (m.inbox, &m.account_id) {
                        sqlx::query("INSERT INTO notifications (id, account_id, subject, body, created_at) VALUES ($1, $2, $3, $4, $5)")
                            .bind(&m.id)
                            .bind(account_id)
                            .bind(&m.subject)
                            .bind(&m.event_text)
                            .bind(m.created_at)
                            .execute(&mut **tx)
                            .await?;
                        if endpoints.is_none() {
                            let rows = sqlx::query("SELECT id FROM webhook_endpoints WHERE disabled_at IS NULL").fetch_all(&mut **tx).await?;
                            endpoints = Some(rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?);
                        }
                        let event = serde_json::json!({
                            "id": m.id, "account_id": account_id, "subject": m.subject, "body": m.event_text, "created_at": m.created_at,
                        })
                        .to_string();
                        for endpoint in endpoints.iter().flatten() {
                            sqlx::query(
                                "INSERT INTO webhook_deliveries (id, endpoint_id, event, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5)",
                            )
                            .bind(uuid::Uuid::new_v4().to_string())
                            .bind(endpoint)
                            .bind(&event)
                            .bind(m.created_at)
                            .bind(m.created_at)
                            .execute(&mut **tx)
                            .await?;
                        }
                    }
                    // An optional kind the owner switched off goes to the inbox only.
                    sqlx::query(
                        "INSERT INTO outbox (id, account_id, to_addr, subject, body_text, created_at, attempts, next_attempt_at) \
                         SELECT $1, $2, $3, $4, $5, $6, 0, $7 \
                         WHERE NOT EXISTS (SELECT 1 FROM mail_mutes WHERE account_id = $8 AND kind = $9)",
                    )
                    .bind(&m.id)
                    .bind(&m.account_id)
                    .bind(&m.to)
                    .bind(&m.subject)
                    .bind(&m.body_text)
                    .bind(m.created_at)
                    .bind(m.created_at)
                    .bind(m.account_id.as_deref().unwrap_or(""))
                    .bind(m.kind)
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
                    "INSERT INTO accounts (id, uid, email, password_hash, email_confirmed_at, anti_phishing_code, created_at, frozen_at, require_passkey) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&a.id)
                .bind(&a.uid)
                .bind(&a.email)
                .bind(&a.password_hash)
                .bind(a.email_confirmed_at)
                .bind(&a.anti_phishing_code)
                .bind(a.created_at)
                .bind(a.frozen_at)
                .bind(a.require_passkey)
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

            async fn delete_account(&self, account_id: &str, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query("DELETE FROM outbox WHERE account_id = $1")
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM accounts WHERE id = $1")
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
                Self::insert_sign_in(&mut tx, r).await?;
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
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE token_hash = $1 AND account_id = $2 AND removed_at IS NULL");
                Ok(sqlx::query_as(&sql).bind(token_hash).bind(account_id).fetch_optional(&self.read).await?)
            }

            async fn session_auth(&self, session_id: &str) -> StoreResult<Option<SessionAuth>> {
                let row = sqlx::query(
                    "SELECT s.id, s.account_id, s.device_id, s.created_at AS s_created_at, s.last_seen_at, s.expires_at, s.stepped_up_at, s.method, \
                     s.confirm_token_hash, s.confirmed_at, s.ended_at, \
                     a.uid, a.email, a.password_hash, a.email_confirmed_at, a.anti_phishing_code, a.created_at, a.frozen_at, a.require_passkey \
                     FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.id = $1",
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
                    stepped_up_at: row.try_get("stepped_up_at")?,
                    method: row.try_get("method")?,
                    confirm_token_hash: {
                        let confirmed: Option<Millis> = row.try_get("confirmed_at")?;
                        let pending: Option<String> = row.try_get("confirm_token_hash")?;
                        pending.filter(|_| confirmed.is_none())
                    },
                    ended_at: row.try_get("ended_at")?,
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
                    require_passkey: row.try_get("require_passkey")?,
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
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE account_id = $1 AND last_active >= $2 AND removed_at IS NULL ORDER BY last_active DESC, id"
                );
                Ok(sqlx::query_as(&sql).bind(account_id).bind(since).fetch_all(&self.read).await?)
            }

            async fn logins(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Login>> {
                Ok(sqlx::query_as(
                    "SELECT id, account_id, success, reason, ip, city, country, device_id, model, os, browser, at, method \
                     FROM logins WHERE account_id = $1 ORDER BY at DESC, id LIMIT $2",
                )
                .bind(account_id)
                .bind(limit)
                .fetch_all(&self.read)
                .await?)
            }
        }

        impl $store {
            /// The device (new or refreshed), the session and the login row of a sign-in.
            async fn insert_sign_in(tx: &mut Tx<'_>, r: &SignInRecord) -> StoreResult<()> {
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
                    .execute(&mut **tx)
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
                    .execute(&mut **tx)
                    .await?;
                }
                let s = &r.session;
                sqlx::query(
                    "INSERT INTO sessions (id, account_id, device_id, created_at, last_seen_at, expires_at, stepped_up_at, method, confirm_token_hash) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&s.id)
                .bind(&s.account_id)
                .bind(&s.device_id)
                .bind(s.created_at)
                .bind(s.last_seen_at)
                .bind(s.expires_at)
                .bind(s.stepped_up_at)
                .bind(&s.method)
                .bind(&s.confirm_token_hash)
                .execute(&mut **tx)
                .await?;
                Self::insert_login(tx, &r.login).await?;
                Ok(())
            }

            async fn insert_login(tx: &mut Tx<'_>, l: &Login) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO logins (id, account_id, success, reason, ip, city, country, device_id, model, os, browser, at, method) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
                .bind(&l.method)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl ThrottleStore for $store {
            async fn throttle_attempt(&self, key: &str, policy: &ThrottlePolicy, now: Millis) -> StoreResult<Result<i64, Millis>> {
                Ok(self
                    .throttle_attempts(&[(key.to_owned(), *policy)], now)
                    .await?
                    .map(|failures| failures.first().copied().unwrap_or(0))
                    .map_err(|(_, wait)| wait))
            }

            async fn throttle_attempts(&self, keys: &[(String, ThrottlePolicy)], now: Millis) -> StoreResult<Result<Vec<i64>, (usize, Millis)>> {
                let mut tx = self.write.begin().await?;
                let mut next = Vec::with_capacity(keys.len());
                for (i, (key, policy)) in keys.iter().enumerate() {
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
                    let state = if failures > 0 {
                        Some(ThrottleState { failures, window_start: row.try_get("window_start")?, last_failure: row.try_get("last_failure")? })
                    } else {
                        None
                    };
                    if let Err(wait) = policy.check(state, now) {
                        tx.commit().await?;
                        return Ok(Err((i, wait)));
                    }
                    next.push((key, policy.fail(state, now)));
                }
                let mut counted = Vec::with_capacity(next.len());
                for (key, n) in next {
                    sqlx::query("UPDATE throttle SET failures = $1, window_start = $2, last_failure = $3 WHERE key = $4")
                        .bind(n.failures)
                        .bind(n.window_start)
                        .bind(n.last_failure)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    counted.push(n.failures);
                }
                tx.commit().await?;
                Ok(Ok(counted))
            }

            async fn throttle_settle(&self, clear: &[String], refund: &[String]) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                for key in clear {
                    sqlx::query("DELETE FROM throttle WHERE key = $1").bind(key).execute(&mut *tx).await?;
                }
                for key in refund {
                    sqlx::query("UPDATE throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0")
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
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

            async fn once_per_interval(&self, key: &str, interval: Millis, now: Millis) -> StoreResult<bool> {
                // One statement: a new key is inserted; an existing one is moved to `now` only
                // if its last mark is old enough. A concurrent caller waits for the row and
                // then sees the fresh mark, so it changes nothing and loses.
                let done = sqlx::query(
                    "INSERT INTO send_marks (key, last_at) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET last_at = excluded.last_at \
                     WHERE send_marks.last_at <= $3",
                )
                .bind(key)
                .bind(now)
                .bind(now - interval)
                .execute(&self.write)
                .await?;
                Ok(done.rows_affected() == 1)
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

        const TOTP_COLUMNS: &str = "account_id, secret_enc, enabled_at, last_step, created_at";
        const PASSKEY_COLUMNS: &str =
            "id, account_id, credential_id, name, passkey, counter, created_at, last_used_at, removed_at";
        const CHALLENGE_COLUMNS: &str =
            "id, account_id, client, created_at, expires_at, attempts, completed_at, alerted_at";
        const CHANGE_COLUMNS: &str = "id, account_id, kind, target, cancel_token_hash, requested_at, effective_at, cancelled_at, applied_at";

        impl $store {
            async fn insert_backup_codes(tx: &mut Tx<'_>, account_id: &str, macs: &[String], now: Millis) -> StoreResult<()> {
                sqlx::query("DELETE FROM backup_codes WHERE account_id = $1")
                    .bind(account_id)
                    .execute(&mut **tx)
                    .await?;
                for mac in macs {
                    sqlx::query("INSERT INTO backup_codes (account_id, code_mac, created_at) VALUES ($1, $2, $3)")
                        .bind(account_id)
                        .bind(mac)
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }

            async fn insert_lock(tx: &mut Tx<'_>, l: &WithdrawalLock) -> StoreResult<()> {
                sqlx::query("INSERT INTO withdrawal_locks (id, account_id, reason, created_at, until) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&l.id)
                    .bind(&l.account_id)
                    .bind(&l.reason)
                    .bind(l.created_at)
                    .bind(l.until)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn delete_totp(tx: &mut Tx<'_>, account_id: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM totp_secrets WHERE account_id = $1")
                    .bind(account_id)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// Without any second factor left, backup codes have nothing to stand in for.
            async fn drop_orphan_backup_codes(tx: &mut Tx<'_>, account_id: &str) -> StoreResult<()> {
                sqlx::query(
                    "DELETE FROM backup_codes WHERE account_id = $1 \
                     AND NOT EXISTS (SELECT 1 FROM totp_secrets WHERE account_id = $2 AND enabled_at IS NOT NULL) \
                     AND NOT EXISTS (SELECT 1 FROM passkeys WHERE account_id = $3 AND removed_at IS NULL)",
                )
                .bind(account_id)
                .bind(account_id)
                .bind(account_id)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl SecondFactorStore for $store {
            async fn factor_counts(&self, account_id: &str) -> StoreResult<(bool, i64, i64)> {
                let row = sqlx::query(
                    "SELECT \
                       (SELECT COUNT(*) FROM totp_secrets WHERE account_id = $1 AND enabled_at IS NOT NULL) AS totp, \
                       (SELECT COUNT(*) FROM passkeys WHERE account_id = $2 AND removed_at IS NULL) AS passkeys, \
                       (SELECT COUNT(*) FROM backup_codes WHERE account_id = $3 AND used_at IS NULL) AS codes",
                )
                .bind(account_id)
                .bind(account_id)
                .bind(account_id)
                .fetch_one(&self.read)
                .await?;
                let totp: i64 = row.try_get("totp")?;
                Ok((totp > 0, row.try_get("passkeys")?, row.try_get("codes")?))
            }

            async fn totp(&self, account_id: &str) -> StoreResult<Option<TotpRecord>> {
                let sql = format!("SELECT {TOTP_COLUMNS} FROM totp_secrets WHERE account_id = $1");
                Ok(sqlx::query_as(&sql).bind(account_id).fetch_optional(&self.write).await?)
            }

            async fn totp_begin(&self, r: &TotpRecord, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                let enabled = sqlx::query(concat!(
                    "SELECT enabled_at FROM totp_secrets WHERE account_id = $1 AND enabled_at IS NOT NULL ",
                    $for_update
                ))
                .bind(&r.account_id)
                .fetch_optional(&mut *tx)
                .await?;
                if enabled.is_some() {
                    return Err(StoreError::Conflict("totp"));
                }
                Self::delete_totp(&mut tx, &r.account_id).await?;
                sqlx::query("INSERT INTO totp_secrets (account_id, secret_enc, enabled_at, last_step, created_at) VALUES ($1, $2, NULL, 0, $3)")
                    .bind(&r.account_id)
                    .bind(&r.secret_enc)
                    .bind(r.created_at)
                    .execute(&mut *tx)
                    .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn totp_enable(&self, account_id: &str, step: i64, macs: Option<&[String]>, now: Millis, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                let done = sqlx::query(
                    "UPDATE totp_secrets SET enabled_at = $1, last_step = $2 WHERE account_id = $3 AND enabled_at IS NULL",
                )
                .bind(now)
                .bind(step)
                .bind(account_id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict("totp"));
                }
                if let Some(macs) = macs {
                    Self::insert_backup_codes(&mut tx, account_id, macs, now).await?;
                }
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn totp_use_step(&self, account_id: &str, step: i64) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE totp_secrets SET last_step = $1 WHERE account_id = $2 AND enabled_at IS NOT NULL AND last_step < $3",
                )
                .bind(step)
                .bind(account_id)
                .bind(step)
                .execute(&self.write)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn replace_backup_codes(&self, account_id: &str, macs: &[String], now: Millis, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                Self::insert_backup_codes(&mut tx, account_id, macs, now).await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn use_backup_code(&self, account_id: &str, mac: &str, now: Millis) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE backup_codes SET used_at = $1 WHERE account_id = $2 AND code_mac = $3 AND used_at IS NULL",
                )
                .bind(now)
                .bind(account_id)
                .bind(mac)
                .execute(&self.write)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn backup_codes_left(&self, account_id: &str) -> StoreResult<i64> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM backup_codes WHERE account_id = $1 AND used_at IS NULL")
                    .bind(account_id)
                    .fetch_one(&self.read)
                    .await?;
                Ok(row.try_get("n")?)
            }

            async fn passkeys(&self, account_id: &str) -> StoreResult<Vec<PasskeyRecord>> {
                let sql = format!(
                    "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE account_id = $1 AND removed_at IS NULL ORDER BY created_at, id"
                );
                Ok(sqlx::query_as(&sql).bind(account_id).fetch_all(&self.write).await?)
            }

            async fn passkey_by_credential(&self, credential_id: &str) -> StoreResult<Option<PasskeyRecord>> {
                let sql = format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1 AND removed_at IS NULL");
                Ok(sqlx::query_as(&sql).bind(credential_id).fetch_optional(&self.write).await?)
            }

            async fn add_passkey(&self, p: &PasskeyRecord, macs: Option<&[String]>, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO passkeys (id, account_id, credential_id, name, passkey, counter, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&p.id)
                .bind(&p.account_id)
                .bind(&p.credential_id)
                .bind(&p.name)
                .bind(&p.passkey)
                .bind(p.counter)
                .bind(p.created_at)
                .execute(&mut *tx)
                .await;
                if let Err(e) = inserted {
                    return Err(if is_unique_violation(&e) { StoreError::Conflict("credential_id") } else { e.into() });
                }
                if let Some(macs) = macs {
                    Self::insert_backup_codes(&mut tx, &p.account_id, macs, p.created_at).await?;
                }
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn passkey_used(&self, id: &str, passkey: &str, counter: i64, now: Millis) -> StoreResult<()> {
                sqlx::query("UPDATE passkeys SET passkey = $1, counter = $2, last_used_at = $3 WHERE id = $4")
                    .bind(passkey)
                    .bind(counter)
                    .bind(now)
                    .bind(id)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn rename_passkey(&self, account_id: &str, id: &str, name: &str, fx: &Effects) -> StoreResult<bool> {
                let mut tx = self.write.begin().await?;
                let done = sqlx::query("UPDATE passkeys SET name = $1 WHERE id = $2 AND account_id = $3 AND removed_at IS NULL")
                    .bind(name)
                    .bind(id)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn put_ceremony(&self, id: &str, account_id: Option<&str>, kind: &str, state: &str, expires_at: Millis) -> StoreResult<()> {
                sqlx::query("INSERT INTO ceremonies (id, account_id, kind, state, expires_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(id)
                    .bind(account_id)
                    .bind(kind)
                    .bind(state)
                    .bind(expires_at)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn take_ceremony(&self, id: &str, now: Millis) -> StoreResult<Option<(Option<String>, String, String)>> {
                let row = sqlx::query("DELETE FROM ceremonies WHERE id = $1 RETURNING account_id, kind, state, expires_at")
                    .bind(id)
                    .fetch_optional(&self.write)
                    .await?;
                // Expired ceremonies of anyone are cleaned up on the way.
                sqlx::query("DELETE FROM ceremonies WHERE expires_at <= $1").bind(now).execute(&self.write).await?;
                let Some(row) = row else { return Ok(None) };
                let expires_at: Millis = row.try_get("expires_at")?;
                if expires_at <= now {
                    return Ok(None);
                }
                Ok(Some((row.try_get("account_id")?, row.try_get("kind")?, row.try_get("state")?)))
            }

            async fn put_signin_challenge(&self, c: &SignInChallenge, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query(
                    "INSERT INTO signin_challenges (id, account_id, client, created_at, expires_at, attempts) VALUES ($1, $2, $3, $4, $5, 0)",
                )
                .bind(&c.id)
                .bind(&c.account_id)
                .bind(&c.client)
                .bind(c.created_at)
                .bind(c.expires_at)
                .execute(&mut *tx)
                .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn signin_challenge(&self, id: &str) -> StoreResult<Option<SignInChallenge>> {
                let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM signin_challenges WHERE id = $1");
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.write).await?)
            }

            async fn signin_challenge_failed(&self, id: &str) -> StoreResult<i64> {
                let row = sqlx::query("UPDATE signin_challenges SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts")
                    .bind(id)
                    .fetch_optional(&self.write)
                    .await?;
                Ok(match row {
                    Some(r) => r.try_get("attempts")?,
                    None => 0,
                })
            }

            async fn incomplete_signins(&self, before: Millis, limit: i64) -> StoreResult<Vec<SignInChallenge>> {
                let sql = format!(
                    "SELECT {CHALLENGE_COLUMNS} FROM signin_challenges WHERE completed_at IS NULL AND alerted_at IS NULL \
                     AND created_at <= $1 ORDER BY created_at, id LIMIT $2"
                );
                Ok(sqlx::query_as(&sql).bind(before).bind(limit).fetch_all(&self.write).await?)
            }

            async fn signin_alerted(&self, id: &str, now: Millis, fx: &Effects) -> StoreResult<bool> {
                let mut tx = self.write.begin().await?;
                let done = sqlx::query(
                    "UPDATE signin_challenges SET alerted_at = $1 WHERE id = $2 AND alerted_at IS NULL AND completed_at IS NULL",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn complete_sign_in(&self, challenge_id: Option<&str>, r: &SignInRecord, fx: &Effects) -> StoreResult<bool> {
                let mut tx = self.write.begin().await?;
                if let Some(id) = challenge_id {
                    let done = sqlx::query(
                        "UPDATE signin_challenges SET completed_at = $1 WHERE id = $2 AND completed_at IS NULL",
                    )
                    .bind(r.session.created_at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Ok(false);
                    }
                }
                Self::insert_sign_in(&mut tx, r).await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn session_stepped_up(&self, session_id: &str, now: Millis, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query("UPDATE sessions SET stepped_up_at = $1 WHERE id = $2 AND ended_at IS NULL")
                    .bind(now)
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn add_pending_change(&self, c: &PendingChange, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query(
                    "INSERT INTO pending_changes (id, account_id, kind, target, cancel_token_hash, requested_at, effective_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&c.id)
                .bind(&c.account_id)
                .bind(&c.kind)
                .bind(&c.target)
                .bind(&c.cancel_token_hash)
                .bind(c.requested_at)
                .bind(c.effective_at)
                .execute(&mut *tx)
                .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn pending_changes(&self, account_id: &str) -> StoreResult<Vec<PendingChange>> {
                let sql = format!(
                    "SELECT {CHANGE_COLUMNS} FROM pending_changes WHERE account_id = $1 AND cancelled_at IS NULL \
                     AND applied_at IS NULL ORDER BY effective_at, id"
                );
                Ok(sqlx::query_as(&sql).bind(account_id).fetch_all(&self.write).await?)
            }

            async fn pending_change_by_token(&self, token_hash: &str) -> StoreResult<Option<PendingChange>> {
                let sql = format!("SELECT {CHANGE_COLUMNS} FROM pending_changes WHERE cancel_token_hash = $1");
                Ok(sqlx::query_as(&sql).bind(token_hash).fetch_optional(&self.write).await?)
            }

            async fn cancel_pending_change(&self, account_id: &str, id: &str, now: Millis, fx: &Effects) -> StoreResult<bool> {
                let mut tx = self.write.begin().await?;
                let done = sqlx::query(
                    "UPDATE pending_changes SET cancelled_at = $1 WHERE id = $2 AND account_id = $3 \
                     AND cancelled_at IS NULL AND applied_at IS NULL",
                )
                .bind(now)
                .bind(id)
                .bind(account_id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn due_pending_changes(&self, now: Millis, limit: i64) -> StoreResult<Vec<PendingChange>> {
                let sql = format!(
                    "SELECT {CHANGE_COLUMNS} FROM pending_changes WHERE cancelled_at IS NULL AND applied_at IS NULL \
                     AND effective_at <= $1 ORDER BY effective_at, id LIMIT $2"
                );
                Ok(sqlx::query_as(&sql).bind(now).bind(limit).fetch_all(&self.write).await?)
            }

            async fn apply_pending_change(&self, c: &PendingChange, now: Millis, fx: &Effects) -> StoreResult<bool> {
                let mut tx = self.write.begin().await?;
                let done = sqlx::query(
                    "UPDATE pending_changes SET applied_at = $1 WHERE id = $2 AND cancelled_at IS NULL AND applied_at IS NULL",
                )
                .bind(now)
                .bind(&c.id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                match c.kind.as_str() {
                    "totp.disable" => Self::delete_totp(&mut tx, &c.account_id).await?,
                    "passkey.remove" => {
                        sqlx::query("UPDATE passkeys SET removed_at = $1 WHERE id = $2 AND account_id = $3")
                            .bind(now)
                            .bind(&c.target)
                            .bind(&c.account_id)
                            .execute(&mut *tx)
                            .await?;
                        // "Require a passkey" cannot outlive the last passkey.
                        sqlx::query(
                            "UPDATE accounts SET require_passkey = FALSE WHERE id = $1 \
                             AND NOT EXISTS (SELECT 1 FROM passkeys WHERE account_id = $2 AND removed_at IS NULL)",
                        )
                        .bind(&c.account_id)
                        .bind(&c.account_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    "mail.mute" => {
                        sqlx::query("INSERT INTO mail_mutes (account_id, kind, muted_at) VALUES ($1, $2, $3) ON CONFLICT (account_id, kind) DO NOTHING")
                            .bind(&c.account_id)
                            .bind(&c.target)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    "require_passkey.disable" => {
                        sqlx::query("UPDATE accounts SET require_passkey = FALSE WHERE id = $1")
                            .bind(&c.account_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    other => return Err(StoreError::Corrupt(format!("unknown pending change kind {other:?}"))),
                }
                Self::drop_orphan_backup_codes(&mut tx, &c.account_id).await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn set_require_passkey(&self, account_id: &str, on: bool, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query("UPDATE accounts SET require_passkey = $1 WHERE id = $2")
                    .bind(on)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn withdrawal_locks(&self, account_id: &str, now: Millis) -> StoreResult<Vec<WithdrawalLock>> {
                Ok(sqlx::query_as(
                    "SELECT id, account_id, reason, created_at, until FROM withdrawal_locks \
                     WHERE account_id = $1 AND until > $2 ORDER BY until DESC, id",
                )
                .bind(account_id)
                .bind(now)
                .fetch_all(&self.read)
                .await?)
            }

            async fn put_action_code(&self, c: &ActionCode, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query("DELETE FROM action_codes WHERE account_id = $1 AND purpose = $2")
                    .bind(&c.account_id)
                    .bind(&c.purpose)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO action_codes (account_id, purpose, code_mac, expires_at, attempts, created_at) VALUES ($1, $2, $3, $4, 0, $5)",
                )
                .bind(&c.account_id)
                .bind(&c.purpose)
                .bind(&c.code_mac)
                .bind(c.expires_at)
                .bind(c.created_at)
                .execute(&mut *tx)
                .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn action_code(&self, account_id: &str, purpose: &str) -> StoreResult<Option<ActionCode>> {
                Ok(sqlx::query_as(
                    "SELECT account_id, purpose, code_mac, expires_at, attempts, created_at FROM action_codes WHERE account_id = $1 AND purpose = $2",
                )
                .bind(account_id)
                .bind(purpose)
                .fetch_optional(&self.write)
                .await?)
            }

            async fn action_code_failed(&self, account_id: &str, purpose: &str) -> StoreResult<i64> {
                let row = sqlx::query(
                    "UPDATE action_codes SET attempts = attempts + 1 WHERE account_id = $1 AND purpose = $2 RETURNING attempts",
                )
                .bind(account_id)
                .bind(purpose)
                .fetch_optional(&self.write)
                .await?;
                Ok(match row {
                    Some(r) => r.try_get("attempts")?,
                    None => 0,
                })
            }

            #[allow(clippy::too_many_arguments)]
            async fn step_up_with_action_code(
                &self,
                account_id: &str,
                purpose: &str,
                code_mac: &str,
                max_attempts: i64,
                session_id: &str,
                now: Millis,
                fx: &Effects,
            ) -> StoreResult<bool> {
                let mut tx = self.write.begin().await?;
                let spent = sqlx::query(
                    "DELETE FROM action_codes WHERE account_id = $1 AND purpose = $2 AND code_mac = $3 \
                     AND expires_at > $4 AND attempts < $5",
                )
                .bind(account_id)
                .bind(purpose)
                .bind(code_mac)
                .bind(now)
                .bind(max_attempts)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if spent == 0 {
                    return Ok(false);
                }
                let stepped = sqlx::query("UPDATE sessions SET stepped_up_at = $1 WHERE id = $2 AND account_id = $3 AND ended_at IS NULL")
                    .bind(now)
                    .bind(session_id)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if stepped == 0 {
                    return Ok(false);
                }
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn password_history(&self, account_id: &str, limit: i64) -> StoreResult<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT password_hash FROM (SELECT password_hash, created_at FROM password_history WHERE account_id = $1 \
                     UNION ALL SELECT password_hash, created_at FROM accounts WHERE id = $2) h ORDER BY created_at DESC LIMIT $3",
                )
                .bind(account_id)
                .bind(account_id)
                .bind(limit)
                .fetch_all(&self.write)
                .await?;
                Ok(rows.iter().map(|r| r.try_get("password_hash")).collect::<Result<_, _>>()?)
            }

            async fn change_password(
                &self,
                account_id: &str,
                new_hash: &str,
                keep_session: &str,
                lock: &WithdrawalLock,
                now: Millis,
                fx: &Effects,
            ) -> StoreResult<u64> {
                let mut tx = self.write.begin().await?;
                sqlx::query(
                    "INSERT INTO password_history (account_id, password_hash, created_at) \
                     SELECT id, password_hash, $1 FROM accounts WHERE id = $2",
                )
                .bind(now)
                .bind(account_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
                    .bind(new_hash)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                let ended = sqlx::query(
                    "UPDATE sessions SET ended_at = $1, end_reason = 'password_changed' WHERE account_id = $2 AND id <> $3 AND ended_at IS NULL",
                )
                .bind(now)
                .bind(account_id)
                .bind(keep_session)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query("DELETE FROM action_codes WHERE account_id = $1 AND purpose = 'password_change'")
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                Self::insert_lock(&mut tx, lock).await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(ended)
            }

            async fn reset_totp(&self, account_id: &str, lock: &WithdrawalLock, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                Self::delete_totp(&mut tx, account_id).await?;
                sqlx::query(
                    "UPDATE pending_changes SET cancelled_at = $1 WHERE account_id = $2 AND kind = 'totp.disable' AND cancelled_at IS NULL AND applied_at IS NULL",
                )
                .bind(lock.created_at)
                .bind(account_id)
                .execute(&mut *tx)
                .await?;
                Self::drop_orphan_backup_codes(&mut tx, account_id).await?;
                Self::insert_lock(&mut tx, lock).await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn add_recovery_request(&self, r: &RecoveryRequest, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query(
                    "INSERT INTO recovery_requests (id, account_id, kind, reason, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&r.id)
                .bind(&r.account_id)
                .bind(&r.kind)
                .bind(&r.reason)
                .bind(&r.status)
                .bind(r.created_at)
                .execute(&mut *tx)
                .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        const API_KEY_COLUMNS: &str = "api_key, account_id, label, key_type, secret_enc, public_key, permissions, ip_allowlist, created_at, \
             created_ip, created_device, created_unusual, expires_at, last_used_at, last_used_ip, warned_7d_at, warned_1d_at, deleted_at";

        #[async_trait]
        impl ApiKeyStore for $store {
            async fn create_api_key(&self, k: &ApiKeyRecord, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query(
                    "INSERT INTO api_keys (api_key, account_id, label, key_type, secret_enc, public_key, permissions, ip_allowlist, \
                     created_at, created_ip, created_device, created_unusual, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&k.api_key)
                .bind(&k.account_id)
                .bind(&k.label)
                .bind(&k.key_type)
                .bind(&k.secret_enc)
                .bind(&k.public_key)
                .bind(&k.permissions)
                .bind(&k.ip_allowlist)
                .bind(k.created_at)
                .bind(&k.created_ip)
                .bind(&k.created_device)
                .bind(k.created_unusual)
                .bind(k.expires_at)
                .execute(&mut *tx)
                .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn api_key_auth(&self, api_key: &str) -> StoreResult<Option<ApiKeyAuth>> {
                let sql = format!(
                    "SELECT {API_KEY_COLUMNS}, (SELECT uid FROM accounts a WHERE a.id = k.account_id) AS uid, \
                     (SELECT frozen_at FROM accounts a WHERE a.id = k.account_id) AS frozen_at, \
                     (SELECT MAX(until) FROM withdrawal_locks w WHERE w.account_id = k.account_id) AS locked_until \
                     FROM api_keys k WHERE api_key = $1 AND deleted_at IS NULL"
                );
                let row = sqlx::query(&sql).bind(api_key).fetch_optional(&self.read).await?;
                let Some(row) = row else { return Ok(None) };
                let key = <ApiKeyRecord as sqlx::FromRow<'_, _>>::from_row(&row)?;
                let frozen: Option<Millis> = row.try_get("frozen_at")?;
                Ok(Some(ApiKeyAuth {
                    key,
                    uid: row.try_get("uid")?,
                    frozen: frozen.is_some(),
                    withdrawals_locked_until: row.try_get("locked_until")?,
                }))
            }

            async fn api_keys(&self, account_id: &str) -> StoreResult<Vec<ApiKeyRecord>> {
                let sql = format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE account_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, api_key"
                );
                Ok(sqlx::query_as(&sql).bind(account_id).fetch_all(&self.write).await?)
            }

            async fn update_api_key(&self, account_id: &str, api_key: &str, permissions: &str, allowlist: &str, expires_at: Option<Millis>, fx: &Effects) -> StoreResult<bool> {
                let mut tx = self.write.begin().await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET permissions = $1, ip_allowlist = $2, expires_at = $3 \
                     WHERE api_key = $4 AND account_id = $5 AND deleted_at IS NULL",
                )
                .bind(permissions)
                .bind(allowlist)
                .bind(expires_at)
                .bind(api_key)
                .bind(account_id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn delete_api_key(&self, account_id: &str, api_key: &str, now: Millis, fx: &Effects) -> StoreResult<bool> {
                let mut tx = self.write.begin().await?;
                let done = sqlx::query(
                    "UPDATE api_keys SET deleted_at = $1, secret_enc = NULL WHERE api_key = $2 AND account_id = $3 AND deleted_at IS NULL",
                )
                .bind(now)
                .bind(api_key)
                .bind(account_id)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn delete_all_api_keys(&self, account_id: &str, now: Millis, fx: &Effects) -> StoreResult<u64> {
                let mut tx = self.write.begin().await?;
                let n = sqlx::query("UPDATE api_keys SET deleted_at = $1, secret_enc = NULL WHERE account_id = $2 AND deleted_at IS NULL")
                    .bind(now)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(n)
            }

            async fn api_keys_used(&self, uses: &[(String, Millis, String)]) -> StoreResult<()> {
                if uses.is_empty() {
                    return Ok(());
                }
                let mut tx = self.write.begin().await?;
                for (key, at, ip) in uses {
                    sqlx::query(
                        "UPDATE api_keys SET last_used_at = $1, last_used_ip = $2 WHERE api_key = $3 AND (last_used_at IS NULL OR last_used_at < $4)",
                    )
                    .bind(at)
                    .bind(ip)
                    .bind(key)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn api_keys_to_warn(&self, which: &str, before: Millis, now: Millis) -> StoreResult<Vec<ApiKeyRecord>> {
                let column = if which == "1d" { "warned_1d_at" } else { "warned_7d_at" };
                let sql = format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE deleted_at IS NULL AND expires_at IS NOT NULL \
                     AND expires_at <= $1 AND expires_at > $2 AND {column} IS NULL ORDER BY expires_at LIMIT 200"
                );
                Ok(sqlx::query_as(&sql).bind(before).bind(now).fetch_all(&self.write).await?)
            }

            async fn api_key_warned(&self, api_key: &str, which: &str, now: Millis, fx: &Effects) -> StoreResult<()> {
                let column = if which == "1d" { "warned_1d_at" } else { "warned_7d_at" };
                let mut tx = self.write.begin().await?;
                sqlx::query(&format!("UPDATE api_keys SET {column} = $1 WHERE api_key = $2"))
                    .bind(now)
                    .bind(api_key)
                    .execute(&mut *tx)
                    .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn broadcast_invalidation(&self, what: &str) -> StoreResult<()> {
                if !$notify_sql.is_empty() {
                    sqlx::query($notify_sql).bind(what).execute(&self.write).await?;
                }
                Ok(())
            }
        }

        impl $store {
            async fn freeze_in(tx: &mut Tx<'_>, account_id: &str, now: Millis, fx: &Effects) -> StoreResult<FreezeOutcome> {
                let done = sqlx::query("UPDATE accounts SET frozen_at = $1 WHERE id = $2 AND frozen_at IS NULL")
                    .bind(now)
                    .bind(account_id)
                    .execute(&mut **tx)
                    .await?;
                if done.rows_affected() != 1 {
                    let row = sqlx::query("SELECT frozen_at FROM accounts WHERE id = $1").bind(account_id).fetch_one(&mut **tx).await?;
                    let since: Option<Millis> = row.try_get("frozen_at")?;
                    return Ok(FreezeOutcome::AlreadyFrozen { since: since.unwrap_or(now) });
                }
                let sessions_ended = sqlx::query(
                    "UPDATE sessions SET ended_at = $1, end_reason = 'account_frozen' WHERE account_id = $2 AND ended_at IS NULL",
                )
                .bind(now)
                .bind(account_id)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                Self::write_effects(tx, fx).await?;
                Ok(FreezeOutcome::Frozen { sessions_ended })
            }
        }

        #[async_trait]
        impl ProtectionStore for $store {
            async fn freeze_account(&self, account_id: &str, now: Millis, fx: &Effects) -> StoreResult<FreezeOutcome> {
                let mut tx = self.write.begin().await?;
                let outcome = Self::freeze_in(&mut tx, account_id, now, fx).await?;
                tx.commit().await?;
                Ok(outcome)
            }

            async fn freeze_link(&self, token_hash: &str) -> StoreResult<Option<FreezeLinkRow>> {
                Ok(sqlx::query_as("SELECT account_id, expires_at, used_at FROM freeze_links WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&self.write)
                    .await?)
            }

            async fn spend_freeze_link(&self, token_hash: &str, account_id: &str, now: Millis, fx: &Effects) -> StoreResult<Option<FreezeOutcome>> {
                let mut tx = self.write.begin().await?;
                let spent = sqlx::query(
                    "UPDATE freeze_links SET used_at = $1 WHERE token_hash = $2 AND account_id = $3 AND used_at IS NULL AND expires_at > $4",
                )
                .bind(now)
                .bind(token_hash)
                .bind(account_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if spent.rows_affected() != 1 {
                    return Ok(None);
                }
                let outcome = Self::freeze_in(&mut tx, account_id, now, fx).await?;
                tx.commit().await?;
                Ok(Some(outcome))
            }

            async fn device(&self, account_id: &str, device_id: &str) -> StoreResult<Option<Device>> {
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 AND account_id = $2 AND removed_at IS NULL");
                Ok(sqlx::query_as(&sql).bind(device_id).bind(account_id).fetch_optional(&self.write).await?)
            }

            async fn remove_device(&self, account_id: &str, device_id: &str, block: bool, now: Millis, fx: &Effects) -> StoreResult<Option<u64>> {
                let mut tx = self.write.begin().await?;
                let row = sqlx::query("UPDATE devices SET removed_at = $1, trusted_at = NULL WHERE id = $2 AND account_id = $3 AND removed_at IS NULL RETURNING fingerprint")
                    .bind(now)
                    .bind(device_id)
                    .bind(account_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let fingerprint: String = row.try_get("fingerprint")?;
                let ended = sqlx::query(
                    "UPDATE sessions SET ended_at = $1, end_reason = 'device_removed' WHERE device_id = $2 AND account_id = $3 AND ended_at IS NULL",
                )
                .bind(now)
                .bind(device_id)
                .bind(account_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if block {
                    sqlx::query("INSERT INTO blocked_fingerprints (account_id, fingerprint, created_at) VALUES ($1, $2, $3) ON CONFLICT (account_id, fingerprint) DO NOTHING")
                        .bind(account_id)
                        .bind(&fingerprint)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(Some(ended))
            }

            async fn fingerprint_blocked(&self, account_id: &str, fingerprint: &str) -> StoreResult<bool> {
                let row = sqlx::query("SELECT 1 AS one FROM blocked_fingerprints WHERE account_id = $1 AND fingerprint = $2")
                    .bind(account_id)
                    .bind(fingerprint)
                    .fetch_optional(&self.read)
                    .await?;
                Ok(row.is_some())
            }

            async fn has_devices(&self, account_id: &str) -> StoreResult<bool> {
                let row = sqlx::query("SELECT 1 AS one FROM devices WHERE account_id = $1 AND removed_at IS NULL LIMIT 1")
                    .bind(account_id)
                    .fetch_optional(&self.read)
                    .await?;
                Ok(row.is_some())
            }

            async fn end_other_sessions(&self, account_id: &str, keep: &str, now: Millis, fx: &Effects) -> StoreResult<u64> {
                let mut tx = self.write.begin().await?;
                let n = sqlx::query(
                    "UPDATE sessions SET ended_at = $1, end_reason = 'signed_out_elsewhere' WHERE account_id = $2 AND id <> $3 AND ended_at IS NULL",
                )
                .bind(now)
                .bind(account_id)
                .bind(keep)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(n)
            }

            async fn set_device_trusted(&self, account_id: &str, device_id: &str, trusted: bool, max: i64, now: Millis, fx: &Effects) -> StoreResult<Option<bool>> {
                let mut tx = self.write.begin().await?;
                if trusted {
                    // Serialise concurrent trust changes of one account on its row.
                    sqlx::query(concat!("SELECT id FROM accounts WHERE id = $1 ", $for_update)).bind(account_id).fetch_optional(&mut *tx).await?;
                    let row = sqlx::query("SELECT COUNT(*) AS n FROM devices WHERE account_id = $1 AND trusted_at IS NOT NULL AND removed_at IS NULL AND id <> $2")
                        .bind(account_id)
                        .bind(device_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    let n: i64 = row.try_get("n")?;
                    if n >= max {
                        return Ok(Some(false));
                    }
                }
                let done = sqlx::query("UPDATE devices SET trusted_at = $1 WHERE id = $2 AND account_id = $3 AND removed_at IS NULL")
                    .bind(trusted.then_some(now))
                    .bind(device_id)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Ok(None);
                }
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(Some(true))
            }

            async fn pending_session_account(&self, token_hash: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query(
                    "SELECT account_id FROM sessions WHERE confirm_token_hash = $1 AND confirmed_at IS NULL AND ended_at IS NULL",
                )
                .bind(token_hash)
                .fetch_optional(&self.write)
                .await?;
                Ok(match row {
                    Some(r) => Some(r.try_get("account_id")?),
                    None => None,
                })
            }

            async fn confirm_session(&self, token_hash: &str, now: Millis, fx: &Effects) -> StoreResult<bool> {
                let mut tx = self.write.begin().await?;
                let done = sqlx::query(
                    "UPDATE sessions SET confirmed_at = $1 WHERE confirm_token_hash = $2 AND confirmed_at IS NULL AND ended_at IS NULL",
                )
                .bind(now)
                .bind(token_hash)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn notifications(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Notification>> {
                Ok(sqlx::query_as(
                    "SELECT id, account_id, subject, body, created_at, read_at FROM notifications WHERE account_id = $1 ORDER BY created_at DESC, id LIMIT $2",
                )
                .bind(account_id)
                .bind(limit)
                .fetch_all(&self.read)
                .await?)
            }

            async fn mark_notifications_read(&self, account_id: &str, now: Millis) -> StoreResult<u64> {
                Ok(sqlx::query("UPDATE notifications SET read_at = $1 WHERE account_id = $2 AND read_at IS NULL")
                    .bind(now)
                    .bind(account_id)
                    .execute(&self.write)
                    .await?
                    .rows_affected())
            }

            async fn add_webhook_endpoint(&self, id: &str, url: &str, secret_enc: &str, now: Millis) -> StoreResult<()> {
                sqlx::query("INSERT INTO webhook_endpoints (id, url, secret_enc, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(id)
                    .bind(url)
                    .bind(secret_enc)
                    .bind(now)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn claim_webhooks(&self, now: Millis, lease_until: Millis, limit: i64) -> StoreResult<Vec<WebhookDelivery>> {
                let sql = format!(
                    "UPDATE webhook_deliveries SET lease_until = $1, attempts = attempts + 1 WHERE id IN (\
                       SELECT id FROM webhook_deliveries WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $2 \
                       AND (lease_until IS NULL OR lease_until <= $3) ORDER BY created_at, id LIMIT $4 {}) \
                     RETURNING id, endpoint_id, event, attempts",
                    $skip_locked
                );
                let rows = sqlx::query(&sql).bind(lease_until).bind(now).bind(now).bind(limit).fetch_all(&self.write).await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let endpoint_id: String = row.try_get("endpoint_id")?;
                    let ep = sqlx::query("SELECT url, secret_enc FROM webhook_endpoints WHERE id = $1").bind(&endpoint_id).fetch_one(&self.write).await?;
                    out.push(WebhookDelivery {
                        id: row.try_get("id")?,
                        url: ep.try_get("url")?,
                        secret_enc: ep.try_get("secret_enc")?,
                        endpoint_id,
                        event: row.try_get("event")?,
                        attempts: row.try_get("attempts")?,
                    });
                }
                Ok(out)
            }

            async fn webhook_delivered(&self, id: &str, status: i64, now: Millis) -> StoreResult<()> {
                sqlx::query("UPDATE webhook_deliveries SET delivered_at = $1, last_status = $2, lease_until = NULL, last_error = NULL WHERE id = $3")
                    .bind(now)
                    .bind(status)
                    .bind(id)
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn webhook_failed(&self, id: &str, status: Option<i64>, error: &str, retry_at: Millis, dead: bool, now: Millis) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE webhook_deliveries SET last_status = $1, last_error = $2, next_attempt_at = $3, lease_until = NULL, dead_at = $4 WHERE id = $5",
                )
                .bind(status)
                .bind(error)
                .bind(retry_at)
                .bind(if dead { Some(now) } else { None })
                .bind(id)
                .execute(&self.write)
                .await?;
                Ok(())
            }

            async fn mail_mutes(&self, account_id: &str) -> StoreResult<Vec<String>> {
                let rows = sqlx::query("SELECT kind FROM mail_mutes WHERE account_id = $1 ORDER BY kind")
                    .bind(account_id)
                    .fetch_all(&self.read)
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| r.try_get("kind"))
                    .collect::<Result<_, _>>()?)
            }

            async fn unmute_mail(&self, account_id: &str, kind: &str, fx: &Effects) -> StoreResult<()> {
                let mut tx = self.write.begin().await?;
                sqlx::query("DELETE FROM mail_mutes WHERE account_id = $1 AND kind = $2")
                    .bind(account_id)
                    .bind(kind)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE pending_changes SET cancelled_at = $1 WHERE account_id = $2 AND kind = 'mail.mute' AND target = $3 AND cancelled_at IS NULL AND applied_at IS NULL",
                )
                .bind(fx.audit.first().map_or(0, |e| e.at))
                .bind(account_id)
                .bind(kind)
                .execute(&mut *tx)
                .await?;
                Self::write_effects(&mut tx, fx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn webhook_log(&self, limit: i64) -> StoreResult<Vec<WebhookLogEntry>> {
                Ok(sqlx::query_as(
                    "SELECT id, endpoint_id, created_at, attempts, delivered_at, dead_at, last_status, last_error FROM webhook_deliveries \
                     ORDER BY created_at DESC, id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.read)
                .await?)
            }
        }
    };
}
