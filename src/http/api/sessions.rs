//! The JSON API of sessions: signing in (the password step, then a second factor or a
//! passkey), signing out, and the account's devices and sign-in history.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use webauthn_rs::prelude::PublicKeyCredential;

use super::{credential, signed_in_response, CeremonyFinish, SignedInResponse};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Authed};
use crate::http::{AppState, SESSION_COOKIE};
use crate::service::sessions::SignInOutcome;
use crate::service::Client;
use crate::store::{Device, Login};

#[derive(OpenApi)]
#[openapi(
    paths(
        sign_in,
        sign_out,
        second_factor,
        passkey_signin_start,
        passkey_signin_finish,
        my_devices,
        my_logins
    ),
    components(schemas(
        SignInRequest,
        SecondFactorRequest,
        PasskeyStartRequest,
        DeviceView,
        DevicesResponse,
        LoginView,
        LoginsResponse
    ))
)]
pub struct SessionsDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sessions", post(sign_in))
        .route("/api/v1/sessions/current", delete(sign_out))
        .route("/api/v1/sessions/second-factor", post(second_factor))
        .route("/api/v1/sessions/passkey/start", post(passkey_signin_start))
        .route(
            "/api/v1/sessions/passkey/finish",
            post(passkey_signin_finish),
        )
        .route("/api/v1/me/devices", get(my_devices))
        .route("/api/v1/me/logins", get(my_logins))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    email: String,
    password: String,
}

/// Signs in and sets the session cookie (`HttpOnly; Secure; SameSite=Lax`). An unknown
/// email and a wrong password get the same answer. When the account has a second factor,
/// a right password answers `second_factor_required` with a challenge instead.
#[utoipa::path(post, path = "/api/v1/sessions", request_body = SignInRequest, responses(
    (status = 200, body = SignedInResponse),
    (status = 401, body = ErrorBody, description = "invalid_credentials, account_frozen"),
    (status = 403, body = ErrorBody, description = "email_not_confirmed"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (see Retry-After)"),
))]
async fn sign_in(
    State(s): State<AppState>,
    jar: CookieJar,
    client: Client,
    ApiJson(req): ApiJson<SignInRequest>,
) -> Result<Response, ApiError> {
    match s.signin.sign_in(&req.email, &req.password, &client).await? {
        SignInOutcome::SignedIn(signed) => Ok(signed_in_response(&s, jar, signed)),
        SignInOutcome::SecondFactorRequired { challenge, methods } => Ok(Json(SignedInResponse {
            status: "second_factor_required",
            uid: None,
            challenge: Some(challenge),
            methods: Some(methods),
        })
        .into_response()),
    }
}

/// Ends the current session.
#[utoipa::path(delete, path = "/api/v1/sessions/current", responses(
    (status = 204, description = "Signed out"),
    (status = 401, body = ErrorBody),
))]
async fn sign_out(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    s.sessions.sign_out(&auth, &client).await?;
    Ok((
        jar.add(s.expired_cookie(SESSION_COOKIE)),
        StatusCode::NO_CONTENT,
    )
        .into_response())
}

/// One device, in the six fields of the guides.
#[derive(Serialize, ToSchema)]
pub struct DeviceView {
    id: String,
    /// The device this request comes from.
    current: bool,
    /// On the owner's trusted list.
    trusted: bool,
    device_model: String,
    os: String,
    browser: String,
    ip: String,
    city: Option<String>,
    country: Option<String>,
    /// Unix milliseconds.
    first_seen: i64,
    last_active: i64,
}

