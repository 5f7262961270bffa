//! The withdrawal guard: the platform asks, Rampart decides, holds and releases.
//!
//! - The platform (bearer token) asks about each withdrawal; the decision is taken in one
//!   transaction with the account's freeze, locks, allowlist, delay and the key's rules
//!   (`WithdrawalStore::decide_withdrawal` with [`decide`]), and is idempotent on its
//!   `request_id`. Released withdrawals reach the platform through a feed read by cursor;
//!   it reports the broadcast (TxID) and the confirmation.
//! - The owner keeps an allowlist (new addresses usable after 24 h, removal at once), turns
//!   it on at once and off after 48 h, sets a withdraw delay (longer at once, shorter after
//!   the current delay has run, 48 h at least), sees and cancels held withdrawals (also from
//!   the mailed link, without signing in), and gives keys their own rules.
//! - The release worker (`release_due`, run by the timed job) releases due withdrawals one
//!   transaction each, so a worker killed mid-batch releases nothing twice.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::notices::Notices;
use super::pending::PendingChanges;
use super::step_up::StepUp;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{format_utc, Millis, SharedClock, DAY};
use crate::domain::change::Weakening;
use crate::domain::secret::{random_token, token_hash};
use crate::domain::step_up::SensitiveAction;
use crate::domain::withdrawal::{
    asset_network, check_address, check_label, check_memo, decide, lookalike_key, Amount, Asset,
    KeyWithdrawRules, Reason, Via, WithdrawalState, ALLOWLIST_ADDRESS_DELAY, MAX_DELAY_DAYS,
};
use crate::domain::Invalid;
use crate::store::withdrawals::{
    AllowlistEntry, DecideOutcome, Decided, DepositRecord, FeedEntry, NewWithdrawal, PlatformToken,
    ReleaseOutcome, TransferRecord, WithdrawalRecord, WithdrawalSettings,
};
use crate::store::{Account, Effects, PendingChange, SessionAuth, SharedStore, WithdrawalLock};

/// Weakening the withdrawal settings waits at least this long (or the current delay).
use super::pending::WEAKENING_DELAY;

/// Platform tokens start with this, so a leaked one is recognisable in a scan.
pub const PLATFORM_TOKEN_PREFIX: &str = "rmpt_";
/// Feed pages and lists are at most this long.
pub const MAX_PAGE: i64 = 500;

pub struct Withdrawals {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) assets: Arc<Vec<Asset>>,
    pub(crate) public_url: String,
    pub(crate) notices: Arc<Notices>,
    pub(crate) step_up: Arc<StepUp>,
    pub(crate) pending_changes: Arc<PendingChanges>,
}

impl Clocked for Withdrawals {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

/// A withdrawal request as the platform sends it.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    pub request_id: String,
    pub account_uid: String,
    pub asset: String,
    pub network: String,
    /// A decimal string, e.g. "0.015": exact, at most the asset's precision.
    pub amount: String,
    pub address: String,
    #[serde(default)]
    pub memo: Option<String>,
    /// `session` or `api_key`.
    pub via: String,
    #[serde(default)]
    pub api_key: Option<String>,
}

/// The answer to a withdrawal request (and to the same request again).
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WithdrawalAnswer {
    pub id: String,
    /// `released`, `held` or `refused`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_at: Option<Millis>,
    pub reasons: Vec<ReasonView>,
    /// The first refusal's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReasonView {
    pub code: String,
    pub message: String,
}

impl From<&Reason> for ReasonView {
    fn from(r: &Reason) -> Self {
        Self {
            code: r.code.clone(),
            message: r.message.clone(),
        }
    }
}

/// A withdrawal as the owner and the platform see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WithdrawalView {
    pub id: String,
    pub request_id: String,
    pub account_uid: String,
    pub state: String,
    pub asset: String,
    pub network: String,
    pub amount: String,
    pub address: String,
    pub memo: Option<String>,
    pub via: String,
    pub api_key: Option<String>,
    /// Why it is held, was refused or cancelled.
    pub reasons: Vec<ReasonView>,
    pub release_at: Option<Millis>,
    pub cancel_reason: Option<String>,
    pub txid: Option<String>,
    pub created_at: Millis,
    pub released_at: Option<Millis>,
    pub broadcast_at: Option<Millis>,
    pub confirmed_at: Option<Millis>,
    pub cancelled_at: Option<Millis>,
}

impl WithdrawalView {
    fn new(w: &WithdrawalRecord, uid: &str) -> Self {
        Self {
            id: w.id.clone(),
            request_id: w.request_id.clone(),
            account_uid: uid.to_owned(),
            state: w.state.as_str().to_owned(),
            asset: w.asset.clone(),
            network: w.network.clone(),
            amount: w.amount.clone(),
            address: w.address.clone(),
            memo: w.memo.clone(),
            via: w.via.as_str().to_owned(),
            api_key: w.api_key.clone(),
            reasons: w.reasons.iter().map(ReasonView::from).collect(),
            release_at: w.release_at,
            cancel_reason: w.cancel_reason.clone(),
            txid: w.txid.clone(),
            created_at: w.created_at,
            released_at: w.released_at,
            broadcast_at: w.broadcast_at,
            confirmed_at: w.confirmed_at,
            cancelled_at: w.cancelled_at,
        }
    }
}

/// One entry of the platform's feed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FeedItem {
    /// The cursor: pass the last one seen as `after`.
    pub seq: i64,
    /// `released` (pay it out) or `recalled` (a freeze took it back: do not pay).
    pub event: String,
    pub at: Millis,
    pub withdrawal: WithdrawalView,
}

