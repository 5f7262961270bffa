//! The JSON API of changing the account's email address, and of cancelling a change from
//! the link mailed to the old address.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Authed};
use crate::http::AppState;
use crate::service::Client;

#[derive(OpenApi)]
#[openapi(
    paths(start, confirm, cancel),
    components(schemas(NewEmailBody, EmailCodeBody, EmailChanged, CancelBody))
)]
pub struct EmailDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/email-change", post(start))
        .route("/api/v1/me/email-change/confirm", post(confirm))
        .route("/api/v1/email-change/cancel", post(cancel))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEmailBody {
    new_email: String,
}

/// Starts an email change (needs a step-up): a 6-digit code goes to the new address.
#[utoipa::path(post, path = "/api/v1/me/email-change", request_body = NewEmailBody, responses(
    (status = 202, description = "A code was mailed to the new address"),
    (status = 409, body = ErrorBody, description = "email_change_pending (a change less than 48 hours old)"),
    (status = 422, body = ErrorBody, description = "invalid_email, same_email"),
))]
async fn start(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<NewEmailBody>,
) -> Result<StatusCode, ApiError> {
    s.email_change.start(&auth, &req.new_email, &client).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailCodeBody {
    code: String,
}

#[derive(Serialize, ToSchema)]
pub struct EmailChanged {
    status: &'static str,
    email: String,
    message: &'static str,
}

/// Confirms with the code from the new address: the address changes at once, withdrawals
/// are locked for 48 hours, and the old address is told with a link that cancels the
/// change within those 48 hours.
#[utoipa::path(post, path = "/api/v1/me/email-change/confirm", request_body = EmailCodeBody, responses(
    (status = 200, body = EmailChanged),
    (status = 400, body = ErrorBody, description = "invalid_code, code_expired"),
    (status = 409, body = ErrorBody, description = "email_taken"),
    (status = 429, body = ErrorBody, description = "too_many_attempts"),
))]
async fn confirm(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<EmailCodeBody>,
) -> Result<Json<EmailChanged>, ApiError> {
    let email = s.email_change.confirm(&auth, &req.code, &client).await?;
    Ok(Json(EmailChanged {
        status: "changed",
        email,
        message: "Your address was changed. Withdrawals are locked for 48 hours; for those 48 hours the old address keeps receiving security mail and can cancel the change.",
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// From the link `/email-change/cancel/{token}` mailed to the old address.
    token: String,
}

/// Cancels an email change from the old address's link (within 48 hours): the old address
/// comes back and every session ends.
#[utoipa::path(post, path = "/api/v1/email-change/cancel", request_body = CancelBody, responses(
    (status = 200, description = "Cancelled"),
    (status = 404, body = ErrorBody, description = "cancel_link_invalid"),
    (status = 409, body = ErrorBody, description = "email_taken"),
))]
async fn cancel(
    State(s): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<CancelBody>,
) -> Result<Response, ApiError> {
    s.email_change.cancel(&req.token, &client).await?;
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({"status": "cancelled", "message": "The change was cancelled; the old address is back and every session was signed out."})),
    )
        .into_response())
}
