//! Incident response: "Secure my account" (signed in, or with a security mail's link), the
//! backdoor sweep, the incident report (JSON and PDF), the settings lock, suspending and
//! resuming keys, the support code, and the official-channel check (public) with its
//! console list.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::domain::incident::SettingsLock;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Authed, ConsoleAuthed};
use crate::http::AppState;
use crate::service::incidents::{
    ChannelCheck, ChannelView, IncidentReport, ReportEntry, ReportSignIn, ReportWithdrawal,
    SecureReport, SecureStep, SettingsLockView, SupportCode, Sweep, SweepItem, SweepResult,
};
use crate::service::Client;
use crate::store::BlockedDevice;

#[derive(OpenApi)]
#[openapi(
    paths(
        secure,
        secure_by_link,
        sweep,
        sweep_remove,
        sweep_remove_all,
        report,
        report_pdf,
        settings_lock,
        lock_settings,
        end_settings_lock,
        suspend_key,
        resume_key,
        support_code,
        check_channel,
        channels,
        console_channels,
        console_add_channel,
        console_remove_channel,
        console_support_code,
        blocked_devices,
        unblock_device
    ),
    components(schemas(
        SecureReport,
        SecureStep,
        LinkBody,
        Sweep,
        SweepItem,
        SweepResult,
        RemoveBody,
        RemoveAllBody,
        RemoveAllAnswer,
        IncidentReport,
        ReportEntry,
        ReportSignIn,
        ReportWithdrawal,
        SettingsLockView,
        SettingsLock,
        LockBody,
        SupportCode,
        ChannelCheck,
        ChannelView,
        NewChannel,
        BlockedDevice
    ))
)]
pub struct IncidentsDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/secure", post(secure))
        .route("/api/v1/secure-account", post(secure_by_link))
        .route("/api/v1/me/sweep", get(sweep))
        .route("/api/v1/me/sweep/remove", post(sweep_remove))
        .route("/api/v1/me/sweep/remove-all", post(sweep_remove_all))
        .route("/api/v1/me/incident-report", get(report))
        .route("/api/v1/me/incident-report.pdf", get(report_pdf))
        .route(
            "/api/v1/me/settings-lock",
            get(settings_lock).put(lock_settings),
        )
        .route(
            "/api/v1/me/settings-lock/end-early",
            post(end_settings_lock),
        )
        .route("/api/v1/me/api-keys/{key}/suspend", post(suspend_key))
        .route("/api/v1/me/api-keys/{key}/resume", post(resume_key))
        .route("/api/v1/me/support-code", get(support_code))
        .route("/api/v1/official-channels/check", get(check_channel))
        .route("/api/v1/official-channels", get(channels))
        .route(
            "/api/v1/console/official-channels",
            get(console_channels).post(console_add_channel),
        )
        .route(
            "/api/v1/console/official-channels/{id}",
            delete(console_remove_channel),
        )
        .route(
            "/api/v1/console/accounts/{uid}/support-code",
            get(console_support_code),
        )
        .route("/api/v1/me/blocked-devices", get(blocked_devices))
        .route(
            "/api/v1/me/blocked-devices/{fingerprint}",
            delete(unblock_device),
        )
}

/// A query string that does not parse answers in the API's error shape.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
}