impl DeviceView {
    fn new(d: Device, current_id: &str) -> Self {
        Self {
            current: d.id == current_id,
            trusted: d.trusted_at.is_some(),
            id: d.id,
            device_model: d.model,
            os: d.os,
            browser: d.browser,
            ip: d.ip,
            city: d.city,
            country: d.country,
            first_seen: d.first_seen,
            last_active: d.last_active,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DevicesResponse {
    devices: Vec<DeviceView>,
}

/// Every device that signed in during the last 90 days, most recently active first.
#[utoipa::path(get, path = "/api/v1/me/devices", responses((status = 200, body = DevicesResponse), (status = 401, body = ErrorBody)))]
async fn my_devices(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<DevicesResponse>, ApiError> {
    let current = auth.session.device_id.clone();
    let devices = s.sessions.devices(&auth).await?;
    Ok(Json(DevicesResponse {
        devices: devices
            .into_iter()
            .map(|d| DeviceView::new(d, &current))
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct LoginView {
    success: bool,
    /// `signed_in`, `wrong_password`, `email_not_confirmed`, `throttled`.
    reason: String,
    ip: String,
    city: Option<String>,
    country: Option<String>,
    device_id: Option<String>,
    device_model: String,
    os: String,
    browser: String,
    at: i64,
    /// `password`, `password+totp`, `password+backup_code`, `password+passkey`, `passkey`.
    method: String,
}

impl From<Login> for LoginView {
    fn from(l: Login) -> Self {
        Self {
            success: l.success,
            reason: l.reason,
            ip: l.ip,
            city: l.city,
            country: l.country,
            device_id: l.device_id,
            device_model: l.model,
            os: l.os,
            browser: l.browser,
            at: l.at,
            method: l.method.as_str().to_owned(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct LoginsResponse {
    logins: Vec<LoginView>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LoginsQuery {
    /// How many, newest first: default 100; values outside 1–500 count as 1 or 500.
    limit: Option<i64>,
}

/// Sign-in attempts on this account, newest first: successes and failures with IP,
/// location and device.
#[utoipa::path(get, path = "/api/v1/me/logins", params(LoginsQuery), responses((status = 200, body = LoginsResponse), (status = 401, body = ErrorBody)))]
async fn my_logins(
    State(s): State<AppState>,
    Authed(auth): Authed,
    query: Result<Query<LoginsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LoginsResponse>, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let logins = s.sessions.logins(&auth, q.limit.unwrap_or(100)).await?;
    Ok(Json(LoginsResponse {
        logins: logins.into_iter().map(LoginView::from).collect(),
    }))
}

// ---- the second sign-in step -------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorRequest {
    /// From the `second_factor_required` answer of `POST /api/v1/sessions`.
    challenge: String,
    /// A current authenticator-app code or an unused backup code.
    code: String,
}

/// Finishes a sign-in with an authenticator-app code or a backup code.
#[utoipa::path(post, path = "/api/v1/sessions/second-factor", request_body = SecondFactorRequest, responses(
    (status = 200, body = super::SignedInResponse),
    (status = 400, body = ErrorBody, description = "invalid_code"),
    (status = 401, body = ErrorBody, description = "challenge_expired"),
    (status = 403, body = ErrorBody, description = "passkey_required"),
))]
async fn second_factor(
    State(s): State<AppState>,
    jar: CookieJar,
    client: Client,
    ApiJson(req): ApiJson<SecondFactorRequest>,
) -> Result<Response, ApiError> {
    let signed = s
        .signin
        .sign_in_second_factor(&req.challenge, &req.code, &client)
        .await?;
    Ok(signed_in_response(&s, jar, signed))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PasskeyStartRequest {
    /// The password step's challenge, to use the passkey as the second step; omit for a
    /// passwordless sign-in.
    challenge: Option<String>,
}

/// Starts a passkey sign-in. Answers `{ceremony_id, options}`; pass `options` to
/// `navigator.credentials.get()`.
#[utoipa::path(post, path = "/api/v1/sessions/passkey/start", request_body = PasskeyStartRequest, responses(
    (status = 200, description = "{ceremony_id, options}"),
    (status = 401, body = ErrorBody, description = "challenge_expired"),
))]
async fn passkey_signin_start(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<PasskeyStartRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(
        s.passkeys
            .passkey_signin_start(req.challenge.as_deref())
            .await?,
    )
    .into_response())
}

/// Finishes a passkey sign-in (passwordless, or the second step) and sets the session cookie.
#[utoipa::path(post, path = "/api/v1/sessions/passkey/finish", request_body = CeremonyFinish, responses(
    (status = 200, body = super::SignedInResponse),
    (status = 401, body = ErrorBody, description = "passkey_failed, challenge_expired"),
))]
async fn passkey_signin_finish(
    State(s): State<AppState>,
    jar: CookieJar,
    client: Client,
    ApiJson(req): ApiJson<CeremonyFinish>,
) -> Result<Response, ApiError> {
    let cred: PublicKeyCredential = credential(req.credential)?;
    let signed = s
        .passkeys
        .passkey_signin_finish(&req.ceremony_id, &cred, &client)
        .await?;
    Ok(signed_in_response(&s, jar, signed))
}
