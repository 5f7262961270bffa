//! Server-rendered pages (askama): sign up, confirm, sign in, the Security Center, and the
//! local mailbox. No JavaScript. Every form carries a CSRF token: an HMAC (keyed by the
//! server key) of a random per-browser cookie and, when signed in, of the session cookie,
//! checked in constant time on every POST.

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::CookieJar;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use super::{AppState, CHALLENGE_COOKIE, CSRF_COOKIE, SESSION_COOKIE};
use crate::clock::format_utc;
use crate::domain::change::Weakening;
use crate::domain::secret::{constant_time_eq, random_token};
use crate::domain::sign_in::{SecondFactor, SignInMethod};
use crate::geo::Location;
use crate::service::sessions::{SignInOutcome, SignedIn};
use crate::service::{Client, ServiceError};
use crate::store::SessionAuth;

pub fn routes(mailbox: bool) -> Router<AppState> {
    let r = Router::new()
        .route("/", get(home))
        .route("/signup", get(signup_page).post(signup))
        .route("/confirm", get(confirm_page).post(confirm))
        .route("/confirm/resend", post(resend))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/signin/check-mail", get(check_mail))
        .route("/security", get(security_page))
        .route("/security/anti-phishing-code", post(set_anti_phishing_code))
        .route("/static/rampart.css", get(stylesheet))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }));
    if mailbox {
        r.route("/dev/mailbox", get(mailbox_page))
    } else {
        r
    }
}

static CSS: &str = include_str!("../../static/rampart.css");

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!("template failed: {e}");
            ApiError::internal().into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    link: &'a str,
    link_text: &'a str,
}

pub(crate) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    link: &str,
    link_text: &str,
) -> Response {
    render(
        status,
        &MessagePage {
            title,
            message: text,
            link,
            link_text,
        },
    )
}

/// The browser's CSRF cookie (created if missing) and the token its forms carry.
pub(crate) fn csrf(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
    match jar.get(CSRF_COOKIE).map(|c| c.value().to_owned()) {
        Some(v) if !v.is_empty() && v.len() <= 64 => {
            let token = csrf_token(state, &jar, &v);
            (jar, token)
        }
        _ => {
            let v = random_token();
            let jar = jar.add(state.cookie(CSRF_COOKIE, v.clone(), time::Duration::days(1)));
            let token = csrf_token(state, &jar, &v);
            (jar, token)
        }
    }
}

/// The token for a CSRF cookie value: an HMAC of it, and, when the browser holds a session
/// cookie, of that session too. A token from before sign-in, or from another session, does
/// not pass once signed in (so a token leaked or planted before sign-in is worthless).
fn csrf_token(state: &AppState, jar: &CookieJar, csrf_cookie: &str) -> String {
    match jar
        .get(SESSION_COOKIE)
        .map(|c| c.value())
        .filter(|v| !v.is_empty())
    {
        Some(session) => state
            .core
            .key
            .mac("csrf-session", &format!("{csrf_cookie}\0{session}")),
        None => state.core.key.mac("csrf", csrf_cookie),
    }
}

pub(crate) fn csrf_ok(state: &AppState, jar: &CookieJar, submitted: &str) -> bool {
    jar.get(CSRF_COOKIE)
        .filter(|c| !c.value().is_empty() && c.value().len() <= 64)
        .is_some_and(|c| constant_time_eq(&csrf_token(state, jar, c.value()), submitted))
}

pub(crate) fn csrf_refused() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "For your protection the form could not be accepted (its security token is missing or stale). Go back, reload the page and try again.",
        "/",
        "Start again",
    )
}

/// A form body, with every rejection rendered as a page rather than a bare status.
pub(crate) struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match Form::<T>::from_request(req, state).await {
            Ok(Form(v)) => Ok(Self(v)),
            Err(FormRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(message(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Too much data",
                    "The form was larger than this server accepts.",
                    "/",
                    "Start again",
                ))
            }
            Err(_) => Err(message(
                StatusCode::BAD_REQUEST,
                "That form was not understood",
                "Some fields were missing or malformed. Go back and try again.",
                "/",
                "Start again",
            )),
        }
    }
}