/// Secures the account in one action: every other session ends (this one stays), every API
/// key is suspended, held withdrawals are cancelled and released ones not yet broadcast
/// recalled, withdrawals are locked for 48 hours, and an incident is opened. Each step's
/// result is in the answer, with what to do next.
#[utoipa::path(post, path = "/api/v1/me/secure", responses(
    (status = 200, body = SecureReport),
))]
async fn secure(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
) -> Result<Json<SecureReport>, ApiError> {
    Ok(Json(s.incidents.secure(&auth, &client).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// The token of the single-use link in a security mail.
    #[schema(max_length = 128)]
    token: String,
}

/// "Secure my account" with the single-use link of a security mail, without signing in:
/// every session ends. The link is spent (it cannot freeze afterwards).
#[utoipa::path(post, path = "/api/v1/secure-account", request_body = LinkBody, responses(
    (status = 200, body = SecureReport),
    (status = 404, body = ErrorBody, description = "link_invalid"),
    (status = 409, body = ErrorBody, description = "link_used"),
    (status = 410, body = ErrorBody, description = "link_expired"),
    (status = 403, body = ErrorBody, description = "account_frozen"),
))]
async fn secure_by_link(
    State(s): State<AppState>,
    client: Client,
    ApiJson(body): ApiJson<LinkBody>,
) -> Result<Json<SecureReport>, ApiError> {
    Ok(Json(
        s.incidents.secure_by_link(&body.token, &client).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SinceQuery {
    /// Unix milliseconds: the suspicious sign-in's time (default: 30 days ago).
    since: Option<i64>,
}

/// Everything created or changed since a time (a suspicious sign-in's) that is still in
/// place: API keys, allowlist addresses, new and trusted devices, passkeys, the
/// authenticator app, pending weakenings (mail switched off, allowlist off, …), email and
/// anti-phishing code — each with the device and place that did it.
#[utoipa::path(get, path = "/api/v1/me/sweep", params(SinceQuery), responses(
    (status = 200, body = Sweep),
))]
async fn sweep(
    State(s): State<AppState>,
    Authed(auth): Authed,
    q: Result<Query<SinceQuery>, QueryRejection>,
) -> Result<Json<Sweep>, ApiError> {
    let q = query(q)?;
    Ok(Json(s.incidents.sweep(&auth, q.since).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveBody {
    /// The item's `kind` from the sweep.
    #[schema(max_length = 40)]
    kind: String,
    /// The item's `id` from the sweep.
    #[schema(max_length = 200)]
    id: String,
}

/// Removes one item of the sweep (with that item's own rules: a step-up; removing a
/// passkey or the authenticator app takes 48 hours).
#[utoipa::path(post, path = "/api/v1/me/sweep/remove", request_body = RemoveBody, responses(
    (status = 200, body = SweepResult),
    (status = 404, body = ErrorBody, description = "not_found"),
    (status = 422, body = ErrorBody, description = "invalid_kind"),
))]
async fn sweep_remove(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(body): ApiJson<RemoveBody>,
) -> Result<Json<SweepResult>, ApiError> {
    let result = s
        .incidents
        .sweep_remove(&auth, &body.kind, &body.id, &client)
        .await?;
    Ok(Json(SweepResult {
        kind: body.kind,
        id: body.id,
        removed: true,
        result,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveAllBody {
    /// Unix milliseconds, as for the sweep.
    since: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct RemoveAllAnswer {
    results: Vec<SweepResult>,
}

/// Removes every removable item of the sweep, one by one; the answer says what each did.
#[utoipa::path(post, path = "/api/v1/me/sweep/remove-all", request_body = RemoveAllBody, responses(
    (status = 200, body = RemoveAllAnswer),
))]
async fn sweep_remove_all(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(body): ApiJson<RemoveAllBody>,
) -> Result<Json<RemoveAllAnswer>, ApiError> {
    let results = s
        .incidents
        .sweep_remove_all(&auth, body.since, &client)
        .await?;
    Ok(Json(RemoveAllAnswer { results }))
}

/// The incident report: a chronological timeline (sign-ins with their six device fields,
/// security changes, keys, withdrawals with TxIDs, transfers, deposits, operator actions),
/// with the audit chain's verification.
#[utoipa::path(get, path = "/api/v1/me/incident-report", params(SinceQuery), responses(
    (status = 200, body = IncidentReport),
))]
async fn report(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    q: Result<Query<SinceQuery>, QueryRejection>,
) -> Result<Json<IncidentReport>, ApiError> {
    let q = query(q)?;
    Ok(Json(s.incidents.report(&auth, q.since, &client).await?))
}

