//! The JSON API of second factors: authenticator app, backup codes, passkeys, the
//! overview, and delayed weakening (`require-passkey`, cancelling a pending change).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, patch, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use webauthn_rs::prelude::RegisterPublicKeyCredential;

use super::{credential, CeremonyFinish, CodeRequest};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Authed};
use crate::http::AppState;
use crate::service::factors::FactorOverview;
use crate::service::Client;
use crate::store::PendingChange;

#[derive(OpenApi)]
#[openapi(
    paths(
        totp_begin,
        totp_confirm,
        totp_disable,
        totp_reset,
        regenerate_backup_codes,
        overview,
        passkey_register_start,
        passkey_register_finish,
        rename_passkey,
        remove_passkey,
        require_passkey,
        cancel_change
    ),
    components(schemas(
        ResetRequest,
        PasskeyAdded,
        TotpBegun,
        BackupCodes,
        Scheduled,
        ResetDone,
        Overview,
        PasskeyView,
        ChangeView,
        LockView,
        NameRequest,
        RequirePasskeyRequest
    ))
)]
pub struct FactorsDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/totp", post(totp_begin).delete(totp_disable))
        .route("/api/v1/me/totp/confirm", post(totp_confirm))
        .route("/api/v1/me/totp/reset", post(totp_reset))
        .route("/api/v1/me/backup-codes", post(regenerate_backup_codes))
        .route("/api/v1/me/second-factors", axum::routing::get(overview))
        .route(
            "/api/v1/me/passkeys/register/start",
            post(passkey_register_start),
        )
        .route(
            "/api/v1/me/passkeys/register/finish",
            post(passkey_register_finish),
        )
        .route(
            "/api/v1/me/passkeys/{id}",
            patch(rename_passkey).delete(remove_passkey),
        )
        .route("/api/v1/me/require-passkey", put(require_passkey))
        .route("/api/v1/me/pending-changes/{id}", delete(cancel_change))
}

// ---- authenticator app -----------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct TotpBegun {
    /// Base32 secret: the "backup key", shown once. Keep it offline.
    secret: String,
    otpauth_uri: String,
}

