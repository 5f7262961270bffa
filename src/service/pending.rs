//! Delayed weakening: turning a protection off takes effect 48 hours after it is asked
//! for, announced by mail with a one-click cancel link; the timed job applies due changes.

use std::sync::Arc;

use serde_json::json;

use super::notices::Notices;
use super::step_up::StepUp;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, SharedClock, HOUR};
use crate::domain::change::Weakening;
use crate::domain::secret::{random_token, token_hash};
use crate::domain::step_up::SensitiveAction;
use crate::mail::Composer;
use crate::store::{Effects, PendingChange, SessionAuth, SharedStore};

/// Weakening a protection takes effect this long after it is asked for.
pub const WEAKENING_DELAY: Millis = 48 * HOUR;

/// Pending (weakening) changes: scheduling, cancelling, applying.
pub struct PendingChanges {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) composer: Composer,
    pub(crate) notices: Arc<Notices>,
    pub(crate) step_up: Arc<StepUp>,
}

impl Clocked for PendingChanges {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl PendingChanges {
    /// Schedules a weakening change 48 h out, announced by mail with a cancel link.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn schedule_weakening(
        &self,
        auth: &SessionAuth,
        weakening: Weakening,
        what: &str,
        client: &Client,
    ) -> ServiceResult<PendingChange> {
        self.schedule_weakening_after(auth, weakening, what, WEAKENING_DELAY, client)
            .await
    }

    /// Schedules a weakening change `delay` out (at least 48 h: the withdrawal settings
    /// wait out the current withdraw delay when it is longer).
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn schedule_weakening_after(
        &self,
        auth: &SessionAuth,
        weakening: Weakening,
        what: &str,
        delay: Millis,
        client: &Client,
    ) -> ServiceResult<PendingChange> {
        let delay = delay.max(WEAKENING_DELAY);
        self.step_up
            .require_step_up(auth, SensitiveAction::WeakenProtection)
            .await?;
        let account = &auth.account;
        if let Some(existing) = self
            .store
            .pending_changes(&account.id)
            .await?
            .into_iter()
            .find(|c| c.change == weakening)
        {
            return Ok(existing);
        }
        let token = random_token();
        let now = self.now();
        let change = PendingChange {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            change: weakening,
            cancel_token_hash: token_hash(&token),
            requested_at: now,
            effective_at: now + delay,
            cancelled_at: None,
            applied_at: None,
        };
        let url = self.composer.public_url.trim_end_matches('/');
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "weakening.scheduled", json!({"kind": change.change.kind(), "target": change.change.target(), "effective_at": change.effective_at})))
            .with_mail(self.notices.notice(
                account,
                &format!("{what}: takes effect in {}", span(delay)),
                &format!(
                    "You asked to: {what}. For your protection this takes effect only at {} ({} from now), from {} ({}).\n\n\
                     Not you? Cancel it with one click, no sign-in needed:\n{url}/cancel/{token}\n\n\
                     You can also cancel it from the Security Center until then.",
                    format_utc(change.effective_at),
                    span(delay),
                    client.device.summary(),
                    client.ip
                ),
            ));
        self.store.add_pending_change(&change, &fx).await?;
        Ok(change)
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn cancel_pending_change(
        &self,
        auth: &SessionAuth,
        id: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        let account = &auth.account;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "weakening.cancelled",
            json!({"change_id": id}),
        ));
        if self
            .store
            .cancel_pending_change(&account.id, id, self.now(), &fx)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound(
                "not_found",
                "No such pending change (it may already be cancelled or in effect).".into(),
            ))
        }
    }

    /// Cancels through the link in the mail, without a session.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn cancel_pending_change_by_link(
        &self,
        token: &str,
        client: &Client,
    ) -> ServiceResult<PendingChange> {
        let gone = || {
            ServiceError::NotFound("link_invalid", "This cancel link is not valid. The change may already be cancelled or in effect; check the Security Center.".into())
        };
        if token.is_empty() || token.len() > 128 {
            return Err(gone());
        }
        let change = self
            .store
            .pending_change_by_token(&token_hash(token))
            .await?
            .ok_or_else(gone)?;
        if change.cancelled_at.is_some() {
            return Err(ServiceError::Conflict(
                "already_cancelled",
                "This change was already cancelled. Nothing more to do.".into(),
            ));
        }
        if change.applied_at.is_some() {
            return Err(ServiceError::Conflict("already_applied", "This change already took effect. Sign in and turn the protection back on, or freeze your account if this was not you.".into()));
        }
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&change.account_id),
            "anonymous".into(),
            "weakening.cancelled",
            json!({"change_id": change.id, "via": "mail_link"}),
        ));
        if !self
            .store
            .cancel_pending_change(&change.account_id, &change.id, self.now(), &fx)
            .await?
        {
            return Err(gone());
        }
        Ok(change)
    }

    /// Applies every due weakening change (the job calls this). Returns how many.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn apply_due_changes(&self) -> ServiceResult<usize> {
        let now = self.now();
        let mut n = 0;
        for change in self.store.due_pending_changes(now, 100).await? {
            // A damaged row is not applied (failing closed keeps the protection) and must
            // not hold up anyone else's change; it is reported on every pass until fixed.
            let change = match change {
                Ok(change) => change,
                Err(e) => {
                    tracing::error!("due pending change not applied: {e}");
                    continue;
                }
            };
            let Some(account) = self.store.account_by_id(&change.account_id).await? else {
                continue;
            };
            let what = change.change.label();
            let fx = Effects::audit(self.event(None, Some(&account.id), "system".into(), "weakening.applied", json!({"kind": change.change.kind(), "target": change.change.target()})))
                .with_mail(self.notices.notice(&account, &format!("{what}: now in effect"), &format!("The change you asked for 48 hours ago is now in effect: {what}.\n\nIf you did not ask for it, freeze your account from the Security Center.")));
            if self
                .store
                .apply_pending_change(&change, &change.change.steps(), now, &fx)
                .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// "48 hours", "3 days": how long a weakening waits, for its mail.
fn span(delay: Millis) -> String {
    let hours = delay / HOUR;
    if hours <= 48 || hours % 24 != 0 {
        format!("{hours} hours")
    } else {
        format!("{} days", hours / 24)
    }
}
