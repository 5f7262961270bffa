//! Pages for stopping an attacker: the freeze button and its confirmation, freeze links
//! from mails (no sign-in needed), device removal, blocking and trust, signing out
//! everywhere else, new-device confirmation links, and the inbox.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::security::{finish, security_center};
use super::{
    ask_to_confirm, csrf_ok, csrf_refused, error_text, guarded, link_refused, message, urlencode,
    CsrfOnly, PageForm,
};
use crate::clock::format_utc;
use crate::http::{AppState, SESSION_COOKIE};
use crate::service::Client;
use crate::store::FreezeOutcome;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/security/freeze", post(freeze_confirm_page))
        .route("/security/freeze/confirm", post(freeze))
        .route("/freeze/{token}", get(freeze_link_page).post(freeze_link))
        .route("/security/devices/{id}/remove", post(remove_device))
        .route("/security/devices/{id}/trust", post(trust_device))
        .route("/security/sessions/others", post(sign_out_others))
        .route("/security/notifications/read", post(read_notifications))
        .route("/security/mail-preferences", post(set_mail_preference))
        .route(
            "/confirm-device/{token}",
            get(confirm_device_page).post(confirm_device),
        )
}

fn frozen_text(outcome: FreezeOutcome) -> String {
    match outcome {
        FreezeOutcome::Frozen { sessions_ended } => format!(
            "Your account is frozen. {} ended, every API key is refused, sign-ins are refused and held withdrawals are cancelled. \
             A confirmation is on its way to your mailbox. To get your account back, contact support: a person reviews the recovery, never sooner than 2 hours from now.",
            if sessions_ended == 1 { "1 session was".to_owned() } else { format!("{sessions_ended} sessions were") }
        ),
        FreezeOutcome::AlreadyFrozen { since } => format!(
            "Your account was already frozen at {}. Nothing else needs doing now; to get it back, contact support.",
            format_utc(since)
        ),
    }
}

/// One button on the Security Center, one confirmation here.
async fn freeze_confirm_page(
    State(state): State<AppState>,
    jar: CookieJar,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let _auth = guarded!(state, jar, f.csrf);
    ask_to_confirm(
        &state,
        jar,
        "Freeze your account?",
        "Freezing ends every session (this one too), refuses every API key and sign-in, and cancels held withdrawals, at once. \
               Only a recovery review by support can lift it, no sooner than 2 hours from now.",
        "/security/freeze/confirm".into(),
        "Yes, freeze my account",
        true,
    )
}

async fn freeze(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    match state.protection.freeze(&auth, &client).await {
        Ok(outcome) => {
            let page = message(
                StatusCode::OK,
                "Account frozen",
                &frozen_text(outcome),
                "/signin",
                "Back to sign-in",
            );
            (jar.add(state.expired_cookie(SESSION_COOKIE)), page).into_response()
        }
        Err(e) => security_center(&state, jar, auth, "overview", None, Some(error_text(e))).await,
    }
}

/// The link only shows a button: mail scanners that fetch links must not freeze accounts.
async fn freeze_link_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    if let Err(e) = state.protection.freeze_link_state(&token).await {
        let (status, text) = error_text(e);
        return message(
            status,
            "This link cannot freeze anything",
            &text,
            "/signin",
            "Sign in",
        );
    }
    super::incident::mail_link_page(&state, jar, &token)
}

async fn freeze_link(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(token): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state.protection.freeze_by_link(&token, &client).await {
        Ok(outcome) => message(
            StatusCode::OK,
            "Account frozen",
            &frozen_text(outcome),
            "/signin",
            "Back to sign-in",
        ),
        Err(e) => link_refused(e, "This link did not freeze anything"),
    }
}

#[derive(Deserialize)]
struct RemoveForm {
    csrf: String,
    #[serde(default)]
    block: Option<String>,
}

async fn remove_device(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<RemoveForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let block = f.block.as_deref() == Some("on");
    let r = state
        .protection
        .remove_device(&auth, &id, block, &client)
        .await
        .map(|_| ());
    finish(
        &state,
        jar,
        auth,
        r,
        if block {
            "device_blocked"
        } else {
            "device_removed"
        },
    )
    .await
}

#[derive(Deserialize)]
struct TrustForm {
    csrf: String,
    trusted: String,
}

async fn trust_device(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<TrustForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .protection
        .set_trusted(&auth, &id, f.trusted == "on", &client)
        .await;
    finish(&state, jar, auth, r, "trusted").await
}

async fn sign_out_others(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .protection
        .sign_out_others(&auth, &client)
        .await
        .map(|_| ());
    finish(&state, jar, auth, r, "signed_out_others").await
}

async fn read_notifications(
    State(state): State<AppState>,
    jar: CookieJar,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .protection
        .mark_notifications_read(&auth)
        .await
        .map(|_| ());
    finish(&state, jar, auth, r, "read").await
}

async fn confirm_device_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    ask_to_confirm(
        &state,
        jar,
        "Was this sign-in you?",
        "A new device signed in to your account and waits for your confirmation. Confirm only if you just signed in yourself. \
               If not, do not confirm: freeze your account with the link in the same mail.",
        format!("/confirm-device/{}", urlencode(&token)),
        "Yes, it was me",
        false,
    )
}

async fn confirm_device(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(token): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state.protection.confirm_device(&token, &client).await {
        Ok(()) => message(
            StatusCode::OK,
            "Device confirmed",
            "Thank you. Go back to the new device: its session works now.",
            "/security",
            "Security Center",
        ),
        Err(e) => link_refused(e, "Nothing to confirm"),
    }
}

#[derive(Deserialize)]
struct PreferenceForm {
    csrf: String,
    kind: String,
    enabled: String,
}

async fn set_mail_preference(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<PreferenceForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let on = f.enabled == "on";
    let r = state
        .protection
        .set_mail_preference(&auth, &f.kind, on, &client)
        .await
        .map(|_| ());
    finish(
        &state,
        jar,
        auth,
        r,
        if on { "mail_on" } else { "scheduled" },
    )
    .await
}