/// The signed-in session for a page, or a redirect to the sign-in page.
pub(crate) async fn page_auth(state: &AppState, jar: &CookieJar) -> Result<SessionAuth, Response> {
    let to_signin =
        |notice: &str| Redirect::to(&format!("/signin?notice={notice}")).into_response();
    let Some(token) = jar.get(SESSION_COOKIE) else {
        return Err(to_signin(""));
    };
    match state.core.authenticate(token.value()).await {
        Ok(auth) => Ok(auth),
        Err(ServiceError::SessionExpired) => Err(to_signin("expired")),
        Err(ServiceError::AccountFrozen) => Err(to_signin("frozen")),
        Err(ServiceError::Unauthenticated) => Err(to_signin("")),
        Err(ServiceError::Forbidden("device_confirmation_required", _)) => {
            Err(Redirect::to("/signin/check-mail").into_response())
        }
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// How a sign-in was made, in words.
fn method_label(method: SignInMethod) -> &'static str {
    match method {
        SignInMethod::Password => "Password",
        SignInMethod::PasswordAnd(SecondFactor::Totp) => "Password + authenticator app",
        SignInMethod::PasswordAnd(SecondFactor::BackupCode) => "Password + backup code",
        SignInMethod::PasswordAnd(SecondFactor::Passkey) => "Password + passkey",
        SignInMethod::Passkey => "Passkey",
    }
}

/// The cookies of a new session.
pub(crate) fn signed_in_jar(state: &AppState, jar: CookieJar, signed: SignedIn) -> CookieJar {
    let mut jar = jar
        .add(state.session_cookie(signed.session_token))
        .add(state.expired_cookie(CHALLENGE_COOKIE));
    if let Some(device) = signed.new_device_token {
        jar = jar.add(state.device_cookie(device));
    }
    jar
}

pub(crate) fn error_text(e: ServiceError) -> (StatusCode, String) {
    // The API's sentence names endpoints; a page names its own form.
    if let ServiceError::StepUpRequired { proof, .. } = e {
        return (
            StatusCode::FORBIDDEN,
            match proof {
                crate::domain::step_up::Proof::SecondFactor => "Confirm it's you first: use the \"Confirm it's me\" box under Two-step verification, then try again.",
                crate::domain::step_up::Proof::PasswordAndMailedCode => "Confirm it's you first: under Two-step verification, ask for a code by mail, enter it with your password, then try again.",
            }
            .to_owned(),
        );
    }
    let api = ApiError::from(e);
    (api.status, api.message)
}

async fn home(State(state): State<AppState>, jar: CookieJar) -> Redirect {
    match page_auth(&state, &jar).await {
        Ok(_) => Redirect::to("/security"),
        Err(_) => Redirect::to("/signin"),
    }
}

// ---- sign up ---------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    csrf: String,
    email: String,
    error: Option<String>,
    min_chars: usize,
}

