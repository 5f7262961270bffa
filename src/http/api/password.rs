//! The JSON API of the password: changing it (current password, second factor, mailed
//! code), and the recovery request of someone who lost their second factor and proves the
//! password instead.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Authed};
use crate::http::AppState;
use crate::service::Client;

#[derive(OpenApi)]
#[openapi(
    paths(password_code, change_password, authenticator_reset_request),
    components(schemas(PasswordChangeRequest, PasswordChanged, RecoveryRequestBody))
)]
pub struct PasswordDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/password/code", post(password_code))
        .route("/api/v1/me/password", put(change_password))
        .route(
            "/api/v1/recovery/authenticator-reset",
            post(authenticator_reset_request),
        )
}

/// Mails the 6-digit code a password change needs.
#[utoipa::path(post, path = "/api/v1/me/password/code", responses(
    (status = 202, description = "A code was mailed"),
))]
async fn password_code(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
) -> Result<StatusCode, ApiError> {
    s.recovery.send_password_change_code(&auth, &client).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeRequest {
    current_password: String,
    new_password: String,
    /// From `POST /api/v1/me/password/code`.
    email_code: String,
}

#[derive(Serialize, ToSchema)]
pub struct PasswordChanged {
    status: &'static str,
    other_sessions_ended: u64,
}

/// Changes the password: current password, a fresh second factor (if enrolled) and the
/// mailed code. Every other session ends; withdrawals are locked for 24 hours.
#[utoipa::path(put, path = "/api/v1/me/password", request_body = PasswordChangeRequest, responses(
    (status = 200, body = PasswordChanged),
    (status = 400, body = ErrorBody, description = "invalid_code, code_expired (the mailed code)"),
    (status = 403, body = ErrorBody, description = "step_up_required, wrong_password"),
    (status = 422, body = ErrorBody, description = "weak_password, password_reused"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (see Retry-After)"),
))]
async fn change_password(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<PasswordChangeRequest>,
) -> Result<Json<PasswordChanged>, ApiError> {
    let ended = s
        .recovery
        .change_password(
            &auth,
            &req.current_password,
            &req.new_password,
            &req.email_code,
            &client,
        )
        .await?;
    Ok(Json(PasswordChanged {
        status: "changed",
        other_sessions_ended: ended,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryRequestBody {
    email: String,
    password: String,
    /// What happened, for the reviewer.
    reason: String,
}

/// Asks for an authenticator reset through the recovery review (lost phone and lost
/// backup codes). The answer is the same whatever the address or password.
#[utoipa::path(post, path = "/api/v1/recovery/authenticator-reset", request_body = RecoveryRequestBody, responses(
    (status = 202, description = "Received (the same answer whether or not the details matched an account)"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (see Retry-After)"),
))]
async fn authenticator_reset_request(
    State(s): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<RecoveryRequestBody>,
) -> Result<Response, ApiError> {
    s.recovery
        .request_authenticator_reset(&req.email, &req.password, &req.reason, &client)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"status": "received", "message": "If the details match an account, the request is recorded for review and its owner is told by mail."})),
    )
        .into_response())
}
