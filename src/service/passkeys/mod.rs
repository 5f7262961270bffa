//! Passkeys and hardware security keys (WebAuthn, through `webauthn-rs`): registration,
//! passwordless sign-in (discoverable credentials), passkey as the second step after the
//! password, step-up, renaming and (delayed) removal. Only public keys and counters are
//! stored; a counter that goes backwards is reported as a possibly cloned key.

use base64::Engine;
use serde_json::json;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    RegisterPublicKeyCredential, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use std::sync::Arc;

use super::notices::Notices;
use super::pending::PendingChanges;
use super::second_factors::SecondFactors;
use super::sessions::Sessions;
use super::sign_in::SignIn;
use super::step_up::StepUp;
use super::throttles::Throttles;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, SharedClock, MINUTE};
use crate::domain::change::Weakening;
use crate::domain::secret::{random_token, token_hash};
use crate::domain::step_up::SensitiveAction;
use crate::mail::Composer;
use crate::store::{Effects, PasskeyRecord, PendingChange, SessionAuth, SharedStore};

mod assertion;

const CEREMONY_TTL: i64 = 5 * MINUTE;
const MAX_NAME_CHARS: usize = 64;

/// Builds the relying party from the public URL: its host is the RP ID, its origin the only
/// accepted origin (any port on localhost, for development and tests).
pub fn relying_party(public_url: &str) -> anyhow::Result<Webauthn> {
    let origin = url::Url::parse(public_url)
        .map_err(|e| anyhow::anyhow!("public_url {public_url:?}: {e}"))?;
    let host = origin
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("public_url {public_url:?} has no host"))?
        .to_owned();
    if origin
        .host()
        .is_some_and(|h| !matches!(h, url::Host::Domain(_)))
    {
        anyhow::bail!(
            "public_url {public_url:?} uses an IP address, where browsers refuse passkeys: \
             set a host name (for this machine: http://localhost:{})",
            origin.port_or_known_default().unwrap_or(8080)
        );
    }
    let local = host == "localhost";
    let builder = WebauthnBuilder::new(&host, &origin)
        .map_err(|e| anyhow::anyhow!("cannot use {public_url:?} as a WebAuthn origin: {e}"))?
        .rp_name("Rampart")
        .allow_any_port(local);
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("WebAuthn setup failed: {e}"))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn clean_name(name: &str) -> ServiceResult<String> {
    // Control characters go first, so what is left is trimmed of every space they hid.
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let name: String = name.trim().chars().take(MAX_NAME_CHARS).collect();
    if name.is_empty() {
        return Err(crate::domain::Invalid::new(
            "invalid_name",
            "Give the passkey a name, such as \"YubiKey\" or \"Work laptop\".",
        )
        .into());
    }
    Ok(name)
}

fn passkey_failed(e: WebauthnError) -> ServiceError {
    ServiceError::PasskeyFailed(e.to_string())
}

/// A started ceremony: the options for `navigator.credentials` and the id to finish with.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ceremony<T> {
    pub ceremony_id: String,
    pub options: T,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SecondStepState {
    challenge_id: String,
    state: PasskeyAuthentication,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RegistrationState {
    name: String,
    state: PasskeyRegistration,
}

/// WebAuthn ceremonies and the passkey list.
pub struct Passkeys {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) webauthn: Webauthn,
    pub(crate) composer: Composer,
    pub(crate) notices: Arc<Notices>,
    pub(crate) throttles: Arc<Throttles>,
    pub(crate) second_factors: Arc<SecondFactors>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) signin: Arc<SignIn>,
    pub(crate) step_up: Arc<StepUp>,
    pub(crate) pending_changes: Arc<PendingChanges>,
}

impl Clocked for Passkeys {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

impl Passkeys {
    async fn put_state<S: serde::Serialize>(
        &self,
        account_id: Option<&str>,
        kind: &str,
        state: &S,
    ) -> ServiceResult<String> {
        let token = random_token();
        let json = serde_json::to_string(state).map_err(anyhow::Error::from)?;
        self.store
            .put_ceremony(
                &token_hash(&token),
                account_id,
                kind,
                &json,
                self.now() + CEREMONY_TTL,
            )
            .await?;
        Ok(token)
    }

    /// Takes a ceremony out (single use) and checks it is of the expected kind.
    async fn take_state<S: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        kind: &str,
    ) -> ServiceResult<(Option<String>, S)> {
        let (account, found, state) = self.take_any_state(token).await?;
        if found != kind {
            return Err(ServiceError::PasskeyFailed(format!(
                "ceremony of kind {found}, expected {kind}"
            )));
        }
        let state = serde_json::from_str(&state).map_err(|e| {
            ServiceError::Internal(anyhow::anyhow!("stored ceremony unreadable: {e}"))
        })?;
        Ok((account, state))
    }

    async fn take_any_state(&self, token: &str) -> ServiceResult<(Option<String>, String, String)> {
        let expired = || ServiceError::PasskeyFailed("unknown, used or expired ceremony".into());
        if token.is_empty() || token.len() > 128 {
            return Err(expired());
        }
        self.store
            .take_ceremony(&token_hash(token), self.now())
            .await?
            .ok_or_else(expired)
    }

