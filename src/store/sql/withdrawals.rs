//! The withdrawal guard: platform tokens, decisions, the release feed, the allowlist and
//! settings, per-key rules, transfers, deposits and cases.

use async_trait::async_trait;
use sqlx::Row as _;

use super::dialect::{Db, Tx, FOR_UPDATE};
use super::effects::write_effects;
use super::protection::freeze_in;
use crate::clock::Millis;
use crate::domain::api_key::{KeyAccess, Permission};
use crate::domain::withdrawal::{
    lookalike_key, AllowlistMatch, Amount, KeyCheck, KeyWithdrawRules, Situation, Via,
    WithdrawalState, KEY_LIMIT_WINDOW,
};
use crate::store::constraint::{self, Constraint};
use crate::store::withdrawals::{
    AllowlistEntry, CaseRecord, Decide, DecideOutcome, DepositRecord, FeedEntry, NewWithdrawal,
    PlatformToken, ReleaseOutcome, SenderState, TransferRecord, WithdrawalRecord,
    WithdrawalSettings, WithdrawalStore,
};
use crate::store::{Effects, FreezeOutcome, SqlStore, StoreError, StoreResult};

const WITHDRAWAL_COLUMNS: &str = "id, request_id, request_hash, account_id, asset, network, \
     amount, address, memo, via, api_key, state, answer, reasons, release_at, cancel_reason, \
     txid, created_at, released_at, broadcast_at, confirmed_at, cancelled_at";
const ALLOWLIST_COLUMNS: &str =
    "id, account_id, asset, network, address, memo, label, created_at, usable_at";
const TRANSFER_COLUMNS: &str = "id, request_id, request_hash, from_account_id, to_account_id, \
     asset, amount, state, answer, created_at";
const DEPOSIT_COLUMNS: &str = "id, request_id, request_hash, account_id, asset, network, amount, \
     address, txid, created_at";

fn corrupt(id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("withdrawal {id}: {e}"))
}