/// A lock in force, with why and until when.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LockView {
    /// `password_changed`, `password_reset`, `second_factor_reset`, `email_changed`,
    /// `recovery`, `owner_request`, `account_frozen`, `recovery_in_progress`.
    pub reason: String,
    pub message: String,
    /// `None`: until a recovery review lifts it.
    pub until: Option<Millis>,
}

/// The owner's withdrawal settings and what is in force.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GuardOverview {
    pub allowlist_enabled: bool,
    /// When the allowlist goes off, if turning it off is pending.
    pub allowlist_off_at: Option<Millis>,
    pub delay_days: i64,
    /// A pending shorter delay and when it applies.
    pub delay_next_days: Option<i64>,
    pub delay_next_at: Option<Millis>,
    pub locks: Vec<LockView>,
    /// The assets and networks that can be withdrawn: `{symbol, precision, networks:
    /// [{name, memo}]}`.
    #[schema(value_type = Vec<Object>)]
    pub assets: Vec<Asset>,
}

/// An internal transfer as its owner sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TransferView {
    pub id: String,
    /// `out` or `in`.
    pub direction: &'static str,
    /// The other account.
    pub counterparty_uid: String,
    pub asset: String,
    pub amount: String,
    /// `completed` or `refused`.
    pub state: String,
    pub created_at: Millis,
}

/// Internal transfers and deposits the platform reported.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    pub request_id: String,
    pub from_uid: String,
    pub to_uid: String,
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    pub request_id: String,
    pub account_uid: String,
    pub asset: String,
    pub network: String,
    pub amount: String,
    #[serde(default)]
    pub address: Option<String>,
    pub txid: String,
}

/// A new allowlist address.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAddress {
    pub asset: String,
    pub network: String,
    pub address: String,
    #[serde(default)]
    pub memo: Option<String>,
    pub label: String,
}

fn request_id_ok(id: &str) -> Result<(), Invalid> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid::new(
            "invalid_request_id",
            "request_id is 1 to 128 visible ASCII characters.",
        ));
    }
    Ok(())
}

fn txid_ok(txid: &str) -> Result<(), Invalid> {
    if txid.is_empty() || txid.len() > 128 || !txid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Invalid::new(
            "invalid_txid",
            "A TxID is 1 to 128 letters and digits.",
        ));
    }
    Ok(())
}

fn reused() -> ServiceError {
    ServiceError::Conflict(
        "request_id_reused",
        "This request_id was used for a different request; use a new one.".into(),
    )
}

fn unknown_account() -> ServiceError {
    ServiceError::NotFound("unknown_account", "No account has this UID.".into())
}

fn not_found() -> ServiceError {
    ServiceError::NotFound("not_found", "No such withdrawal.".into())
}

impl Withdrawals {
    fn precision(&self, asset: &str) -> Option<u32> {
        self.assets
            .iter()
            .find(|a| a.symbol == asset)
            .map(|a| a.precision)
    }

    fn cancel_url(&self, token: &str) -> String {
        format!(
            "{}/withdrawals/cancel/{token}",
            self.public_url.trim_end_matches('/')
        )
    }

    // ----- platform credentials -----

    /// Creates a platform token (see [`add_platform_token`]).
    pub async fn add_platform_token(&self, name: &str) -> ServiceResult<String> {
        add_platform_token(self.store.as_ref(), self.now(), name).await
    }

    /// The platform behind a bearer token; `Unauthenticated` for anything else.
    pub async fn authenticate_platform(
        &self,
        bearer: Option<&str>,
    ) -> ServiceResult<PlatformToken> {
        let token = bearer
            .filter(|t| t.starts_with(PLATFORM_TOKEN_PREFIX) && t.len() < 200)
            .ok_or(ServiceError::Unauthenticated)?;
        self.store
            .platform_token(&token_hash(token))
            .await?
            .ok_or(ServiceError::Unauthenticated)
    }

    // ----- the decision -----

    /// Decides a withdrawal: released, held (until when, why) or refused (why). The same
    /// request again gets the same answer; another request under the same id is refused.
    /// Bad input is refused before anything is stored.
    #[tracing::instrument(level = "info", skip_all, fields(account = tracing::field::Empty), err(level = "info"))]
    pub async fn request(
        &self,
        platform: &PlatformToken,
        req: &WithdrawalRequest,
    ) -> ServiceResult<WithdrawalAnswer> {
        request_id_ok(&req.request_id)?;
        let (asset, network) = asset_network(&self.assets, &req.asset, &req.network)?;
        let amount = Amount::parse(&req.amount, asset.precision)?;
        let address = check_address(&req.address)?;
        let memo = check_memo(network, req.memo.as_deref())?;
        let via = Via::parse(&req.via)
            .map_err(|_| Invalid::new("invalid_via", "via is \"session\" or \"api_key\"."))?;
        let api_key = match (via, req.api_key.as_deref()) {
            (Via::ApiKey, Some(k)) if !k.is_empty() && k.len() <= 128 => Some(k.to_owned()),
            (Via::ApiKey, _) => {
                return Err(Invalid::new(
                    "api_key_required",
                    "A withdrawal via api_key names the key (api_key).",
                )
                .into())
            }
            (Via::Session, None) => None,
            (Via::Session, Some(_)) => {
                return Err(Invalid::new(
                    "unexpected_api_key",
                    "A withdrawal via session names no API key.",
                )
                .into())
            }
        };
        let request_hash = token_hash(
            &json!([
                req.account_uid,
                asset.symbol,
                network.name,
                amount.to_string(),
                address,
                memo,
                via.as_str(),
                api_key
            ])
            .to_string(),
        );
        if let Some(existing) = self.store.withdrawal_by_request(&req.request_id).await? {
            return self.repeat(&existing, &request_hash);
        }
        let account = self
            .store
            .account_by_uid(req.account_uid.trim())
            .await?
            .ok_or_else(unknown_account)?;
        tracing::Span::current().record("account", account.id.as_str());
        let now = self.now();
        let token = random_token();
        let w = NewWithdrawal {
            id: uuid::Uuid::new_v4().to_string(),
            request_id: req.request_id.clone(),
            request_hash: request_hash.clone(),
            account_id: account.id.clone(),
            asset: asset.symbol.clone(),
            network: network.name.clone(),
            amount,
            precision: asset.precision,
            address: address.to_owned(),
            memo: memo.map(str::to_owned),
            lookalike_key: lookalike_key(address),
            via,
            api_key,
            cancel_token_hash: token_hash(&token),
            created_at: now,
        };
        let cancel_url = self.cancel_url(&token);
        let build = |s: &crate::domain::withdrawal::Situation| -> Decided {
            let decision = decide(s);
            let answer = WithdrawalAnswer {
                id: w.id.clone(),
                state: decision.state.as_str().to_owned(),
                release_at: decision.release_at,
                reasons: decision.reasons.iter().map(ReasonView::from).collect(),
                code: decision.code().map(str::to_owned),
            };
            let fx = self.decision_effects(&account, platform, &w, &decision, &cancel_url);
            Decided {
                answer: serde_json::to_string(&answer).unwrap_or_default(),
                decision,
                fx,
            }
        };
        match self.store.decide_withdrawal(&w, &build).await? {
            DecideOutcome::New(r) | DecideOutcome::Existing(r) => self.repeat(&r, &request_hash),
        }
    }

