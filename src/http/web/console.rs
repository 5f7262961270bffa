//! The operator console's pages under `/console`: sign-in, enrolment (password, then the
//! authenticator app with its QR code), account lookup, freeze with a reason, operators
//! and settings (admin). They read only the console cookie (`rampart_console`), never the
//! owner's session; every form carries a CSRF token bound to the console session.
//!
//! What other console areas use: [`ConsoleNav`] (the navigation bar of
//! `console_base.html`), [`console_csrf`], [`console_page_auth`], [`console_guard`].

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::{render, urlencode, CsrfOnly, PageForm};
use crate::clock::{format_utc, Millis};
use crate::domain::operator::{Operator, Power, SESSION_ABSOLUTE};
use crate::domain::secret::{constant_time_eq, random_token};
use crate::http::error::ApiError;
use crate::http::{AppState, CONSOLE_COOKIE, CSRF_COOKIE};
use crate::service::console::AccountLookup;
use crate::service::{Client, ServiceError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(home))
        .route("/console/signin", get(signin_page).post(signin))
        .route("/console/signout", post(signout))
        .route("/console/enrol/{token}", get(enrol_page).post(enrol))
        .route("/console/enrol/{token}/confirm", post(enrol_confirm))
        .route("/console/accounts", get(lookup))
        .route("/console/accounts/{uid}/freeze", post(freeze))
        .route("/console/operators", get(operators).post(add_operator))
        .route("/console/operators/{id}/disable", post(disable_operator))
        .route("/console/settings", get(settings))
}

// ---- what every console page shares ------------------------------------------------------

/// The navigation bar of `console_base.html`, for a signed-in operator.
pub(crate) struct ConsoleNav {
    pub email: String,
    pub role: &'static str,
    pub admin: bool,
    pub csrf: String,
}

impl ConsoleNav {
    pub(crate) fn of(operator: &Operator, csrf: &str) -> Self {
        Self {
            email: operator.email.clone(),
            role: operator.role.as_str(),
            admin: operator.may(Power::Operators),
            csrf: csrf.to_owned(),
        }
    }
}

/// The CSRF token of a console form: an HMAC of the per-browser CSRF cookie and, signed
/// in, of the console session (a token from before sign-in or from another session does
/// not pass). Distinct from the owner pages' tokens.
fn console_csrf_token(state: &AppState, jar: &CookieJar, csrf_cookie: &str) -> String {
    match jar
        .get(CONSOLE_COOKIE)
        .map(|c| c.value())
        .filter(|v| !v.is_empty())
    {
        Some(session) => state
            .key
            .mac("csrf-console-session", &format!("{csrf_cookie}\0{session}")),
        None => state.key.mac("csrf-console", csrf_cookie),
    }
}

/// The browser's CSRF cookie (created if missing) and the token console forms carry.
pub(crate) fn console_csrf(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
    match jar.get(CSRF_COOKIE).map(|c| c.value().to_owned()) {
        Some(v) if !v.is_empty() && v.len() <= 64 => {
            let token = console_csrf_token(state, &jar, &v);
            (jar, token)
        }
        _ => {
            let v = random_token();
            let jar = jar.add(state.cookie(CSRF_COOKIE, v.clone(), time::Duration::days(1)));
            let token = console_csrf_token(state, &jar, &v);
            (jar, token)
        }
    }
}

fn console_csrf_ok(state: &AppState, jar: &CookieJar, submitted: &str) -> bool {
    jar.get(CSRF_COOKIE)
        .filter(|c| !c.value().is_empty() && c.value().len() <= 64)
        .is_some_and(|c| constant_time_eq(&console_csrf_token(state, jar, c.value()), submitted))
}

#[derive(Template)]
#[template(path = "console_message.html")]
struct MessagePage<'a> {
    nav: Option<ConsoleNav>,
    title: &'a str,
    message: &'a str,
    link: &'a str,
    link_text: &'a str,
}

pub(crate) fn console_message(status: StatusCode, title: &str, text: &str) -> Response {
    render(
        status,
        &MessagePage {
            nav: None,
            title,
            message: text,
            link: "/console",
            link_text: "Back to the console",
        },
    )
}

fn csrf_refused() -> Response {
    console_message(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "For your protection the form could not be accepted (its security token is missing or stale). Go back, reload the page and try again.",
    )
}

