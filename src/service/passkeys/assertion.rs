//! Proving a passkey: passwordless sign-in, the second step after the password, and
//! step-up. Every assertion goes through `verify_assertion`, which refuses a counter that
//! went backwards (a possibly cloned key) and records the use.

use serde_json::json;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PublicKeyCredential, RequestChallengeResponse, WebauthnError,
};

use super::{b64, passkey_failed, Ceremony, Passkeys, SecondStepState};
use crate::clock::format_utc;
use crate::domain::sign_in::{SecondFactor, SignInMethod};
use crate::service::sessions::SignedIn;
use crate::service::{Client, Clocked, ServiceError, ServiceResult};
use crate::store::{Account, Effects, PasskeyRecord, SessionAuth};

impl Passkeys {
    /// Starts a passkey sign-in: passwordless (any discoverable passkey) or, with a
    /// challenge from the password step, the second step for that account.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn passkey_signin_start(
        &self,
        challenge: Option<&str>,
    ) -> ServiceResult<Ceremony<RequestChallengeResponse>> {
        match challenge {
            None => {
                let (rcr, state) = self
                    .webauthn
                    .start_discoverable_authentication()
                    .map_err(passkey_failed)?;
                let id = self.put_state(None, "passkey.signin", &state).await?;
                Ok(Ceremony {
                    ceremony_id: id,
                    options: rcr,
                })
            }
            Some(token) => {
                let (challenge, account) = self.signin.open_challenge(token).await?;
                let keys = Self::stored_passkeys(&self.store.passkeys(&account.id).await?);
                if keys.is_empty() {
                    return Err(ServiceError::Conflict(
                        "no_passkey",
                        "This account has no passkey; use your authenticator app or a backup code."
                            .into(),
                    ));
                }
                let (rcr, state) = self
                    .webauthn
                    .start_passkey_authentication(&keys)
                    .map_err(passkey_failed)?;
                let second = SecondStepState {
                    challenge_id: challenge.id,
                    state,
                };
                let id = self
                    .put_state(Some(&account.id), "passkey.second", &second)
                    .await?;
                Ok(Ceremony {
                    ceremony_id: id,
                    options: rcr,
                })
            }
        }
    }

    /// Verifies an assertion against a stored passkey; updates its counter and reports a
    /// counter that went backwards as a possible clone.
    async fn verify_assertion(
        &self,
        account: &Account,
        record: &PasskeyRecord,
        result: Result<webauthn_rs::prelude::AuthenticationResult, WebauthnError>,
        client: &Client,
    ) -> ServiceResult<()> {
        let result = match result {
            Ok(r) => r,
            Err(WebauthnError::CredentialPossibleCompromise) => {
                let fx = Effects::audit(self.event(Some(client), Some(&account.id), "anonymous".into(), "passkey.possible_clone", json!({"passkey_id": record.id, "name": record.name})))
                    .with_mail(self.composer.compose(
                        Some(&account.id),
                        &account.email,
                        account.anti_phishing_code.as_deref(),
                        "Your passkey may have been copied",
                        &format!(
                            "A sign-in with your passkey \"{}\" was refused at {} from {} ({}): its signature counter went backwards, \
                             which is what a cloned security key looks like.\n\nIf you did not just use it, remove it and freeze your account.",
                            record.name,
                            format_utc(self.now()),
                            client.device.summary(),
                            client.ip
                        ),
                        self.now(),
                    ));
                self.store.append_audit(&fx).await?;
                return Err(ServiceError::PasskeyFailed(
                    "signature counter went backwards (possible cloned key)".into(),
                ));
            }
            Err(e) => {
                let fx = Effects::audit(self.event(
                    Some(client),
                    Some(&account.id),
                    "anonymous".into(),
                    "passkey.failed",
                    json!({"passkey_id": record.id, "error": e.to_string()}),
                ));
                self.store.append_audit(&fx).await?;
                return Err(passkey_failed(e));
            }
        };
        let mut passkey: Passkey =
            serde_json::from_str(&record.passkey).map_err(anyhow::Error::from)?;
        passkey.update_credential(&result);
        let json = serde_json::to_string(&passkey).map_err(anyhow::Error::from)?;
        self.store
            .passkey_used(&record.id, &json, i64::from(result.counter()), self.now())
            .await?;
        Ok(())
    }

    /// Finishes a passkey sign-in started by `passkey_signin_start`: passwordless, or the
    /// second step after the password (the ceremony knows which).
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn passkey_signin_finish(
        &self,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
        client: &Client,
    ) -> ServiceResult<SignedIn> {
        self.throttles
            .throttle(&[(format!("ip:{}", client.ip), self.throttles.ip_policy())])
            .await?;
        let (owner, kind, state) = self.take_any_state(ceremony_id).await?;
        let unreadable = |e: serde_json::Error| {
            ServiceError::Internal(anyhow::anyhow!("stored ceremony unreadable: {e}"))
        };
        match kind.as_str() {
            "passkey.signin" => {
                let state: DiscoverableAuthentication =
                    serde_json::from_str(&state).map_err(unreadable)?;
                let (user, cred_id) = self
                    .webauthn
                    .identify_discoverable_authentication(credential)
                    .map_err(passkey_failed)?;
                let record = self
                    .store
                    .passkey_by_credential(&b64(cred_id))
                    .await?
                    .filter(|r| r.account_id == user.to_string())
                    .ok_or_else(|| ServiceError::PasskeyFailed("unknown credential".into()))?;
                let account = self
                    .store
                    .account_by_id(&record.account_id)
                    .await?
                    .ok_or_else(|| ServiceError::PasskeyFailed("account gone".into()))?;
                let passkey: Passkey =
                    serde_json::from_str(&record.passkey).map_err(anyhow::Error::from)?;
                let result = self.webauthn.finish_discoverable_authentication(
                    credential,
                    state,
                    &[DiscoverableKey::from(&passkey)],
                );
                self.verify_assertion(&account, &record, result, client)
                    .await?;
                if account.frozen_at.is_some() {
                    return Err(ServiceError::AccountFrozen);
                }
                if account.email_confirmed_at.is_none() {
                    return Err(ServiceError::EmailNotConfirmed);
                }
                let known = self.sessions.known_device(&account.id, client).await?;
                let extra = Effects {
                    audit: vec![],
                    mails: vec![self.notices.factor_used_mail(
                        &account,
                        SecondFactor::Passkey,
                        client,
                    )],
                };
                self.sessions
                    .open_session(
                        &account,
                        client,
                        known,
                        SignInMethod::Passkey,
                        None,
                        Some(extra),
                    )
                    .await
            }
            "passkey.second" => {
                let second: SecondStepState = serde_json::from_str(&state).map_err(unreadable)?;
                let (challenge, account) = self
                    .signin
                    .open_challenge_by_id(&second.challenge_id)
                    .await?;
                if owner.as_deref() != Some(account.id.as_str()) {
                    return Err(ServiceError::PasskeyFailed(
                        "ceremony belongs to another account".into(),
                    ));
                }
                let record = self
                    .store
                    .passkey_by_credential(&b64(credential.get_credential_id()))
                    .await?
                    .filter(|r| r.account_id == account.id)
                    .ok_or_else(|| ServiceError::PasskeyFailed("unknown credential".into()))?;
                let result = self
                    .webauthn
                    .finish_passkey_authentication(credential, &second.state);
                self.verify_assertion(&account, &record, result, client)
                    .await?;
                let known = self.sessions.known_device(&account.id, client).await?;
                let extra = Effects {
                    audit: vec![],
                    mails: vec![self.notices.factor_used_mail(
                        &account,
                        SecondFactor::Passkey,
                        client,
                    )],
                };
                self.sessions
                    .open_session(
                        &account,
                        client,
                        known,
                        SignInMethod::PasswordAnd(SecondFactor::Passkey),
                        Some(&challenge.id),
                        Some(extra),
                    )
                    .await
            }
            other => Err(ServiceError::PasskeyFailed(format!(
                "ceremony of kind {other} cannot sign in"
            ))),
        }
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn passkey_step_up_start(
        &self,
        auth: &SessionAuth,
    ) -> ServiceResult<Ceremony<RequestChallengeResponse>> {
        let keys = Self::stored_passkeys(&self.store.passkeys(&auth.account.id).await?);
        if keys.is_empty() {
            return Err(ServiceError::Conflict(
                "no_passkey",
                "This account has no passkey.".into(),
            ));
        }
        let (rcr, state) = self
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(passkey_failed)?;
        let id = self
            .put_state(Some(&auth.session.id), "passkey.stepup", &state)
            .await?;
        Ok(Ceremony {
            ceremony_id: id,
            options: rcr,
        })
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn passkey_step_up_finish(
        &self,
        auth: &SessionAuth,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
        client: &Client,
    ) -> ServiceResult<i64> {
        let (session, state): (Option<String>, PasskeyAuthentication) =
            self.take_state(ceremony_id, "passkey.stepup").await?;
        if session.as_deref() != Some(auth.session.id.as_str()) {
            return Err(ServiceError::PasskeyFailed(
                "ceremony belongs to another session".into(),
            ));
        }
        let record = self
            .store
            .passkey_by_credential(&b64(credential.get_credential_id()))
            .await?
            .filter(|r| r.account_id == auth.account.id)
            .ok_or_else(|| ServiceError::PasskeyFailed("unknown credential".into()))?;
        let result = self
            .webauthn
            .finish_passkey_authentication(credential, &state);
        self.verify_assertion(&auth.account, &record, result, client)
            .await?;
        self.step_up
            .mark_stepped_up(auth, SecondFactor::Passkey, client)
            .await
    }

    /// Starts proving a passkey for a mailed link (a password reset): the ceremony is bound
    /// to `binding` (the link), not to a session.
    #[tracing::instrument(level = "info", skip_all, fields(account = %account.id), err(level = "info"))]
    pub async fn passkey_link_start(
        &self,
        account: &Account,
        binding: &str,
    ) -> ServiceResult<Ceremony<RequestChallengeResponse>> {
        let keys = Self::stored_passkeys(&self.store.passkeys(&account.id).await?);
        if keys.is_empty() {
            return Err(ServiceError::Conflict(
                "no_passkey",
                "This account has no passkey.".into(),
            ));
        }
        let (rcr, state) = self
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(passkey_failed)?;
        let id = self
            .put_state(Some(binding), "passkey.link", &state)
            .await?;
        Ok(Ceremony {
            ceremony_id: id,
            options: rcr,
        })
    }

    /// Verifies the passkey of a ceremony started by `passkey_link_start` for the same
    /// link; the use is recorded like any other (counter, clone report).
    #[tracing::instrument(level = "info", skip_all, fields(account = %account.id), err(level = "info"))]
    pub async fn passkey_link_verify(
        &self,
        account: &Account,
        binding: &str,
        ceremony_id: &str,
        credential: &PublicKeyCredential,
        client: &Client,
    ) -> ServiceResult<()> {
        let (bound, state): (Option<String>, PasskeyAuthentication) =
            self.take_state(ceremony_id, "passkey.link").await?;
        if bound.as_deref() != Some(binding) {
            return Err(ServiceError::PasskeyFailed(
                "ceremony belongs to another link".into(),
            ));
        }
        let record = self
            .store
            .passkey_by_credential(&b64(credential.get_credential_id()))
            .await?
            .filter(|r| r.account_id == account.id)
            .ok_or_else(|| ServiceError::PasskeyFailed("unknown credential".into()))?;
        let result = self
            .webauthn
            .finish_passkey_authentication(credential, &state);
        self.verify_assertion(account, &record, result, client)
            .await
    }
}