    /// The stored answer, if the request is the same one.
    fn repeat(&self, w: &WithdrawalRecord, request_hash: &str) -> ServiceResult<WithdrawalAnswer> {
        if !crate::domain::secret::constant_time_eq(&w.request_hash, request_hash) {
            return Err(reused());
        }
        serde_json::from_str(&w.answer)
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("stored answer of {}: {e}", w.id)))
    }

    fn decision_effects(
        &self,
        account: &Account,
        platform: &PlatformToken,
        w: &NewWithdrawal,
        d: &crate::domain::withdrawal::Decision,
        cancel_url: &str,
    ) -> Effects {
        let what = format!(
            "{} {} on {} to {}{}",
            w.amount,
            w.asset,
            w.network,
            w.address,
            w.memo
                .as_deref()
                .map(|m| format!(" (memo {m})"))
                .unwrap_or_default()
        );
        let how = match w.via {
            Via::Session => "from a signed-in session".to_owned(),
            Via::ApiKey => format!(
                "with the API key {}",
                w.api_key
                    .as_deref()
                    .map(crate::domain::api_key::key_hint)
                    .unwrap_or_default()
            ),
        };
        let reasons = d
            .reasons
            .iter()
            .map(|r| format!("- {}", r.message))
            .collect::<Vec<_>>()
            .join("\n");
        let event = self.event(
            None,
            Some(&account.id),
            format!("platform:{}", platform.name),
            "withdrawal.requested",
            json!({
                "withdrawal_id": w.id, "request_id": w.request_id, "asset": w.asset,
                "network": w.network, "amount": w.amount.to_string(), "address": w.address,
                "via": w.via.as_str(), "api_key": w.api_key, "state": d.state.as_str(),
                "release_at": d.release_at,
                "reasons": d.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
            }),
        );
        let mail = match d.state {
            WithdrawalState::Held => self
                .notices
                .notice(
                    account,
                    "Withdrawal requested: held",
                    &format!(
                        "A withdrawal of {what} was requested {how} at {}.\n\n\
                         It is held until {}:\n{reasons}\n\n\
                         Not you, or not this address? Cancel it with one click, no sign-in needed:\n{cancel_url}\n\n\
                         Once a transaction is on the blockchain it cannot be undone.",
                        format_utc(w.created_at),
                        d.release_at.map(format_utc).unwrap_or_default(),
                    ),
                )
                // The link cancels: it belongs in the owner's mailbox, not in webhook logs.
                .carrying_code(),
            WithdrawalState::Released => self.notices.notice(
                account,
                "Withdrawal released",
                &format!(
                    "A withdrawal of {what} was requested {how} at {} and released.\n\n\
                     Not you? Freeze your account now with the link below: a withdrawal not yet sent to the network is recalled.",
                    format_utc(w.created_at)
                ),
            ),
            _ => self.notices.notice(
                account,
                "Withdrawal refused",
                &format!(
                    "A withdrawal of {what} was requested {how} at {} and refused:\n{reasons}\n\n\
                     Not you? Someone may be in your account: freeze it with the link below.",
                    format_utc(w.created_at)
                ),
            ),
        };
        Effects::audit(event).with_mail(mail)
    }

    // ----- the platform's side after the decision -----

    pub async fn feed(&self, after: i64, limit: i64) -> ServiceResult<Vec<FeedItem>> {
        let entries = self
            .store
            .withdrawal_feed(after.max(0), limit.clamp(1, MAX_PAGE))
            .await?;
        let mut items = Vec::with_capacity(entries.len());
        let mut uids = std::collections::HashMap::<String, String>::new();
        for FeedEntry {
            seq,
            event,
            at,
            withdrawal,
        } in entries
        {
            let uid = match uids.get(&withdrawal.account_id) {
                Some(u) => u.clone(),
                None => {
                    let u = self.uid_of(&withdrawal.account_id).await?;
                    uids.insert(withdrawal.account_id.clone(), u.clone());
                    u
                }
            };
            items.push(FeedItem {
                seq,
                event,
                at,
                withdrawal: WithdrawalView::new(&withdrawal, &uid),
            });
        }
        Ok(items)
    }

    async fn uid_of(&self, account_id: &str) -> ServiceResult<String> {
        Ok(self
            .store
            .account_by_id(account_id)
            .await?
            .map(|a| a.uid)
            .unwrap_or_default())
    }

    pub async fn platform_withdrawal(&self, id: &str) -> ServiceResult<WithdrawalView> {
        let w = self.store.withdrawal(id).await?.ok_or_else(not_found)?;
        Ok(WithdrawalView::new(&w, &self.uid_of(&w.account_id).await?))
    }

    /// The platform sent a released withdrawal to the network. Report it *before* sending
    /// the signed transaction: a `withdrawal_recalled` answer means a freeze took it back.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn broadcast(
        &self,
        platform: &PlatformToken,
        id: &str,
        txid: &str,
    ) -> ServiceResult<WithdrawalView> {
        txid_ok(txid)?;
        let w = self.store.withdrawal(id).await?.ok_or_else(not_found)?;
        let fx = Effects::audit(self.event(
            None,
            Some(&w.account_id),
            format!("platform:{}", platform.name),
            "withdrawal.broadcast",
            json!({"withdrawal_id": id, "txid": txid}),
        ));
        match self.store.mark_broadcast(id, txid, self.now(), &fx).await? {
            Ok(w) => Ok(WithdrawalView::new(&w, &self.uid_of(&w.account_id).await?)),
            Err(state) => Err(not_in_state(state, "released")),
        }
    }

    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn confirmed(
        &self,
        platform: &PlatformToken,
        id: &str,
    ) -> ServiceResult<WithdrawalView> {
        let w = self.store.withdrawal(id).await?.ok_or_else(not_found)?;
        let fx = Effects::audit(self.event(
            None,
            Some(&w.account_id),
            format!("platform:{}", platform.name),
            "withdrawal.confirmed",
            json!({"withdrawal_id": id, "txid": w.txid}),
        ));
        match self.store.mark_confirmed(id, self.now(), &fx).await? {
            Ok(w) => Ok(WithdrawalView::new(&w, &self.uid_of(&w.account_id).await?)),
            Err(state) => Err(not_in_state(state, "broadcast")),
        }
    }

    /// Releases due held withdrawals, each in its own transaction; returns how many.
    pub async fn release_due(&self, limit: i64) -> ServiceResult<usize> {
        let now = self.now();
        let mut released = 0;
        for w in self.store.due_withdrawals(now, limit).await? {
            let Some(account) = self.store.account_by_id(&w.account_id).await? else {
                continue;
            };
            let fx = Effects::audit(self.event(None, Some(&account.id), "system".into(), "withdrawal.released", json!({"withdrawal_id": w.id, "held_since": w.created_at})))
                .with_mail(self.notices.notice(
                    &account,
                    "Held withdrawal released",
                    &format!(
                        "The withdrawal of {} {} on {} to {} requested at {} was held until now and is released.\n\n\
                         Not you? Freeze your account now with the link below: a withdrawal not yet sent to the network is recalled.",
                        w.amount, w.asset, w.network, w.address, format_utc(w.created_at)
                    ),
                ));
            if self.store.release_withdrawal(&w.id, now, &fx).await? == ReleaseOutcome::Released {
                released += 1;
            }
        }
        Ok(released)
    }

    // ----- transfers and deposits -----

    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn transfer(
        &self,
        platform: &PlatformToken,
        req: &TransferRequest,
    ) -> ServiceResult<serde_json::Value> {
        request_id_ok(&req.request_id)?;
        let precision = self.precision(&req.asset).ok_or_else(|| {
            Invalid::new(
                "unknown_asset",
                format!("{:?} is not an asset known here.", req.asset),
            )
        })?;
        let amount = Amount::parse(&req.amount, precision)?;
        let hash = token_hash(
            &json!([req.from_uid, req.to_uid, req.asset, amount.to_string()]).to_string(),
        );
        if let Some(t) = self.store.transfer_by_request(&req.request_id).await? {
            return stored_transfer(&t, &hash);
        }
        let from = self
            .store
            .account_by_uid(req.from_uid.trim())
            .await?
            .ok_or_else(unknown_account)?;
        let to = self
            .store
            .account_by_uid(req.to_uid.trim())
            .await?
            .ok_or_else(unknown_account)?;
        if from.id == to.id {
            return Err(Invalid::new(
                "same_account",
                "A transfer goes from one account to another.",
            )
            .into());
        }
        let now = self.now();
        let record = TransferRecord {
            id: uuid::Uuid::new_v4().to_string(),
            request_id: req.request_id.clone(),
            request_hash: hash.clone(),
            from_account_id: from.id.clone(),
            to_account_id: to.id.clone(),
            asset: req.asset.clone(),
            amount: amount.to_string(),
            state: String::new(),
            answer: String::new(),
            created_at: now,
        };
        let actor = format!("platform:{}", platform.name);
        let decide = |s: crate::store::withdrawals::SenderState| {
            let mut reasons = Vec::new();
            if s.frozen {
                reasons.push(ReasonView {
                    code: "account_frozen".into(),
                    message: "The sending account is frozen.".into(),
                });
            }
            if s.recovery_required {
                reasons.push(ReasonView {
                    code: "recovery_in_progress".into(),
                    message: "The sending account was just recovered.".into(),
                });
            }
            if let Some(until) = s.locked_until {
                reasons.push(ReasonView {
                    code: "withdrawals_locked".into(),
                    message: format!(
                        "Money cannot leave the sending account until {} after a security change.",
                        format_utc(until)
                    ),
                });
            }
            let state = if reasons.is_empty() {
                "completed"
            } else {
                "refused"
            };
            let answer = json!({"id": record.id, "state": state, "code": reasons.first().map(|r| r.code.clone()), "reasons": reasons});
            let mut fx = Effects::audit(self.event(None, Some(&from.id), actor.clone(), "transfer.recorded", json!({"transfer_id": record.id, "to": to.uid, "asset": record.asset, "amount": record.amount, "state": state})));
            if state == "completed" {
                fx.audit.push(self.event(None, Some(&to.id), actor.clone(), "transfer.received", json!({"transfer_id": record.id, "from": from.uid, "asset": record.asset, "amount": record.amount})));
            }
            (state.to_owned(), answer.to_string(), fx)
        };
        match self.store.record_transfer(&record, &decide).await? {
            Some(t) => stored_transfer(&t, &hash),
            None => match self.store.transfer_by_request(&req.request_id).await? {
                Some(t) => stored_transfer(&t, &hash),
                None => Err(reused()),
            },
        }
    }

    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn deposit(
        &self,
        platform: &PlatformToken,
        req: &DepositRequest,
    ) -> ServiceResult<DepositRecord> {
        request_id_ok(&req.request_id)?;
        let (asset, _network) = asset_network(&self.assets, &req.asset, &req.network)?;
        let amount = Amount::parse(&req.amount, asset.precision)?;
        txid_ok(&req.txid)?;
        let address = req.address.as_deref().map(check_address).transpose()?;
        let hash = token_hash(
            &json!([
                req.account_uid,
                req.asset,
                req.network,
                amount.to_string(),
                address,
                req.txid
            ])
            .to_string(),
        );
        if let Some(d) = self.store.deposit_by_request(&req.request_id).await? {
            return same_deposit(d, &hash);
        }
        let account = self
            .store
            .account_by_uid(req.account_uid.trim())
            .await?
            .ok_or_else(unknown_account)?;
        let d = DepositRecord {
            id: uuid::Uuid::new_v4().to_string(),
            request_id: req.request_id.clone(),
            request_hash: hash.clone(),
            account_id: account.id.clone(),
            asset: req.asset.clone(),
            network: req.network.clone(),
            amount: amount.to_string(),
            address: address.map(str::to_owned),
            txid: req.txid.clone(),
            created_at: self.now(),
        };
        let fx = Effects::audit(self.event(None, Some(&account.id), format!("platform:{}", platform.name), "deposit.recorded", json!({"deposit_id": d.id, "asset": d.asset, "network": d.network, "amount": d.amount, "txid": d.txid})));
        if self.store.record_deposit(&d, &fx).await? {
            return Ok(d);
        }
        match self.store.deposit_by_request(&req.request_id).await? {
            Some(d) => same_deposit(d, &hash),
            None => Err(reused()),
        }
    }

    // ----- the owner's side -----

    pub async fn list(
        &self,
        auth: &SessionAuth,
        before: Option<Millis>,
        limit: i64,
    ) -> ServiceResult<Vec<WithdrawalView>> {
        let rows = self
            .store
            .account_withdrawals(&auth.account.id, before, limit.clamp(1, MAX_PAGE))
            .await?;
        Ok(rows
            .iter()
            .map(|w| WithdrawalView::new(w, &auth.account.uid))
            .collect())
    }

    /// Internal transfers in and out, newest first, with the other account's UID.
    pub async fn transfers(&self, auth: &SessionAuth) -> ServiceResult<Vec<TransferView>> {
        let me = &auth.account.id;
        let mut uids = std::collections::HashMap::<String, String>::new();
        let mut out = Vec::new();
        for t in self.store.account_transfers(me, MAX_PAGE).await? {
            let outgoing = &t.from_account_id == me;
            let other = if outgoing {
                &t.to_account_id
            } else {
                &t.from_account_id
            };
            let uid = match uids.get(other) {
                Some(u) => u.clone(),
                None => {
                    let u = self.uid_of(other).await?;
                    uids.insert(other.clone(), u.clone());
                    u
                }
            };
            out.push(TransferView {
                id: t.id,
                direction: if outgoing { "out" } else { "in" },
                counterparty_uid: uid,
                asset: t.asset,
                amount: t.amount,
                state: t.state,
                created_at: t.created_at,
            });
        }
        Ok(out)
    }

    pub async fn deposits(&self, auth: &SessionAuth) -> ServiceResult<Vec<DepositRecord>> {
        Ok(self
            .store
            .account_deposits(&auth.account.id, MAX_PAGE)
            .await?)
    }

    /// Cancels a held withdrawal of the signed-in owner.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn cancel(&self, auth: &SessionAuth, id: &str, client: &Client) -> ServiceResult<()> {
        let w = self
            .store
            .withdrawal(id)
            .await?
            .filter(|w| w.account_id == auth.account.id)
            .ok_or_else(not_found)?;
        self.cancel_held(
            &auth.account,
            &w,
            Some(client),
            "cancelled_by_owner",
            "session",
        )
        .await
    }

    /// What a cancel link points at, without acting (mail scanners fetch links).
    pub async fn cancel_link(&self, token: &str) -> ServiceResult<WithdrawalView> {
        let w = self
            .store
            .withdrawal_by_cancel_token(&token_hash(token))
            .await?
            .ok_or_else(link_unusable)?;
        Ok(WithdrawalView::new(&w, &self.uid_of(&w.account_id).await?))
    }

    /// Cancels through the link in the "withdrawal requested" mail, without signing in.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn cancel_by_link(
        &self,
        token: &str,
        client: &Client,
    ) -> ServiceResult<WithdrawalView> {
        let w = self
            .store
            .withdrawal_by_cancel_token(&token_hash(token))
            .await?
            .ok_or_else(link_unusable)?;
        let account = self
            .store
            .account_by_id(&w.account_id)
            .await?
            .ok_or_else(link_unusable)?;
        self.cancel_held(
            &account,
            &w,
            Some(client),
            "cancelled_by_owner",
            "mailed link",
        )
        .await?;
        let w = self.store.withdrawal(&w.id).await?.ok_or_else(not_found)?;
        Ok(WithdrawalView::new(&w, &account.uid))
    }

    async fn cancel_held(
        &self,
        account: &Account,
        w: &WithdrawalRecord,
        client: Option<&Client>,
        reason: &str,
        via: &str,
    ) -> ServiceResult<()> {
        if w.state != WithdrawalState::Held {
            return Err(ServiceError::Conflict(
                "not_held",
                format!(
                    "This withdrawal is {} and can no longer be cancelled.",
                    w.state
                ),
            ));
        }
        let fx = Effects::audit(self.event(client, Some(&account.id), Self::account_actor(account), "withdrawal.cancelled", json!({"withdrawal_id": w.id, "via": via})))
            .with_mail(self.notices.notice(
                account,
                "Withdrawal cancelled",
                &format!(
                    "The held withdrawal of {} {} on {} to {} was cancelled ({via}) at {}. Nothing was sent.\n\n\
                     If someone else asked for it, your account may be compromised: freeze it with the link below and change your password.",
                    w.amount, w.asset, w.network, w.address, format_utc(self.now())
                ),
            ));
        if self
            .store
            .cancel_withdrawal(&w.id, reason, self.now(), &fx)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::Conflict(
                "not_held",
                "This withdrawal was released or cancelled meanwhile.".into(),
            ))
        }
    }

    /// Settings, pending weakening and every lock in force.
    pub async fn overview(&self, auth: &SessionAuth) -> ServiceResult<GuardOverview> {
        let account = &auth.account;
        let now = self.now();
        let s = self.store.withdrawal_settings(&account.id).await?;
        let pending = self.store.pending_changes(&account.id).await?;
        let off = pending
            .iter()
            .find(|c| c.change == Weakening::DisableAllowlist);
        let shorter = pending.iter().find_map(|c| match c.change {
            Weakening::ShortenWithdrawDelay(d) => Some((d, c.effective_at)),
            _ => None,
        });
        let mut locks = Vec::new();
        if let Some(at) = account.frozen_at {
            locks.push(LockView {
                reason: "account_frozen".into(),
                message: format!(
                    "The account was frozen at {}; a recovery review reopens it.",
                    format_utc(at)
                ),
                until: None,
            });
        }
        if account.recovery_required {
            locks.push(LockView {
                reason: "recovery_in_progress".into(),
                message: "Set a new password and second factor to finish the recovery.".into(),
                until: None,
            });
        }
        for l in self.store.withdrawal_locks(&account.id, now).await? {
            locks.push(LockView {
                message: lock_message(&l),
                reason: l.reason,
                until: Some(l.until),
            });
        }
        if let Some(l) = self.store.settings_lock(&account.id).await? {
            if l.active(now) {
                locks.push(LockView {
                    reason: "settings_locked".into(),
                    message: format!(
                        "Your security settings are locked until {}: no allowlist, key, password, email or second-factor change before then{}.",
                        format_utc(l.until),
                        if l.end_requested_at.is_some() { " (ending early was asked for)" } else { "" }
                    ),
                    until: Some(l.until),
                });
            }
        }
        Ok(GuardOverview {
            allowlist_enabled: s.allowlist_enabled,
            allowlist_off_at: off.map(|c| c.effective_at),
            delay_days: s.delay_days,
            delay_next_days: shorter.map(|(d, _)| d),
            delay_next_at: shorter.map(|(_, at)| at),
            locks,
            assets: self.assets.as_ref().clone(),
        })
    }

    /// Weakening waits 48 hours, or the current delay if that is longer.
    async fn weakening_delay(&self, account_id: &str) -> ServiceResult<Millis> {
        let s = self.store.withdrawal_settings(account_id).await?;
        Ok(WEAKENING_DELAY.max(s.delay_days * DAY))
    }

    /// On: at once. Off: after 48 hours (or the current delay), cancellable; asking for
    /// on again cancels a pending off.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn set_allowlist(
        &self,
        auth: &SessionAuth,
        enabled: bool,
        client: &Client,
    ) -> ServiceResult<Option<PendingChange>> {
        let account = &auth.account;
        let s = self.store.withdrawal_settings(&account.id).await?;
        if enabled {
            if let Some(c) = self
                .store
                .pending_changes(&account.id)
                .await?
                .into_iter()
                .find(|c| c.change == Weakening::DisableAllowlist)
            {
                self.pending_changes
                    .cancel_pending_change(auth, &c.id, client)
                    .await?;
            }
            if !s.allowlist_enabled {
                let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "allowlist.enabled", json!({})))
                    .with_mail(self.notices.notice(account, "Withdrawal allowlist on", &format!(
                        "The withdrawal allowlist was turned on at {} from {} ({}). From now on withdrawals go only to addresses on your list that were added more than 24 hours ago.",
                        format_utc(self.now()), client.device.summary(), client.ip)));
                self.store
                    .set_withdrawal_settings(
                        &account.id,
                        WithdrawalSettings {
                            allowlist_enabled: true,
                            ..s
                        },
                        self.now(),
                        &fx,
                    )
                    .await?;
            }
            return Ok(None);
        }
        if !s.allowlist_enabled {
            return Ok(None);
        }
        let delay = self.weakening_delay(&account.id).await?;
        let change = self
            .pending_changes
            .schedule_weakening_after(
                auth,
                Weakening::DisableAllowlist,
                "Turn off the withdrawal allowlist",
                delay,
                client,
            )
            .await?;
        Ok(Some(change))
    }

    /// Longer: at once. Shorter: after the current delay has run (48 hours at least).
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn set_delay(
        &self,
        auth: &SessionAuth,
        days: i64,
        client: &Client,
    ) -> ServiceResult<Option<PendingChange>> {
        if !(0..=MAX_DELAY_DAYS).contains(&days) {
            return Err(Invalid::new(
                "invalid_delay",
                format!("The withdraw delay is 0 (off) to {MAX_DELAY_DAYS} days."),
            )
            .into());
        }
        let account = &auth.account;
        let s = self.store.withdrawal_settings(&account.id).await?;
        let pending_shorter = self
            .store
            .pending_changes(&account.id)
            .await?
            .into_iter()
            .filter(|c| matches!(c.change, Weakening::ShortenWithdrawDelay(_)))
            .collect::<Vec<_>>();
        if days >= s.delay_days {
            for c in &pending_shorter {
                self.pending_changes
                    .cancel_pending_change(auth, &c.id, client)
                    .await?;
            }
            if days > s.delay_days {
                let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "withdrawal.delay_set", json!({"from": s.delay_days, "to": days})))
                    .with_mail(self.notices.notice(account, "Withdraw delay lengthened", &format!(
                        "Every withdrawal is now held for {days} day(s) before it leaves, changed at {} from {} ({}). You can cancel a held withdrawal until it is released.",
                        format_utc(self.now()), client.device.summary(), client.ip)));
                self.store
                    .set_withdrawal_settings(
                        &account.id,
                        WithdrawalSettings {
                            delay_days: days,
                            ..s
                        },
                        self.now(),
                        &fx,
                    )
                    .await?;
            }
            return Ok(None);
        }
        for c in pending_shorter
            .iter()
            .filter(|c| c.change != Weakening::ShortenWithdrawDelay(days))
        {
            self.pending_changes
                .cancel_pending_change(auth, &c.id, client)
                .await?;
        }
        let delay = self.weakening_delay(&account.id).await?;
        let what = if days == 0 {
            "Turn off the withdraw delay".to_owned()
        } else {
            format!("Shorten the withdraw delay to {days} day(s)")
        };
        let change = self
            .pending_changes
            .schedule_weakening_after(
                auth,
                Weakening::ShortenWithdrawDelay(days),
                &what,
                delay,
                client,
            )
            .await?;
        Ok(Some(change))
    }

    pub async fn allowlist(&self, auth: &SessionAuth) -> ServiceResult<Vec<AllowlistEntry>> {
        Ok(self.store.allowlist(&auth.account.id).await?)
    }

    /// Adds an allowlist address (step-up; mailed); usable 24 hours later.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn add_address(
        &self,
        auth: &SessionAuth,
        new: &NewAddress,
        client: &Client,
    ) -> ServiceResult<AllowlistEntry> {
        self.step_up
            .require_step_up(auth, SensitiveAction::AddAllowlistAddress)
            .await?;
        let (asset, network) = asset_network(&self.assets, &new.asset, &new.network)?;
        let address = check_address(&new.address)?;
        let memo = check_memo(network, new.memo.as_deref())?;
        let label = check_label(&new.label)?;
        let account = &auth.account;
        let now = self.now();
        let entry = AllowlistEntry {
            id: uuid::Uuid::new_v4().to_string(),
            account_id: account.id.clone(),
            asset: asset.symbol.clone(),
            network: network.name.clone(),
            address: address.to_owned(),
            memo: memo.map(str::to_owned),
            label,
            created_at: now,
            usable_at: now + ALLOWLIST_ADDRESS_DELAY,
        };
        let fx = Effects::audit(self.event(Some(client), Some(&account.id), Self::account_actor(account), "allowlist.address_added", json!({"entry_id": entry.id, "asset": entry.asset, "network": entry.network, "address": entry.address, "label": entry.label})))
            .with_mail(self.notices.notice(account, "Withdrawal address added", &format!(
                "The address {} ({} on {}, \"{}\") was added to your withdrawal allowlist at {} from {} ({}). It is usable from {}.\n\n\
                 Not you? Freeze your account with the link below: the address never becomes usable.",
                entry.address, entry.asset, entry.network, entry.label, format_utc(now), client.device.summary(), client.ip, format_utc(entry.usable_at))));
        if !self
            .store
            .add_allowlist_address(&entry, &lookalike_key(address), &fx)
            .await?
        {
            return Err(ServiceError::Conflict(
                "address_listed",
                "This address is already on your allowlist.".into(),
            ));
        }
        Ok(entry)
    }

    /// Removes an allowlist address at once (step-up; mailed).
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn remove_address(
        &self,
        auth: &SessionAuth,
        id: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        self.step_up
            .require_step_up(auth, SensitiveAction::DeleteAllowlistAddress)
            .await?;
        let account = &auth.account;
        let now = self.now();
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "allowlist.address_removed",
            json!({"entry_id": id}),
        ))
        .with_mail(self.notices.notice(
            account,
            "Withdrawal address removed",
            &format!(
                "An address was removed from your withdrawal allowlist at {} from {} ({}).",
                format_utc(now),
                client.device.summary(),
                client.ip
            ),
        ));
        match self
            .store
            .remove_allowlist_address(&account.id, id, now, &fx)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(ServiceError::NotFound(
                "not_found",
                "No such allowlist address.".into(),
            )),
        }
    }

    pub async fn key_rules(
        &self,
        auth: &SessionAuth,
        api_key: &str,
    ) -> ServiceResult<KeyWithdrawRules> {
        let mine = self
            .store
            .api_keys(&auth.account.id)
            .await?
            .iter()
            .any(|k| k.api_key == api_key);
        if !mine {
            return Err(ServiceError::NotFound(
                "not_found",
                "No such API key.".into(),
            ));
        }
        Ok(self
            .store
            .key_withdraw_rules(api_key)
            .await?
            .unwrap_or_default())
    }

    /// Gives a key its own withdrawal rules (step-up): addresses among the allowlist's,
    /// daily count and per-asset daily amounts.
    #[tracing::instrument(level = "info", skip_all, fields(account = %auth.account.id), err(level = "info"))]
    pub async fn set_key_rules(
        &self,
        auth: &SessionAuth,
        api_key: &str,
        rules: &KeyWithdrawRules,
        client: &Client,
    ) -> ServiceResult<KeyWithdrawRules> {
        self.step_up
            .require_step_up(auth, SensitiveAction::AddApiKey)
            .await?;
        let account = &auth.account;
        let mut rules = rules.clone();
        if let Some(ids) = &mut rules.addresses {
            let listed = self.store.allowlist(&account.id).await?;
            if let Some(bad) = ids.iter().find(|id| !listed.iter().any(|e| &e.id == *id)) {
                return Err(Invalid::new(
                    "unknown_address",
                    format!("{bad:?} is not one of your allowlist addresses."),
                )
                .into());
            }
            ids.sort();
            ids.dedup();
        }
        if rules
            .daily_count
            .is_some_and(|n| !(0..=1_000_000).contains(&n))
        {
            return Err(Invalid::new("invalid_limit", "The daily count is 0 to 1,000,000.").into());
        }
        let mut amounts = std::collections::BTreeMap::new();
        for (asset, raw) in &rules.daily_amounts {
            let precision = self.precision(asset).ok_or_else(|| {
                Invalid::new(
                    "unknown_asset",
                    format!("{asset:?} is not an asset known here."),
                )
            })?;
            amounts.insert(asset.clone(), Amount::parse(raw, precision)?.to_string());
        }
        rules.daily_amounts = amounts;
        let empty = rules == KeyWithdrawRules::default();
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            Self::account_actor(account),
            "api_key.withdraw_rules_set",
            json!({"api_key": api_key, "rules": rules}),
        ))
        .with_mail(self.notices.notice(
            account,
            "API key withdrawal rules changed",
            &format!(
                "The withdrawal rules of the API key {} were changed at {} from {} ({}).",
                crate::domain::api_key::key_hint(api_key),
                format_utc(self.now()),
                client.device.summary(),
                client.ip
            ),
        ));
        if !self
            .store
            .set_key_withdraw_rules(
                &account.id,
                api_key,
                (!empty).then_some(&rules),
                self.now(),
                &fx,
            )
            .await?
        {
            return Err(ServiceError::NotFound(
                "not_found",
                "No such API key.".into(),
            ));
        }
        Ok(rules)
    }
}

