//! The console API of "following the money": the transfer graph out of an account and
//! freezing the receiving accounts, each opening a linked case.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ConsoleAuthed};
use crate::http::AppState;
use crate::service::console::{MoneyEdge, MoneyGraph, MoneyNode, ReceiverFrozen};
use crate::service::Client;

#[derive(OpenApi)]
#[openapi(
    paths(money, freeze_receivers),
    components(schemas(
        MoneyGraph,
        MoneyNode,
        MoneyEdge,
        FreezeReceiversBody,
        FreezeReceiversAnswer,
        ReceiverFrozen
    ))
)]
pub struct ConsoleMoneyDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/console/accounts/{uid}/money", get(money))
        .route(
            "/api/v1/console/accounts/{uid}/freeze-receivers",
            post(freeze_receivers),
        )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MoneyQuery {
    /// How many hops to follow (1–5, default 3).
    #[param(minimum = 1, maximum = 5)]
    hops: Option<u32>,
    /// From when (Unix ms; default 30 days ago).
    since: Option<i64>,
}

/// The internal transfers out of an account, followed several hops (each hop only after
/// the money arrived), with amounts, times and whether each receiver is frozen. Audited.
#[utoipa::path(get, path = "/api/v1/console/accounts/{uid}/money", tag = "console",
    params(("uid" = String, Path, description = "The account's UID"), MoneyQuery),
    responses(
        (status = 200, body = MoneyGraph),
        (status = 404, body = ErrorBody, description = "account_not_found"),
))]
async fn money(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
    client: Client,
    Path(uid): Path<String>,
    query: Result<Query<MoneyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MoneyGraph>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            e.body_text(),
        )
    })?;
    Ok(Json(
        s.console
            .money_graph(
                &authed.operator,
                &uid,
                q.hops.unwrap_or(3),
                q.since,
                &client,
            )
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeReceiversBody {
    /// UIDs of the receiving accounts (1–100).
    uids: Vec<String>,
    /// Why (required): each owner is told.
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct FreezeReceiversAnswer {
    results: Vec<ReceiverFrozen>,
}

/// Freezes receiving accounts in one action (reviewer and up), each with the reason and a
/// case linking it to this account; sessions end and keys are refused at once.
#[utoipa::path(post, path = "/api/v1/console/accounts/{uid}/freeze-receivers", tag = "console",
    params(("uid" = String, Path, description = "The account the money came from")),
    request_body = FreezeReceiversBody,
    responses(
        (status = 200, body = FreezeReceiversAnswer),
        (status = 404, body = ErrorBody, description = "account_not_found"),
        (status = 422, body = ErrorBody, description = "reason_required, invalid_uids"),
))]
async fn freeze_receivers(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
    client: Client,
    Path(uid): Path<String>,
    ApiJson(body): ApiJson<FreezeReceiversBody>,
) -> Result<Json<FreezeReceiversAnswer>, ApiError> {
    let results = s
        .console
        .freeze_receivers(&authed.operator, &uid, &body.uids, &body.reason, &client)
        .await?;
    Ok(Json(FreezeReceiversAnswer { results }))
}
