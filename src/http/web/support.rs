//! Pages of getting the account back: "forgot password", the reset and recovery links,
//! and support (prove the mailbox without signing in, a ticket pre-filled from the
//! history, the owner's tickets and recoveries).

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::{csrf, csrf_ok, csrf_refused, error_text, message, render, urlencode, PageForm};
use crate::clock::{format_utc, Millis};
use crate::domain::support::{RecoveryKind, TicketRequest, EVIDENCE_MAX_BYTES, SUPPORT_ACCESS_TTL};
use crate::http::{AppState, SESSION_COOKIE, SUPPORT_COOKIE};
use crate::service::support::{NewTicket, ResetProof, TicketDraft};
use crate::service::{Client, ServiceError};
use crate::store::Account;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/forgot-password", get(forgot_page).post(forgot))
        .route("/reset-password/{token}", get(reset_page).post(reset))
        .route("/recover/{token}", get(recover_page).post(recover))
        .route("/support", get(support_page))
        .route("/support/verify", post(verify))
        .route("/support/verify/confirm", post(verify_confirm))
        .route("/support/tickets", post(file_ticket))
        .route("/support/tickets/{id}", get(ticket_page))
        .route("/support/tickets/{id}/reply", post(reply))
        .route("/support/recoveries", post(request_recovery))
        .route(
            "/support/recoveries/{id}/evidence",
            post(attach_evidence).layer(DefaultBodyLimit::max(EVIDENCE_MAX_BYTES + 64 * 1024)),
        )
}

#[derive(Deserialize)]
struct CsrfEmail {
    csrf: String,
    email: String,
}

// ---- forgot password ------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "forgot_password.html")]
struct ForgotPage {
    csrf: String,
    notice: Option<String>,
    error: Option<String>,
}

async fn forgot_page(State(state): State<AppState>, jar: CookieJar) -> Response {
    let (jar, csrf) = csrf(&state, jar);
    let page = ForgotPage {
        csrf,
        notice: None,
        error: None,
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

async fn forgot(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfEmail>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    let (status, notice, error) = match state.support.request_password_reset(&f.email, &client).await {
        Ok(()) => (
            StatusCode::OK,
            Some("If this address belongs to an account, a link to choose a new password is on its way. It works once, for 30 minutes.".to_owned()),
            None,
        ),
        Err(e) => {
            let (status, text) = error_text(e);
            (status, None, Some(text))
        }
    };
    let (jar, csrf) = csrf(&state, jar);
    (
        jar,
        render(
            status,
            &ForgotPage {
                csrf,
                notice,
                error,
            },
        ),
    )
        .into_response()
}

// ---- the reset and recovery links -------------------------------------------------------------

#[derive(Template)]
#[template(path = "set_password.html")]
struct SetPasswordPage {
    csrf: String,
    title: &'static str,
    intro: String,
    action: String,
    button: &'static str,
    usable: bool,
    needs_code: bool,
    /// "Use my passkey" (and the link's token for the script).
    passkey: bool,
    token: String,
    min_chars: usize,
    error: Option<String>,
}

fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 128
}

async fn link_page(state: AppState, jar: CookieJar, token: String, recovery: bool) -> Response {
    let (jar, csrf) = csrf(&state, jar);
    let (path, title, button) = if recovery {
        ("recover", "Finish your recovery", "Set my new password")
    } else {
        (
            "reset-password",
            "Choose a new password",
            "Reset my password",
        )
    };
    let mut page = SetPasswordPage {
        csrf,
        title,
        intro: String::new(),
        action: format!("/{path}/{}", urlencode(&token)),
        button,
        usable: false,
        needs_code: false,
        passkey: false,
        token: token.clone(),
        min_chars: state.rules.password_min_chars,
        error: None,
    };
    let state_of = if valid_token(&token) {
        state.support.link_state(&token).await
    } else {
        Err(ServiceError::NotFound("reset_link_invalid", String::new()))
    };
    let status = match state_of {
        Ok(s) => {
            page.usable = true;
            page.needs_code = s.needs_code;
            page.passkey = s.has_passkey;
            page.intro = if recovery {
                "Support approved your recovery. Choose a new password; then sign in and set up a new authenticator app or passkey. Withdrawals stay locked for 48 hours.".into()
            } else if s.passkey_only {
                format!(
                    "This link works once, until {}. Your account is protected by a passkey: choose the new password, then press \"Use my passkey\". After the reset every session ends and withdrawals are locked for 24 hours.",
                    format_utc(s.expires_at)
                )
            } else {
                format!(
                    "This link works once, until {}. After the reset every session ends and withdrawals are locked for 24 hours{}.",
                    format_utc(s.expires_at),
                    if s.needs_code { "; your second factor is needed" } else { "" }
                )
            };
            StatusCode::OK
        }
        Err(e) => {
            let (status, text) = error_text(e);
            page.intro = if text.is_empty() {
                "This link is not valid or was already used.".into()
            } else {
                text
            };
            status
        }
    };
    (jar, render(status, &page)).into_response()
}

async fn reset_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    link_page(state, jar, token, false).await
}