/// The signed-in operator of a console page (and the session token), or a redirect to
/// the console's sign-in page. The owner's session cookie is never looked at.
pub(crate) async fn console_page_auth(
    state: &AppState,
    jar: &CookieJar,
) -> Result<(Operator, String), Response> {
    let to_signin =
        |notice: &str| Redirect::to(&format!("/console/signin?notice={notice}")).into_response();
    let Some(token) = jar
        .get(CONSOLE_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
    else {
        return Err(to_signin(""));
    };
    match state.operators.authenticate(&token).await {
        Ok(operator) => Ok((operator, token)),
        Err(ServiceError::SessionExpired) => Err(to_signin("expired")),
        Err(ServiceError::Unauthenticated) => Err(to_signin("")),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// CSRF check and signed-in operator of a console form, or the page that says why not.
pub(crate) async fn console_guard(
    state: &AppState,
    jar: &CookieJar,
    csrf: &str,
) -> Result<(Operator, String), Response> {
    if !console_csrf_ok(state, jar, csrf) {
        return Err(csrf_refused());
    }
    console_page_auth(state, jar).await
}

/// A refusal of the service as a console page.
pub(crate) fn console_refusal(e: ServiceError, nav: Option<ConsoleNav>) -> Response {
    let api = ApiError::from(e);
    render(
        api.status,
        &MessagePage {
            nav,
            title: "Not done",
            message: &api.message,
            link: "/console",
            link_text: "Back to the console",
        },
    )
}

fn time_or(at: Option<Millis>, none: &str) -> String {
    at.map_or_else(|| none.to_owned(), format_utc)
}

async fn home(State(state): State<AppState>, jar: CookieJar) -> Redirect {
    match console_page_auth(&state, &jar).await {
        Ok(_) => Redirect::to("/console/accounts"),
        Err(_) => Redirect::to("/console/signin"),
    }
}

// ---- sign-in and sign-out ----------------------------------------------------------------

#[derive(Template)]
#[template(path = "console_signin.html")]
struct SigninPage {
    nav: Option<ConsoleNav>,
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
    Query(q): Query<NoticeQuery>,
) -> Response {
    let notice = match q.notice.as_deref() {
        Some("expired") => Some("Your console session has expired. Sign in again.".to_owned()),
        Some("signed_out") => Some("Signed out.".to_owned()),
        Some("enrolled") => Some(
            "Enrolment complete. Sign in with your password and a code from the app.".to_owned(),
        ),
        _ => None,
    };
    let (jar, csrf) = console_csrf(&state, jar);
    let page = SigninPage {
        nav: None,
        csrf,
        email: String::new(),
        notice,
        error: None,
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

#[derive(Deserialize)]
struct SigninForm {
    csrf: String,
    email: String,
    password: String,
    code: String,
}

async fn signin(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<SigninForm>,
) -> Response {
    if !console_csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state
        .operators
        .sign_in(&f.email, &f.password, &f.code, &client)
        .await
    {
        Ok(signed) => {
            let jar = jar.add(
                state.console_cookie(signed.token, time::Duration::milliseconds(SESSION_ABSOLUTE)),
            );
            (jar, Redirect::to("/console/accounts")).into_response()
        }
        Err(e) => {
            let api = ApiError::from(e);
            let (jar, csrf) = console_csrf(&state, jar);
            let page = SigninPage {
                nav: None,
                csrf,
                email: f.email,
                notice: None,
                error: Some(api.message),
            };
            (jar, render(api.status, &page)).into_response()
        }
    }
}

async fn signout(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let (operator, token) = match console_guard(&state, &jar, &f.csrf).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Err(e) = state.operators.sign_out(&operator, &token, &client).await {
        return console_refusal(e, None);
    }
    (
        jar.add(state.expired_console_cookie()),
        Redirect::to("/console/signin?notice=signed_out"),
    )
        .into_response()
}

// ---- enrolment ---------------------------------------------------------------------------

struct TotpView {
    secret: String,
    qr_svg: String,
}

#[derive(Template)]
#[template(path = "console_enrol.html")]
struct EnrolPage {
    nav: Option<ConsoleNav>,
    csrf: String,
    token: String,
    email: String,
    role: &'static str,
    totp: Option<TotpView>,
    error: Option<String>,
}

async fn enrol_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    let operator = match state.operators.enrolment_state(&token).await {
        Ok(o) => o,
        Err(e) => return console_refusal(e, None),
    };
    let (jar, csrf) = console_csrf(&state, jar);
    let page = EnrolPage {
        nav: None,
        csrf,
        token,
        email: operator.email,
        role: operator.role.as_str(),
        totp: None,
        error: None,
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    password: String,
}

async fn enrol(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
    PageForm(f): PageForm<PasswordForm>,
) -> Response {
    if !console_csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    let operator = match state.operators.enrolment_state(&token).await {
        Ok(o) => o,
        Err(e) => return console_refusal(e, None),
    };
    let (totp, error, status) = match state.operators.enrol(&token, &f.password).await {
        Ok(t) => (
            Some(TotpView {
                secret: t.totp_secret,
                qr_svg: t.qr_svg,
            }),
            None,
            StatusCode::OK,
        ),
        Err(e) => {
            let api = ApiError::from(e);
            (None, Some(api.message), api.status)
        }
    };
    let (jar, csrf) = console_csrf(&state, jar);
    let page = EnrolPage {
        nav: None,
        csrf,
        token,
        email: operator.email,
        role: operator.role.as_str(),
        totp,
        error,
    };
    (jar, render(status, &page)).into_response()
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
}

async fn enrol_confirm(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
    PageForm(f): PageForm<CodeForm>,
) -> Response {
    if !console_csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state.operators.enrol_confirm(&token, &f.code).await {
        Ok(_) => Redirect::to("/console/signin?notice=enrolled").into_response(),
        Err(e) => console_refusal(e, None),
    }
}

// ---- account lookup and freeze -----------------------------------------------------------

/// The lookup, formatted for the page (times in UTC, sections as rows).
struct LookupView {
    uid: String,
    email: String,
    created: String,
    confirmed: String,
    anti_phishing_set: bool,
    frozen: String,
    is_frozen: bool,
    may_freeze: bool,
    devices: Vec<(String, String, String, String, String)>,
    sign_ins: Vec<(String, String, String, String, String, String)>,
    keys: Vec<(String, String, String, String, String, String)>,
    locks: Vec<(String, String, String)>,
    recoveries: Vec<(String, String, String, String)>,
    tickets: Vec<(String, &'static str, String, String)>,
    chain_intact: bool,
    chain_text: String,
    events: Vec<(i64, String, String, String, String, String, &'static str)>,
}

fn place(city: Option<&str>, country: Option<&str>) -> String {
    crate::geo::Location::label(city, country)
}

impl LookupView {
    fn of(a: AccountLookup, operator: &Operator) -> Self {
        let p = &a.profile;
        let frozen = match (&p.frozen, p.frozen_at) {
            (Some(f), _) => {
                let mut s = format!("since {} by {}", format_utc(f.at), f.by);
                if let Some(via) = &f.via {
                    s.push_str(&format!(" ({via})"));
                }
                if let Some(reason) = &f.reason {
                    s.push_str(&format!(": {reason}"));
                }
                s
            }
            (None, Some(at)) => format!("since {}", format_utc(at)),
            (None, None) => "no".to_owned(),
        };
        let v = &a.audit_chain;
        let chain_text = match (&v.problem, v.intact) {
            (Some(p), _) => p.clone(),
            (None, _) => format!("{} events checked", v.events_checked),
        };
        Self {
            uid: p.uid.clone(),
            email: p.email.clone(),
            created: format_utc(p.created_at),
            confirmed: time_or(p.email_confirmed_at, "not confirmed"),
            anti_phishing_set: p.anti_phishing_code_set,
            frozen,
            is_frozen: p.frozen_at.is_some(),
            may_freeze: operator.may(Power::Freeze),
            devices: a
                .devices
                .iter()
                .map(|d| {
                    (
                        format!(
                            "{} · {} · {}{}",
                            d.model,
                            d.os,
                            d.browser,
                            if d.trusted { " (trusted)" } else { "" }
                        ),
                        d.ip.clone(),
                        place(d.city.as_deref(), d.country.as_deref()),
                        format_utc(d.first_seen),
                        format_utc(d.last_active),
                    )
                })
                .collect(),
            sign_ins: a
                .sign_ins
                .iter()
                .map(|l| {
                    (
                        format_utc(l.at),
                        if l.success {
                            "succeeded".to_owned()
                        } else {
                            format!("failed: {}", l.reason)
                        },
                        l.method.clone(),
                        l.ip.clone(),
                        place(l.city.as_deref(), l.country.as_deref()),
                        l.device.clone(),
                    )
                })
                .collect(),
            keys: a
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.label.clone(),
                        k.api_key.clone(),
                        k.key_type.clone(),
                        k.permissions.clone(),
                        format_utc(k.created_at),
                        time_or(k.last_used_at, "never"),
                    )
                })
                .collect(),
            locks: a
                .withdrawal_locks
                .iter()
                .map(|l| {
                    (
                        l.reason.clone(),
                        format_utc(l.created_at),
                        format_utc(l.until),
                    )
                })
                .collect(),
            tickets: a
                .tickets
                .iter()
                .map(|t| {
                    (
                        t.id.clone(),
                        t.status,
                        t.requests.join(", "),
                        format_utc(t.created_at),
                    )
                })
                .collect(),
            recoveries: a
                .recovery_requests
                .iter()
                .map(|r| {
                    (
                        r.id.clone(),
                        r.kind.clone(),
                        r.status.clone(),
                        format_utc(r.created_at),
                    )
                })
                .collect(),
            chain_intact: v.intact,
            chain_text,
            events: a
                .audit_events
                .iter()
                .map(|e| {
                    (
                        e.seq,
                        format_utc(e.at),
                        e.actor.clone(),
                        e.action.clone(),
                        e.ip.clone().unwrap_or_default(),
                        e.detail.to_string(),
                        if e.verified { "ok" } else { "FAILS" },
                    )
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "console_lookup.html")]
struct LookupPage {
    nav: Option<ConsoleNav>,
    csrf: String,
    q: String,
    notice: Option<String>,
    error: Option<String>,
    account: Option<LookupView>,
}

#[derive(Deserialize)]
struct LookupQuery {
    q: Option<String>,
    notice: Option<String>,
}

async fn lookup(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Query(query): Query<LookupQuery>,
) -> Response {
    let (operator, _) = match console_page_auth(&state, &jar).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (jar, csrf) = console_csrf(&state, jar);
    let q = query.q.unwrap_or_default();
    let notice = match query.notice.as_deref() {
        Some("frozen") => Some("The account is frozen; the owner was told the reason.".to_owned()),
        Some("already_frozen") => {
            Some("The account was already frozen; nothing changed.".to_owned())
        }
        _ => None,
    };
    let (account, error, status) = if q.trim().is_empty() {
        (None, None, StatusCode::OK)
    } else {
        match state.console.lookup(&operator, &q, &client).await {
            Ok(found) => (Some(LookupView::of(found, &operator)), None, StatusCode::OK),
            Err(e) => {
                let api = ApiError::from(e);
                (None, Some(api.message), api.status)
            }
        }
    };
    let page = LookupPage {
        nav: Some(ConsoleNav::of(&operator, &csrf)),
        csrf,
        q,
        notice,
        error,
        account,
    };
    (jar, render(status, &page)).into_response()
}

#[derive(Deserialize)]
struct FreezeForm {
    csrf: String,
    reason: String,
}

async fn freeze(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(uid): Path<String>,
    PageForm(f): PageForm<FreezeForm>,
) -> Response {
    let (operator, _) = match console_guard(&state, &jar, &f.csrf).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (_, csrf) = console_csrf(&state, jar.clone());
    let nav = Some(ConsoleNav::of(&operator, &csrf));
    match state
        .console
        .freeze(&operator, &uid, &f.reason, &client)
        .await
    {
        Ok(outcome) => {
            let notice = match outcome {
                crate::store::FreezeOutcome::Frozen { .. } => "frozen",
                crate::store::FreezeOutcome::AlreadyFrozen { .. } => "already_frozen",
            };
            Redirect::to(&format!(
                "/console/accounts?q={}&notice={notice}",
                urlencode(&uid)
            ))
            .into_response()
        }
        Err(e) => console_refusal(e, nav),
    }
}

// ---- admin: operators and settings -------------------------------------------------------

struct OperatorRow {
    id: String,
    email: String,
    role: &'static str,
    state: String,
    may_disable: bool,
}

#[derive(Template)]
#[template(path = "console_operators.html")]
struct OperatorsPage {
    nav: Option<ConsoleNav>,
    csrf: String,
    operators: Vec<OperatorRow>,
    link: Option<String>,
    notice: Option<String>,
    error: Option<String>,
}

async fn operators_page(
    state: &AppState,
    jar: CookieJar,
    operator: &Operator,
    link: Option<String>,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Response {
    if let Err(e) = crate::service::console::require(operator, Power::Operators) {
        return console_refusal(e, None);
    }
    let list = match state.operators.list().await {
        Ok(l) => l,
        Err(e) => return console_refusal(e, None),
    };
    let (jar, csrf) = console_csrf(state, jar);
    let status = error.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    let page = OperatorsPage {
        nav: Some(ConsoleNav::of(operator, &csrf)),
        csrf,
        operators: list
            .into_iter()
            .map(|o| OperatorRow {
                may_disable: o.disabled_at.is_none() && o.id != operator.id,
                state: match (o.disabled_at, o.enrolled_at) {
                    (Some(at), _) => format!("disabled {}", format_utc(at)),
                    (None, Some(at)) => format!("enrolled {}", format_utc(at)),
                    (None, None) => "not enrolled yet".to_owned(),
                },
                id: o.id,
                email: o.email,
                role: o.role.as_str(),
            })
            .collect(),
        link,
        notice,
        error: error.map(|(_, m)| m),
    };
    (jar, render(status, &page)).into_response()
}

async fn operators(State(state): State<AppState>, jar: CookieJar) -> Response {
    let (operator, _) = match console_page_auth(&state, &jar).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    operators_page(&state, jar, &operator, None, None, None).await
}

#[derive(Deserialize)]
struct AddOperatorForm {
    csrf: String,
    email: String,
    role: String,
}

async fn add_operator(
    State(state): State<AppState>,
    jar: CookieJar,
    PageForm(f): PageForm<AddOperatorForm>,
) -> Response {
    let (operator, _) = match console_guard(&state, &jar, &f.csrf).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Err(e) = crate::service::console::require(&operator, Power::Operators) {
        return console_refusal(e, None);
    }
    match state
        .operators
        .add(&f.email, &f.role, Some(&operator))
        .await
    {
        Ok(added) => {
            let notice = format!(
                "{} added as {}. Give them the link below over a trusted channel.",
                added.operator.email, added.operator.role
            );
            operators_page(
                &state,
                jar,
                &operator,
                Some(added.enrolment_link),
                Some(notice),
                None,
            )
            .await
        }
        Err(e) => {
            let api = ApiError::from(e);
            operators_page(
                &state,
                jar,
                &operator,
                None,
                None,
                Some((api.status, api.message)),
            )
            .await
        }
    }
}

async fn disable_operator(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(id): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let (operator, _) = match console_guard(&state, &jar, &f.csrf).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Err(e) = crate::service::console::require(&operator, Power::Operators) {
        return console_refusal(e, None);
    }
    let result = state.operators.disable(&id, Some(&operator)).await;
    let (notice, error) = match result {
        Ok(()) => (
            Some("Operator disabled; their sessions ended.".to_owned()),
            None,
        ),
        Err(e) => {
            let api = ApiError::from(e);
            (None, Some((api.status, api.message)))
        }
    };
    operators_page(&state, jar, &operator, None, notice, error).await
}

#[derive(Template)]
#[template(path = "console_settings.html")]
struct SettingsPage {
    nav: Option<ConsoleNav>,
    rows: Vec<(String, String)>,
}

async fn settings(State(state): State<AppState>, jar: CookieJar) -> Response {
    let (operator, _) = match console_page_auth(&state, &jar).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if let Err(e) = crate::service::console::require(&operator, Power::Settings) {
        return console_refusal(e, None);
    }
    let mut rows: Vec<(String, String)> = match serde_json::to_value(&state.rules) {
        Ok(serde_json::Value::Object(map)) => {
            map.into_iter().map(|(k, v)| (k, v.to_string())).collect()
        }
        _ => Vec::new(),
    };
    rows.push(("console_idle_minutes".into(), "15".into()));
    rows.push(("console_absolute_hours".into(), "8".into()));
    rows.push(("operator_enrolment_link_hours".into(), "24".into()));
    let (jar, csrf) = console_csrf(&state, jar);
    let page = SettingsPage {
        nav: Some(ConsoleNav::of(&operator, &csrf)),
        rows,
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}