/// The same report as a PDF to hand to support or the police.
#[utoipa::path(get, path = "/api/v1/me/incident-report.pdf", params(SinceQuery), responses(
    (status = 200, content_type = "application/pdf", body = Vec<u8>),
))]
async fn report_pdf(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    q: Result<Query<SinceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let r = s.incidents.report(&auth, q.since, &client).await?;
    let bytes = crate::pdf::incident_report(&r);
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"incident-report-{}.pdf\"",
                    r.account_uid
                ),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The settings lock, if one is in force.
#[utoipa::path(get, path = "/api/v1/me/settings-lock", responses(
    (status = 200, body = SettingsLockView),
))]
async fn settings_lock(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<SettingsLockView>, ApiError> {
    Ok(Json(s.incidents.settings_lock(&auth).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockBody {
    /// How long to lock every security setting (1 to 8,760 hours).
    #[schema(minimum = 1, maximum = 8760)]
    hours: i64,
    /// How long ending the lock early will wait (1 to 720 hours), chosen now.
    #[schema(minimum = 1, maximum = 720)]
    early_end_hours: i64,
}

/// Locks every security setting (needs a step-up): no password, email, second-factor, API
/// key or allowlist change is possible until it ends. Removing devices, keys and addresses
/// stays possible. A lock in force is not replaced.
#[utoipa::path(put, path = "/api/v1/me/settings-lock", request_body = LockBody, responses(
    (status = 201, body = SettingsLock),
    (status = 409, body = ErrorBody, description = "settings_already_locked"),
    (status = 422, body = ErrorBody, description = "invalid_lock_duration, invalid_early_end_delay"),
))]
async fn lock_settings(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(body): ApiJson<LockBody>,
) -> Result<(StatusCode, Json<SettingsLock>), ApiError> {
    let lock = s
        .incidents
        .lock_settings(&auth, body.hours, body.early_end_hours, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(lock)))
}

/// Asks to end the lock early (needs a step-up; mailed): it ends after the delay chosen
/// when locking.
#[utoipa::path(post, path = "/api/v1/me/settings-lock/end-early", responses(
    (status = 200, body = SettingsLock),
    (status = 404, body = ErrorBody, description = "not_locked"),
))]
async fn end_settings_lock(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
) -> Result<Json<SettingsLock>, ApiError> {
    Ok(Json(s.incidents.end_settings_lock(&auth, &client).await?))
}

/// Suspends a key at once: the gateway refuses it (`key_suspended`) until it is resumed.
#[utoipa::path(post, path = "/api/v1/me/api-keys/{key}/suspend", params(("key" = String, Path)), responses(
    (status = 204, description = "Suspended"),
    (status = 404, body = ErrorBody, description = "not_found"),
))]
async fn suspend_key(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.incidents
        .set_key_suspended(&auth, &key, true, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resumes a suspended key (needs a step-up; refused while the settings are locked).
#[utoipa::path(post, path = "/api/v1/me/api-keys/{key}/resume", params(("key" = String, Path)), responses(
    (status = 204, description = "Resumed"),
    (status = 404, body = ErrorBody, description = "not_found"),
))]
async fn resume_key(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.incidents
        .set_key_suspended(&auth, &key, false, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's support code: six digits that change every 5 minutes. A genuine support
/// agent reads the same code out from the console on a call; support never asks for it.
#[utoipa::path(get, path = "/api/v1/me/support-code", responses(
    (status = 200, body = SupportCode),
))]
async fn support_code(State(s): State<AppState>, Authed(auth): Authed) -> Json<SupportCode> {
    Json(s.incidents.support_code(&auth))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// `phone`, `email`, `web` or `chat`.
    kind: String,
    /// The number, sender, address or handle to check.
    value: String,
}

