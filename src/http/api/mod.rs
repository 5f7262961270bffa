//! The JSON API under `/api/v1`, and its OpenAPI document generated from these handlers.
//!
//! One file per area; each has its routes and its part of the document (`…Doc`), and
//! this one joins them. What several areas share lives here: the signed-in answer, the
//! passkey-ceremony body and the 6-digit-code body. Areas import from here, never from
//! each other.

pub mod accounts;
pub mod console;
pub mod console_money;
pub mod email;
pub mod factors;
pub mod incidents;
pub mod keys;
pub mod password;
pub mod platform;
pub mod protection;
pub mod sessions;
pub mod step_up;
pub mod support;
pub mod withdrawals;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::{AppState, SESSION_COOKIE};
use crate::service::sessions::SignedIn;

/// The document's title and the schemas the areas share; each area adds its operations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rampart",
        description = "Account protection: accounts, sessions, devices, login history."
    ),
    components(schemas(ErrorBody, SignedInResponse, CeremonyFinish, CodeRequest))
)]
pub struct ApiDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .merge(accounts::routes())
        .merge(sessions::routes())
        .merge(factors::routes())
        .merge(step_up::routes())
        .merge(password::routes())
        .merge(keys::routes())
        .merge(protection::routes())
        .merge(console::routes())
        .merge(support::routes())
        .merge(email::routes())
        .merge(console_money::routes())
        .merge(platform::routes())
        .merge(withdrawals::routes())
        .merge(incidents::routes())
}

async fn openapi() -> Json<serde_json::Value> {
    Json(document())
}

/// The OpenAPI document: the handlers' annotations, plus the answers that every operation
/// of a kind can give whatever its handler does (they come from the extractors and the
/// middleware, not from the handler), so the document lists every status a client can get.
pub fn document() -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    doc.merge(accounts::AccountsDoc::openapi());
    doc.merge(sessions::SessionsDoc::openapi());
    doc.merge(factors::FactorsDoc::openapi());
    doc.merge(step_up::StepUpDoc::openapi());
    doc.merge(password::PasswordDoc::openapi());
    doc.merge(keys::KeysDoc::openapi());
    doc.merge(protection::ProtectionDoc::openapi());
    doc.merge(console::ConsoleDoc::openapi());
    doc.merge(support::SupportDoc::openapi());
    doc.merge(email::EmailDoc::openapi());
    doc.merge(console_money::ConsoleMoneyDoc::openapi());
    doc.merge(platform::PlatformDoc::openapi());
    doc.merge(withdrawals::WithdrawalsDoc::openapi());
    doc.merge(incidents::IncidentsDoc::openapi());
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
    doc["components"]["securitySchemes"]["console"] = json!({
        "type": "apiKey",
        "in": "cookie",
        "name": crate::http::CONSOLE_COOKIE,
        "description": "The operator console's session cookie, set by POST /api/v1/console/sessions."
    });
    doc["components"]["securitySchemes"]["platform"] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "A platform token from `rampart platform-token add NAME`."
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
            if console::console_signed_in(path) {
                add.push((
                    "401",
                    "unauthenticated, session_expired: sign in to the console (again)",
                ));
                add.push((
                    "403",
                    if state_changing {
                        "role_missing; cross_origin_request (sent from another origin)"
                    } else {
                        "role_missing"
                    },
                ));
                op["security"] = json!([{"console": []}]);
            }
            if path.starts_with("/api/v1/platform/") {
                add.push((
                    "401",
                    "unauthenticated: no valid platform token (Authorization: Bearer …)",
                ));
                op["security"] = json!([{"platform": []}]);
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

// ---- shared by the areas ----------------------------------------------------------------

// The answer of every way to sign in (`sessions`).
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

// The second half of a passkey ceremony: sign-in, step-up or registration.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CeremonyFinish {
    ceremony_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials`, binary fields base64url.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
}

fn credential<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_credential",
            format!("The credential is malformed: {e}"),
        )
    })
}

// A 6-digit code (authenticator app, or a backup code): enrolment and step-up.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    code: String,
}
