//! The JSON API of second factors: authenticator app, backup codes, passkeys, step-up,
//! delayed weakening, password change, authenticator reset and the second sign-in step.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, patch, post, put};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::api::signed_in_response;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Authed};
use super::AppState;
use crate::service::factors::FactorOverview;
use crate::service::Client;
use crate::store::PendingChange;

#[derive(OpenApi)]
#[openapi(
    paths(
        second_factor,
        passkey_signin_start,
        passkey_signin_finish,
        totp_begin,
        totp_confirm,
        totp_disable,
        totp_reset,
        regenerate_backup_codes,
        overview,
        step_up,
        step_up_email_code,
        step_up_passkey_start,
        step_up_passkey_finish,
        passkey_register_start,
        passkey_register_finish,
        rename_passkey,
        remove_passkey,
        require_passkey,
        cancel_change,
        password_code,
        change_password,
        authenticator_reset_request
    ),
    components(schemas(
        ResetRequest,
        PasskeyAdded,
        SecondFactorRequest,
        PasskeyStartRequest,
        CeremonyFinish,
        TotpBegun,
        CodeRequest,
        BackupCodes,
        Scheduled,
        ResetDone,
        Overview,
        PasskeyView,
        ChangeView,
        LockView,
        SteppedUp,
        StepUpRequest,
        EmailStepUpRequest,
        StepUpCodeSent,
        NameRequest,
        RequirePasskeyRequest,
        PasswordChangeRequest,
        PasswordChanged,
        RecoveryRequestBody
    ))
)]
pub struct FactorsDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sessions/second-factor", post(second_factor))
        .route("/api/v1/sessions/passkey/start", post(passkey_signin_start))
        .route(
            "/api/v1/sessions/passkey/finish",
            post(passkey_signin_finish),
        )
        .route("/api/v1/me/totp", post(totp_begin).delete(totp_disable))
        .route("/api/v1/me/totp/confirm", post(totp_confirm))
        .route("/api/v1/me/totp/reset", post(totp_reset))
        .route("/api/v1/me/backup-codes", post(regenerate_backup_codes))
        .route("/api/v1/me/second-factors", axum::routing::get(overview))
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
        .route("/api/v1/me/password/code", post(password_code))
        .route("/api/v1/me/password", put(change_password))
        .route(
            "/api/v1/recovery/authenticator-reset",
            post(authenticator_reset_request),
        )
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
    (status = 200, body = super::api::SignedInResponse),
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
        .core
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
        s.core
            .passkey_signin_start(req.challenge.as_deref())
            .await?,
    )
    .into_response())
}

/// Finishes a passkey sign-in (passwordless, or the second step) and sets the session cookie.
#[utoipa::path(post, path = "/api/v1/sessions/passkey/finish", request_body = CeremonyFinish, responses(
    (status = 200, body = super::api::SignedInResponse),
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
        .core
        .passkey_signin_finish(&req.ceremony_id, &cred, &client)
        .await?;
    Ok(signed_in_response(&s, jar, signed))
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
    let e = s.core.totp_begin(&auth, &client).await?;
    Ok(Json(TotpBegun {
        secret: e.secret,
        otpauth_uri: e.otpauth_uri,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    code: String,
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
    let codes = s.core.totp_confirm(&auth, &req.code, &client).await?;
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
    let change = s.core.disable_totp(&auth, &client).await?;
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
        .core
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
        backup_codes: s.core.regenerate_backup_codes(&auth, &client).await?,
    }))
}

// ---- overview and step-up --------------------------------------------------------------

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
                    target: c.change.target().map(str::to_owned),
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
    Ok(Json(s.core.factor_overview(&auth).await?.into()))
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
        StepUpRequest::Code(r) => s.core.step_up_with_code(&auth, &r.code, &client).await?,
        StepUpRequest::PasswordAndEmailCode(r) => {
            s.core
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
    let (sent, expires_at) = s.core.send_step_up_code(&auth, &client).await?;
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
    Ok(Json(s.core.passkey_step_up_start(&auth).await?).into_response())
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
            .core
            .passkey_step_up_finish(&auth, &req.ceremony_id, &cred, &client)
            .await?,
    }))
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
    Ok(Json(s.core.passkey_register_start(&auth, &req.name).await?).into_response())
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
        .core
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
    s.core
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
    let change = s.core.remove_passkey(&auth, &id, &client).await?;
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
            .core
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
    s.core.cancel_pending_change(&auth, &id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- password change -------------------------------------------------------------------

/// Mails the 6-digit code a password change needs.
#[utoipa::path(post, path = "/api/v1/me/password/code", responses(
    (status = 202, description = "A code was mailed"),
))]
async fn password_code(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
) -> Result<StatusCode, ApiError> {
    s.core.send_password_change_code(&auth, &client).await?;
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
        .core
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
    s.core
        .request_authenticator_reset(&req.email, &req.password, &req.reason, &client)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"status": "received", "message": "If the details match an account, the request is recorded for review and its owner is told by mail."})),
    )
        .into_response())
}