fn not_in_state(state: Option<WithdrawalState>, wanted: &str) -> ServiceError {
    match state {
        None => not_found(),
        Some(WithdrawalState::Cancelled) => ServiceError::Conflict(
            "withdrawal_recalled",
            "This withdrawal was cancelled (a freeze recalls released withdrawals): do not send it.".into(),
        ),
        Some(s) => ServiceError::Conflict("wrong_state", format!("This withdrawal is {s}, not {wanted}.")),
    }
}

fn link_unusable() -> ServiceError {
    ServiceError::NotFound(
        "link_unusable",
        "This link is not valid any more: the withdrawal was released or cancelled already.".into(),
    )
}

fn stored_transfer(t: &TransferRecord, hash: &str) -> ServiceResult<serde_json::Value> {
    if t.request_hash != hash {
        return Err(reused());
    }
    serde_json::from_str(&t.answer)
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("stored transfer {}: {e}", t.id)))
}

fn same_deposit(d: DepositRecord, hash: &str) -> ServiceResult<DepositRecord> {
    if d.request_hash != hash {
        return Err(reused());
    }
    Ok(d)
}

fn lock_message(l: &WithdrawalLock) -> String {
    let why = match l.reason.as_str() {
        "password_changed" => "your password was changed",
        "password_reset" => "your password was reset",
        "second_factor_reset" => "your second factor was reset",
        "email_changed" => "your email address was changed",
        "recovery" => "your account was recovered",
        "owner_request" => "you asked support to lock them",
        "account_secured" => "you secured your account",
        _ => "a security change",
    };
    format!(
        "Withdrawals are locked until {} because {why}.",
        format_utc(l.until)
    )
}