/// Starts setting up an authenticator app. Confirm with a current code.
#[utoipa::path(post, path = "/api/v1/me/totp", responses(
    (status = 200, body = TotpBegun),
    (status = 403, body = ErrorBody, description = "step_up_required (every account, the first factor too: the second factor, or without one the password and a mailed code, proved in the last 5 minutes)"),
    (status = 409, body = ErrorBody, description = "totp_already_enabled"),
))]
async fn totp_begin(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
) -> Result<Json<TotpBegun>, ApiError> {
    let e = s.factors.totp_begin(&auth, &client).await?;
    Ok(Json(TotpBegun {
        secret: e.secret,
        otpauth_uri: e.otpauth_uri,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct BackupCodes {
    /// Ten single-use codes, shown once (empty when the account already had a second
    /// factor and so already has codes).
    backup_codes: Vec<String>,
}

/// Turns the authenticator app on with a current code. Needs a step-up made in the last
/// 5 minutes, like starting the setup. The first second factor of an account is announced
/// by mail, with a freeze link.
#[utoipa::path(post, path = "/api/v1/me/totp/confirm", request_body = CodeRequest, responses(
    (status = 200, body = BackupCodes),
    (status = 403, body = ErrorBody, description = "step_up_required"),
    (status = 400, body = ErrorBody, description = "invalid_code"),
    (status = 404, body = ErrorBody, description = "not_found: no enrolment started"),
    (status = 409, body = ErrorBody, description = "totp_already_enabled"),
    (status = 422, body = ErrorBody, description = "invalid_code"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (see Retry-After)"),
))]
async fn totp_confirm(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<CodeRequest>,
) -> Result<Json<BackupCodes>, ApiError> {
    let codes = s.factors.totp_confirm(&auth, &req.code, &client).await?;
    Ok(Json(BackupCodes {
        backup_codes: codes.unwrap_or_default(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Scheduled {
    status: &'static str,
    change_id: String,
    /// Unix ms when the change takes effect unless cancelled.
    effective_at: i64,
}

impl From<PendingChange> for Scheduled {
    fn from(c: PendingChange) -> Self {
        Self {
            status: "scheduled",
            change_id: c.id,
            effective_at: c.effective_at,
        }
    }
}

/// Turns the authenticator app off, 48 hours from now (cancellable; announced by mail).
#[utoipa::path(delete, path = "/api/v1/me/totp", responses(
    (status = 202, body = Scheduled),
    (status = 403, body = ErrorBody, description = "step_up_required"),
    (status = 404, body = ErrorBody, description = "not_found: no authenticator app is set up"),
    (status = 409, body = ErrorBody, description = "a change is already pending"),
))]
async fn totp_disable(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
) -> Result<Response, ApiError> {
    let change = s.factors.disable_totp(&auth, &client).await?;
    Ok((StatusCode::ACCEPTED, Json(Scheduled::from(change))).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    backup_code: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResetDone {
    status: &'static str,
    withdrawals_locked_until: i64,
}

/// Resets (removes) the authenticator app at once with a backup code; withdrawals are
/// locked for 48 hours.
#[utoipa::path(post, path = "/api/v1/me/totp/reset", request_body = ResetRequest, responses(
    (status = 200, body = ResetDone),
    (status = 400, body = ErrorBody, description = "invalid_code"),
    (status = 404, body = ErrorBody, description = "not_found: no authenticator app is set up"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (see Retry-After)"),
))]
async fn totp_reset(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<ResetRequest>,
) -> Result<Json<ResetDone>, ApiError> {
    let lock = s
        .recovery
        .reset_totp_with_backup_code(&auth, &req.backup_code, &client)
        .await?;
    Ok(Json(ResetDone {
        status: "reset",
        withdrawals_locked_until: lock.until,
    }))
}

/// Makes ten new backup codes; the old ones stop working.
#[utoipa::path(post, path = "/api/v1/me/backup-codes", responses(
    (status = 200, body = BackupCodes),
    (status = 403, body = ErrorBody, description = "step_up_required"),
    (status = 409, body = ErrorBody, description = "no_second_factor"),
))]
async fn regenerate_backup_codes(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
) -> Result<Json<BackupCodes>, ApiError> {
    Ok(Json(BackupCodes {
        backup_codes: s.factors.regenerate_backup_codes(&auth, &client).await?,
    }))
}

// ---- overview ---------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct PasskeyView {
    id: String,
    name: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ChangeView {
    id: String,
    /// `totp.disable`, `passkey.remove`, `require_passkey.disable`.
    kind: String,
    target: Option<String>,
    requested_at: i64,
    effective_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct LockView {
    reason: String,
    until: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Overview {
    totp_enabled: bool,
    passkeys: Vec<PasskeyView>,
    backup_codes_left: i64,
    require_passkey: bool,
    pending_changes: Vec<ChangeView>,
    withdrawal_locks: Vec<LockView>,
    /// Until when sensitive actions are allowed without another proof (Unix ms).
    stepped_up_until: Option<i64>,
}

impl From<FactorOverview> for Overview {
    fn from(o: FactorOverview) -> Self {
        Self {
            totp_enabled: o.factors.totp,
            passkeys: o
                .passkeys
                .into_iter()
                .map(|p| PasskeyView {
                    id: p.id,
                    name: p.name,
                    created_at: p.created_at,
                    last_used_at: p.last_used_at,
                })
                .collect(),
            backup_codes_left: o.factors.backup_codes_left,
            require_passkey: o.require_passkey,
            pending_changes: o
                .pending
                .into_iter()
                .map(|c| ChangeView {
                    id: c.id,
                    kind: c.change.kind().to_owned(),
                    target: c.change.target(),
                    requested_at: c.requested_at,
                    effective_at: c.effective_at,
                })
                .collect(),
            withdrawal_locks: o
                .withdrawal_locks
                .into_iter()
                .map(|l| LockView {
                    reason: l.reason,
                    until: l.until,
                })
                .collect(),
            stepped_up_until: o.stepped_up_until,
        }
    }
}

/// Second factors, pending weakening changes and withdrawal locks of the account.
#[utoipa::path(get, path = "/api/v1/me/second-factors", responses((status = 200, body = Overview)))]
async fn overview(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<Overview>, ApiError> {
    Ok(Json(s.factors.factor_overview(&auth).await?.into()))
}

// ---- passkeys --------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NameRequest {
    /// Up to 64 characters (longer names are cut); at least one that is not a space or a
    /// control character.
    #[schema(
        pattern = "[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
        example = "YubiKey"
    )]
    name: String,
}

/// Starts registering a passkey or security key. Answers `{ceremony_id, options}`; pass
/// `options` to `navigator.credentials.create()`.
#[utoipa::path(post, path = "/api/v1/me/passkeys/register/start", request_body = NameRequest, responses(
    (status = 200, description = "{ceremony_id, options}"),
    (status = 403, body = ErrorBody, description = "step_up_required (the second factor, or without one the password and a mailed code, proved in the last 5 minutes)"),
    (status = 409, body = ErrorBody, description = "too many passkeys"),
))]
async fn passkey_register_start(
    State(s): State<AppState>,
    Authed(auth): Authed,
    ApiJson(req): ApiJson<NameRequest>,
) -> Result<Response, ApiError> {
    Ok(Json(s.passkeys.passkey_register_start(&auth, &req.name).await?).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyAdded {
    passkey: PasskeyView,
    backup_codes: Vec<String>,
}

/// Finishes registering a passkey. Returns backup codes when it is the first second factor.
#[utoipa::path(post, path = "/api/v1/me/passkeys/register/finish", request_body = CeremonyFinish, responses(
    (status = 201, description = "{passkey, backup_codes}"),
    (status = 401, body = ErrorBody, description = "passkey_failed"),
    (status = 403, body = ErrorBody, description = "step_up_required"),
))]
async fn passkey_register_finish(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<CeremonyFinish>,
) -> Result<Response, ApiError> {
    let cred: RegisterPublicKeyCredential = credential(req.credential)?;
    let (p, codes) = s
        .passkeys
        .passkey_register_finish(&auth, &req.ceremony_id, &cred, &client)
        .await?;
    let body = PasskeyAdded {
        passkey: PasskeyView {
            id: p.id,
            name: p.name,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        },
        backup_codes: codes.unwrap_or_default(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Renames a passkey.
#[utoipa::path(patch, path = "/api/v1/me/passkeys/{id}", request_body = NameRequest, params(("id" = String, Path, description = "The passkey's id, from `GET /api/v1/me/second-factors`.")), responses((status = 204, description = "Renamed"), (status = 404, body = ErrorBody)))]
async fn rename_passkey(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<NameRequest>,
) -> Result<StatusCode, ApiError> {
    s.passkeys
        .rename_passkey(&auth, &id, &req.name, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a passkey 48 hours from now (cancellable; announced by mail).
#[utoipa::path(delete, path = "/api/v1/me/passkeys/{id}", params(("id" = String, Path, description = "The passkey's id, from `GET /api/v1/me/second-factors`.")), responses(
    (status = 202, body = Scheduled),
    (status = 403, body = ErrorBody, description = "step_up_required"),
    (status = 404, body = ErrorBody),
))]
async fn remove_passkey(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let change = s.passkeys.remove_passkey(&auth, &id, &client).await?;
    Ok((StatusCode::ACCEPTED, Json(Scheduled::from(change))).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequirePasskeyRequest {
    enabled: bool,
}

/// "Require a passkey for important actions" (sign-in and withdrawals). On applies at once;
/// off takes 48 hours.
#[utoipa::path(put, path = "/api/v1/me/require-passkey", request_body = RequirePasskeyRequest, responses(
    (status = 200, description = "Required from now on (or already as asked)"),
    (status = 202, body = Scheduled),
    (status = 403, body = ErrorBody, description = "step_up_required"),
    (status = 409, body = ErrorBody, description = "no_passkey"),
))]
async fn require_passkey(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<RequirePasskeyRequest>,
) -> Result<Response, ApiError> {
    Ok(
        match s
            .factors
            .set_require_passkey(&auth, req.enabled, &client)
            .await?
        {
            Some(change) => (StatusCode::ACCEPTED, Json(Scheduled::from(change))).into_response(),
            None => Json(serde_json::json!({"status": "set", "require_passkey": req.enabled}))
                .into_response(),
        },
    )
}

/// Cancels a pending weakening change.
#[utoipa::path(delete, path = "/api/v1/me/pending-changes/{id}", params(("id" = String, Path, description = "The change's id, from `GET /api/v1/me/second-factors` or the mail's cancel link.")), responses((status = 204, description = "Cancelled"), (status = 404, body = ErrorBody)))]
async fn cancel_change(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.pending_changes
        .cancel_pending_change(&auth, &id, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
