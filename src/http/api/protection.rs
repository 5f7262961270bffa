//! The JSON API of stopping an attacker: freeze, device removal and trust, signing out
//! everywhere else, and the notification inbox.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, Authed};
use crate::http::{AppState, SESSION_COOKIE};
use crate::service::Client;
use crate::store::{FreezeOutcome, Notification};

#[derive(OpenApi)]
#[openapi(
    paths(
        freeze,
        remove_device,
        sign_out_others,
        trust_device,
        notifications,
        read_notifications,
        preferences,
        set_preference
    ),
    components(schemas(
        Frozen,
        Ended,
        TrustRequest,
        NotificationView,
        NotificationsResponse,
        PreferenceRequest,
        PreferencesResponse,
        PreferenceView,
        PreferenceSet
    ))
)]
pub struct ProtectionDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me/freeze", post(freeze))
        .route("/api/v1/me/devices/{id}", delete(remove_device))
        .route("/api/v1/me/devices/{id}/trusted", put(trust_device))
        .route("/api/v1/me/sessions/others", delete(sign_out_others))
        .route("/api/v1/me/notifications", get(notifications))
        .route("/api/v1/me/notifications/read", post(read_notifications))
        .route(
            "/api/v1/me/notification-preferences",
            get(preferences).put(set_preference),
        )
}

#[derive(Serialize, ToSchema)]
pub struct Frozen {
    /// `frozen`, or `already_frozen` (nothing changed).
    status: &'static str,
    sessions_ended: u64,
    frozen_since: Option<i64>,
}

impl From<FreezeOutcome> for Frozen {
    fn from(o: FreezeOutcome) -> Self {
        match o {
            FreezeOutcome::Frozen { sessions_ended } => Self {
                status: "frozen",
                sessions_ended,
                frozen_since: None,
            },
            FreezeOutcome::AlreadyFrozen { since } => Self {
                status: "already_frozen",
                sessions_ended: 0,
                frozen_since: Some(since),
            },
        }
    }
}