/// Creates a platform token; the token is returned once and stored as its SHA-256
/// (`rampart platform-token add NAME`).
pub async fn add_platform_token(
    store: &dyn crate::store::Store,
    now: Millis,
    name: &str,
) -> ServiceResult<String> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Invalid::new(
            "invalid_name",
            "A token name is 1 to 64 letters, digits, '-' or '_'.",
        )
        .into());
    }
    let token = format!("{PLATFORM_TOKEN_PREFIX}{}", random_token());
    let record = PlatformToken {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        token_hash: token_hash(&token),
        created_at: now,
        revoked_at: None,
        last_used_at: None,
    };
    let fx = Effects::audit(cli_event(now, "platform_token.added", name));
    match store.add_platform_token(&record, &fx).await {
        Err(crate::store::StoreError::Conflict(_)) => Err(ServiceError::Conflict(
            "name_taken",
            format!(
                "A platform token named {name:?} exists already; revoke it or pick another name."
            ),
        )),
        other => other.map(|()| token).map_err(Into::into),
    }
}

/// Revokes a platform token by name (`rampart platform-token revoke NAME`); `false` if
/// there is no live token of that name.
pub async fn revoke_platform_token(
    store: &dyn crate::store::Store,
    now: Millis,
    name: &str,
) -> ServiceResult<bool> {
    let fx = Effects::audit(cli_event(now, "platform_token.revoked", name));
    Ok(store.revoke_platform_token(name.trim(), now, &fx).await?)
}

fn cli_event(now: Millis, action: &str, name: &str) -> crate::store::AuditEvent {
    crate::store::AuditEvent {
        at: now,
        account_id: None,
        actor: "operator:cli".into(),
        action: action.into(),
        ip: None,
        device: None,
        detail: json!({ "name": name }),
    }
}
