//! The operator console's JSON API under `/api/v1/console/`: enrolment, sign-in and
//! sign-out with the console's own cookie, and who is signed in.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::domain::operator::{Operator, Power, Role, SESSION_ABSOLUTE};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{require, ApiJson, ConsoleAuthed};
use crate::http::AppState;
use crate::service::Client;

#[derive(OpenApi)]
#[openapi(
    paths(
        enrol,
        enrol_confirm,
        sign_in,
        sign_out,
        me,
        lookup,
        freeze,
        list_operators,
        add_operator,
        disable_operator,
        settings
    ),
    components(schemas(
        LookupResponse,
        FreezeRequest,
        FreezeResponse,
        OperatorsResponse,
        OperatorListingView,
        AddOperatorRequest,
        AddOperatorResponse,
        SettingsResponse,
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
        .route("/api/v1/console/accounts", get(lookup))
        .route("/api/v1/console/accounts/{uid}/freeze", post(freeze))
        .route(
            "/api/v1/console/operators",
            get(list_operators).post(add_operator),
        )
        .route(
            "/api/v1/console/operators/{id}/disable",
            post(disable_operator),
        )
        .route("/api/v1/console/settings", get(settings))
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

// ---- account lookup and freeze -----------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LookupQuery {
    /// The account's UID, or its email address.
    q: String,
}

/// Everything the console shows about one account. Every section is a list of plain
/// objects; no secret is ever part of it (no password hash, key secret or anti-phishing
/// code: `profile.anti_phishing_code_set` says whether one is set).
#[derive(Serialize, ToSchema)]
pub struct LookupResponse {
    /// uid, email, created_at, email_confirmed_at, frozen_at, frozen {at, by, via,
    /// reason}, anti_phishing_code_set, require_passkey.
    #[schema(value_type = Object)]
    profile: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    devices: serde_json::Value,
    #[schema(value_type = Vec<Object>)]
    sign_ins: serde_json::Value,
    /// Without secrets.
    #[schema(value_type = Vec<Object>)]
    api_keys: serde_json::Value,
    /// Locks in force.
    #[schema(value_type = Vec<Object>)]
    withdrawal_locks: serde_json::Value,
    /// id, kind, status, created_at.
    #[schema(value_type = Vec<Object>)]
    recovery_requests: serde_json::Value,
    /// `[{id, status, requests, created_at, updated_at}]`, newest first.
    tickets: serde_json::Value,
    /// Newest first, each with `verified`: its hash matches its content and it links to
    /// the event before it in the log.
    #[schema(value_type = Vec<Object>)]
    audit_events: serde_json::Value,
    /// {intact, events_checked, broken_at, problem}.
    #[schema(value_type = Object)]
    audit_chain: serde_json::Value,
}

/// Looks an account up by UID or email (role support and up). Every lookup is audited on
/// the account (`console.lookup`, the operator as actor).
#[utoipa::path(get, path = "/api/v1/console/accounts", tag = "console", params(LookupQuery), responses(
    (status = 200, body = LookupResponse),
    (status = 404, body = ErrorBody, description = "account_not_found"),
))]
async fn lookup(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
    client: Client,
    query: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let found = s.console.lookup(&authed.operator, &q.q, &client).await?;
    Ok(Json(serde_json::to_value(found).map_err(|e| {
        ApiError::from(crate::service::ServiceError::Internal(e.into()))
    })?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeRequest {
    /// Why (required): the owner is told "Support froze your account: <reason>".
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct FreezeResponse {
    /// `frozen`, or `already_frozen` (nothing changed).
    status: &'static str,
    frozen_at: Option<i64>,
    sessions_ended: u64,
}

/// Freezes the account (role reviewer and up), with a mandatory reason: every session
/// ends and every API key is refused at once; the owner is mailed and sees it in the
/// inbox. Idempotent.
#[utoipa::path(post, path = "/api/v1/console/accounts/{uid}/freeze", tag = "console", request_body = FreezeRequest,
    params(("uid" = String, Path, description = "The account's UID")),
    responses(
        (status = 200, body = FreezeResponse),
        (status = 400, body = ErrorBody, description = "reason_required: the reason is empty"),
        (status = 404, body = ErrorBody, description = "account_not_found"),
        (status = 422, body = ErrorBody, description = "reason_required: the reason is longer than 500 characters"),
))]
async fn freeze(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
    client: Client,
    Path(uid): Path<String>,
    ApiJson(req): ApiJson<FreezeRequest>,
) -> Result<Json<FreezeResponse>, ApiError> {
    use crate::store::FreezeOutcome;
    if req.reason.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "reason_required",
            "Give the reason for the freeze; the owner is told it.",
        ));
    }
    let outcome = s
        .console
        .freeze(&authed.operator, &uid, &req.reason, &client)
        .await?;
    Ok(Json(match outcome {
        FreezeOutcome::Frozen { sessions_ended } => FreezeResponse {
            status: "frozen",
            frozen_at: Some(s.now()),
            sessions_ended,
        },
        FreezeOutcome::AlreadyFrozen { since } => FreezeResponse {
            status: "already_frozen",
            frozen_at: Some(since),
            sessions_ended: 0,
        },
    }))
}