    fn stored_passkeys(records: &[PasskeyRecord]) -> Vec<Passkey> {
        records
            .iter()
            .filter_map(|r| serde_json::from_str(&r.passkey).ok())
            .collect()
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn passkey_register_start(
        &self,
        auth: &SessionAuth,
        name: &str,
    ) -> ServiceResult<Ceremony<CreationChallengeResponse>> {
        let name = clean_name(name)?;
        self.step_up
            .require_step_up(auth, SensitiveAction::AddSecondFactor)
            .await?;
        let account = &auth.account;
        let user = uuid::Uuid::parse_str(&account.id).map_err(anyhow::Error::from)?;
        let existing = Self::stored_passkeys(&self.store.passkeys(&account.id).await?);
        let exclude = existing
            .iter()
            .map(|p| p.cred_id().clone())
            .collect::<Vec<_>>();
        let (mut ccr, state) = self
            .webauthn
            .start_passkey_registration(user, &account.email, &account.email, Some(exclude))
            .map_err(passkey_failed)?;
        // Ask for a discoverable credential, so the key can sign in without an email.
        if let Some(sel) = ccr.public_key.authenticator_selection.as_mut() {
            sel.resident_key = Some(webauthn_rs_proto::ResidentKeyRequirement::Required);
            sel.require_resident_key = true;
        }
        let id = self
            .put_state(
                Some(&account.id),
                "passkey.register",
                &RegistrationState { name, state },
            )
            .await?;
        Ok(Ceremony {
            ceremony_id: id,
            options: ccr,
        })
    }

    /// Returns the backup codes when this passkey is the account's first second factor.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn passkey_register_finish(
        &self,
        auth: &SessionAuth,
        ceremony_id: &str,
        credential: &RegisterPublicKeyCredential,
        client: &Client,
    ) -> ServiceResult<(PasskeyRecord, Option<Vec<String>>)> {
        let account = &auth.account;
        self.step_up
            .require_step_up(auth, SensitiveAction::AddSecondFactor)
            .await?;
        let (owner, reg): (Option<String>, RegistrationState) =
            self.take_state(ceremony_id, "passkey.register").await?;
        if owner.as_deref() != Some(account.id.as_str()) {
            return Err(ServiceError::PasskeyFailed(
                "ceremony belongs to another account".into(),
            ));
        }
        let passkey = self
            .webauthn
            .finish_passkey_registration(credential, &reg.state)
            .map_err(passkey_failed)?;
        let first = !self.second_factors.factors(&account.id).await?.any();
        let record = PasskeyRecord {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            credential_id: b64(passkey.cred_id().as_ref()),
            name: reg.name,
            passkey: serde_json::to_string(&passkey).map_err(anyhow::Error::from)?,
            counter: 0,
            created_at: self.now(),
            last_used_at: None,
            removed_at: None,
        };
        let (codes, macs) = self.second_factors.new_backup_codes_for(&account.id);
        let mail = if first {
            self.notices.first_factor_mail(
                account,
                &format!("the passkey \"{}\"", record.name),
                client,
            )
        } else {
            self.notices.notice(
                account,
                "A passkey was added to your account",
                &format!(
                    "The passkey \"{}\" was added at {} from {} ({}). It can now sign in to your account.\n\n\
                     If this was not you, freeze your account from the Security Center now.",
                    record.name,
                    format_utc(self.now()),
                    client.device.summary(),
                    client.ip
                ),
            )
        };
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "passkey.added",
            json!({"passkey_id": record.id, "name": record.name}),
        ))
        .with_mail(mail);
        self.store
            .add_passkey(&record, first.then_some(macs.as_slice()), &fx)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(_) => ServiceError::Conflict(
                    "passkey_exists",
                    "This passkey is already registered.".into(),
                ),
                e => e.into(),
            })?;
        self.store
            .session_stepped_up(&auth.session.id, self.now(), &Effects::default())
            .await?;
        Ok((record, first.then_some(codes)))
    }

    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn rename_passkey(
        &self,
        auth: &SessionAuth,
        id: &str,
        name: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        let name = clean_name(name)?;
        let account = &auth.account;
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "passkey.renamed",
            json!({"passkey_id": id, "name": name}),
        ));
        if self
            .store
            .rename_passkey(&account.id, id, &name, &fx)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound(
                "not_found",
                "No such passkey on this account.".into(),
            ))
        }
    }

    /// Removing a passkey is weakening: it takes effect 48 h later, cancellable.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn remove_passkey(
        &self,
        auth: &SessionAuth,
        id: &str,
        client: &Client,
    ) -> ServiceResult<PendingChange> {
        let keys = self.store.passkeys(&auth.account.id).await?;
        let Some(key) = keys.iter().find(|k| k.id == id) else {
            return Err(ServiceError::NotFound(
                "not_found",
                "No such passkey on this account.".into(),
            ));
        };
        let what = format!("Remove the passkey \"{}\"", key.name);
        self.pending_changes
            .schedule_weakening(
                auth,
                Weakening::RemovePasskey(key.id.clone()),
                &what,
                client,
            )
            .await
    }
}