fn withdrawal_from(row: &<Db as sqlx::Database>::Row) -> StoreResult<WithdrawalRecord> {
    let id: String = row.try_get("id")?;
    let via: String = row.try_get("via")?;
    let state: String = row.try_get("state")?;
    let reasons: String = row.try_get("reasons")?;
    Ok(WithdrawalRecord {
        via: Via::parse(&via).map_err(|e| corrupt(&id, e))?,
        state: WithdrawalState::parse(&state).map_err(|e| corrupt(&id, e))?,
        reasons: serde_json::from_str(&reasons).map_err(|e| corrupt(&id, e))?,
        request_id: row.try_get("request_id")?,
        request_hash: row.try_get("request_hash")?,
        account_id: row.try_get("account_id")?,
        asset: row.try_get("asset")?,
        network: row.try_get("network")?,
        amount: row.try_get("amount")?,
        address: row.try_get("address")?,
        memo: row.try_get("memo")?,
        api_key: row.try_get("api_key")?,
        answer: row.try_get("answer")?,
        release_at: row.try_get("release_at")?,
        cancel_reason: row.try_get("cancel_reason")?,
        txid: row.try_get("txid")?,
        created_at: row.try_get("created_at")?,
        released_at: row.try_get("released_at")?,
        broadcast_at: row.try_get("broadcast_at")?,
        confirmed_at: row.try_get("confirmed_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        id,
    })
}

async fn withdrawal_in(tx: &mut Tx<'_>, id: &str) -> StoreResult<Option<WithdrawalRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {WITHDRAWAL_COLUMNS} FROM withdrawals WHERE id = $1 {FOR_UPDATE}"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(withdrawal_from).transpose()
}

/// Appends to the platform's feed. The head row is updated first, which locks it until
/// commit: entries commit in the order of their numbers, so a reader's cursor never passes
/// an entry that is still to commit.
async fn append_feed(
    tx: &mut Tx<'_>,
    withdrawal_id: &str,
    event: &str,
    at: Millis,
) -> StoreResult<()> {
    let seq: i64 =
        sqlx::query("UPDATE withdrawal_feed_head SET seq = seq + 1 WHERE id = 1 RETURNING seq")
            .fetch_one(&mut **tx)
            .await?
            .try_get("seq")?;
    sqlx::query(
        "INSERT INTO withdrawal_feed (seq, withdrawal_id, event, at) VALUES ($1, $2, $3, $4)",
    )
    .bind(seq)
    .bind(withdrawal_id)
    .bind(event)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records a destination the account sent to or allowlisted.
async fn remember_address(
    tx: &mut Tx<'_>,
    account_id: &str,
    address: &str,
    at: Millis,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO known_addresses (account_id, address, lookalike_key, first_seen_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (account_id, address) DO NOTHING",
    )
    .bind(account_id)
    .bind(address)
    .bind(lookalike_key(address))
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn locked_until(
    tx: &mut Tx<'_>,
    account_id: &str,
    now: Millis,
) -> StoreResult<Option<Millis>> {
    Ok(sqlx::query(
        "SELECT MAX(until) AS until FROM withdrawal_locks WHERE account_id = $1 AND until > $2",
    )
    .bind(account_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("until")?)
}

async fn settings_in(tx: &mut Tx<'_>, account_id: &str) -> StoreResult<WithdrawalSettings> {
    let row = sqlx::query(
        "SELECT allowlist_enabled, delay_days FROM withdrawal_settings WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        Some(r) => WithdrawalSettings {
            allowlist_enabled: r.try_get("allowlist_enabled")?,
            delay_days: r.try_get("delay_days")?,
        },
        None => WithdrawalSettings::default(),
    })
}

/// Writes the owner's settings (used by strengthening and by applied weakening).
pub(super) async fn put_settings(
    tx: &mut Tx<'_>,
    account_id: &str,
    s: WithdrawalSettings,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO withdrawal_settings (account_id, allowlist_enabled, delay_days, updated_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (account_id) DO UPDATE
         SET allowlist_enabled = excluded.allowlist_enabled, delay_days = excluded.delay_days,
             updated_at = excluded.updated_at",
    )
    .bind(account_id)
    .bind(s.allowlist_enabled)
    .bind(s.delay_days)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies one field of the settings inside a weakening change's transaction.
pub(super) async fn update_settings(
    tx: &mut Tx<'_>,
    account_id: &str,
    now: Millis,
    change: impl FnOnce(&mut WithdrawalSettings),
) -> StoreResult<()> {
    let mut s = settings_in(tx, account_id).await?;
    change(&mut s);
    put_settings(tx, account_id, s, now).await
}

/// What the key of a key-made withdrawal may do, read in the decision's transaction.
async fn key_check(tx: &mut Tx<'_>, w: &NewWithdrawal) -> StoreResult<KeyCheck> {
    let Some(api_key) = w.api_key.as_deref() else {
        return Ok(KeyCheck::Unusable("no key was named"));
    };
    let row = sqlx::query(
        "SELECT account_id, permissions, ip_allowlist, expires_at, deleted_at, suspended_at
         FROM api_keys WHERE api_key = $1",
    )
    .bind(api_key)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(KeyCheck::Unusable("it is not a key of this account"));
    };
    let owner: String = row.try_get("account_id")?;
    let expires_at: Option<Millis> = row.try_get("expires_at")?;
    let deleted_at: Option<Millis> = row.try_get("deleted_at")?;
    if owner != w.account_id {
        return Ok(KeyCheck::Unusable("it is not a key of this account"));
    }
    if deleted_at.is_some() {
        return Ok(KeyCheck::Unusable("it was deleted"));
    }
    if row.try_get::<Option<Millis>, _>("suspended_at")?.is_some() {
        return Ok(KeyCheck::Unusable("its owner suspended it"));
    }
    if expires_at.is_some_and(|t| t <= w.created_at) {
        return Ok(KeyCheck::Unusable("it has expired"));
    }
    match KeyAccess::decode(row.try_get("permissions")?, row.try_get("ip_allowlist")?) {
        KeyAccess::Unreadable { .. } => {
            return Ok(KeyCheck::Unusable("its settings cannot be read"))
        }
        KeyAccess::Readable { permissions, .. } if !permissions.contains(Permission::Withdraw) => {
            return Ok(KeyCheck::MissingPermission)
        }
        KeyAccess::Readable { .. } => {}
    }
    let rules = match sqlx::query("SELECT rules FROM key_withdraw_rules WHERE api_key = $1")
        .bind(api_key)
        .fetch_optional(&mut **tx)
        .await?
    {
        Some(r) => serde_json::from_str(&r.try_get::<String, _>("rules")?)
            .map_err(|e| StoreError::Corrupt(format!("key rules {api_key}: {e}")))?,
        None => KeyWithdrawRules::default(),
    };
    let (mut count, mut total) = (0, None::<Amount>);
    if rules.daily_count.is_some() || !rules.daily_amounts.is_empty() {
        let rows = sqlx::query(
            "SELECT asset, amount FROM withdrawals
             WHERE api_key = $1 AND created_at > $2 AND state NOT IN ('refused', 'cancelled')",
        )
        .bind(api_key)
        .bind(w.created_at - KEY_LIMIT_WINDOW)
        .fetch_all(&mut **tx)
        .await?;
        for r in rows {
            count += 1;
            let asset: String = r.try_get("asset")?;
            if asset == w.asset {
                let raw: String = r.try_get("amount")?;
                let a = Amount::stored(&raw, w.precision)
                    .ok_or_else(|| StoreError::Corrupt(format!("withdrawal amount {raw:?}")))?;
                total = Some(match total {
                    Some(t) => t
                        .checked_add(a)
                        .ok_or_else(|| StoreError::Corrupt("amount overflow".into()))?,
                    None => a,
                });
            }
        }
    }
    Ok(KeyCheck::Usable {
        rules,
        count_24h: count,
        amount_24h: total,
    })
}

async fn situation(tx: &mut Tx<'_>, w: &NewWithdrawal) -> StoreResult<Situation> {
    let now = w.created_at;
    let account = sqlx::query(&format!(
        "SELECT frozen_at, recovery_required FROM accounts WHERE id = $1 {FOR_UPDATE}"
    ))
    .bind(&w.account_id)
    .fetch_one(&mut **tx)
    .await?;
    let frozen_at: Option<Millis> = account.try_get("frozen_at")?;
    let settings = settings_in(tx, &w.account_id).await?;
    let allowlisted = sqlx::query(
        "SELECT id, label, usable_at, memo FROM withdrawal_addresses
         WHERE account_id = $1 AND asset = $2 AND network = $3 AND address = $4
           AND removed_at IS NULL",
    )
    .bind(&w.account_id)
    .bind(&w.asset)
    .bind(&w.network)
    .bind(&w.address)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .find(|r| r.try_get::<Option<String>, _>("memo").ok().flatten() == w.memo)
    .map(|r| -> StoreResult<AllowlistMatch> {
        Ok(AllowlistMatch {
            id: r.try_get("id")?,
            label: r.try_get("label")?,
            usable_at: r.try_get("usable_at")?,
        })
    })
    .transpose()?;
    let known =
        sqlx::query("SELECT 1 AS one FROM known_addresses WHERE account_id = $1 AND address = $2")
            .bind(&w.account_id)
            .bind(&w.address)
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
    let imitates = if known {
        None
    } else {
        sqlx::query(
            "SELECT address FROM known_addresses
             WHERE account_id = $1 AND lookalike_key = $2 AND address <> $3
             ORDER BY first_seen_at LIMIT 1",
        )
        .bind(&w.account_id)
        .bind(&w.lookalike_key)
        .bind(&w.address)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get("address"))
        .transpose()?
    };
    let key = match w.via {
        Via::ApiKey => Some(key_check(tx, w).await?),
        Via::Session => None,
    };
    Ok(Situation {
        now,
        frozen: frozen_at.is_some(),
        recovery_required: account.try_get("recovery_required")?,
        locked_until: locked_until(tx, &w.account_id, now).await?,
        allowlist_on: settings.allowlist_enabled,
        allowlisted,
        delay_days: settings.delay_days,
        imitates,
        key,
        amount: w.amount,
        precision: w.precision,
        asset: w.asset.clone(),
    })
}

#[async_trait]
impl WithdrawalStore for SqlStore<Db> {
    async fn add_platform_token(&self, t: &PlatformToken, fx: &Effects) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "INSERT INTO platform_tokens (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.token_hash)
        .bind(t.created_at)
        .execute(&mut *tx)
        .await;
        if let Err(e) = done {
            return Err(match constraint::violated(&e) {
                Some(Constraint::PlatformTokenName) => StoreError::Conflict("platform_token_name"),
                _ => e.into(),
            });
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn platform_tokens(&self) -> StoreResult<Vec<PlatformToken>> {
        Ok(sqlx::query_as(
            "SELECT id, name, token_hash, created_at, revoked_at, last_used_at
             FROM platform_tokens ORDER BY created_at, name",
        )
        .fetch_all(&self.read)
        .await?)
    }

    async fn revoke_platform_token(
        &self,
        name: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE platform_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn platform_token(&self, token_hash: &str) -> StoreResult<Option<PlatformToken>> {
        Ok(sqlx::query_as(
            "SELECT id, name, token_hash, created_at, revoked_at, last_used_at
             FROM platform_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn withdrawal_by_request(
        &self,
        request_id: &str,
    ) -> StoreResult<Option<WithdrawalRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {WITHDRAWAL_COLUMNS} FROM withdrawals WHERE request_id = $1"
        ))
        .bind(request_id)
        .fetch_optional(&self.write)
        .await?;
        row.as_ref().map(withdrawal_from).transpose()
    }

    async fn decide_withdrawal(
        &self,
        w: &NewWithdrawal,
        decide: &Decide<'_>,
    ) -> StoreResult<DecideOutcome> {
        let mut tx = self.write.begin().await?;
        let existing = sqlx::query(&format!(
            "SELECT {WITHDRAWAL_COLUMNS} FROM withdrawals WHERE request_id = $1"
        ))
        .bind(&w.request_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            return Ok(DecideOutcome::Existing(withdrawal_from(&row)?));
        }
        let s = situation(&mut tx, w).await?;
        let decided = decide(&s);
        let d = &decided.decision;
        let reasons =
            serde_json::to_string(&d.reasons).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let released = d.state == WithdrawalState::Released;
        let inserted = sqlx::query(
            "INSERT INTO withdrawals (id, request_id, request_hash, account_id, asset, network, amount,
                 address, memo, via, api_key, state, answer, reasons, release_at, cancel_token_hash,
                 created_at, released_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(&w.id)
        .bind(&w.request_id)
        .bind(&w.request_hash)
        .bind(&w.account_id)
        .bind(&w.asset)
        .bind(&w.network)
        .bind(w.amount.to_string())
        .bind(&w.address)
        .bind(&w.memo)
        .bind(w.via.as_str())
        .bind(&w.api_key)
        .bind(d.state.as_str())
        .bind(&decided.answer)
        .bind(&reasons)
        .bind(d.release_at)
        .bind((d.state == WithdrawalState::Held).then_some(&w.cancel_token_hash))
        .bind(w.created_at)
        .bind(released.then_some(w.created_at))
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            if constraint::violated(&e) == Some(Constraint::WithdrawalRequest) {
                drop(tx);
                // Another instance stored the same request first: its answer stands.
                return match self.withdrawal_by_request(&w.request_id).await? {
                    Some(r) => Ok(DecideOutcome::Existing(r)),
                    None => Err(e.into()),
                };
            }
            return Err(e.into());
        }
        if released {
            remember_address(&mut tx, &w.account_id, &w.address, w.created_at).await?;
            append_feed(&mut tx, &w.id, "released", w.created_at).await?;
        }
        write_effects(&mut tx, &decided.fx).await?;
        let record = withdrawal_in(&mut tx, &w.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("withdrawal vanished".into()))?;
        tx.commit().await?;
        Ok(DecideOutcome::New(record))
    }

    async fn withdrawal(&self, id: &str) -> StoreResult<Option<WithdrawalRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {WITHDRAWAL_COLUMNS} FROM withdrawals WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.write)
        .await?;
        row.as_ref().map(withdrawal_from).transpose()
    }

    async fn withdrawal_by_cancel_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<WithdrawalRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {WITHDRAWAL_COLUMNS} FROM withdrawals WHERE cancel_token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.write)
        .await?;
        row.as_ref().map(withdrawal_from).transpose()
    }

    async fn account_withdrawals(
        &self,
        account_id: &str,
        before: Option<Millis>,
        limit: i64,
    ) -> StoreResult<Vec<WithdrawalRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {WITHDRAWAL_COLUMNS} FROM withdrawals
             WHERE account_id = $1 AND created_at < $2
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(account_id)
        .bind(before.unwrap_or(Millis::MAX))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(withdrawal_from).collect()
    }

    async fn withdrawal_feed(&self, after: i64, limit: i64) -> StoreResult<Vec<FeedEntry>> {
        let cols = WITHDRAWAL_COLUMNS
            .split(", ")
            .map(|c| format!("w.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT f.seq, f.event, f.at, {cols}
             FROM withdrawal_feed f JOIN withdrawals w ON w.id = f.withdrawal_id
             WHERE f.seq > $1 ORDER BY f.seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FeedEntry {
                    seq: r.try_get("seq")?,
                    event: r.try_get("event")?,
                    at: r.try_get("at")?,
                    withdrawal: withdrawal_from(r)?,
                })
            })
            .collect()
    }

    async fn mark_broadcast(
        &self,
        id: &str,
        txid: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Result<WithdrawalRecord, Option<WithdrawalState>>> {
        let mut tx = self.write.begin().await?;
        let Some(w) = withdrawal_in(&mut tx, id).await? else {
            return Ok(Err(None));
        };
        if w.state == WithdrawalState::Broadcast && w.txid.as_deref() == Some(txid) {
            return Ok(Ok(w)); // the platform retried
        }
        if w.state != WithdrawalState::Released {
            return Ok(Err(Some(w.state)));
        }
        sqlx::query("UPDATE withdrawals SET state = 'broadcast', txid = $1, broadcast_at = $2 WHERE id = $3 AND state = 'released'")
            .bind(txid)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_effects(&mut tx, fx).await?;
        let w = withdrawal_in(&mut tx, id)
            .await?
            .ok_or_else(|| corrupt(id, "vanished"))?;
        tx.commit().await?;
        Ok(Ok(w))
    }

    async fn mark_confirmed(
        &self,
        id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Result<WithdrawalRecord, Option<WithdrawalState>>> {
        let mut tx = self.write.begin().await?;
        let Some(w) = withdrawal_in(&mut tx, id).await? else {
            return Ok(Err(None));
        };
        if w.state == WithdrawalState::Confirmed {
            return Ok(Ok(w));
        }
        if w.state != WithdrawalState::Broadcast {
            return Ok(Err(Some(w.state)));
        }
        sqlx::query("UPDATE withdrawals SET state = 'confirmed', confirmed_at = $1 WHERE id = $2 AND state = 'broadcast'")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_effects(&mut tx, fx).await?;
        let w = withdrawal_in(&mut tx, id)
            .await?
            .ok_or_else(|| corrupt(id, "vanished"))?;
        tx.commit().await?;
        Ok(Ok(w))
    }

    async fn cancel_withdrawal(
        &self,
        id: &str,
        reason: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE withdrawals SET state = 'cancelled', cancel_reason = $1, cancelled_at = $2,
                 cancel_token_hash = NULL
             WHERE id = $3 AND state = 'held'",
        )
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn due_withdrawals(&self, now: Millis, limit: i64) -> StoreResult<Vec<WithdrawalRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {WITHDRAWAL_COLUMNS} FROM withdrawals
             WHERE state = 'held' AND release_at <= $1
             ORDER BY release_at LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.write)
        .await?;
        rows.iter().map(withdrawal_from).collect()
    }

    async fn release_withdrawal(
        &self,
        id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<ReleaseOutcome> {
        let mut tx = self.write.begin().await?;
        let Some(w) = withdrawal_in(&mut tx, id).await? else {
            return Ok(ReleaseOutcome::NotHeld);
        };
        if w.state != WithdrawalState::Held || w.release_at.is_none_or(|t| t > now) {
            return Ok(ReleaseOutcome::NotHeld);
        }
        let frozen: Option<Millis> = sqlx::query(&format!(
            "SELECT frozen_at FROM accounts WHERE id = $1 {FOR_UPDATE}"
        ))
        .bind(&w.account_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("frozen_at")?;
        if frozen.is_some() {
            return Ok(ReleaseOutcome::NotHeld); // the freeze cancels it
        }
        if let Some(until) = locked_until(&mut tx, &w.account_id, now).await? {
            sqlx::query("UPDATE withdrawals SET release_at = $1 WHERE id = $2 AND state = 'held'")
                .bind(until)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(ReleaseOutcome::HeldUntil(until));
        }
        let done = sqlx::query(
            "UPDATE withdrawals SET state = 'released', released_at = $1, cancel_token_hash = NULL
             WHERE id = $2 AND state = 'held'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(ReleaseOutcome::NotHeld);
        }
        remember_address(&mut tx, &w.account_id, &w.address, now).await?;
        append_feed(&mut tx, id, "released", now).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(ReleaseOutcome::Released)
    }

    async fn withdrawal_settings(&self, account_id: &str) -> StoreResult<WithdrawalSettings> {
        let row = sqlx::query(
            "SELECT allowlist_enabled, delay_days FROM withdrawal_settings WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_optional(&self.write)
        .await?;
        Ok(match row {
            Some(r) => WithdrawalSettings {
                allowlist_enabled: r.try_get("allowlist_enabled")?,
                delay_days: r.try_get("delay_days")?,
            },
            None => WithdrawalSettings::default(),
        })
    }

    async fn set_withdrawal_settings(
        &self,
        account_id: &str,
        settings: WithdrawalSettings,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        put_settings(&mut tx, account_id, settings, now).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn allowlist(&self, account_id: &str) -> StoreResult<Vec<AllowlistEntry>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ALLOWLIST_COLUMNS} FROM withdrawal_addresses
             WHERE account_id = $1 AND removed_at IS NULL ORDER BY created_at, id"
        ))
        .bind(account_id)
        .fetch_all(&self.read)
        .await?)
    }

    async fn add_allowlist_address(
        &self,
        e: &AllowlistEntry,
        _key: &str,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let taken = sqlx::query(
            "SELECT memo FROM withdrawal_addresses
             WHERE account_id = $1 AND asset = $2 AND network = $3 AND address = $4 AND removed_at IS NULL",
        )
        .bind(&e.account_id)
        .bind(&e.asset)
        .bind(&e.network)
        .bind(&e.address)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .any(|r| r.try_get::<Option<String>, _>("memo").ok().flatten() == e.memo);
        if taken {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO withdrawal_addresses (id, account_id, asset, network, address, memo, label,
                 created_at, usable_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&e.id)
        .bind(&e.account_id)
        .bind(&e.asset)
        .bind(&e.network)
        .bind(&e.address)
        .bind(&e.memo)
        .bind(&e.label)
        .bind(e.created_at)
        .bind(e.usable_at)
        .execute(&mut *tx)
        .await?;
        remember_address(&mut tx, &e.account_id, &e.address, e.created_at).await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_allowlist_address(
        &self,
        account_id: &str,
        id: &str,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<Option<AllowlistEntry>> {
        let mut tx = self.write.begin().await?;
        let entry: Option<AllowlistEntry> = sqlx::query_as(&format!(
            "SELECT {ALLOWLIST_COLUMNS} FROM withdrawal_addresses
             WHERE id = $1 AND account_id = $2 AND removed_at IS NULL"
        ))
        .bind(id)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(entry) = entry else { return Ok(None) };
        sqlx::query("UPDATE withdrawal_addresses SET removed_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(Some(entry))
    }

    async fn key_withdraw_rules(&self, api_key: &str) -> StoreResult<Option<KeyWithdrawRules>> {
        let row = sqlx::query("SELECT rules FROM key_withdraw_rules WHERE api_key = $1")
            .bind(api_key)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            serde_json::from_str(&r.try_get::<String, _>("rules")?)
                .map_err(|e| StoreError::Corrupt(format!("key rules {api_key}: {e}")))
        })
        .transpose()
    }

    async fn set_key_withdraw_rules(
        &self,
        account_id: &str,
        api_key: &str,
        rules: Option<&KeyWithdrawRules>,
        now: Millis,
        fx: &Effects,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let mine = sqlx::query("SELECT 1 AS one FROM api_keys WHERE api_key = $1 AND account_id = $2 AND deleted_at IS NULL")
            .bind(api_key)
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !mine {
            return Ok(false);
        }
        match rules {
            Some(rules) => {
                let json =
                    serde_json::to_string(rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO key_withdraw_rules (api_key, rules, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (api_key) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at",
                )
                .bind(api_key)
                .bind(json)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM key_withdraw_rules WHERE api_key = $1")
                    .bind(api_key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn transfer_by_request(&self, request_id: &str) -> StoreResult<Option<TransferRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE request_id = $1"
        ))
        .bind(request_id)
        .fetch_optional(&self.write)
        .await?)
    }

    async fn record_transfer(
        &self,
        t: &TransferRecord,
        decide: &(dyn Fn(SenderState) -> (String, String, Effects) + Send + Sync),
    ) -> StoreResult<Option<TransferRecord>> {
        let mut tx = self.write.begin().await?;
        let sender = sqlx::query(&format!(
            "SELECT frozen_at, recovery_required FROM accounts WHERE id = $1 {FOR_UPDATE}"
        ))
        .bind(&t.from_account_id)
        .fetch_one(&mut *tx)
        .await?;
        let state = SenderState {
            frozen: sender.try_get::<Option<Millis>, _>("frozen_at")?.is_some(),
            recovery_required: sender.try_get("recovery_required")?,
            locked_until: locked_until(&mut tx, &t.from_account_id, t.created_at).await?,
        };
        let (decided, answer, fx) = decide(state);
        let done = sqlx::query(
            "INSERT INTO transfers (id, request_id, request_hash, from_account_id, to_account_id, asset,
                 amount, state, answer, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&t.id)
        .bind(&t.request_id)
        .bind(&t.request_hash)
        .bind(&t.from_account_id)
        .bind(&t.to_account_id)
        .bind(&t.asset)
        .bind(&t.amount)
        .bind(&decided)
        .bind(&answer)
        .bind(t.created_at)
        .execute(&mut *tx)
        .await;
        if let Err(e) = done {
            if constraint::violated(&e) == Some(Constraint::TransferRequest) {
                return Ok(None);
            }
            return Err(e.into());
        }
        write_effects(&mut tx, &fx).await?;
        tx.commit().await?;
        Ok(Some(TransferRecord {
            state: decided,
            answer,
            ..t.clone()
        }))
    }

    async fn deposit_by_request(&self, request_id: &str) -> StoreResult<Option<DepositRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {DEPOSIT_COLUMNS} FROM deposits WHERE request_id = $1"
        ))
        .bind(request_id)
        .fetch_optional(&self.write)
        .await?)
    }

    async fn record_deposit(&self, d: &DepositRecord, fx: &Effects) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "INSERT INTO deposits (id, request_id, request_hash, account_id, asset, network, amount,
                 address, txid, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&d.id)
        .bind(&d.request_id)
        .bind(&d.request_hash)
        .bind(&d.account_id)
        .bind(&d.asset)
        .bind(&d.network)
        .bind(&d.amount)
        .bind(&d.address)
        .bind(&d.txid)
        .bind(d.created_at)
        .execute(&mut *tx)
        .await;
        if let Err(e) = done {
            if constraint::violated(&e) == Some(Constraint::DepositRequest) {
                return Ok(false);
            }
            return Err(e.into());
        }
        write_effects(&mut tx, fx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn account_transfers(
        &self,
        account_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<TransferRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers
             WHERE from_account_id = $1 OR to_account_id = $2
             ORDER BY created_at DESC LIMIT $3"
        ))
        .bind(account_id)
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    async fn account_deposits(
        &self,
        account_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<DepositRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {DEPOSIT_COLUMNS} FROM deposits WHERE account_id = $1 ORDER BY created_at DESC LIMIT $2"
        ))
        .bind(account_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    async fn transfers_out_of(
        &self,
        account_ids: &[String],
        since: Millis,
        limit: i64,
    ) -> StoreResult<Vec<TransferRecord>> {
        if account_ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = (0..account_ids.len())
            .map(|i| format!("${}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers
             WHERE state = 'completed' AND created_at >= $1 AND from_account_id IN ({list})
             ORDER BY created_at, id LIMIT $2"
        );
        let mut q = sqlx::query_as(&sql).bind(since).bind(limit);
        for id in account_ids {
            q = q.bind(id);
        }
        Ok(q.fetch_all(&self.read).await?)
    }

    async fn freeze_with_case(
        &self,
        case: &CaseRecord,
        fx: &Effects,
    ) -> StoreResult<FreezeOutcome> {
        let mut tx = self.write.begin().await?;
        let outcome = freeze_in(&mut tx, &case.account_id, case.created_at, fx).await?;
        sqlx::query(
            "INSERT INTO cases (id, account_id, source_account_id, reason, operator, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&case.id)
        .bind(&case.account_id)
        .bind(&case.source_account_id)
        .bind(&case.reason)
        .bind(&case.operator)
        .bind(case.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn cases(&self, account_id: &str) -> StoreResult<Vec<CaseRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, account_id, source_account_id, reason, operator, created_at
             FROM cases WHERE account_id = $1 OR source_account_id = $2 ORDER BY created_at DESC",
        )
        .bind(account_id)
        .bind(account_id)
        .fetch_all(&self.read)
        .await?)
    }
}

/// Cancels the account's held withdrawals and recalls the released ones not yet broadcast
/// (the platform reads the recall from its feed), inside a freeze's (or "Secure my
/// account"'s) transaction, giving `reason`. Returns `(cancelled, recalled)` ids.
pub(super) async fn cancel_all_pending(
    tx: &mut Tx<'_>,
    account_id: &str,
    reason: &str,
    now: Millis,
) -> StoreResult<(Vec<String>, Vec<String>)> {
    let rows = sqlx::query(&format!(
        "SELECT id, state FROM withdrawals
         WHERE account_id = $1 AND state IN ('held', 'released') {FOR_UPDATE}"
    ))
    .bind(account_id)
    .fetch_all(&mut **tx)
    .await?;
    let (mut cancelled, mut recalled) = (Vec::new(), Vec::new());
    for r in rows {
        let id: String = r.try_get("id")?;
        let state: String = r.try_get("state")?;
        sqlx::query(
            "UPDATE withdrawals SET state = 'cancelled', cancel_reason = $3,
                 cancelled_at = $1, cancel_token_hash = NULL
             WHERE id = $2 AND state IN ('held', 'released')",
        )
        .bind(now)
        .bind(&id)
        .bind(reason)
        .execute(&mut **tx)
        .await?;
        if state == WithdrawalState::Released.as_str() {
            append_feed(tx, &id, "recalled", now).await?;
            recalled.push(id);
        } else {
            cancelled.push(id);
        }
    }
    Ok((cancelled, recalled))
}
