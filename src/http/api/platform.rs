//! The platform's side of the withdrawal guard (bearer token): ask about a withdrawal, read
//! the feed of releases and recalls, report broadcast and confirmation, record internal
//! transfers and deposits.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, PlatformAuthed};
use crate::http::AppState;
use crate::service::withdrawals::{
    DepositRequest, FeedItem, ReasonView, TransferRequest, WithdrawalAnswer, WithdrawalRequest,
    WithdrawalView,
};
use crate::store::withdrawals::DepositRecord;

#[derive(OpenApi)]
#[openapi(
    paths(request, feed, withdrawal, broadcast, confirmed, transfer, deposit),
    components(schemas(
        WithdrawalRequest,
        WithdrawalAnswer,
        ReasonView,
        FeedPage,
        FeedItem,
        WithdrawalView,
        BroadcastBody,
        TransferRequest,
        TransferAnswer,
        DepositRequest,
        DepositAnswer
    ))
)]
pub struct PlatformDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/platform/withdrawals", post(request))
        .route("/api/v1/platform/withdrawals/released", get(feed))
        .route("/api/v1/platform/withdrawals/{id}", get(withdrawal))
        .route(
            "/api/v1/platform/withdrawals/{id}/broadcast",
            post(broadcast),
        )
        .route(
            "/api/v1/platform/withdrawals/{id}/confirmed",
            post(confirmed),
        )
        .route("/api/v1/platform/transfers", post(transfer))
        .route("/api/v1/platform/deposits", post(deposit))
}

/// Asks whether a withdrawal may leave. The answer is `released` (pay it out), `held`
/// (until `release_at`; it appears in the feed when released, unless the owner cancels or
/// a freeze takes it back) or `refused`, with the reasons. The decision is taken in one
/// transaction with the account's freeze, locks, allowlist, withdraw delay and the key's
/// rules. Idempotent on `request_id`: the same request gets the same answer; a different
/// request under the same id is refused (409 `request_id_reused`). Bad input is refused
/// before anything is stored.
#[utoipa::path(post, path = "/api/v1/platform/withdrawals", request_body = WithdrawalRequest, responses(
    (status = 200, body = WithdrawalAnswer),
    (status = 404, body = ErrorBody, description = "unknown_account"),
    (status = 409, body = ErrorBody, description = "request_id_reused"),
    (status = 422, body = ErrorBody, description = "invalid_request_id, unknown_asset, unknown_network, invalid_amount, negative_amount, amount_not_positive, too_many_decimals, address_has_spaces, address_not_ascii, invalid_address, memo_not_allowed, invalid_memo, invalid_via, api_key_required, unexpected_api_key"),
))]
async fn request(
    State(s): State<AppState>,
    PlatformAuthed(platform): PlatformAuthed,
    ApiJson(req): ApiJson<WithdrawalRequest>,
) -> Result<Json<WithdrawalAnswer>, ApiError> {
    Ok(Json(s.withdrawals.request(&platform, &req).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The last `seq` seen (0 or absent: from the start).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many (1–500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct FeedPage {
    items: Vec<FeedItem>,
    /// Pass as `after` for the next page (the same value when nothing is new).
    next: i64,
}

/// The feed of released withdrawals to pay out and of recalled ones (a freeze took back a
/// released withdrawal that was not yet broadcast: do not send it), in commit order.
#[utoipa::path(get, path = "/api/v1/platform/withdrawals/released", params(FeedQuery), responses(
    (status = 200, body = FeedPage),
    (status = 422, body = ErrorBody, description = "invalid_cursor"),
))]
async fn feed(
    State(s): State<AppState>,
    PlatformAuthed(_): PlatformAuthed,
    query: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FeedPage>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            e.body_text(),
        )
    })?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    if after < 0 || !(1..=500).contains(&limit) {
        return Err(
            crate::service::ServiceError::from(crate::domain::Invalid::new(
                "invalid_cursor",
                "after is 0 or more; limit is 1 to 500.",
            ))
            .into(),
        );
    }
    let items = s.withdrawals.feed(after, limit).await?;
    let next = items.last().map_or(after, |i| i.seq);
    Ok(Json(FeedPage { items, next }))
}

