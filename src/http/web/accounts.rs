//! Pages of a new account: sign up, and confirm the address with the mailed code.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::{csrf, csrf_ok, csrf_refused, error_text, message, render, urlencode, PageForm};
use crate::http::AppState;
use crate::service::Client;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signup", get(signup_page).post(signup))
        .route("/confirm", get(confirm_page).post(confirm))
        .route("/confirm/resend", post(resend))
}

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
        min_chars: state.rules.password_min_chars,
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
    match state
        .accounts
        .register(&f.email, &f.password, &client)
        .await
    {
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
                min_chars: state.rules.password_min_chars,
            };
            (jar, render(status, &page)).into_response()
        }
    }
}

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
        ttl_minutes: state.rules.confirm_code_ttl_minutes,
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
    match state
        .accounts
        .confirm_email(&f.email, &f.code, &client)
        .await
    {
        Ok(()) => Redirect::to("/signin?notice=confirmed").into_response(),
        Err(e) => {
            let (status, text) = error_text(e);
            let (jar, csrf) = csrf(&state, jar);
            let page = ConfirmPage {
                csrf,
                email: f.email,
                notice: None,
                error: Some(text),
                ttl_minutes: state.rules.confirm_code_ttl_minutes,
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
    if let Err(e) = state.accounts.resend_confirmation(&f.email, &client).await {
        let (status, text) = error_text(e);
        return message(status, "No code sent", &text, "/signup", "Back");
    }
    Redirect::to(&format!(
        "/confirm?notice=resent&email={}",
        urlencode(f.email.trim())
    ))
    .into_response()
}
