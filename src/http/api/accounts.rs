//! The JSON API of accounts: registration, email confirmation, the account itself and its
//! anti-phishing code.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Authed};
use crate::http::AppState;
use crate::service::Client;

#[derive(OpenApi)]
#[openapi(
    paths(register, confirm, resend_confirmation, me, set_anti_phishing_code),
    components(schemas(
        RegisterRequest,
        ConfirmRequest,
        ResendRequest,
        StatusResponse,
        MeResponse,
        AntiPhishingRequest
    ))
)]
pub struct AccountsDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/accounts", post(register))
        .route("/api/v1/accounts/confirm", post(confirm))
        .route("/api/v1/accounts/confirm/resend", post(resend_confirmation))
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/anti-phishing-code", put(set_anti_phishing_code))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "alice@example.com")]
    email: String,
    /// At least 12 characters, hard to guess (zxcvbn score ≥ 3), not containing the email.
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct StatusResponse {
    status: &'static str,
    message: &'static str,
}

/// Creates an account and mails a 6-digit confirmation code. The answer is the same when the
/// address already has an account (its owner is told by mail instead).
#[utoipa::path(post, path = "/api/v1/accounts", request_body = RegisterRequest, responses(
    (status = 202, body = StatusResponse, description = "A confirmation code was mailed (if the address is new)"),
    (status = 422, body = ErrorBody, description = "invalid_email, weak_password, invalid_body"),
    (status = 429, body = ErrorBody, description = "too_many_attempts: too many registrations from this address or for this email (see Retry-After); the same for new and existing addresses"),
))]
async fn register(
    State(s): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    s.accounts
        .register(&req.email, &req.password, &client)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(StatusResponse {
            status: "confirmation_sent",
            message: "Check your mail for a 6-digit code and confirm your address.",
        }),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    email: String,
    #[schema(example = "042917")]
    code: String,
}

/// Confirms the email address with the mailed code (valid 10 minutes, 5 tries).
#[utoipa::path(post, path = "/api/v1/accounts/confirm", request_body = ConfirmRequest, responses(
    (status = 200, body = StatusResponse),
    (status = 400, body = ErrorBody, description = "invalid_code, code_expired"),
    (status = 429, body = ErrorBody, description = "too_many_attempts: ask for a new code"),
))]
async fn confirm(
    State(s): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> Result<Json<StatusResponse>, ApiError> {
    s.accounts
        .confirm_email(&req.email, &req.code, &client)
        .await?;
    Ok(Json(StatusResponse {
        status: "confirmed",
        message: "Your email address is confirmed. You can sign in.",
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    email: String,
}

/// Mails a new confirmation code to an unconfirmed address (at most once a minute).
#[utoipa::path(post, path = "/api/v1/accounts/confirm/resend", request_body = ResendRequest, responses(
    (status = 202, body = StatusResponse),
))]
async fn resend_confirmation(
    State(s): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<ResendRequest>,
) -> Result<Response, ApiError> {
    s.accounts.resend_confirmation(&req.email, &client).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(StatusResponse {
            status: "sent_if_pending",
            message: "If this address waits for confirmation, a new code is on its way.",
        }),
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    /// Stable public account number.
    uid: String,
    email: String,
    email_confirmed: bool,
    /// Shown at the top of every mail Rampart sends; null until set.
    anti_phishing_code: Option<String>,
    created_at: i64,
}

/// The signed-in account.
#[utoipa::path(get, path = "/api/v1/me", responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
async fn me(Authed(auth): Authed) -> Json<MeResponse> {
    let a = auth.account;
    Json(MeResponse {
        uid: a.uid,
        email: a.email,
        email_confirmed: a.email_confirmed_at.is_some(),
        anti_phishing_code: a.anti_phishing_code,
        created_at: a.created_at,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AntiPhishingRequest {
    /// 8–32 letters, digits, '-' or '_' (surrounding spaces are ignored). 8 and 32 are the
    /// defaults of the `anti_phishing_min_chars` and `anti_phishing_max_chars` rules.
    #[schema(
        example = "Blue-Falcon7",
        pattern = "^[\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[A-Za-z0-9_-]{8,32}[\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    code: String,
}

/// Sets the anti-phishing code shown in every later mail and on the Security Center.
#[utoipa::path(put, path = "/api/v1/me/anti-phishing-code", request_body = AntiPhishingRequest, responses(
    (status = 200, body = StatusResponse),
    (status = 403, body = ErrorBody, description = "step_up_required (replacing a code that is set)"),
    (status = 422, body = ErrorBody, description = "invalid_anti_phishing_code"),
))]
async fn set_anti_phishing_code(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<AntiPhishingRequest>,
) -> Result<Json<StatusResponse>, ApiError> {
    s.accounts
        .set_anti_phishing_code(&auth, &req.code, &client)
        .await?;
    Ok(Json(StatusResponse {
        status: "set",
        message: "Every mail from now on shows your anti-phishing code.",
    }))
}
