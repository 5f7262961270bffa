//! The JSON API of getting the account back: "forgot password", the recovery link,
//! support access for an owner who cannot sign in, tickets and recovery requests; and the
//! console's queues, replies and decisions under `/api/v1/console/`.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::clock::Millis;
use crate::domain::support::{
    RecoveryKind, RecoveryStatus, TicketRequest, TicketStatus, EVIDENCE_MAX_BYTES,
    SUPPORT_ACCESS_TTL,
};
use crate::domain::Invalid;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ConsoleAuthed, SupportAuthed};
use crate::http::AppState;
use crate::service::support::{NewTicket, ResetProof, TicketDraft};
use crate::service::Client;
use crate::store::{RecoveryRecord, Ticket, TicketMessage};

#[derive(OpenApi)]
#[openapi(
    paths(
        reset_request,
        reset_complete,
        reset_passkey_options,
        recover,
        verify,
        verify_confirm,
        ticket_draft,
        list_tickets,
        file_ticket,
        show_ticket,
        owner_reply,
        list_recoveries,
        request_recovery,
        add_evidence,
        console_evidence,
        console_tickets,
        console_ticket,
        console_reply,
        console_close,
        console_recoveries,
        console_recovery,
        console_approve,
        console_reject
    ),
    components(schemas(
        EmailBody,
        ResetCompleteBody,
        TokenBody,
        PasskeyProof,
        RecoverBody,
        VerifyConfirmBody,
        NewTicketBody,
        TicketView,
        MessageView,
        ReplyBody,
        RecoveryBody,
        RecoveryView,
        EvidenceView,
        ConsoleReplyBody,
        ReasonBody,
        DecisionView,
        StatusView
    )),
    tags((name = "support", description = "Getting the account back: password reset, support tickets, recovery requests and their review."))
)]
pub struct SupportDoc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/password-reset", post(reset_request))
        .route("/api/v1/password-reset/complete", post(reset_complete))
        .route(
            "/api/v1/password-reset/passkey/options",
            post(reset_passkey_options),
        )
        .route("/api/v1/recover", post(recover))
        .route("/api/v1/support/verify", post(verify))
        .route("/api/v1/support/verify/confirm", post(verify_confirm))
        .route("/api/v1/support/ticket-draft", get(ticket_draft))
        .route(
            "/api/v1/support/tickets",
            get(list_tickets).post(file_ticket),
        )
        .route("/api/v1/support/tickets/{id}", get(show_ticket))
        .route("/api/v1/support/tickets/{id}/replies", post(owner_reply))
        .route(
            "/api/v1/support/recoveries",
            get(list_recoveries).post(request_recovery),
        )
        .route(
            "/api/v1/support/recoveries/{id}/evidence",
            post(add_evidence).layer(DefaultBodyLimit::max(EVIDENCE_MAX_BYTES + 1024)),
        )
        .route(
            "/api/v1/console/recoveries/{id}/evidence/{n}",
            get(console_evidence),
        )
        .route("/api/v1/console/tickets", get(console_tickets))
        .route("/api/v1/console/tickets/{id}", get(console_ticket))
        .route("/api/v1/console/tickets/{id}/replies", post(console_reply))
        .route("/api/v1/console/tickets/{id}/close", post(console_close))
        .route("/api/v1/console/recoveries", get(console_recoveries))
        .route("/api/v1/console/recoveries/{id}", get(console_recovery))
        .route(
            "/api/v1/console/recoveries/{id}/approve",
            post(console_approve),
        )
        .route(
            "/api/v1/console/recoveries/{id}/reject",
            post(console_reject),
        )
}

/// Whether an operation acts for an owner through a session or support access.
pub fn support_signed_in(path: &str) -> bool {
    path.starts_with("/api/v1/support/") && !path.starts_with("/api/v1/support/verify")
}

#[derive(Serialize, ToSchema)]
pub struct StatusView {
    status: &'static str,
    message: &'static str,
}

