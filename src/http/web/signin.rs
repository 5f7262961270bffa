//! Pages of signing in and out: the password step, the second step (a code; passkeys go
//! through the JSON API from the page's script), and the wait for a new device's
//! confirmation.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::{
    csrf, csrf_ok, csrf_refused, error_text, message, page_auth, render, signed_in_jar, PageForm,
};
use crate::http::error::ApiError;
use crate::http::{AppState, CHALLENGE_COOKIE, SESSION_COOKIE};
use crate::service::sessions::SignInOutcome;
use crate::service::Client;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin", get(signin_page).post(signin))
        .route(
            "/signin/second-factor",
            get(second_factor_page).post(second_factor),
        )
        .route("/signin/check-mail", get(check_mail))
        .route("/signout", post(signout))
}

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
            "frozen" => Some("This account is frozen for its protection. To get it back, contact support: a person reviews the recovery."),
            "password_reset" => Some("Your password was reset: every session was ended and withdrawals are locked for 24 hours. Sign in with the new password."),
            "recovery_password_set" => Some("Your new password is set. Sign in, then set up a new authenticator app or passkey."),
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
    match state.signin.sign_in(&f.email, &f.password, &client).await {
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
        if let Err(e) = state.sessions.sign_out(&auth, &client).await {
            return ApiError::from(e).into_response();
        }
    }
    (
        jar.add(state.expired_cookie(SESSION_COOKIE)),
        Redirect::to("/signin?notice=signed_out"),
    )
        .into_response()
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

// ---- second sign-in step ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactorPage {
    csrf: String,
    challenge: String,
    error: Option<String>,
}

async fn second_factor_page(State(state): State<AppState>, jar: CookieJar) -> Response {
    let Some(challenge) = jar.get(CHALLENGE_COOKIE).map(|c| c.value().to_owned()) else {
        return Redirect::to("/signin").into_response();
    };
    let (jar, csrf) = csrf(&state, jar);
    (
        jar,
        render(
            StatusCode::OK,
            &SecondFactorPage {
                csrf,
                challenge,
                error: None,
            },
        ),
    )
        .into_response()
}

#[derive(Deserialize)]
struct SecondFactorForm {
    csrf: String,
    challenge: String,
    code: String,
}

async fn second_factor(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<SecondFactorForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state
        .signin
        .sign_in_second_factor(&f.challenge, &f.code, &client)
        .await
    {
        Ok(signed) => (
            signed_in_jar(&state, jar, signed),
            Redirect::to("/security"),
        )
            .into_response(),
        Err(e) => {
            let expired = matches!(e, crate::service::ServiceError::ChallengeExpired);
            let (status, text) = error_text(e);
            if expired {
                return message(status, "Sign in again", &text, "/signin", "Back to sign-in");
            }
            let (jar, csrf) = csrf(&state, jar);
            (
                jar,
                render(
                    status,
                    &SecondFactorPage {
                        csrf,
                        challenge: f.challenge,
                        error: Some(text),
                    },
                ),
            )
                .into_response()
        }
    }
}
