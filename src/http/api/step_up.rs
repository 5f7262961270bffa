//! The JSON API of step-up: proving again, before a sensitive action, that the owner is
//! here (a second-factor code, a passkey, or without a second factor the password and a
//! mailed code).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use webauthn_rs::prelude::PublicKeyCredential;

use super::{credential, CeremonyFinish, CodeRequest};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Authed};
use crate::http::AppState;
use crate::service::Client;

#[derive(OpenApi)]
#[openapi(
    paths(
        step_up,
        step_up_email_code,
        step_up_passkey_start,
        step_up_passkey_finish
    ),
    components(schemas(SteppedUp, StepUpRequest, EmailStepUpRequest, StepUpCodeSent))
)]
pub struct StepUpDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/step-up", post(step_up))
        .route("/api/v1/me/step-up/email-code", post(step_up_email_code))
        .route(
            "/api/v1/me/step-up/passkey/start",
            post(step_up_passkey_start),
        )
        .route(
            "/api/v1/me/step-up/passkey/finish",
            post(step_up_passkey_finish),
        )
}

#[derive(Serialize, ToSchema)]
pub struct SteppedUp {
    stepped_up_until: i64,
}

/// The proof of a step-up: a second-factor code, or (on an account without a second
/// factor) the password plus the mailed code.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StepUpRequest {
    /// An account with an authenticator app or backup codes: a current code from the app
    /// or an unused backup code.
    Code(CodeRequest),
    /// An account without a second factor: its password and the code mailed by
    /// `POST /api/v1/me/step-up/email-code`.
    PasswordAndEmailCode(EmailStepUpRequest),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailStepUpRequest {
    password: String,
    /// The 6-digit code from the mail.
    email_code: String,
}

/// Proves it is the owner for this session: sensitive actions (second factors, backup
/// codes, API keys, devices, allowlist, email, turning protections off) are allowed for
/// the next five minutes. With a second factor: `{code}` (or the passkey step-up). Without
/// one: `{password, email_code}`.
#[utoipa::path(post, path = "/api/v1/me/step-up", request_body = StepUpRequest, responses(
    (status = 200, body = SteppedUp),
    (status = 400, body = ErrorBody, description = "invalid_code, code_expired"),
    (status = 403, body = ErrorBody, description = "wrong_password, passkey_required"),
    (status = 409, body = ErrorBody, description = "no_second_factor ({code} on an account without one: use {password, email_code}), use_second_factor ({password, email_code} on an account with one)"),
    (status = 422, body = ErrorBody, description = "invalid_body"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (throttled per session, or 5 wrong mailed codes: ask for a new one)"),
))]
async fn step_up(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<StepUpRequest>,
) -> Result<Json<SteppedUp>, ApiError> {
    let stepped_up_until = match req {
        StepUpRequest::Code(r) => s.step_up.step_up_with_code(&auth, &r.code, &client).await?,
        StepUpRequest::PasswordAndEmailCode(r) => {
            s.step_up
                .step_up_with_email_code(&auth, &r.password, &r.email_code, &client)
                .await?
        }
    };
    Ok(Json(SteppedUp { stepped_up_until }))
}

#[derive(Serialize, ToSchema)]
pub struct StepUpCodeSent {
    /// `false` when a code was sent less than a minute ago: that one still works, and no
    /// new mail went out.
    sent: bool,
    /// When the current code stops working (Unix ms).
    expires_at: i64,
}

/// Mails a 6-digit code to the account's address, for `POST /api/v1/me/step-up` with
/// `{password, email_code}` (accounts without a second factor only). Valid 10 minutes,
/// once, 5 tries; at most one new code a minute.
#[utoipa::path(post, path = "/api/v1/me/step-up/email-code", responses(
    (status = 202, body = StepUpCodeSent),
    (status = 409, body = ErrorBody, description = "use_second_factor (the account has a second factor)"),
))]
async fn step_up_email_code(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
) -> Result<(StatusCode, Json<StepUpCodeSent>), ApiError> {
    let (sent, expires_at) = s.step_up.send_step_up_code(&auth, &client).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(StepUpCodeSent { sent, expires_at }),
    ))
}

/// Starts a step-up with a passkey.
#[utoipa::path(post, path = "/api/v1/me/step-up/passkey/start", responses(
    (status = 200, description = "{ceremony_id, options}"),
    (status = 409, body = ErrorBody, description = "no_passkey"),
))]
async fn step_up_passkey_start(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Response, ApiError> {
    Ok(Json(s.passkeys.passkey_step_up_start(&auth).await?).into_response())
}

/// Finishes a step-up with a passkey.
#[utoipa::path(post, path = "/api/v1/me/step-up/passkey/finish", request_body = CeremonyFinish, responses(
    (status = 200, body = SteppedUp),
    (status = 401, body = ErrorBody, description = "passkey_failed, challenge_expired"),
))]
async fn step_up_passkey_finish(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<CeremonyFinish>,
) -> Result<Json<SteppedUp>, ApiError> {
    let cred: PublicKeyCredential = credential(req.credential)?;
    Ok(Json(SteppedUp {
        stepped_up_until: s
            .passkeys
            .passkey_step_up_finish(&auth, &req.ceremony_id, &cred, &client)
            .await?,
    }))
}