fn status(code: StatusCode, status: &'static str, message: &'static str) -> Response {
    (code, Json(StatusView { status, message })).into_response()
}

// ---- password reset and recovery link ----------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    email: String,
}

/// Mails a single-use link (30 minutes) to reset the password. The same answer for every
/// address.
#[utoipa::path(post, path = "/api/v1/password-reset", tag = "support", request_body = EmailBody, responses(
    (status = 202, body = StatusView),
    (status = 422, body = ErrorBody, description = "invalid_email"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (see Retry-After)"),
))]
async fn reset_request(
    State(s): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<EmailBody>,
) -> Result<Response, ApiError> {
    s.support
        .request_password_reset(&req.email, &client)
        .await?;
    Ok(status(
        StatusCode::ACCEPTED,
        "reset_link_sent",
        "If this address belongs to an account, a link to reset its password was mailed to it. It works once, for 30 minutes.",
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetCompleteBody {
    /// From the mailed link `/reset-password/{token}`.
    token: String,
    new_password: String,
    /// A code from the authenticator app, or a backup code: required when the account has
    /// a second factor.
    #[serde(default)]
    code: Option<String>,
    /// A passkey instead of a code: the ceremony from
    /// `POST /api/v1/password-reset/passkey/options` and the credential it produced.
    #[serde(default)]
    passkey: Option<PasskeyProof>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyProof {
    ceremony_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials.get`, binary fields base64url.
    #[schema(value_type = Object)]
    credential: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// From the mailed link `/reset-password/{token}`.
    token: String,
}

/// Starts the passkey ceremony that proves the second factor of a reset: answers
/// `{ceremony_id, options}` for `navigator.credentials.get`.
#[utoipa::path(post, path = "/api/v1/password-reset/passkey/options", tag = "support", request_body = TokenBody, responses(
    (status = 200, body = Object, description = "{ceremony_id, options}"),
    (status = 403, body = ErrorBody, description = "reset_link_expired"),
    (status = 404, body = ErrorBody, description = "reset_link_invalid"),
    (status = 409, body = ErrorBody, description = "no_passkey"),
))]
async fn reset_passkey_options(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<TokenBody>,
) -> Result<Response, ApiError> {
    let c = s.support.reset_passkey_options(&req.token).await?;
    Ok(
        Json(serde_json::json!({"ceremony_id": c.ceremony_id, "options": c.options}))
            .into_response(),
    )
}

/// Sets a new password from a reset link. Every session ends; withdrawals are locked for
/// 24 hours; a frozen account stays frozen.
#[utoipa::path(post, path = "/api/v1/password-reset/complete", tag = "support", request_body = ResetCompleteBody, responses(
    (status = 200, body = StatusView),
    (status = 400, body = ErrorBody, description = "invalid_code"),
    (status = 401, body = ErrorBody, description = "passkey_failed"),
    (status = 403, body = ErrorBody, description = "reset_link_expired, second_factor_required"),
    (status = 404, body = ErrorBody, description = "reset_link_invalid (unknown or already used)"),
    (status = 422, body = ErrorBody, description = "weak_password, password_reused"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (see Retry-After)"),
))]
async fn reset_complete(
    State(s): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<ResetCompleteBody>,
) -> Result<Response, ApiError> {
    let credential: Option<webauthn_rs::prelude::PublicKeyCredential> = match &req.passkey {
        Some(p) => Some(serde_json::from_value(p.credential.clone()).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_credential",
                format!("The credential is malformed: {e}"),
            )
        })?),
        None => None,
    };
    let proof = match (&req.passkey, &credential, &req.code) {
        (Some(p), Some(c), _) => ResetProof::Passkey {
            ceremony_id: &p.ceremony_id,
            credential: c,
        },
        (_, _, Some(code)) => ResetProof::Code(code),
        _ => ResetProof::None,
    };
    s.support
        .complete_password_reset(&req.token, &req.new_password, proof, &client)
        .await?;
    Ok(status(
        StatusCode::OK,
        "password_reset",
        "Your password was reset. Every session was ended and withdrawals are locked for 24 hours. Sign in with the new password.",
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    /// From the mailed link `/recover/{token}` of an approved recovery.
    token: String,
    new_password: String,
}

/// Sets the new password of an approved recovery. Then sign in and enrol a new second
/// factor: until then everything else answers `recovery_incomplete`.
#[utoipa::path(post, path = "/api/v1/recover", tag = "support", request_body = RecoverBody, responses(
    (status = 200, body = StatusView),
    (status = 403, body = ErrorBody, description = "reset_link_expired"),
    (status = 404, body = ErrorBody, description = "reset_link_invalid (unknown or already used)"),
    (status = 422, body = ErrorBody, description = "weak_password, password_reused"),
))]
async fn recover(
    State(s): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<RecoverBody>,
) -> Result<Response, ApiError> {
    s.support
        .complete_recovery(&req.token, &req.new_password, &client)
        .await?;
    Ok(status(
        StatusCode::OK,
        "password_set",
        "Your new password is set. Sign in, then set up a new authenticator app or passkey.",
    ))
}

// ---- support access -----------------------------------------------------------------------

/// Mails a 6-digit code that opens support access for an owner who cannot sign in. The
/// same answer for every address.
#[utoipa::path(post, path = "/api/v1/support/verify", tag = "support", request_body = EmailBody, responses(
    (status = 202, body = StatusView),
    (status = 422, body = ErrorBody, description = "invalid_email"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (see Retry-After)"),
))]
async fn verify(
    State(s): State<AppState>,
    client: Client,
    ApiJson(req): ApiJson<EmailBody>,
) -> Result<Response, ApiError> {
    s.support.send_support_code(&req.email, &client).await?;
    Ok(status(
        StatusCode::ACCEPTED,
        "code_sent",
        "If this address belongs to an account, a 6-digit code was mailed to it.",
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfirmBody {
    email: String,
    code: String,
}

/// Opens support access (a cookie, one hour, support routes only) with the mailed code.
#[utoipa::path(post, path = "/api/v1/support/verify/confirm", tag = "support", request_body = VerifyConfirmBody, responses(
    (status = 200, body = StatusView),
    (status = 400, body = ErrorBody, description = "invalid_code, code_expired"),
    (status = 422, body = ErrorBody, description = "invalid_email"),
    (status = 429, body = ErrorBody, description = "too_many_attempts (see Retry-After)"),
))]
async fn verify_confirm(
    State(s): State<AppState>,
    jar: CookieJar,
    client: Client,
    ApiJson(req): ApiJson<VerifyConfirmBody>,
) -> Result<Response, ApiError> {
    let token = s
        .support
        .open_support_access(&req.email, &req.code, &client)
        .await?;
    let jar = jar.add(s.support_cookie(token, time::Duration::milliseconds(SUPPORT_ACCESS_TTL)));
    Ok((
        jar,
        Json(StatusView {
            status: "support_access",
            message:
                "You can now file a ticket and a recovery request for this account, for one hour.",
        }),
    )
        .into_response())
}

// ---- tickets, the owner's side ------------------------------------------------------------

/// The ticket pre-filled the way the guides write it: UID, the last 30 days' sign-ins and
/// the devices to point at, the actions already taken, and the requests to tick.
#[utoipa::path(get, path = "/api/v1/support/ticket-draft", tag = "support", responses(
    (status = 200, body = Object, description = "{uid, email, frozen_at, sign_ins[{id, at, success, ip, place, device, unfamiliar}], devices[{id, device, place, first_seen, last_active, trusted}], actions_taken[{at, action, what}], requests[]}"),
    (status = 401, body = ErrorBody, description = "unauthenticated: sign in, or open support access"),
))]
async fn ticket_draft(
    State(s): State<AppState>,
    SupportAuthed(account): SupportAuthed,
) -> Result<Json<TicketDraft>, ApiError> {
    Ok(Json(s.support.ticket_draft(&account).await?))
}

#[derive(Serialize, ToSchema)]
pub struct MessageView {
    /// `you`, `support` (the owner's view) or the operator's actor (the console's).
    author: String,
    body: String,
    at: Millis,
    /// Console only: an internal note the owner never sees.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    internal: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TicketView {
    id: String,
    /// `open` (waiting for support), `answered` (waiting for you), `closed`.
    status: &'static str,
    noticed_at: Option<Millis>,
    description: String,
    requests: Vec<&'static str>,
    /// The recovery request this ticket opened or joined.
    recovery_id: Option<String>,
    created_at: Millis,
    updated_at: Millis,
    /// Console queues: how long it has waited since its last change.
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_ms: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_uid: Option<String>,
    /// What the owner picked (sign-ins, devices) and the actions taken.
    #[schema(value_type = Object)]
    details: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<MessageView>>,
}

fn ticket_view(t: Ticket, now: Millis) -> TicketView {
    TicketView {
        status: t.status.as_str(),
        requests: t.requests.iter().map(|r| r.as_str()).collect(),
        waiting_ms: Some(now - t.updated_at),
        account_uid: None,
        messages: None,
        id: t.id,
        noticed_at: t.noticed_at,
        description: t.description,
        recovery_id: t.recovery_id,
        created_at: t.created_at,
        updated_at: t.updated_at,
        details: t.details,
    }
}

fn owner_message(m: TicketMessage) -> MessageView {
    MessageView {
        author: if m.author == "owner" {
            "you".into()
        } else {
            "support".into()
        },
        body: m.body,
        at: m.created_at,
        internal: false,
    }
}

/// The account's tickets, newest first.
#[utoipa::path(get, path = "/api/v1/support/tickets", tag = "support", responses(
    (status = 200, body = [TicketView]),
    (status = 401, body = ErrorBody, description = "unauthenticated: sign in, or open support access"),
))]
async fn list_tickets(
    State(s): State<AppState>,
    SupportAuthed(account): SupportAuthed,
) -> Result<Json<Vec<TicketView>>, ApiError> {
    let now = s.now();
    Ok(Json(
        s.support
            .owner_tickets(&account)
            .await?
            .into_iter()
            .map(|t| TicketView {
                waiting_ms: None,
                ..ticket_view(t, now)
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTicketBody {
    /// When the problem was noticed (Unix ms).
    #[serde(default)]
    noticed_at: Option<Millis>,
    /// What happened, in your words.
    description: String,
    /// Sign-ins from the draft that were not you.
    #[serde(default)]
    sign_in_ids: Vec<String>,
    /// Devices from the draft that are not yours.
    #[serde(default)]
    device_ids: Vec<String>,
    /// `full_audit`, `withdrawal_lock`, `unfreeze`.
    #[serde(default)]
    requests: Vec<String>,
}

pub(crate) fn parse_requests(list: &[String]) -> Result<Vec<TicketRequest>, ApiError> {
    list.iter()
        .map(|r| {
            TicketRequest::parse(r).map_err(|_| {
                ApiError::from(crate::service::ServiceError::from(Invalid::new(
                    "invalid_request_kind",
                    "Requests are full_audit, withdrawal_lock and unfreeze.",
                )))
            })
        })
        .collect()
}

/// Files a ticket. `unfreeze` on a frozen account also opens a reactivation recovery;
/// `withdrawal_lock` locks withdrawals at once for 48 hours.
#[utoipa::path(post, path = "/api/v1/support/tickets", tag = "support", request_body = NewTicketBody, responses(
    (status = 201, body = TicketView),
    (status = 401, body = ErrorBody, description = "unauthenticated: sign in, or open support access"),
    (status = 422, body = ErrorBody, description = "description_invalid, unknown_reference, invalid_request_kind"),
))]
async fn file_ticket(
    State(s): State<AppState>,
    SupportAuthed(account): SupportAuthed,
    client: Client,
    ApiJson(req): ApiJson<NewTicketBody>,
) -> Result<Response, ApiError> {
    let new = NewTicket {
        noticed_at: req.noticed_at,
        description: req.description,
        sign_in_ids: req.sign_in_ids,
        device_ids: req.device_ids,
        requests: parse_requests(&req.requests)?,
    };
    let t = s.support.file_ticket(&account, new, &client).await?;
    let view = TicketView {
        waiting_ms: None,
        ..ticket_view(t, s.now())
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// A ticket with its replies (never support's internal notes).
#[utoipa::path(get, path = "/api/v1/support/tickets/{id}", tag = "support", params(("id" = String, Path)), responses(
    (status = 200, body = TicketView),
    (status = 401, body = ErrorBody, description = "unauthenticated: sign in, or open support access"),
))]
async fn show_ticket(
    State(s): State<AppState>,
    SupportAuthed(account): SupportAuthed,
    Path(id): Path<String>,
) -> Result<Json<TicketView>, ApiError> {
    let (t, messages) = s.support.owner_ticket(&account, &id).await?;
    Ok(Json(TicketView {
        waiting_ms: None,
        messages: Some(messages.into_iter().map(owner_message).collect()),
        ..ticket_view(t, s.now())
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    body: String,
}

/// Answers support on a ticket.
#[utoipa::path(post, path = "/api/v1/support/tickets/{id}/replies", tag = "support", params(("id" = String, Path)), request_body = ReplyBody, responses(
    (status = 201, body = StatusView),
    (status = 401, body = ErrorBody, description = "unauthenticated: sign in, or open support access"),
    (status = 422, body = ErrorBody, description = "message_invalid"),
))]
async fn owner_reply(
    State(s): State<AppState>,
    SupportAuthed(account): SupportAuthed,
    Path(id): Path<String>,
    client: Client,
    ApiJson(req): ApiJson<ReplyBody>,
) -> Result<Response, ApiError> {
    s.support
        .owner_reply(&account, &id, &req.body, &client)
        .await?;
    Ok(status(
        StatusCode::CREATED,
        "sent",
        "Your reply was added to the ticket.",
    ))
}

// ---- recoveries, the owner's side ---------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct RecoveryView {
    id: String,
    /// `reactivation` or `second_factor_reset`.
    kind: &'static str,
    /// `submitted`, `awaiting_second_approval`, `approved`, `rejected`.
    status: &'static str,
    what_happened: String,
    created_at: Millis,
    /// The reason given with the decision.
    decision_reason: Option<String>,
    decided_at: Option<Millis>,
    /// Console only.
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_ms: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frozen_at: Option<Millis>,
    /// Console only: the two-person rule applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    needs_two: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_approver: Option<String>,
    /// The files of identity evidence attached (console detail).
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<Vec<EvidenceView>>,
}

#[derive(Serialize, ToSchema)]
pub struct EvidenceView {
    n: i64,
    content_type: String,
    size_bytes: i64,
    created_at: Millis,
}

fn evidence_views(list: Vec<crate::store::EvidenceRecord>) -> Vec<EvidenceView> {
    list.into_iter()
        .map(|e| EvidenceView {
            n: e.n,
            content_type: e.content_type,
            size_bytes: e.size_bytes,
            created_at: e.created_at,
        })
        .collect()
}

fn recovery_view(r: RecoveryRecord) -> RecoveryView {
    RecoveryView {
        kind: r.kind.as_str(),
        status: r.status.as_str(),
        id: r.id,
        what_happened: r.reason,
        created_at: r.created_at,
        decision_reason: r.decision_reason,
        decided_at: r.decided_at,
        waiting_ms: None,
        account_uid: None,
        frozen_at: None,
        needs_two: None,
        first_approver: None,
        evidence: None,
    }
}

fn console_recovery_view(r: RecoveryRecord, uid: Option<String>, now: Millis) -> RecoveryView {
    let (frozen_at, needs_two, first, created) = (
        r.frozen_at,
        r.needs_two,
        r.first_approver.clone(),
        r.created_at,
    );
    RecoveryView {
        waiting_ms: Some(now - created),
        account_uid: uid,
        frozen_at,
        needs_two: Some(needs_two),
        first_approver: first,
        ..recovery_view(r)
    }
}

/// The account's recovery requests and where each is.
#[utoipa::path(get, path = "/api/v1/support/recoveries", tag = "support", responses(
    (status = 200, body = [RecoveryView]),
    (status = 401, body = ErrorBody, description = "unauthenticated: sign in, or open support access"),
))]
async fn list_recoveries(
    State(s): State<AppState>,
    SupportAuthed(account): SupportAuthed,
) -> Result<Json<Vec<RecoveryView>>, ApiError> {
    Ok(Json(
        s.support
            .owner_recoveries(&account)
            .await?
            .into_iter()
            .map(recovery_view)
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryBody {
    /// `reactivation` (a frozen account) or `second_factor_reset`.
    kind: String,
    what_happened: String,
}

/// Asks for a reviewed recovery. One open request per account.
#[utoipa::path(post, path = "/api/v1/support/recoveries", tag = "support", request_body = RecoveryBody, responses(
    (status = 201, body = RecoveryView),
    (status = 401, body = ErrorBody, description = "unauthenticated: sign in, or open support access"),
    (status = 409, body = ErrorBody, description = "not_frozen, recovery_open"),
    (status = 422, body = ErrorBody, description = "description_invalid, invalid_kind"),
))]
async fn request_recovery(
    State(s): State<AppState>,
    SupportAuthed(account): SupportAuthed,
    client: Client,
    ApiJson(req): ApiJson<RecoveryBody>,
) -> Result<Response, ApiError> {
    let kind = RecoveryKind::parse(&req.kind).map_err(|_| {
        ApiError::from(crate::service::ServiceError::from(Invalid::new(
            "invalid_kind",
            "The kind is reactivation or second_factor_reset.",
        )))
    })?;
    let r = s
        .support
        .request_recovery(&account, kind, &req.what_happened, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(recovery_view(r))).into_response())
}

/// Attaches a file of identity evidence to an open request: the raw file as the body, with
/// its type (`image/jpeg`, `image/png` or `application/pdf`, checked against its bytes), at
/// most 5 MiB, 3 files a request. Sealed at rest; deleted 30 days after the decision.
#[utoipa::path(post, path = "/api/v1/support/recoveries/{id}/evidence", tag = "support", params(("id" = String, Path)),
    request_body(content((Vec<u8> = "image/jpeg"), (Vec<u8> = "image/png"), (Vec<u8> = "application/pdf")), description = "The file itself"),
    responses(
        (status = 201, body = EvidenceView),
        (status = 401, body = ErrorBody, description = "unauthenticated: sign in, or open support access"),
        (status = 409, body = ErrorBody, description = "already_decided, evidence_full"),
        (status = 413, body = ErrorBody, description = "body_too_large"),
        (status = 422, body = ErrorBody, description = "evidence_type, evidence_size"),
))]
async fn add_evidence(
    State(s): State<AppState>,
    SupportAuthed(account): SupportAuthed,
    Path(id): Path<String>,
    headers: HeaderMap,
    client: Client,
    body: Bytes,
) -> Result<Response, ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let e = s
        .support
        .add_evidence(&account, &id, declared, &body, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(evidence_views(vec![e]).remove(0))).into_response())
}

// ---- the console --------------------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Tickets: `open`, `answered`, `closed` (default: not closed). Recoveries:
    /// `submitted`, `awaiting_second_approval`, `approved`, `rejected` (default: open).
    status: Option<String>,
}

fn bad_status() -> ApiError {
    ApiError::from(crate::service::ServiceError::from(Invalid::new(
        "invalid_status",
        "Unknown status.",
    )))
}

/// The ticket queue, oldest first, with how long each has waited.
#[utoipa::path(get, path = "/api/v1/console/tickets", tag = "console", params(StatusQuery), responses(
    (status = 200, body = [TicketView]),
    (status = 422, body = ErrorBody, description = "invalid_status"),
))]
async fn console_tickets(
    State(s): State<AppState>,
    ConsoleAuthed { operator, .. }: ConsoleAuthed,
    Query(q): Query<StatusQuery>,
) -> Result<Json<Vec<TicketView>>, ApiError> {
    let status = q
        .status
        .map(|v| TicketStatus::parse(&v).map_err(|_| bad_status()))
        .transpose()?;
    let now = s.now();
    Ok(Json(
        s.support
            .ticket_queue(&operator, status)
            .await?
            .into_iter()
            .map(|t| ticket_view(t, now))
            .collect(),
    ))
}

/// A ticket with every message, internal notes included.
#[utoipa::path(get, path = "/api/v1/console/tickets/{id}", tag = "console", params(("id" = String, Path)), responses(
    (status = 200, body = TicketView),
))]
async fn console_ticket(
    State(s): State<AppState>,
    ConsoleAuthed { operator, .. }: ConsoleAuthed,
    Path(id): Path<String>,
) -> Result<Json<TicketView>, ApiError> {
    let (t, messages, account) = s.support.console_ticket(&operator, &id).await?;
    Ok(Json(TicketView {
        account_uid: Some(account.uid),
        messages: Some(
            messages
                .into_iter()
                .map(|m| MessageView {
                    author: m.author,
                    body: m.body,
                    at: m.created_at,
                    internal: m.internal,
                })
                .collect(),
        ),
        ..ticket_view(t, s.now())
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleReplyBody {
    body: String,
    /// An internal note: never shown to the owner, no mail.
    #[serde(default)]
    internal: bool,
}

/// Replies to a ticket (the owner is mailed), or adds an internal note.
#[utoipa::path(post, path = "/api/v1/console/tickets/{id}/replies", tag = "console", params(("id" = String, Path)), request_body = ConsoleReplyBody, responses(
    (status = 201, body = StatusView),
    (status = 422, body = ErrorBody, description = "message_invalid"),
))]
async fn console_reply(
    State(s): State<AppState>,
    ConsoleAuthed { operator, .. }: ConsoleAuthed,
    Path(id): Path<String>,
    client: Client,
    ApiJson(req): ApiJson<ConsoleReplyBody>,
) -> Result<Response, ApiError> {
    s.support
        .operator_reply(&operator, &id, &req.body, req.internal, &client)
        .await?;
    Ok(status(StatusCode::CREATED, "sent", "Added to the ticket."))
}

/// Closes a ticket.
#[utoipa::path(post, path = "/api/v1/console/tickets/{id}/close", tag = "console", params(("id" = String, Path)), responses(
    (status = 200, body = StatusView),
))]
async fn console_close(
    State(s): State<AppState>,
    ConsoleAuthed { operator, .. }: ConsoleAuthed,
    Path(id): Path<String>,
    client: Client,
) -> Result<Response, ApiError> {
    s.support.close_ticket(&operator, &id, &client).await?;
    Ok(status(StatusCode::OK, "closed", "The ticket is closed."))
}

/// The recovery queue, oldest first, with how long each has waited.
#[utoipa::path(get, path = "/api/v1/console/recoveries", tag = "console", params(StatusQuery), responses(
    (status = 200, body = [RecoveryView]),
    (status = 422, body = ErrorBody, description = "invalid_status"),
))]
async fn console_recoveries(
    State(s): State<AppState>,
    ConsoleAuthed { operator, .. }: ConsoleAuthed,
    Query(q): Query<StatusQuery>,
) -> Result<Json<Vec<RecoveryView>>, ApiError> {
    let status = q
        .status
        .map(|v| RecoveryStatus::parse(&v).map_err(|_| bad_status()))
        .transpose()?;
    let now = s.now();
    Ok(Json(
        s.support
            .recovery_queue(&operator, status)
            .await?
            .into_iter()
            .map(|r| console_recovery_view(r, None, now))
            .collect(),
    ))
}

/// A recovery request with its account.
#[utoipa::path(get, path = "/api/v1/console/recoveries/{id}", tag = "console", params(("id" = String, Path)), responses(
    (status = 200, body = RecoveryView),
))]
async fn console_recovery(
    State(s): State<AppState>,
    ConsoleAuthed { operator, .. }: ConsoleAuthed,
    Path(id): Path<String>,
) -> Result<Json<RecoveryView>, ApiError> {
    let (r, account) = s.support.console_recovery(&operator, &id).await?;
    let evidence = evidence_views(s.support.evidence_of(&r.id).await?);
    Ok(Json(RecoveryView {
        evidence: Some(evidence),
        ..console_recovery_view(r, Some(account.uid), s.now())
    }))
}

/// Downloads a file of evidence (reviewer; audited). Served as an attachment that the
/// browser may not run or render inline.
#[utoipa::path(get, path = "/api/v1/console/recoveries/{id}/evidence/{n}", tag = "console", params(("id" = String, Path), ("n" = i64, Path)), responses(
    (status = 200, description = "The file", content_type = "application/octet-stream"),
))]
async fn console_evidence(
    State(s): State<AppState>,
    ConsoleAuthed { operator, .. }: ConsoleAuthed,
    Path((id, n)): Path<(String, i64)>,
    client: Client,
) -> Result<Response, ApiError> {
    let (content_type, bytes) = s.support.evidence_file(&operator, &id, n, &client).await?;
    let ext = match content_type.as_str() {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        _ => "pdf",
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"evidence-{n}.{ext}\""),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".to_owned(),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Told to the owner.
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct DecisionView {
    /// `awaiting_second_approval`, `approved` or `rejected`.
    status: &'static str,
    message: String,
}

/// Approves a recovery (reviewer). A reactivation waits `unfreeze_min_minutes` (120) after
/// the freeze; the two-person rule may ask for a second, different reviewer.
#[utoipa::path(post, path = "/api/v1/console/recoveries/{id}/approve", tag = "console", params(("id" = String, Path)), request_body = ReasonBody, responses(
    (status = 200, body = DecisionView),
    (status = 403, body = ErrorBody, description = "second_approver_required"),
    (status = 409, body = ErrorBody, description = "too_soon, already_decided"),
    (status = 422, body = ErrorBody, description = "reason_required"),
))]
async fn console_approve(
    State(s): State<AppState>,
    ConsoleAuthed { operator, .. }: ConsoleAuthed,
    Path(id): Path<String>,
    client: Client,
    ApiJson(req): ApiJson<ReasonBody>,
) -> Result<Json<DecisionView>, ApiError> {
    let d = s
        .support
        .approve(&operator, &id, &req.reason, &client)
        .await?;
    Ok(Json(DecisionView {
        status: d.status.as_str(),
        message: d.message,
    }))
}

/// Rejects a recovery (reviewer); the owner is told the reason.
#[utoipa::path(post, path = "/api/v1/console/recoveries/{id}/reject", tag = "console", params(("id" = String, Path)), request_body = ReasonBody, responses(
    (status = 200, body = DecisionView),
    (status = 409, body = ErrorBody, description = "already_decided"),
    (status = 422, body = ErrorBody, description = "reason_required"),
))]
async fn console_reject(
    State(s): State<AppState>,
    ConsoleAuthed { operator, .. }: ConsoleAuthed,
    Path(id): Path<String>,
    client: Client,
    ApiJson(req): ApiJson<ReasonBody>,
) -> Result<Json<DecisionView>, ApiError> {
    let d = s
        .support
        .reject(&operator, &id, &req.reason, &client)
        .await?;
    Ok(Json(DecisionView {
        status: d.status.as_str(),
        message: d.message,
    }))
}
