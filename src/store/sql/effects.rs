//! The effects writer: a change's audit events (extending the hash chain), inbox entries,
//! webhook deliveries, freeze links and outbox mails, inside the change's transaction.

use sqlx::Row as _;

use super::dialect::{Tx, FOR_UPDATE};
use crate::domain::audit::chain_hash;
use crate::domain::mail_kind::MailKind;
use crate::store::{Effects, StoreResult};

/// Writes a change's audit events (extending the hash chain) and queues its mails,
/// inside the change's transaction.
pub(super) async fn write_effects(tx: &mut Tx<'_>, fx: &Effects) -> StoreResult<()> {
    if !fx.audit.is_empty() {
        let head = sqlx::query(&format!(
            "SELECT seq, hash FROM audit_head WHERE id = 1 {FOR_UPDATE}"
        ))
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
                "INSERT INTO audit_events (seq, at, account_id, actor, action, ip, device,
                     detail, prev_hash, hash)
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
            sqlx::query(
                "INSERT INTO freeze_links (token_hash, account_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&link.token_hash)
            .bind(&link.account_id)
            .bind(m.created_at)
            .bind(link.expires_at)
            .execute(&mut **tx)
            .await?;
        }
        if let (true, Some(account_id)) = (m.inbox, &m.account_id) {
            sqlx::query(
                "INSERT INTO notifications (id, account_id, subject, body, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&m.id)
            .bind(account_id)
            .bind(&m.subject)
            .bind(&m.event_text)
            .bind(m.created_at)
            .execute(&mut **tx)
            .await?;
            if endpoints.is_none() {
                let rows =
                    sqlx::query("SELECT id FROM webhook_endpoints WHERE disabled_at IS NULL")
                        .fetch_all(&mut **tx)
                        .await?;
                endpoints = Some(
                    rows.iter()
                        .map(|r| r.try_get("id"))
                        .collect::<Result<_, _>>()?,
                );
            }
            let event = serde_json::json!({
                "id": m.id,
                "account_id": account_id,
                "subject": m.subject,
                "body": m.event_text,
                "created_at": m.created_at,
            })
            .to_string();
            for endpoint in endpoints.iter().flatten() {
                sqlx::query(
                    "INSERT INTO webhook_deliveries (id, endpoint_id, event, created_at,
                         next_attempt_at)
                     VALUES ($1, $2, $3, $4, $5)",
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
            "INSERT INTO outbox (id, account_id, to_addr, subject, body_text, created_at,
                 attempts, next_attempt_at)
             SELECT $1, $2, $3, $4, $5, $6, 0, $7
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
        .bind(m.kind.as_str())
        .execute(&mut **tx)
        .await?;
        // For 48 hours after an email change the old address gets every security notice
        // too (never mails that carry a code), so a thief who changed it is still seen.
        if let (true, MailKind::Security, Some(account_id)) = (m.inbox, m.kind, &m.account_id) {
            sqlx::query(
                "INSERT INTO outbox (id, account_id, to_addr, subject, body_text, created_at,
                     attempts, next_attempt_at)
                 SELECT $1, id, previous_email, $2, $3, $4, 0, $4
                 FROM accounts
                 WHERE id = $5 AND previous_email IS NOT NULL AND previous_email_until > $4
                   AND previous_email <> $6",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&m.subject)
            .bind(&m.body_text)
            .bind(m.created_at)
            .bind(account_id)
            .bind(&m.to)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
