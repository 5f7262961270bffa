//! The owner's side of the withdrawal guard: allowlist, allowlist switch, withdraw delay,
//! withdrawals (held ones cancellable, also from the mailed link), locks in force, per-key
//! rules, transfers and deposits.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::domain::withdrawal::KeyWithdrawRules;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Authed};
use crate::http::AppState;
use crate::service::withdrawals::{
    GuardOverview, LockView, NewAddress, ReasonView, TransferView, WithdrawalView,
};
use crate::service::Client;
use crate::store::withdrawals::{AllowlistEntry, DepositRecord};

#[derive(OpenApi)]
#[openapi(
    paths(
        overview,
        addresses,
        add_address,
        remove_address,
        set_allowlist,
        set_delay,
        list,
        cancel,
        cancel_by_link,
        key_rules,
        set_key_rules,
        transfers,
        deposits
    ),
    components(schemas(
        GuardOverview,
        LockView,
        NewAddress,
        AllowlistEntry,
        AllowlistBody,
        DelayBody,
        Pending,
        WithdrawalView,
        ReasonView,
        CancelLinkBody,
        KeyRulesBody,
        TransferView
    ))
)]
pub struct WithdrawalsDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/withdrawal-settings", get(overview))
        .route(
            "/api/v1/me/withdrawal-addresses",
            get(addresses).post(add_address),
        )
        .route(
            "/api/v1/me/withdrawal-addresses/{id}",
            delete(remove_address),
        )
        .route("/api/v1/me/withdrawal-allowlist", put(set_allowlist))
        .route("/api/v1/me/withdrawal-delay", put(set_delay))
        .route("/api/v1/me/withdrawals", get(list))
        .route("/api/v1/me/withdrawals/{id}/cancel", post(cancel))
        .route("/api/v1/withdrawal-cancel", post(cancel_by_link))
        .route(
            "/api/v1/me/api-keys/{key}/withdraw-rules",
            get(key_rules).put(set_key_rules),
        )
        .route("/api/v1/me/transfers", get(transfers))
        .route("/api/v1/me/deposits", get(deposits))
}

/// The allowlist switch, the withdraw delay (and pending weakening of either), every lock
/// in force with its reason and end, and the assets and networks that can be withdrawn.
#[utoipa::path(get, path = "/api/v1/me/withdrawal-settings", responses((status = 200, body = GuardOverview)))]
async fn overview(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<GuardOverview>, ApiError> {
    Ok(Json(s.withdrawals.overview(&auth).await?))
}

/// The allowlist: addresses per asset and network, each usable 24 hours after it was added.
#[utoipa::path(get, path = "/api/v1/me/withdrawal-addresses", responses((status = 200, body = [AllowlistEntry])))]
async fn addresses(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<Vec<AllowlistEntry>>, ApiError> {
    Ok(Json(s.withdrawals.allowlist(&auth).await?))
}

/// Adds an address (needs a step-up; mailed). Usable 24 hours later.
#[utoipa::path(post, path = "/api/v1/me/withdrawal-addresses", request_body = NewAddress, responses(
    (status = 201, body = AllowlistEntry),
    (status = 409, body = ErrorBody, description = "address_listed"),
    (status = 422, body = ErrorBody, description = "unknown_asset, unknown_network, address_has_spaces, address_not_ascii, invalid_address, memo_not_allowed, invalid_memo, invalid_label"),
))]
async fn add_address(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<NewAddress>,
) -> Result<(StatusCode, Json<AllowlistEntry>), ApiError> {
    let entry = s.withdrawals.add_address(&auth, &req, &client).await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

/// Removes an address at once (needs a step-up; mailed).
#[utoipa::path(delete, path = "/api/v1/me/withdrawal-addresses/{id}", params(("id" = String, Path)), responses(
    (status = 204, description = "Removed"),
))]
async fn remove_address(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.withdrawals.remove_address(&auth, &id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowlistBody {
    enabled: bool,
}

/// A weakening change that waits: when it takes effect and how to cancel it.
#[derive(Serialize, ToSchema)]
pub struct Pending {
    /// `applied` (at once) or `scheduled`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    change_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_at: Option<i64>,
    message: String,
}

fn pending(change: Option<crate::store::PendingChange>, done: &str) -> Json<Pending> {
    Json(match change {
        None => Pending {
            status: "applied",
            change_id: None,
            effective_at: None,
            message: done.to_owned(),
        },
        Some(c) => Pending {
            status: "scheduled",
            message: format!(
                "For your protection this takes effect at {}; you can cancel it until then (the mailed link, or the Security Center).",
                crate::clock::format_utc(c.effective_at)
            ),
            change_id: Some(c.id),
            effective_at: Some(c.effective_at),
        },
    })
}

/// Turns the allowlist on (at once) or off (after 48 hours, or the current withdraw delay
/// if longer; cancellable — turning it on again cancels a pending off). Turning it off
/// needs a step-up.
#[utoipa::path(put, path = "/api/v1/me/withdrawal-allowlist", request_body = AllowlistBody, responses(
    (status = 200, body = Pending),
))]
async fn set_allowlist(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<AllowlistBody>,
) -> Result<Json<Pending>, ApiError> {
    let change = s
        .withdrawals
        .set_allowlist(&auth, req.enabled, &client)
        .await?;
    Ok(pending(
        change,
        if req.enabled {
            "The allowlist is on: withdrawals go only to its addresses that were added more than 24 hours ago."
        } else {
            "The allowlist is off."
        },
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelayBody {
    /// 0 (off) to 7.
    #[schema(minimum = 0, maximum = 7)]
    days: i64,
}

/// Sets the withdraw delay: every withdrawal is held that many days. Longer applies at
/// once; shorter only after the current delay has run (48 hours at least), cancellable,
/// and needs a step-up.
#[utoipa::path(put, path = "/api/v1/me/withdrawal-delay", request_body = DelayBody, responses(
    (status = 200, body = Pending),
    (status = 422, body = ErrorBody, description = "invalid_delay"),
))]
async fn set_delay(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<DelayBody>,
) -> Result<Json<Pending>, ApiError> {
    let change = s.withdrawals.set_delay(&auth, req.days, &client).await?;
    Ok(pending(change, "The withdraw delay is set."))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only withdrawals requested before this time (Unix ms): the next page.
    before: Option<i64>,
    /// 1–500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// The account's withdrawals, newest first: state (held → released → broadcast →
/// confirmed, or cancelled / refused), asset, network, amount, destination, TxID, and why
/// it is held.
#[utoipa::path(get, path = "/api/v1/me/withdrawals", params(ListQuery), responses(
    (status = 200, body = [WithdrawalView]),
    (status = 422, body = ErrorBody, description = "invalid_limit"),
))]
async fn list(
    State(s): State<AppState>,
    Authed(auth): Authed,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<WithdrawalView>>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            e.body_text(),
        )
    })?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(
            crate::service::ServiceError::from(crate::domain::Invalid::new(
                "invalid_limit",
                "limit is 1 to 500.",
            ))
            .into(),
        );
    }
    Ok(Json(s.withdrawals.list(&auth, q.before, limit).await?))
}

