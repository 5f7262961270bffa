//! Changing the account's email address: a step-up, then a code mailed to the new address;
//! once confirmed the new address is the account's at once, withdrawals are locked for
//! 48 hours, and the old address is told, with a link that cancels the change within those
//! 48 hours and the freeze link, and keeps receiving every security mail until then.

use std::sync::Arc;

use serde_json::json;

use super::key_cache::CacheInvalidator;
use super::notices::Notices;
use super::step_up::StepUp;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, SharedClock, HOUR, MINUTE};
use crate::domain::email::Email;
use crate::domain::rules::Rules;
use crate::domain::secret::{
    constant_time_eq, random_token, six_digit_code, token_hash, ServerKey,
};
use crate::domain::step_up::SensitiveAction;
use crate::domain::Invalid;
use crate::store::{
    Effects, EmailChangeRecord, SessionAuth, SharedStore, StoreError, WithdrawalLock,
};

/// The old address can cancel, and keeps receiving security mail, this long.
pub const EMAIL_CHANGE_WINDOW: Millis = 48 * HOUR;
/// Withdrawals are locked this long after an email change.
pub const EMAIL_CHANGE_LOCK: Millis = 48 * HOUR;

pub struct EmailChange {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) key: ServerKey,
    pub(crate) rules: Rules,
    pub(crate) public_url: String,
    pub(crate) step_up: Arc<StepUp>,
    pub(crate) notices: Arc<Notices>,
    pub(crate) invalidator: Arc<CacheInvalidator>,
}

impl Clocked for EmailChange {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl EmailChange {
    fn code_mac(&self, account_id: &str, new_email: &str, code: &str) -> String {
        self.key.mac(
            "action-code",
            &format!("{account_id}:email_change:{new_email}:{code}"),
        )
    }

