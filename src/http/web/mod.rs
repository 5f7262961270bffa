//! Server-rendered pages (askama): sign up, confirm, sign in, the Security Center, and the
//! local mailbox. No JavaScript beyond the passkey glue. Every form carries a CSRF token: an
//! HMAC (keyed by the server key) of a random per-browser cookie and, when signed in, of the
//! session cookie, checked in constant time on every POST.
//!
//! One file per area; this one joins their routes and holds what every page needs
//! (rendering, CSRF, the form extractor, the signed-in session of a page, error sentences,
//! the confirm-by-click page of mail links). Areas import from here; the Security Center
//! (`security`), where every action returns, is the one area the others import.

pub mod accounts;
pub mod console;
pub mod console_money;
pub mod console_support;
pub mod email;
pub mod factors;
pub mod incident;
pub mod mailbox;
pub mod protection;
pub mod security;
pub mod signin;
pub mod support;
pub mod withdrawals;

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use axum_extra::extract::CookieJar;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::domain::secret::{constant_time_eq, random_token};
use crate::http::error::ApiError;
use crate::http::{AppState, CHALLENGE_COOKIE, CSRF_COOKIE, SESSION_COOKIE};
use crate::service::sessions::SignedIn;
use crate::service::ServiceError;
use crate::store::SessionAuth;

pub fn routes(mailbox: bool) -> Router<AppState> {
    let r = Router::new()
        .route("/", get(home))
        .route("/static/rampart.css", get(stylesheet))
        .route("/static/passkeys.js", get(script))
        .route("/static/local-time.js", get(local_time_script))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .merge(accounts::routes())
        .merge(signin::routes())
        .merge(security::routes())
        .merge(factors::routes())
        .merge(protection::routes())
        .merge(console::routes())
        .merge(support::routes())
        .merge(console_support::routes())
        .merge(email::routes())
        .merge(withdrawals::routes())
        .merge(console_money::routes())
        .merge(incident::routes());
    if mailbox {
        r.merge(mailbox::routes())
    } else {
        r
    }
}

static CSS: &str = include_str!("../../../static/rampart.css");

static PASSKEYS_JS: &str = include_str!("../../../static/passkeys.js");

static LOCAL_TIME_JS: &str = include_str!("../../../static/local-time.js");

async fn local_time_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        LOCAL_TIME_JS,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PASSKEYS_JS,
    )
        .into_response()
}

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
            .key
            .mac("csrf-session", &format!("{csrf_cookie}\0{session}")),
        None => state.key.mac("csrf", csrf_cookie),
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
    match state.sessions.authenticate(token.value()).await {
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
