//! The JSON API under `/api/v1`, and its OpenAPI document generated from these handlers.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Authed};
use super::{AppState, SESSION_COOKIE};
use crate::service::sessions::{SignInOutcome, SignedIn};
use crate::service::Client;
use crate::store::{Device, Login};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rampart",
        description = "Account protection: accounts, sessions, devices, login history."
    ),
    paths(
        register,
        confirm,
        resend_confirmation,
        sign_in,
        sign_out,
        me,
        my_devices,
        my_logins,
        set_anti_phishing_code
    ),
    components(schemas(
        ErrorBody,
        RegisterRequest,
        ConfirmRequest,
        ResendRequest,
        SignInRequest,
        StatusResponse,
        SignedInResponse,
        MeResponse,
        DeviceView,
        DevicesResponse,
        LoginView,
        LoginsResponse,
        AntiPhishingRequest
    ))
)]
pub struct ApiDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/accounts", post(register))
        .route("/api/v1/accounts/confirm", post(confirm))
        .route("/api/v1/accounts/confirm/resend", post(resend_confirmation))
        .route("/api/v1/sessions", post(sign_in))
        .route("/api/v1/sessions/current", delete(sign_out))
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/devices", get(my_devices))
        .route("/api/v1/me/logins", get(my_logins))
        .route("/api/v1/me/anti-phishing-code", put(set_anti_phishing_code))
}

async fn openapi() -> Json<serde_json::Value> {
    Json(document())
}

/// The OpenAPI document: the handlers' annotations, plus the answers that every operation
/// of a kind can give whatever its handler does (they come from the extractors and the
/// middleware, not from the handler), so the document lists every status a client can get.
pub fn document() -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    doc.merge(super::api_factors::FactorsDoc::openapi());
    doc.merge(super::api_keys::KeysDoc::openapi());
    doc.merge(super::api_protection::ProtectionDoc::openapi());
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    add_common_answers(&mut doc);
    doc
}

/// Whether an operation acts as the signed-in account (needs the session cookie).
fn signed_in(path: &str) -> bool {
    path.starts_with("/api/v1/me") || path == "/api/v1/sessions/current"
}

fn add_common_answers(doc: &mut serde_json::Value) {
    use serde_json::{json, Value};
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        })
    };
    doc["components"]["securitySchemes"]["session"] = json!({
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "The session cookie set by a sign-in."
    });
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if !path.starts_with("/api/") {
            continue;
        }
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let state_changing = matches!(method.as_str(), "post" | "put" | "patch" | "delete");
            let has_body = op.get("requestBody").is_some();
            let has_path_params = path.contains('{');
            let has_query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            let mut add = Vec::new();
            if has_body {
                add.push(("400", "malformed_json: the body is not JSON"));
                add.push(("413", "body_too_large"));
                add.push((
                    "422",
                    "invalid_body: the body does not have the expected fields",
                ));
            }
            if has_query {
                add.push(("400", "invalid_query"));
            }
            if state_changing {
                add.push((
                    "415",
                    "unsupported_media_type: a body or Content-Type that is not JSON",
                ));
            }
            if has_path_params {
                add.push(("404", "not_found"));
            }
            if signed_in(path) {
                add.push((
                    "401",
                    "unauthenticated, session_expired, account_frozen: sign in (again)",
                ));
                add.push((
                    "403",
                    if state_changing {
                        "device_confirmation_required; cross_origin_request (sent from another origin)"
                    } else {
                        "device_confirmation_required"
                    },
                ));
                op["security"] = json!([{"session": []}]);
            }
            let responses = &mut op["responses"];
            for (status, description) in add {
                if responses.get(status).is_none() {
                    responses[status] = error(description);
                }
            }
        }
    }
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
    s.core.register(&req.email, &req.password, &client).await?;
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
    s.core.confirm_email(&req.email, &req.code, &client).await?;
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
    s.core.resend_confirmation(&req.email, &client).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(StatusResponse {
            status: "sent_if_pending",
            message: "If this address waits for confirmation, a new code is on its way.",
        }),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignedInResponse {
    /// `signed_in`; `second_factor_required` (then finish with
    /// `POST /api/v1/sessions/second-factor` or the passkey ceremony, quoting `challenge`);
    /// or `device_confirmation_required` (a device new to the account: the session works
    /// once the link mailed to the account's address is clicked).
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge: Option<String>,
    /// The ways to finish: `totp`, `backup_code`, `passkey`.
    #[serde(skip_serializing_if = "Option::is_none")]
    methods: Option<Vec<&'static str>>,
}

/// Sets the session (and, for a new device, the device) cookie and answers `signed_in`.
pub(crate) fn signed_in_response(s: &AppState, jar: CookieJar, signed: SignedIn) -> Response {
    let mut jar = jar.add(s.session_cookie(signed.session_token));
    if let Some(device) = signed.new_device_token {
        jar = jar.add(s.device_cookie(device));
    }
    let status = if signed.needs_confirmation {
        "device_confirmation_required"
    } else {
        "signed_in"
    };
    let body = SignedInResponse {
        status,
        uid: Some(signed.uid),
        challenge: None,
        methods: None,
    };
    (jar, Json(body)).into_response()
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
    match s.core.sign_in(&req.email, &req.password, &client).await? {
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
    s.core.sign_out(&auth, &client).await?;
    Ok((
        jar.add(s.expired_cookie(SESSION_COOKIE)),
        StatusCode::NO_CONTENT,
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
    let devices = s.core.devices(&auth).await?;
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
    let logins = s.core.logins(&auth, q.limit.unwrap_or(100)).await?;
    Ok(Json(LoginsResponse {
        logins: logins.into_iter().map(LoginView::from).collect(),
    }))
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
    s.core
        .set_anti_phishing_code(&auth, &req.code, &client)
        .await?;
    Ok(Json(StatusResponse {
        status: "set",
        message: "Every mail from now on shows your anti-phishing code.",
    }))
}