async fn recover_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    link_page(state, jar, token, true).await
}

#[derive(Deserialize)]
struct NewPasswordForm {
    csrf: String,
    new_password: String,
    #[serde(default)]
    code: Option<String>,
}

async fn reset(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(token): Path<String>,
    PageForm(f): PageForm<NewPasswordForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state
        .support
        .complete_password_reset(
            &token,
            &f.new_password,
            match f.code.as_deref() {
                Some(c) => ResetProof::Code(c),
                None => ResetProof::None,
            },
            &client,
        )
        .await
    {
        Ok(()) => Redirect::to("/signin?notice=password_reset").into_response(),
        Err(e) => link_error(state, jar, token, false, e).await,
    }
}

async fn recover(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(token): Path<String>,
    PageForm(f): PageForm<NewPasswordForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state
        .support
        .complete_recovery(&token, &f.new_password, &client)
        .await
    {
        Ok(()) => Redirect::to("/signin?notice=recovery_password_set").into_response(),
        Err(e) => link_error(state, jar, token, true, e).await,
    }
}

/// The refusal, with a way back to the same link (a wrong code or a weak password can be
/// tried again while the link lasts).
async fn link_error(
    _state: AppState,
    _jar: CookieJar,
    token: String,
    recovery: bool,
    e: ServiceError,
) -> Response {
    let (status, text) = error_text(e);
    message(
        status,
        "That did not work",
        &text,
        &format!(
            "/{}/{}",
            if recovery {
                "recover"
            } else {
                "reset-password"
            },
            urlencode(&token)
        ),
        "Try again",
    )
}

// ---- support -----------------------------------------------------------------------------------

struct SignInRow {
    id: String,
    when: String,
    device: String,
    place: String,
    ip: String,
    success: bool,
    unfamiliar: bool,
}

struct DeviceRow {
    id: String,
    device: String,
    place: String,
    trusted: bool,
}

struct TakenRow {
    when: String,
    what: String,
}

struct DraftView {
    uid: String,
    frozen_at: Option<Millis>,
    sign_ins: Vec<SignInRow>,
    devices: Vec<DeviceRow>,
    actions_taken: Vec<TakenRow>,
}

struct TicketRow {
    id: String,
    created: String,
    status: &'static str,
}

struct RecoveryRow {
    id: String,
    open: bool,
    files: usize,
    kind: &'static str,
    created: String,
    status: &'static str,
    reason: Option<String>,
}

#[derive(Template)]
#[template(path = "support.html")]
struct SupportPage {
    csrf: String,
    notice: Option<String>,
    error: Option<String>,
    email: String,
    draft: Option<DraftView>,
    tickets: Vec<TicketRow>,
    recoveries: Vec<RecoveryRow>,
}

fn draft_view(d: TicketDraft) -> DraftView {
    DraftView {
        uid: d.uid,
        frozen_at: d.frozen_at,
        sign_ins: d
            .sign_ins
            .into_iter()
            .map(|s| SignInRow {
                when: format_utc(s.at),
                id: s.id,
                device: s.device,
                place: s.place,
                ip: s.ip,
                success: s.success,
                unfamiliar: s.unfamiliar,
            })
            .collect(),
        devices: d
            .devices
            .into_iter()
            .map(|d| DeviceRow {
                id: d.id,
                device: d.device,
                place: d.place,
                trusted: d.trusted,
            })
            .collect(),
        actions_taken: d
            .actions_taken
            .into_iter()
            .map(|a| TakenRow {
                when: format_utc(a.at),
                what: a.what,
            })
            .collect(),
    }
}