/// One withdrawal, as it stands now.
#[utoipa::path(get, path = "/api/v1/platform/withdrawals/{id}", params(("id" = String, Path)), responses(
    (status = 200, body = WithdrawalView),
))]
async fn withdrawal(
    State(s): State<AppState>,
    PlatformAuthed(_): PlatformAuthed,
    Path(id): Path<String>,
) -> Result<Json<WithdrawalView>, ApiError> {
    Ok(Json(s.withdrawals.platform_withdrawal(&id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastBody {
    /// The TxID of the signed transaction.
    txid: String,
}

/// Reports a released withdrawal as broadcast. Report it **before** sending the signed
/// transaction to the network: 409 `withdrawal_recalled` means a freeze took it back, and it
/// must not be sent. Repeating the same report is harmless.
#[utoipa::path(post, path = "/api/v1/platform/withdrawals/{id}/broadcast", params(("id" = String, Path)), request_body = BroadcastBody, responses(
    (status = 200, body = WithdrawalView),
    (status = 409, body = ErrorBody, description = "withdrawal_recalled, wrong_state"),
    (status = 422, body = ErrorBody, description = "invalid_txid"),
))]
async fn broadcast(
    State(s): State<AppState>,
    PlatformAuthed(platform): PlatformAuthed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<BroadcastBody>,
) -> Result<Json<WithdrawalView>, ApiError> {
    Ok(Json(
        s.withdrawals.broadcast(&platform, &id, &body.txid).await?,
    ))
}

/// Reports a broadcast withdrawal as confirmed on the chain.
#[utoipa::path(post, path = "/api/v1/platform/withdrawals/{id}/confirmed", params(("id" = String, Path)), responses(
    (status = 200, body = WithdrawalView),
    (status = 409, body = ErrorBody, description = "wrong_state, withdrawal_recalled"),
))]
async fn confirmed(
    State(s): State<AppState>,
    PlatformAuthed(platform): PlatformAuthed,
    Path(id): Path<String>,
) -> Result<Json<WithdrawalView>, ApiError> {
    Ok(Json(s.withdrawals.confirmed(&platform, &id).await?))
}

#[derive(Serialize, ToSchema)]
pub struct TransferAnswer {
    id: String,
    /// `completed` or `refused` (the sender is frozen, being recovered, or its withdrawals
    /// are locked: an internal transfer is a way out as well).
    state: String,
    code: Option<String>,
    reasons: Vec<ReasonView>,
}

/// Records an internal transfer between two accounts (idempotent on `request_id`), so
/// the history, the incident report and the console's money trail show it.
#[utoipa::path(post, path = "/api/v1/platform/transfers", request_body = TransferRequest, responses(
    (status = 200, body = TransferAnswer),
    (status = 404, body = ErrorBody, description = "unknown_account"),
    (status = 409, body = ErrorBody, description = "request_id_reused"),
    (status = 422, body = ErrorBody, description = "invalid_request_id, unknown_asset, invalid_amount, negative_amount, amount_not_positive, too_many_decimals, same_account"),
))]
async fn transfer(
    State(s): State<AppState>,
    PlatformAuthed(platform): PlatformAuthed,
    ApiJson(req): ApiJson<TransferRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(s.withdrawals.transfer(&platform, &req).await?))
}

#[derive(Serialize, ToSchema)]
pub struct DepositAnswer {
    id: String,
    asset: String,
    network: String,
    amount: String,
    address: Option<String>,
    txid: String,
    created_at: i64,
}

/// Records a deposit (idempotent on `request_id`).
#[utoipa::path(post, path = "/api/v1/platform/deposits", request_body = DepositRequest, responses(
    (status = 200, body = DepositAnswer),
    (status = 404, body = ErrorBody, description = "unknown_account"),
    (status = 409, body = ErrorBody, description = "request_id_reused"),
    (status = 422, body = ErrorBody, description = "invalid_request_id, unknown_asset, unknown_network, invalid_amount, too_many_decimals, invalid_txid, invalid_address"),
))]
async fn deposit(
    State(s): State<AppState>,
    PlatformAuthed(platform): PlatformAuthed,
    ApiJson(req): ApiJson<DepositRequest>,
) -> Result<Json<DepositAnswer>, ApiError> {
    let d: DepositRecord = s.withdrawals.deposit(&platform, &req).await?;
    Ok(Json(DepositAnswer {
        id: d.id,
        asset: d.asset,
        network: d.network,
        amount: d.amount,
        address: d.address,
        txid: d.txid,
        created_at: d.created_at,
    }))
}