/// Whether a phone number, mail sender, web address or chat handle is one of the
/// platform's official channels. Public.
#[utoipa::path(get, path = "/api/v1/official-channels/check", params(CheckQuery), responses(
    (status = 200, body = ChannelCheck),
    (status = 422, body = ErrorBody, description = "invalid_kind, invalid_channel"),
))]
async fn check_channel(
    State(s): State<AppState>,
    q: Result<Query<CheckQuery>, QueryRejection>,
) -> Result<Json<ChannelCheck>, ApiError> {
    let q = query(q)?;
    Ok(Json(s.incidents.check_channel(&q.kind, &q.value).await?))
}

/// The platform's official channels. Public.
#[utoipa::path(get, path = "/api/v1/official-channels", responses(
    (status = 200, body = [ChannelView]),
))]
async fn channels(State(s): State<AppState>) -> Result<Json<Vec<ChannelView>>, ApiError> {
    Ok(Json(s.incidents.channels().await?))
}

/// The official channels, for operators.
#[utoipa::path(get, path = "/api/v1/console/official-channels", tag = "console", responses(
    (status = 200, body = [ChannelView]),
))]
async fn console_channels(
    State(s): State<AppState>,
    _authed: ConsoleAuthed,
) -> Result<Json<Vec<ChannelView>>, ApiError> {
    Ok(Json(s.incidents.channels().await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    /// `phone`, `email` (an address, or `@domain` for every sender of the domain), `web`
    /// (a host) or `chat`.
    kind: String,
    #[schema(max_length = 320)]
    value: String,
    /// Shown with a positive check ("Support line, weekdays 9–17 UTC").
    #[schema(max_length = 200)]
    note: String,
}

/// Adds an official channel (admin).
#[utoipa::path(post, path = "/api/v1/console/official-channels", tag = "console", request_body = NewChannel, responses(
    (status = 201, body = ChannelView),
    (status = 409, body = ErrorBody, description = "channel_exists"),
    (status = 422, body = ErrorBody, description = "invalid_kind, invalid_channel, invalid_note"),
))]
async fn console_add_channel(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
    client: Client,
    ApiJson(body): ApiJson<NewChannel>,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    let c = s
        .incidents
        .add_channel(
            &authed.operator,
            &body.kind,
            &body.value,
            &body.note,
            &client,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// Removes an official channel (admin).
#[utoipa::path(delete, path = "/api/v1/console/official-channels/{id}", tag = "console", params(("id" = String, Path)), responses(
    (status = 204, description = "Removed"),
    (status = 404, body = ErrorBody, description = "not_found"),
))]
async fn console_remove_channel(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
    client: Client,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.incidents
        .remove_channel(&authed.operator, &id, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's current support code, for an agent to read out on a call: the owner
/// compares it with the one in their Security Center (audited). Support never asks the
/// owner for a code.
#[utoipa::path(get, path = "/api/v1/console/accounts/{uid}/support-code", tag = "console", params(("uid" = String, Path)), responses(
    (status = 200, body = SupportCode),
    (status = 404, body = ErrorBody, description = "account_not_found"),
))]
async fn console_support_code(
    State(s): State<AppState>,
    authed: ConsoleAuthed,
    client: Client,
    Path(uid): Path<String>,
) -> Result<Json<SupportCode>, ApiError> {
    Ok(Json(
        s.incidents
            .support_code_for(&authed.operator, &uid, &client)
            .await?,
    ))
}

/// Devices blocked at sign-in ("Remove and block"), newest first.
#[utoipa::path(get, path = "/api/v1/me/blocked-devices", responses(
    (status = 200, body = [BlockedDevice]),
))]
async fn blocked_devices(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<Vec<BlockedDevice>>, ApiError> {
    Ok(Json(s.protection.blocked_devices(&auth).await?))
}

/// Lets a blocked device sign in again (needs a step-up; mailed).
#[utoipa::path(delete, path = "/api/v1/me/blocked-devices/{fingerprint}", params(("fingerprint" = String, Path)), responses(
    (status = 204, description = "Unblocked"),
    (status = 404, body = ErrorBody, description = "not_found"),
))]
async fn unblock_device(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(fingerprint): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.protection
        .unblock_device(&auth, &fingerprint, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