/// The account a support page acts for: the signed-in owner, or support access.
async fn support_account(state: &AppState, jar: &CookieJar) -> Option<Account> {
    let value = |name| {
        jar.get(name)
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty() && v.len() <= 128)
    };
    if let Some(token) = value(SESSION_COOKIE) {
        if let Ok(auth) = state.sessions.authenticate(&token).await {
            return Some(auth.account);
        }
    }
    let token = value(SUPPORT_COOKIE)?;
    state.support.support_account(&token).await.ok()
}

#[derive(Deserialize)]
struct SupportQuery {
    email: Option<String>,
    notice: Option<String>,
}

async fn support_view(
    state: &AppState,
    jar: CookieJar,
    email: String,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let account = support_account(state, &jar).await;
    let (jar, csrf) = csrf(state, jar);
    let mut page = SupportPage {
        csrf,
        notice,
        error: None,
        email,
        draft: None,
        tickets: Vec::new(),
        recoveries: Vec::new(),
    };
    let mut status = StatusCode::OK;
    if let Some((s, text)) = error {
        status = s;
        page.error = Some(text);
    }
    if let Some(account) = account {
        match (
            state.support.ticket_draft(&account).await,
            state.support.owner_tickets(&account).await,
            state.support.owner_recoveries(&account).await,
        ) {
            (Ok(d), Ok(tickets), Ok(recoveries)) => {
                page.draft = Some(draft_view(d));
                page.tickets = tickets
                    .into_iter()
                    .map(|t| TicketRow {
                        id: t.id,
                        created: format_utc(t.created_at),
                        status: t.status.as_str(),
                    })
                    .collect();
                for r in recoveries {
                    let files = state
                        .support
                        .evidence_of(&r.id)
                        .await
                        .map(|e| e.len())
                        .unwrap_or(0);
                    page.recoveries.push(RecoveryRow {
                        open: r.status.is_open(),
                        files,
                        kind: r.kind.as_str(),
                        created: format_utc(r.created_at),
                        status: r.status.as_str(),
                        reason: r.decision_reason,
                        id: r.id,
                    });
                }
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                let (s, text) = error_text(e);
                status = s;
                page.error = Some(text);
            }
        }
    }
    (jar, render(status, &page)).into_response()
}

async fn support_page(
    State(state): State<AppState>,
    jar: CookieJar,
    query: Result<Query<SupportQuery>, QueryRejection>,
) -> Response {
    let q = query.ok().map(|Query(q)| q);
    let email = q.as_ref().and_then(|q| q.email.clone()).unwrap_or_default();
    let notice = q.and_then(|q| q.notice).and_then(|n| {
        Some(
            match n.as_str() {
                "code_sent" => {
                    "If this address belongs to an account, a 6-digit code is on its way."
                }
                "ticket_filed" => "Your ticket was filed. You will get a mail for every reply.",
                "recovery_requested" => {
                    "Your recovery request was received. A person from support reviews it."
                }
                "replied" => "Your answer was added to the ticket.",
                "evidence_added" => "The file was attached, encrypted, for the reviewer.",
                _ => return None,
            }
            .to_owned(),
        )
    });
    support_view(&state, jar, email, notice, None).await
}

async fn verify(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfEmail>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state.support.send_support_code(&f.email, &client).await {
        Ok(()) => Redirect::to(&format!(
            "/support?notice=code_sent&email={}",
            urlencode(f.email.trim())
        ))
        .into_response(),
        Err(e) => support_view(&state, jar, f.email, None, Some(error_text(e))).await,
    }
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    email: String,
    code: String,
}

async fn verify_confirm(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CodeForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state
        .support
        .open_support_access(&f.email, &f.code, &client)
        .await
    {
        Ok(token) => {
            let jar = jar
                .add(state.support_cookie(token, time::Duration::milliseconds(SUPPORT_ACCESS_TTL)));
            (jar, Redirect::to("/support")).into_response()
        }
        Err(e) => support_view(&state, jar, f.email, None, Some(error_text(e))).await,
    }
}