/// Cancels a held withdrawal.
#[utoipa::path(post, path = "/api/v1/me/withdrawals/{id}/cancel", params(("id" = String, Path)), responses(
    (status = 204, description = "Cancelled; nothing was sent"),
    (status = 409, body = ErrorBody, description = "not_held (already released or cancelled)"),
))]
async fn cancel(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.withdrawals.cancel(&auth, &id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelLinkBody {
    /// From the link `/withdrawals/cancel/{token}` in the "withdrawal requested" mail.
    token: String,
}

/// Cancels a held withdrawal from the mailed link, without signing in.
#[utoipa::path(post, path = "/api/v1/withdrawal-cancel", request_body = CancelLinkBody, responses(
    (status = 200, body = WithdrawalView),
    (status = 404, body = ErrorBody, description = "link_unusable"),
    (status = 409, body = ErrorBody, description = "not_held"),
))]
async fn cancel_by_link(
    State(s): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<CancelLinkBody>,
) -> Result<Json<WithdrawalView>, ApiError> {
    if req.token.len() > 128 {
        return Err(crate::service::ServiceError::NotFound(
            "link_unusable",
            "This link is not valid.".into(),
        )
        .into());
    }
    Ok(Json(
        s.withdrawals.cancel_by_link(&req.token, &client).await?,
    ))
}

/// A key's own withdrawal rules.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRulesBody {
    /// Allowlist address ids the key may send to (absent: any the account may).
    addresses: Option<Vec<String>>,
    /// Withdrawals per 24 hours.
    daily_count: Option<i64>,
    /// Asset → the most per 24 hours, e.g. `{"BTC": "0.5"}`.
    #[serde(default)]
    daily_amounts: std::collections::BTreeMap<String, String>,
}

impl From<KeyWithdrawRules> for KeyRulesBody {
    fn from(r: KeyWithdrawRules) -> Self {
        Self {
            addresses: r.addresses,
            daily_count: r.daily_count,
            daily_amounts: r.daily_amounts,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/me/api-keys/{key}/withdraw-rules", params(("key" = String, Path)), responses(
    (status = 200, body = KeyRulesBody),
))]
async fn key_rules(
    State(s): State<AppState>,
    Authed(auth): Authed,
    Path(key): Path<String>,
) -> Result<Json<KeyRulesBody>, ApiError> {
    Ok(Json(s.withdrawals.key_rules(&auth, &key).await?.into()))
}

/// Sets a key's withdrawal rules (needs a step-up; mailed): its own subset of the
/// allowlist, and daily count and amount limits. An empty body clears them.
#[utoipa::path(put, path = "/api/v1/me/api-keys/{key}/withdraw-rules", params(("key" = String, Path)), request_body = KeyRulesBody, responses(
    (status = 200, body = KeyRulesBody),
    (status = 422, body = ErrorBody, description = "unknown_address, invalid_limit, unknown_asset, invalid_amount, too_many_decimals"),
))]
async fn set_key_rules(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(key): Path<String>,
    ApiJson(req): ApiJson<KeyRulesBody>,
) -> Result<Json<KeyRulesBody>, ApiError> {
    let rules = KeyWithdrawRules {
        addresses: req.addresses,
        daily_count: req.daily_count,
        daily_amounts: req.daily_amounts,
    };
    Ok(Json(
        s.withdrawals
            .set_key_rules(&auth, &key, &rules, &client)
            .await?
            .into(),
    ))
}

/// Internal transfers in and out, newest first.
#[utoipa::path(get, path = "/api/v1/me/transfers", responses((status = 200, body = [TransferView])))]
async fn transfers(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<Vec<TransferView>>, ApiError> {
    Ok(Json(s.withdrawals.transfers(&auth).await?))
}

/// Deposits, newest first.
#[utoipa::path(get, path = "/api/v1/me/deposits", responses((status = 200, body = [DepositRecord])))]
async fn deposits(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<Vec<DepositRecord>>, ApiError> {
    Ok(Json(s.withdrawals.deposits(&auth).await?))
}