// ---- admin: operators and settings -------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct OperatorListingView {
    id: String,
    email: String,
    role: String,
    enrolled_at: Option<i64>,
    disabled_at: Option<i64>,
    created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct OperatorsResponse {
    operators: Vec<OperatorListingView>,
}

/// Every operator (role admin).
#[utoipa::path(get, path = "/api/v1/console/operators", tag = "console", responses(
    (status = 200, body = OperatorsResponse),
))]
async fn list_operators(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
) -> Result<Json<OperatorsResponse>, ApiError> {
    require(&authed.operator, Power::Operators)?;
    let list = s.operators.list().await?;
    Ok(Json(OperatorsResponse {
        operators: list
            .into_iter()
            .map(|o| OperatorListingView {
                id: o.id,
                email: o.email,
                role: o.role.as_str().to_owned(),
                enrolled_at: o.enrolled_at,
                disabled_at: o.disabled_at,
                created_at: o.created_at,
            })
            .collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddOperatorRequest {
    email: String,
    /// `support`, `reviewer` or `admin`.
    role: String,
}

#[derive(Serialize, ToSchema)]
pub struct AddOperatorResponse {
    operator: OperatorView,
    /// One-time enrolment link, shown once; works once, for 24 hours.
    enrolment_link: String,
    expires_at: i64,
}

/// Adds an operator (role admin) and answers their one-time enrolment link.
#[utoipa::path(post, path = "/api/v1/console/operators", tag = "console", request_body = AddOperatorRequest, responses(
    (status = 201, body = AddOperatorResponse),
    (status = 409, body = ErrorBody, description = "operator_exists"),
    (status = 422, body = ErrorBody, description = "invalid_email, invalid_role"),
))]
async fn add_operator(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
    ApiJson(req): ApiJson<AddOperatorRequest>,
) -> Result<Response, ApiError> {
    require(&authed.operator, Power::Operators)?;
    let added = s
        .operators
        .add(&req.email, &req.role, Some(&authed.operator))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(AddOperatorResponse {
            operator: OperatorView::from(&added.operator),
            enrolment_link: added.enrolment_link,
            expires_at: added.expires_at,
        }),
    )
        .into_response())
}

/// Disables an operator (role admin): their console sessions end at once.
#[utoipa::path(post, path = "/api/v1/console/operators/{id}/disable", tag = "console",
    params(("id" = String, Path, description = "The operator's id")),
    responses(
        (status = 204, description = "Disabled"),
        (status = 404, body = ErrorBody, description = "operator_not_found"),
        (status = 409, body = ErrorBody, description = "cannot_disable_self"),
))]
async fn disable_operator(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&authed.operator, Power::Operators)?;
    s.operators.disable(&id, Some(&authed.operator)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SettingsResponse {
    /// Every number of the rules table in force (no secret is among them).
    #[schema(value_type = Object)]
    rules: serde_json::Value,
    /// The console's own limits, in minutes.
    console_idle_minutes: i64,
    console_absolute_minutes: i64,
    enrolment_link_hours: i64,
    /// Settings are read-only here: they change in `rampart.toml` / `RAMPART_*` and a
    /// restart.
    read_only: bool,
}

/// The effective rules (role admin), read-only.
#[utoipa::path(get, path = "/api/v1/console/settings", tag = "console", responses(
    (status = 200, body = SettingsResponse),
))]
async fn settings(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
) -> Result<Json<SettingsResponse>, ApiError> {
    use crate::clock::{HOUR, MINUTE};
    use crate::domain::operator::{ENROLMENT_TTL, SESSION_IDLE};
    require(&authed.operator, Power::Settings)?;
    Ok(Json(SettingsResponse {
        rules: serde_json::to_value(&s.rules).unwrap_or_default(),
        console_idle_minutes: SESSION_IDLE / MINUTE,
        console_absolute_minutes: SESSION_ABSOLUTE / MINUTE,
        enrolment_link_hours: ENROLMENT_TTL / HOUR,
        read_only: true,
    }))
}

/// Every role name, for forms.
pub fn role_names() -> Vec<&'static str> {
    Role::ALL.iter().map(|r| r.as_str()).collect()
}