async fn signup_page(State(state): State<AppState>, jar: CookieJar) -> Response {
    let (jar, csrf) = csrf(&state, jar);
    let page = SignupPage {
        csrf,
        email: String::new(),
        error: None,
        min_chars: state.core.rules.password_min_chars,
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

#[derive(Deserialize)]
struct SignupForm {
    csrf: String,
    email: String,
    password: String,
}

async fn signup(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<SignupForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state.core.register(&f.email, &f.password, &client).await {
        Ok(_) => {
            let email = crate::domain::email::Email::parse(&f.email)
                .map(|e| e.to_string())
                .unwrap_or_default();
            Redirect::to(&format!("/confirm?email={}", urlencode(&email))).into_response()
        }
        Err(e) => {
            let (status, text) = error_text(e);
            let (jar, csrf) = csrf(&state, jar);
            let page = SignupPage {
                csrf,
                email: f.email,
                error: Some(text),
                min_chars: state.core.rules.password_min_chars,
            };
            (jar, render(status, &page)).into_response()
        }
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- confirm ---------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    csrf: String,
    email: String,
    notice: Option<String>,
    error: Option<String>,
    ttl_minutes: i64,
}

#[derive(Deserialize)]
struct EmailQuery {
    email: Option<String>,
    notice: Option<String>,
}

async fn confirm_page(
    State(state): State<AppState>,
    jar: CookieJar,
    query: Result<Query<EmailQuery>, QueryRejection>,
) -> Response {
    let q = query.ok().map(|Query(q)| q);
    let email = q.as_ref().and_then(|q| q.email.clone()).unwrap_or_default();
    let notice = q
        .and_then(|q| q.notice)
        .filter(|n| n == "resent")
        .map(|_| "If this address waits for confirmation, a new code is on its way.".to_owned());
    let (jar, csrf) = csrf(&state, jar);
    let page = ConfirmPage {
        csrf,
        email,
        notice,
        error: None,
        ttl_minutes: state.core.rules.confirm_code_ttl_minutes,
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

#[derive(Deserialize)]
struct ConfirmForm {
    csrf: String,
    email: String,
    code: String,
}

async fn confirm(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<ConfirmForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state.core.confirm_email(&f.email, &f.code, &client).await {
        Ok(()) => Redirect::to("/signin?notice=confirmed").into_response(),
        Err(e) => {
            let (status, text) = error_text(e);
            let (jar, csrf) = csrf(&state, jar);
            let page = ConfirmPage {
                csrf,
                email: f.email,
                notice: None,
                error: Some(text),
                ttl_minutes: state.core.rules.confirm_code_ttl_minutes,
            };
            (jar, render(status, &page)).into_response()
        }
    }
}

#[derive(Deserialize)]
struct ResendForm {
    csrf: String,
    email: String,
}

async fn resend(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<ResendForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    if let Err(e) = state.core.resend_confirmation(&f.email, &client).await {
        let (status, text) = error_text(e);
        return message(status, "No code sent", &text, "/signup", "Back");
    }
    Redirect::to(&format!(
        "/confirm?notice=resent&email={}",
        urlencode(f.email.trim())
    ))
    .into_response()
}

// ---- sign in / out ---------------------------------------------------------------------

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    csrf: String,
    email: String,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn signin_page(
    State(state): State<AppState>,
    jar: CookieJar,
    query: Result<Query<NoticeQuery>, QueryRejection>,
) -> Response {
    let notice = query
        .ok()
        .and_then(|Query(q)| q.notice)
        .and_then(|n| match n.as_str() {
            "confirmed" => Some("Your email address is confirmed. Sign in to continue."),
            "expired" => Some("Your session expired. Sign in again."),
            "signed_out" => Some("You are signed out."),
            "frozen" => Some("This account is frozen for its protection."),
            _ => None,
        });
    let (jar, csrf) = csrf(&state, jar);
    let page = SigninPage {
        csrf,
        email: String::new(),
        notice: notice.map(str::to_owned),
        error: None,
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

#[derive(Deserialize)]
struct SigninForm {
    csrf: String,
    email: String,
    password: String,
}

async fn signin(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<SigninForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state.core.sign_in(&f.email, &f.password, &client).await {
        Ok(SignInOutcome::SignedIn(signed)) => (
            signed_in_jar(&state, jar, signed),
            Redirect::to("/security"),
        )
            .into_response(),
        Ok(SignInOutcome::SecondFactorRequired { challenge, .. }) => {
            let cookie = state.cookie(CHALLENGE_COOKIE, challenge, time::Duration::minutes(5));
            (jar.add(cookie), Redirect::to("/signin/second-factor")).into_response()
        }
        Err(e) => {
            let (status, text) = error_text(e);
            let (jar, csrf) = csrf(&state, jar);
            let page = SigninPage {
                csrf,
                email: f.email,
                notice: None,
                error: Some(text),
            };
            (jar, render(status, &page)).into_response()
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn signout(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    if let Ok(auth) = page_auth(&state, &jar).await {
        if let Err(e) = state.core.sign_out(&auth, &client).await {
            return ApiError::from(e).into_response();
        }
    }
    (
        jar.add(state.expired_cookie(SESSION_COOKIE)),
        Redirect::to("/signin?notice=signed_out"),
    )
        .into_response()
}

// ---- Security Center -------------------------------------------------------------------

struct DeviceRow {
    id: String,
    trusted: bool,
    current: bool,
    model: String,
    os: String,
    browser: String,
    ip: String,
    location: String,
    first_seen: String,
    last_active: String,
}

struct LoginRow {
    success: bool,
    result: String,
    at: String,
    ip: String,
    location: String,
    device: String,
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage {
    csrf: String,
    email: String,
    uid: String,
    anti_phishing_code: Option<String>,
    notice: Option<String>,
    error: Option<String>,
    history_days: i64,
    devices: Vec<DeviceRow>,
    logins: Vec<LoginRow>,
    geo_attribution: bool,
    totp_enabled: bool,
    backup_codes_left: i64,
    has_second_factor: bool,
    require_passkey: bool,
    passkeys: Vec<PasskeyRow>,
    pending: Vec<PendingRow>,
    locks: Vec<LockRow>,
    stepped_up_until: Option<String>,
    notifications: Vec<NotificationRow>,
    unread: usize,
    mail_prefs: Vec<PrefRow>,
}

struct PrefRow {
    kind: &'static str,
    description: &'static str,
    enabled: bool,
    turning_off_at: Option<String>,
}

struct NotificationRow {
    subject: String,
    body: String,
    at: String,
    unread: bool,
}

struct PasskeyRow {
    id: String,
    name: String,
    created: String,
    last_used: String,
    removal_pending: bool,
}

struct PendingRow {
    id: String,
    what: String,
    effective: String,
}

struct LockRow {
    reason: String,
    until: String,
}

pub(crate) async fn security_center(
    state: &AppState,
    jar: CookieJar,
    auth: SessionAuth,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let devices = match state.core.devices(&auth).await {
        Ok(d) => d,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let overview = match state.core.factor_overview(&auth).await {
        Ok(o) => o,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let notifications = match state.core.notifications(&auth, 30).await {
        Ok(n) => n,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mail_prefs = match state.core.mail_preferences(&auth).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let logins = match state.core.logins(&auth, 50).await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let current = auth.session.device_id.clone();
    let (jar, csrf) = csrf(state, jar);
    let status = error.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    let page = SecurityPage {
        csrf,
        email: auth.account.email,
        uid: auth.account.uid,
        anti_phishing_code: auth.account.anti_phishing_code,
        notice,
        error: error.map(|(_, t)| t),
        history_days: state.core.rules.device_history_days,
        devices: devices
            .into_iter()
            .map(|d| DeviceRow {
                trusted: d.trusted_at.is_some(),
                current: d.id == current,
                id: d.id.clone(),
                location: Location::label(d.city.as_deref(), d.country.as_deref()),
                model: d.model,
                os: d.os,
                browser: d.browser,
                ip: d.ip,
                first_seen: format_utc(d.first_seen),
                last_active: format_utc(d.last_active),
            })
            .collect(),
        logins: logins
            .into_iter()
            .map(|l| LoginRow {
                success: l.success,
                result: match l.reason.as_str() {
                    "signed_in" => format!("Success · {}", method_label(l.method)),
                    "wrong_password" => "Failed: wrong password".to_owned(),
                    "email_not_confirmed" => "Failed: email not confirmed".to_owned(),
                    "throttled" => "Refused: too many attempts".to_owned(),
                    "wrong_second_factor" => "Failed: wrong second-factor code".to_owned(),
                    other => format!("Failed: {other}"),
                },
                at: format_utc(l.at),
                location: Location::label(l.city.as_deref(), l.country.as_deref()),
                ip: l.ip,
                device: format!("{} · {} · {}", l.model, l.os, l.browser),
            })
            .collect(),
        geo_attribution: state.core.geo.is_loaded(),
        totp_enabled: overview.factors.totp,
        backup_codes_left: overview.factors.backup_codes_left,
        has_second_factor: overview.factors.any(),
        require_passkey: overview.require_passkey,
        passkeys: overview
            .passkeys
            .iter()
            .map(|p| PasskeyRow {
                id: p.id.clone(),
                name: p.name.clone(),
                created: format_utc(p.created_at),
                last_used: p
                    .last_used_at
                    .map_or_else(|| "never".to_owned(), format_utc),
                removal_pending: overview
                    .pending
                    .iter()
                    .any(|c| c.change == Weakening::RemovePasskey(p.id.clone())),
            })
            .collect(),
        pending: overview
            .pending
            .iter()
            .map(|c| PendingRow {
                id: c.id.clone(),
                what: match &c.change {
                    Weakening::DisableTotp => "Turn off the authenticator app".to_owned(),
                    Weakening::RemovePasskey(id) => format!(
                        "Remove the passkey \"{}\"",
                        overview
                            .passkeys
                            .iter()
                            .find(|p| &p.id == id)
                            .map_or("?", |p| p.name.as_str())
                    ),
                    Weakening::StopRequiringPasskey => "Stop requiring a passkey".to_owned(),
                    Weakening::MuteMail(_) => c.change.kind().to_owned(),
                },
                effective: format_utc(c.effective_at),
            })
            .collect(),
        locks: overview
            .withdrawal_locks
            .iter()
            .map(|l| LockRow {
                reason: match l.reason.as_str() {
                    "password_changed" => "password changed".to_owned(),
                    "second_factor_reset" => "authenticator reset".to_owned(),
                    other => other.replace('_', " "),
                },
                until: format_utc(l.until),
            })
            .collect(),
        stepped_up_until: overview.stepped_up_until.map(format_utc),
        mail_prefs: mail_prefs
            .into_iter()
            .map(|p| PrefRow {
                kind: p.kind,
                description: p.description,
                enabled: p.enabled,
                turning_off_at: p.turning_off_at.map(format_utc),
            })
            .collect(),
        unread: notifications.iter().filter(|n| n.read_at.is_none()).count(),
        notifications: notifications
            .into_iter()
            .map(|n| NotificationRow {
                unread: n.read_at.is_none(),
                subject: n.subject,
                body: n.body,
                at: format_utc(n.created_at),
            })
            .collect(),
    };
    (jar, render(status, &page)).into_response()
}

#[derive(Deserialize)]
struct SecurityQuery {
    saved: Option<String>,
}

async fn security_page(
    State(state): State<AppState>,
    jar: CookieJar,
    query: Result<Query<SecurityQuery>, QueryRejection>,
) -> Response {
    let auth = match page_auth(&state, &jar).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let notice = query
        .ok()
        .and_then(|Query(q)| q.saved)
        .map(|key| super::web_factors::notice_text(&key).to_owned());
    security_center(&state, jar, auth, notice, None).await
}

#[derive(Deserialize)]
struct AntiPhishingForm {
    csrf: String,
    code: String,
}

async fn set_anti_phishing_code(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<AntiPhishingForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    let auth = match page_auth(&state, &jar).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match state
        .core
        .set_anti_phishing_code(&auth, &f.code, &client)
        .await
    {
        Ok(()) => Redirect::to("/security?saved=anti_phishing").into_response(),
        Err(e) => security_center(&state, jar, auth, None, Some(error_text(e))).await,
    }
}

// ---- local mailbox ---------------------------------------------------------------------

struct MailRow {
    to: String,
    subject: String,
    at: String,
    status: String,
    body: Vec<BodyPart>,
}

/// A run of a mail's text; links to this server are clickable, nothing else is.
struct BodyPart {
    text: String,
    link: Option<String>,
}

/// Splits a mail body so that every URL under `public_url` becomes a link.
fn linkify(body: &str, public_url: &str) -> Vec<BodyPart> {
    let prefix = format!("{}/", public_url.trim_end_matches('/'));
    let mut parts = Vec::new();
    let mut text = String::new();
    for piece in body.split_inclusive(char::is_whitespace) {
        let url = piece.trim_end();
        if url.starts_with(&prefix) {
            if !text.is_empty() {
                parts.push(BodyPart {
                    text: std::mem::take(&mut text),
                    link: None,
                });
            }
            parts.push(BodyPart {
                text: url.to_owned(),
                link: Some(url.to_owned()),
            });
            text.push_str(&piece[url.len()..]);
        } else {
            text.push_str(piece);
        }
    }
    if !text.is_empty() {
        parts.push(BodyPart { text, link: None });
    }
    parts
}

#[derive(Template)]
#[template(path = "mailbox.html")]
struct MailboxPage {
    mails: Vec<MailRow>,
}

async fn mailbox_page(State(state): State<AppState>) -> Response {
    let mails = match state.core.store.recent_mails(200).await {
        Ok(m) => m,
        Err(e) => return ApiError::from(ServiceError::from(e)).into_response(),
    };
    let public_url = &state.core.composer.public_url;
    let page = MailboxPage {
        mails: mails
            .into_iter()
            .map(|m| MailRow {
                status: match (m.sent_at, m.dead_at) {
                    (Some(_), _) => "delivered".to_owned(),
                    (None, Some(_)) => "gave up".to_owned(),
                    (None, None) => "queued".to_owned(),
                },
                to: m.to_addr,
                subject: m.subject,
                at: format_utc(m.created_at),
                body: linkify(&m.body_text, public_url),
            })
            .collect(),
    };
    render(StatusCode::OK, &page)
}

async fn check_mail() -> Response {
    message(
        StatusCode::OK,
        "Confirm this device",
        "This device is new to your account. We mailed a confirmation link to the account's address: open it and confirm, then come back here. \
         If you did not just sign in, someone has your password: use the freeze link in that mail.",
        "/security",
        "I confirmed it",
    )
}

/// A form that carries only its CSRF token.
#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    pub csrf: String,
}

/// CSRF check and signed-in session, or the page that says why not.
pub(crate) async fn guard(
    state: &AppState,
    jar: &CookieJar,
    token: &str,
) -> Result<SessionAuth, Response> {
    if !csrf_ok(state, jar, token) {
        return Err(csrf_refused());
    }
    page_auth(state, jar).await
}

/// Back to the Security Center with a notice, or the Security Center with the error.
pub(crate) async fn finish(
    state: &AppState,
    jar: CookieJar,
    auth: SessionAuth,
    result: crate::service::ServiceResult<()>,
    saved: &str,
) -> Response {
    match result {
        Ok(()) => Redirect::to(&format!("/security?saved={saved}")).into_response(),
        Err(e) => security_center(state, jar, auth, None, Some(error_text(e))).await,
    }
}

/// The signed-in session of a CSRF-checked form, or return the refusal page.
macro_rules! guarded {
    ($state:expr, $jar:expr, $csrf:expr) => {
        match $crate::http::web::guard(&$state, &$jar, &$csrf).await {
            Ok(a) => a,
            Err(r) => return r,
        }
    };
}
pub(crate) use guarded;

/// A page that asks for one confirming click (links from mails must not act on GET,
/// because mail scanners fetch them).
#[derive(Template)]
#[template(path = "confirm_action.html")]
pub(crate) struct ConfirmActionPage<'a> {
    pub csrf: String,
    pub title: &'a str,
    pub text: &'a str,
    pub action: String,
    pub button: &'a str,
    pub danger: bool,
}

/// The page of a link from a mail: a title, an explanation and one button that POSTs back
/// with a CSRF token.
pub(crate) fn ask_to_confirm(
    state: &AppState,
    jar: CookieJar,
    title: &str,
    text: &str,
    action: String,
    button: &str,
    danger: bool,
) -> Response {
    let (jar, csrf) = csrf(state, jar);
    let page = ConfirmActionPage {
        csrf,
        title,
        text,
        action,
        button,
        danger,
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

/// Why clicking such a button did nothing, as a page.
pub(crate) fn link_refused(e: ServiceError, title: &str) -> Response {
    let (status, text) = error_text(e);
    message(status, title, &text, "/signin", "Sign in")
}
