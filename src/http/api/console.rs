//! The operator console's JSON API under `/api/v1/console/`: enrolment, sign-in and
//! sign-out with the console's own cookie, and who is signed in.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::domain::operator::{Operator, Power, Role, SESSION_ABSOLUTE};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ConsoleAuthed};
use crate::http::AppState;
use crate::service::Client;

#[derive(OpenApi)]
#[openapi(
    paths(enrol, enrol_confirm, sign_in, sign_out, me),
    components(schemas(
        EnrolRequest,
        EnrolResponse,
        EnrolConfirmRequest,
        ConsoleSignInRequest,
        OperatorView
    )),
    tags((name = "console", description = "The operator console: operators, their sessions, account lookup and freeze."))
)]
pub struct ConsoleDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/console/enrol", post(enrol))
        .route("/api/v1/console/enrol/confirm", post(enrol_confirm))
        .route("/api/v1/console/sessions", post(sign_in))
        .route("/api/v1/console/sessions/current", delete(sign_out))
        .route("/api/v1/console/me", get(me))
}

/// Whether an operation acts as a signed-in operator (needs the console cookie).
pub fn console_signed_in(path: &str) -> bool {
    path.starts_with("/api/v1/console/")
        && !matches!(
            path,
            "/api/v1/console/enrol" | "/api/v1/console/enrol/confirm" | "/api/v1/console/sessions"
        )
}

/// An operator as the console shows them.
#[derive(Serialize, ToSchema)]
pub struct OperatorView {
    id: String,
    email: String,
    /// `support`, `reviewer` or `admin`.
    role: String,
    /// What this role may do: `lookup`, `tickets`, `recoveries`, `freeze`, `operators`,
    /// `settings`.
    powers: Vec<&'static str>,
}

impl From<&Operator> for OperatorView {
    fn from(o: &Operator) -> Self {
        let all = [
            (Power::Lookup, "lookup"),
            (Power::Tickets, "tickets"),
            (Power::Recoveries, "recoveries"),
            (Power::Freeze, "freeze"),
            (Power::Operators, "operators"),
            (Power::Settings, "settings"),
        ];
        Self {
            id: o.id.clone(),
            email: o.email.clone(),
            role: o.role.as_str().to_owned(),
            powers: all
                .iter()
                .filter(|(p, _)| o.may(*p))
                .map(|(_, n)| *n)
                .collect(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The token of the enrolment link (`/console/enrol/{token}`).
    token: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct EnrolResponse {
    /// Base32, for typing into the authenticator app.
    totp_secret: String,
    otpauth_uri: String,
}

/// Enrolment, first step: chooses the password and answers a fresh authenticator secret.
/// The link stays usable until a code confirms it (24 hours from its creation).
#[utoipa::path(post, path = "/api/v1/console/enrol", tag = "console", request_body = EnrolRequest, responses(
    (status = 200, body = EnrolResponse),
    (status = 404, body = ErrorBody, description = "enrolment_invalid: unknown, used or expired link"),
    (status = 422, body = ErrorBody, description = "weak_password"),
))]
async fn enrol(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<EnrolRequest>,
) -> Result<Json<EnrolResponse>, ApiError> {
    let totp = s.operators.enrol(&req.token, &req.password).await?;
    Ok(Json(EnrolResponse {
        totp_secret: totp.totp_secret,
        otpauth_uri: totp.otpauth_uri,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolConfirmRequest {
    token: String,
    /// The 6-digit code the authenticator app shows.
    code: String,
}

/// Enrolment, second step: a code from the app; the link is spent and the operator can
/// sign in.
#[utoipa::path(post, path = "/api/v1/console/enrol/confirm", tag = "console", request_body = EnrolConfirmRequest, responses(
    (status = 200, body = OperatorView),
    (status = 400, body = ErrorBody, description = "invalid_code"),
    (status = 404, body = ErrorBody, description = "enrolment_invalid"),
    (status = 409, body = ErrorBody, description = "enrolment_not_started"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (see Retry-After)"),
))]
async fn enrol_confirm(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<EnrolConfirmRequest>,
) -> Result<Json<OperatorView>, ApiError> {
    let operator = s.operators.enrol_confirm(&req.token, &req.code).await?;
    Ok(Json(OperatorView::from(&operator)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSignInRequest {
    email: String,
    password: String,
    /// The 6-digit code the authenticator app shows (each code works once).
    code: String,
}

/// Operator sign-in: sets the console cookie (`rampart_console`, `HttpOnly`,
/// `SameSite=Strict`). Unknown, disabled, wrong password and wrong code answer alike.
#[utoipa::path(post, path = "/api/v1/console/sessions", tag = "console", request_body = ConsoleSignInRequest, responses(
    (status = 200, body = OperatorView),
    (status = 401, body = ErrorBody, description = "invalid_credentials"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (see Retry-After)"),
))]
async fn sign_in(
    State(s): State<AppState>,
    jar: CookieJar,
    client: Client,
    ApiJson(req): ApiJson<ConsoleSignInRequest>,
) -> Result<Response, ApiError> {
    let signed = s
        .operators
        .sign_in(&req.email, &req.password, &req.code, &client)
        .await?;
    let cookie = s.console_cookie(signed.token, time::Duration::milliseconds(SESSION_ABSOLUTE));
    Ok((jar.add(cookie), Json(OperatorView::from(&signed.operator))).into_response())
}

/// Ends the console session.
#[utoipa::path(delete, path = "/api/v1/console/sessions/current", tag = "console", responses(
    (status = 204, description = "Signed out"),
))]
async fn sign_out(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
    client: Client,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    s.operators
        .sign_out(&authed.operator, &authed.token, &client)
        .await?;
    Ok((jar.add(s.expired_console_cookie()), StatusCode::NO_CONTENT).into_response())
}

/// The signed-in operator and what their role may do.
#[utoipa::path(get, path = "/api/v1/console/me", tag = "console", responses(
    (status = 200, body = OperatorView),
))]
async fn me(authed: ConsoleAuthed) -> Json<OperatorView> {
    Json(OperatorView::from(&authed.operator))
}

/// Every role name, for forms.
pub fn role_names() -> Vec<&'static str> {
    Role::ALL.iter().map(|r| r.as_str()).collect()
}