/// The ticket form: repeated `sign_in`, `device` and `request` fields.
async fn file_ticket(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let all = |name: &str| -> Vec<String> {
        fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    if !csrf_ok(&state, &jar, &field("csrf")) {
        return csrf_refused();
    }
    let Some(account) = support_account(&state, &jar).await else {
        return Redirect::to("/support").into_response();
    };
    let requests: Vec<TicketRequest> = all("request")
        .iter()
        .filter_map(|r| TicketRequest::parse(r).ok())
        .collect();
    let noticed_at = time::PrimitiveDateTime::parse(
        &field("noticed_at"),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    )
    .ok()
    .map(|t| (t.assume_utc().unix_timestamp_nanos() / 1_000_000) as Millis);
    let new = NewTicket {
        noticed_at,
        description: field("description"),
        sign_in_ids: all("sign_in"),
        device_ids: all("device"),
        requests,
    };
    match state.support.file_ticket(&account, new, &client).await {
        Ok(_) => Redirect::to("/support?notice=ticket_filed").into_response(),
        Err(e) => support_view(&state, jar, String::new(), None, Some(error_text(e))).await,
    }
}

#[derive(Deserialize)]
struct RecoveryForm {
    csrf: String,
    kind: String,
    what_happened: String,
}

async fn request_recovery(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<RecoveryForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    let Some(account) = support_account(&state, &jar).await else {
        return Redirect::to("/support").into_response();
    };
    let kind = RecoveryKind::parse(&f.kind).unwrap_or(RecoveryKind::SecondFactorReset);
    match state
        .support
        .request_recovery(&account, kind, &f.what_happened, &client)
        .await
    {
        Ok(_) => Redirect::to("/support?notice=recovery_requested").into_response(),
        Err(e) => support_view(&state, jar, String::new(), None, Some(error_text(e))).await,
    }
}

/// The evidence form: `csrf` first, then the file (its declared type is checked against its
/// bytes by the service).
async fn attach_evidence(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    mut form: Multipart,
) -> Response {
    let mut csrf_token = String::new();
    let mut file: Option<(String, Vec<u8>)> = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                let declared = field.content_type().unwrap_or("").to_owned();
                match field.bytes().await {
                    Ok(bytes) if name == "csrf" => {
                        csrf_token = String::from_utf8_lossy(&bytes).into_owned();
                    }
                    Ok(bytes) if name == "file" => file = Some((declared, bytes.to_vec())),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            Ok(None) => break,
            Err(_) => {
                return message(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The file was not accepted",
                    "A file of evidence is at most 5 MiB. Go back and choose a smaller one.",
                    "/support",
                    "Back to support",
                )
            }
        }
    }
    if !csrf_ok(&state, &jar, &csrf_token) {
        return csrf_refused();
    }
    let Some(account) = support_account(&state, &jar).await else {
        return Redirect::to("/support").into_response();
    };
    let (declared, bytes) = file.unwrap_or_default();
    match state
        .support
        .add_evidence(&account, &id, &declared, &bytes, &client)
        .await
    {
        Ok(_) => Redirect::to("/support?notice=evidence_added").into_response(),
        Err(e) => support_view(&state, jar, String::new(), None, Some(error_text(e))).await,
    }
}

struct MessageRow {
    author: &'static str,
    when: String,
    body: String,
}

#[derive(Template)]
#[template(path = "support_ticket.html")]
struct TicketPage {
    csrf: String,
    id: String,
    status: &'static str,
    created: String,
    messages: Vec<MessageRow>,
    error: Option<String>,
}

async fn ticket_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Response {
    let Some(account) = support_account(&state, &jar).await else {
        return Redirect::to("/support").into_response();
    };
    match state.support.owner_ticket(&account, &id).await {
        Ok((t, messages)) => {
            let (jar, csrf) = csrf(&state, jar);
            let page = TicketPage {
                csrf,
                id: t.id,
                status: t.status.as_str(),
                created: format_utc(t.created_at),
                messages: messages
                    .into_iter()
                    .map(|m| MessageRow {
                        author: if m.author == "owner" {
                            "You"
                        } else {
                            "Support"
                        },
                        when: format_utc(m.created_at),
                        body: m.body,
                    })
                    .collect(),
                error: None,
            };
            (jar, render(StatusCode::OK, &page)).into_response()
        }
        Err(e) => {
            let (status, text) = error_text(e);
            message(
                status,
                "No such ticket",
                &text,
                "/support",
                "Back to support",
            )
        }
    }
}

#[derive(Deserialize)]
struct ReplyForm {
    csrf: String,
    body: String,
}

async fn reply(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<ReplyForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    let Some(account) = support_account(&state, &jar).await else {
        return Redirect::to("/support").into_response();
    };
    match state
        .support
        .owner_reply(&account, &id, &f.body, &client)
        .await
    {
        Ok(()) => Redirect::to(&format!("/support/tickets/{}", urlencode(&id))).into_response(),
        Err(e) => {
            let (status, text) = error_text(e);
            message(
                status,
                "Your answer was not sent",
                &text,
                "/support",
                "Back to support",
            )
        }
    }
}
