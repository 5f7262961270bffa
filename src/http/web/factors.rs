//! Pages for second factors: set up the authenticator app (QR code), backup codes,
//! passkeys, step-up, delayed weakening and its cancel links, password change.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::security::{finish, finish_in, security_center};
use super::{
    ask_to_confirm, csrf, csrf_ok, csrf_refused, error_text, guarded, link_refused, message,
    render, urlencode, CsrfOnly, PageForm,
};
use crate::clock::format_utc;
use crate::http::AppState;
use crate::service::Client;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/security/totp", post(totp_begin))
        .route("/security/totp/confirm", post(totp_confirm))
        .route("/security/totp/disable", post(totp_disable))
        .route("/security/totp/reset", post(totp_reset))
        .route("/security/backup-codes", post(backup_codes))
        .route("/security/step-up", post(step_up))
        .route("/security/step-up/email-code", post(step_up_email_code))
        .route("/security/step-up/email", post(step_up_email))
        .route("/security/passkeys/{id}/remove", post(remove_passkey))
        .route("/security/require-passkey", post(require_passkey))
        .route("/security/pending/{id}/cancel", post(cancel_pending))
        .route("/security/password/code", post(password_code))
        .route("/security/password", post(change_password))
        .route("/cancel/{token}", get(cancel_link_page).post(cancel_link))
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
    /// The page the step-up box was on, to return to.
    #[serde(default)]
    back: String,
}

#[derive(Deserialize)]
struct BackForm {
    csrf: String,
    #[serde(default)]
    back: String,
}

// ---- authenticator app -----------------------------------------------------------------

#[derive(Template)]
#[template(path = "totp.html")]
struct TotpPage {
    csrf: String,
    secret: String,
    qr_svg: String,
    error: Option<String>,
}

/// Groups a base32 secret in fours for reading aloud or typing.
fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn totp_begin(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    match state.factors.totp_begin(&auth, &client).await {
        Ok(e) => {
            let (jar, csrf) = csrf(&state, jar);
            (
                jar,
                render(
                    StatusCode::OK,
                    &TotpPage {
                        csrf,
                        secret: grouped(&e.secret),
                        qr_svg: e.qr_svg,
                        error: None,
                    },
                ),
            )
                .into_response()
        }
        Err(e) => security_center(&state, jar, auth, "factors", None, Some(error_text(e))).await,
    }
}

#[derive(Template)]
#[template(path = "backup_codes.html")]
struct BackupCodesPage {
    codes: Vec<String>,
}

async fn totp_confirm(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CodeForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    match state.factors.totp_confirm(&auth, &f.code, &client).await {
        Ok(Some(codes)) => render(StatusCode::OK, &BackupCodesPage { codes }),
        Ok(None) => Redirect::to("/security?saved=totp").into_response(),
        Err(e) => {
            let (status, text) = error_text(e);
            message(
                status,
                "That code did not work",
                &format!("{text} Start the setup again from the Security Center."),
                "/security",
                "Back to Security Center",
            )
        }
    }
}

async fn totp_disable(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state.factors.disable_totp(&auth, &client).await.map(|_| ());
    finish(&state, jar, auth, r, "scheduled").await
}

#[derive(Deserialize)]
struct ResetForm {
    csrf: String,
    backup_code: String,
}

async fn totp_reset(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<ResetForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .recovery
        .reset_totp_with_backup_code(&auth, &f.backup_code, &client)
        .await
        .map(|_| ());
    finish(&state, jar, auth, r, "totp_reset").await
}

async fn backup_codes(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    match state.factors.regenerate_backup_codes(&auth, &client).await {
        Ok(codes) => render(StatusCode::OK, &BackupCodesPage { codes }),
        Err(e) => security_center(&state, jar, auth, "factors", None, Some(error_text(e))).await,
    }
}

async fn step_up(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CodeForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .step_up
        .step_up_with_code(&auth, &f.code, &client)
        .await
        .map(|_| ());
    finish_in(&state, jar, auth, r, back(&f.back), "stepped_up").await
}

/// "Send me a code" of an account without a second factor.
async fn step_up_email_code(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<BackForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .step_up
        .send_step_up_code(&auth, &client)
        .await
        .map(|_| ());
    finish_in(&state, jar, auth, r, back(&f.back), "step_up_code").await
}

#[derive(Deserialize)]
struct EmailStepUpForm {
    csrf: String,
    password: String,
    email_code: String,
    #[serde(default)]
    back: String,
}

/// Password plus the mailed code: the step-up of an account without a second factor.
async fn step_up_email(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<EmailStepUpForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .step_up
        .step_up_with_email_code(&auth, &f.password, &f.email_code, &client)
        .await
        .map(|_| ());
    finish_in(&state, jar, auth, r, back(&f.back), "stepped_up").await
}

async fn remove_passkey(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .passkeys
        .remove_passkey(&auth, &id, &client)
        .await
        .map(|_| ());
    finish(&state, jar, auth, r, "scheduled").await
}

#[derive(Deserialize)]
struct RequirePasskeyForm {
    csrf: String,
    enabled: String,
}

async fn require_passkey(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<RequirePasskeyForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let on = f.enabled == "on";
    let r = state
        .factors
        .set_require_passkey(&auth, on, &client)
        .await
        .map(|_| ());
    finish(
        &state,
        jar,
        auth,
        r,
        if on { "require_passkey" } else { "scheduled" },
    )
    .await
}

async fn cancel_pending(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .pending_changes
        .cancel_pending_change(&auth, &id, &client)
        .await;
    finish(&state, jar, auth, r, "cancelled").await
}

async fn password_code(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .recovery
        .send_password_change_code(&auth, &client)
        .await;
    finish(&state, jar, auth, r, "password_code").await
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    current_password: String,
    new_password: String,
    email_code: String,
}

async fn change_password(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<PasswordForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .recovery
        .change_password(
            &auth,
            &f.current_password,
            &f.new_password,
            &f.email_code,
            &client,
        )
        .await
        .map(|_| ());
    finish(&state, jar, auth, r, "password").await
}

// ---- cancel links from mails -------------------------------------------------------------

/// The link only shows a button: mail scanners that fetch links must not cancel anything.
async fn cancel_link_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    ask_to_confirm(
        &state,
        jar,
        "Cancel this change?",
        "A protection on your account is about to be turned off or weakened. If you did not ask for this, cancel it now: someone may be in your account.",
        format!("/cancel/{}", urlencode(&token)),
        "Cancel the change",
        false,
    )
}

async fn cancel_link(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(token): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state.pending_changes.cancel_pending_change_by_link(&token, &client).await {
        Ok(change) => message(
            StatusCode::OK,
            "Cancelled",
            &format!("The change was cancelled; nothing happens at {}. If you did not ask for it, sign in, change your password and review your devices.", format_utc(change.effective_at)),
            "/signin",
            "Sign in",
        ),
        Err(e) => link_refused(e, "Nothing to cancel"),
    }
}

/// The page a step-up box came from (the factors page when none or an unknown one).
fn back(page: &str) -> &str {
    if page.is_empty() {
        "factors"
    } else {
        page
    }
}
