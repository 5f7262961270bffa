//! Pages of an email change: start and confirm it in the Security Center, and cancel it
//! from the link mailed to the old address.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::security::finish;
use super::{
    ask_to_confirm, csrf_ok, csrf_refused, error_text, guarded, message, urlencode, PageForm,
};
use crate::http::AppState;
use crate::service::Client;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/security/email", post(start))
        .route("/security/email/confirm", post(confirm))
        .route(
            "/email-change/cancel/{token}",
            get(cancel_page).post(cancel),
        )
}

#[derive(Deserialize)]
struct StartForm {
    csrf: String,
    new_email: String,
}

async fn start(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<StartForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state.email_change.start(&auth, &f.new_email, &client).await;
    finish(&state, jar, auth, r, "email_code").await
}

#[derive(Deserialize)]
struct ConfirmForm {
    csrf: String,
    code: String,
}

async fn confirm(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<ConfirmForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .email_change
        .confirm(&auth, &f.code, &client)
        .await
        .map(|_| ());
    finish(&state, jar, auth, r, "email_changed").await
}

async fn cancel_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    ask_to_confirm(
        &state,
        jar,
        "Cancel the email change?",
        "The address of your account was changed. If you did not do it, cancel the change: this address comes back and every session is signed out. Then change your password, or freeze the account.",
        format!("/email-change/cancel/{}", urlencode(&token)),
        "Cancel the change",
        true,
    )
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn cancel(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(token): Path<String>,
    PageForm(f): PageForm<CsrfForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state.email_change.cancel(&token, &client).await {
        Ok(()) => message(
            axum::http::StatusCode::OK,
            "Email change cancelled",
            "Your old address is back and every session was signed out. If someone else changed it, change your password now.",
            "/signin",
            "Sign in",
        ),
        Err(e) => {
            let (status, text) = error_text(e);
            message(status, "This link cannot cancel anything", &text, "/signin", "Sign in")
        }
    }
}