/// Freezes the account at once: every session ends, every API key is refused, sign-ins are
/// refused, held withdrawals are cancelled. Lifted only through a recovery review.
#[utoipa::path(post, path = "/api/v1/me/freeze", responses((status = 200, body = Frozen)))]
async fn freeze(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    jar: CookieJar,
) -> Result<(CookieJar, Json<Frozen>), ApiError> {
    let outcome = s.protection.freeze(&auth, &client).await?;
    Ok((
        jar.add(s.expired_cookie(SESSION_COOKIE)),
        Json(outcome.into()),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Also refuse this device's fingerprint at sign-in from now on.
    block: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct Ended {
    sessions_ended: u64,
}

/// Removes a device (step-up required); its sessions end at once. `?block=true` also refuses
/// its fingerprint at sign-in (a delay for an attacker, not a wall: another browser has
/// another fingerprint).
#[utoipa::path(delete, path = "/api/v1/me/devices/{id}", params(
    ("id" = String, Path, description = "The device's id, from `GET /api/v1/me/devices`."),
    RemoveQuery,
), responses(
    (status = 200, body = Ended),
    (status = 403, body = ErrorBody, description = "step_up_required"),
    (status = 404, body = ErrorBody),
))]
async fn remove_device(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(id): Path<String>,
    query: Result<Query<RemoveQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Ended>, ApiError> {
    let Query(q) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let ended = s
        .protection
        .remove_device(&auth, &id, q.block.unwrap_or(false), &client)
        .await?;
    Ok(Json(Ended {
        sessions_ended: ended,
    }))
}

/// Signs out every other device.
#[utoipa::path(delete, path = "/api/v1/me/sessions/others", responses((status = 200, body = Ended)))]
async fn sign_out_others(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
) -> Result<Json<Ended>, ApiError> {
    Ok(Json(Ended {
        sessions_ended: s.protection.sign_out_others(&auth, &client).await?,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustRequest {
    trusted: bool,
}

/// Puts a device on the trusted list (at most 3; step-up required) or takes it off.
#[utoipa::path(put, path = "/api/v1/me/devices/{id}/trusted", request_body = TrustRequest,
    params(("id" = String, Path, description = "The device's id, from `GET /api/v1/me/devices`.")),
    responses(
        (status = 204, description = "Saved"),
        (status = 403, body = ErrorBody, description = "step_up_required (trusting a device)"),
        (status = 404, body = ErrorBody, description = "not_found"),
        (status = 409, body = ErrorBody, description = "too_many_trusted_devices"),
    ))]
async fn trust_device(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TrustRequest>,
) -> Result<StatusCode, ApiError> {
    s.protection
        .set_trusted(&auth, &id, req.trusted, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct NotificationView {
    id: String,
    subject: String,
    body: String,
    created_at: i64,
    read: bool,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        Self {
            id: n.id,
            subject: n.subject,
            body: n.body,
            created_at: n.created_at,
            read: n.read_at.is_some(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct NotificationsResponse {
    notifications: Vec<NotificationView>,
    unread: usize,
}

/// The inbox: every security event, newest first, even if a mail filter deletes the mails.
#[utoipa::path(get, path = "/api/v1/me/notifications", responses((status = 200, body = NotificationsResponse)))]
async fn notifications(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<NotificationsResponse>, ApiError> {
    let list = s.protection.notifications(&auth, 200).await?;
    let unread = list.iter().filter(|n| n.read_at.is_none()).count();
    Ok(Json(NotificationsResponse {
        notifications: list.into_iter().map(NotificationView::from).collect(),
        unread,
    }))
}

/// Marks every notification read.
#[utoipa::path(post, path = "/api/v1/me/notifications/read", responses((status = 204)))]
async fn read_notifications(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<StatusCode, ApiError> {
    s.protection.mark_notifications_read(&auth).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The optional security mails: `signin` and `api_keys`, on or off.
#[derive(Serialize, ToSchema)]
pub struct PreferencesResponse {
    preferences: Vec<PreferenceView>,
}

/// One optional mail kind (`crate::service::protection::MailPreference`, as sent).
#[derive(Serialize, ToSchema)]
pub struct PreferenceView {
    #[schema(example = "signin")]
    kind: String,
    description: String,
    enabled: bool,
    /// When a switch-off that is waiting its 48 hours takes effect (Unix ms).
    turning_off_at: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/me/notification-preferences", responses((status = 200, body = PreferencesResponse)))]
async fn preferences(
    State(s): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::json!({ "preferences": s.protection.mail_preferences(&auth).await? }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferenceRequest {
    #[schema(pattern = "^(signin|api_keys)$", example = "signin")]
    kind: String,
    enabled: bool,
}

/// Switches a security mail on (at once) or off (after 48 hours, cancellable; step-up
/// required). The inbox keeps every event either way.
#[derive(Serialize, ToSchema)]
pub struct PreferenceSet {
    /// `enabled` (at once) or `scheduled` (switching off, after 48 hours).
    status: String,
    change_id: Option<String>,
    effective_at: Option<i64>,
}

#[utoipa::path(put, path = "/api/v1/me/notification-preferences", request_body = PreferenceRequest, responses(
    (status = 200, body = PreferenceSet, description = "Switched on"),
    (status = 202, body = PreferenceSet, description = "Switching off in 48 hours (cancellable)"),
    (status = 403, body = ErrorBody, description = "step_up_required (switching a mail off)"),
    (status = 422, body = ErrorBody, description = "invalid_kind"),
))]
async fn set_preference(
    State(s): State<AppState>,
    Authed(auth): Authed,
    client: Client,
    ApiJson(req): ApiJson<PreferenceRequest>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    Ok(match s.protection.set_mail_preference(&auth, &req.kind, req.enabled, &client).await? {
        Some(change) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"status": "scheduled", "change_id": change.id, "effective_at": change.effective_at})),
        )
            .into_response(),
        None => Json(serde_json::json!({"status": "enabled"})).into_response(),
    })
}