    /// Starts a change (after a step-up): mails a 6-digit code to the new address.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn start(
        &self,
        auth: &SessionAuth,
        new_email: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        self.step_up
            .require_step_up(auth, SensitiveAction::ChangeEmail)
            .await?;
        let account = &auth.account;
        let new = Email::parse(new_email)?;
        if new.as_str() == account.email {
            return Err(Invalid::new("same_email", "This is already your address.").into());
        }
        let now = self.now();
        // One change at a time: a second change inside the first one's 48 hours would take
        // the original address off the copies and out of reach of its cancel link.
        if let Some(open) = self.store.email_change_in_window(&account.id, now).await? {
            return Err(ServiceError::Conflict(
                "email_change_pending",
                format!(
                    "Your address was changed less than 48 hours ago; another change is possible from {} (or cancel the first one from the link mailed to {}).",
                    format_utc(open.cancel_until.unwrap_or(now)),
                    open.old_email
                ),
            ));
        }
        if let Some(p) = self.store.pending_email_change(&account.id).await? {
            if p.new_email == new.as_str() && now - p.created_at < MINUTE {
                return Ok(()); // one code a minute
            }
        }
        let code = six_digit_code();
        let change = EmailChangeRecord {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            old_email: account.email.clone(),
            new_email: new.as_str().to_owned(),
            code_mac: self.code_mac(&account.id, new.as_str(), &code),
            attempts: 0,
            code_expires_at: now + self.rules.confirm_code_ttl_minutes * MINUTE,
            cancel_token_hash: None,
            confirmed_at: None,
            cancel_until: None,
            cancelled_at: None,
            created_at: now,
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "email.change_requested", json!({"new_email": new.as_str()})))
            .with_mail(
                self.notices
                    .notice_to(
                        account,
                        new.as_str(),
                        "Confirm your new email address",
                        &format!(
                            "Your code to make this the address of your account is {code}. It is valid for {} minutes.\n\n\
                             Requested from {} ({}). If you did not ask for this, ignore this mail.",
                            self.rules.confirm_code_ttl_minutes,
                            client.device.summary(),
                            client.ip
                        ),
                    )
                    .carrying_code(),
            );
        self.store.put_email_change(&change, &fx).await?;
        Ok(())
    }

    /// The change waiting for its code, if any: `(new address, code expiry)`.
    pub async fn pending(&self, auth: &SessionAuth) -> ServiceResult<Option<(String, Millis)>> {
        Ok(self
            .store
            .pending_email_change(&auth.account.id)
            .await?
            .map(|p| (p.new_email, p.code_expires_at)))
    }

    /// Confirms with the code mailed to the new address.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn confirm(
        &self,
        auth: &SessionAuth,
        code: &str,
        client: &Client,
    ) -> ServiceResult<String> {
        self.step_up
            .require_step_up(auth, SensitiveAction::ChangeEmail)
            .await?;
        let account = &auth.account;
        let Some(change) = self.store.pending_email_change(&account.id).await? else {
            return Err(ServiceError::NotFound(
                "no_email_change",
                "No email change is waiting for a code. Start again.".into(),
            ));
        };
        let max = self.rules.confirm_code_max_attempts;
        if change.attempts >= max {
            return Err(ServiceError::TooManyAttempts { retry_after_ms: 0 });
        }
        let now = self.now();
        if now >= change.code_expires_at {
            return Err(ServiceError::CodeExpired);
        }
        let given = self.code_mac(&account.id, &change.new_email, code.trim());
        if !constant_time_eq(&given, &change.code_mac) {
            let n = self.store.email_change_failed(&change.id).await?;
            return Err(ServiceError::InvalidCode {
                attempts_left: (max - n).max(0),
            });
        }
        let token = random_token();
        let until = now + EMAIL_CHANGE_WINDOW;
        let lock = WithdrawalLock {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            reason: "email_changed".into(),
            created_at: now,
            until: now + EMAIL_CHANGE_LOCK,
        };
        let cancel = format!(
            "{}/email-change/cancel/{token}",
            self.public_url.trim_end_matches('/')
        );
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "email.changed", json!({"from": change.old_email, "to": change.new_email, "withdrawals_locked_until": lock.until})))
            .with_mail(self.notices.notice_to(
                account,
                &change.new_email,
                "Your email address was changed",
                &format!(
                    "The address of your account is now {} (it was {}), changed at {} from {} ({}). Withdrawals are locked until {}.\n\n\
                     For 48 hours the old address keeps receiving security mail and can cancel the change.",
                    change.new_email,
                    change.old_email,
                    format_utc(now),
                    client.device.summary(),
                    client.ip,
                    format_utc(lock.until)
                ),
            ))
            .with_mail(
                self.notices
                    .notice_to(
                        account,
                        &change.old_email,
                        "The email address of your account was changed",
                        &format!(
                            "The address of your account was changed from this one to {} at {} from {} ({}). Withdrawals are locked until {}.\n\n\
                             If this was not you, cancel the change (until {}; every session will be signed out):\n{cancel}\n\n\
                             and freeze your account with the link below.",
                            change.new_email,
                            format_utc(now),
                            client.device.summary(),
                            client.ip,
                            format_utc(lock.until),
                            format_utc(until)
                        ),
                    )
                    // The cancel link is a bearer token: the mailbox only, never the inbox.
                    .carrying_code(),
            );
        match self
            .store
            .confirm_email_change(
                &change.id,
                &account.id,
                &change.new_email,
                &token_hash(&token),
                until,
                &lock,
                now,
                &fx,
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(
                    "email_taken",
                    "Another account uses this address.".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        self.invalidator
            .invalidate_keys(&format!("account:{}", account.id))
            .await?;
        Ok(change.new_email)
    }

    /// Cancels a confirmed change from the link mailed to the old address, within 48 hours:
    /// the old address comes back and every session ends.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn cancel(&self, token: &str, client: &Client) -> ServiceResult<()> {
        let invalid = || {
            ServiceError::NotFound(
                "cancel_link_invalid",
                "This link is not valid, was already used, or the 48 hours are over.".into(),
            )
        };
        if token.is_empty() || token.len() > 128 {
            return Err(invalid());
        }
        let change = self
            .store
            .email_change_by_cancel(&token_hash(token))
            .await?
            .ok_or_else(invalid)?;
        let now = self.now();
        if change.cancelled_at.is_some() || change.cancel_until.is_none_or(|u| now >= u) {
            return Err(invalid());
        }
        let account = self
            .store
            .account_by_id(&change.account_id)
            .await?
            .ok_or_else(invalid)?;
        let body = format!(
            "The change of your account's address to {} was cancelled at {} from {} ({}). The address is {} again and every session was signed out.\n\n\
             If someone else changed it, change your password now.",
            change.new_email,
            format_utc(now),
            client.device.summary(),
            client.ip,
            change.old_email
        );
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            "anonymous".into(),
            "email.change_cancelled",
            json!({"restored": change.old_email, "dropped": change.new_email}),
        ))
        .with_mail(self.notices.notice_to(
            &account,
            &change.old_email,
            "The email change was cancelled",
            &body,
        ))
        .with_mail(
            self.notices
                .notice_to(
                    &account,
                    &change.new_email,
                    "The email change was cancelled",
                    &body,
                )
                .carrying_code(),
        );
        match self.store.cancel_email_change(&change, now, &fx).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(invalid()),
            Err(StoreError::Conflict(_)) => Err(ServiceError::Conflict(
                "email_taken",
                "The old address now belongs to another account; contact support.".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }
}
