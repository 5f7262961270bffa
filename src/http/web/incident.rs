//! Incident pages outside the Security Center: the choice behind the link in every
//! security mail (secure or freeze, without signing in), the public "Is it really us?"
//! official-channel check, and the console's channel list and support code to read out.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::console::{console_csrf, console_guard, console_page_auth, console_refusal, ConsoleNav};
use super::{csrf, csrf_ok, csrf_refused, error_text, link_refused, render, CsrfOnly, PageForm};
use crate::domain::incident::ChannelKind;
use crate::domain::operator::{Operator, Role};
use crate::http::AppState;
use crate::service::incidents::{ChannelCheck, ChannelView, SecureStep, SUPPORT_NEVER_ASKS};
use crate::service::Client;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/secure/{token}", post(secure_by_link))
        .route("/official-channels", get(channels_page))
        .route("/console/channels", get(console_page).post(console_add))
        .route("/console/channels/{id}/remove", post(console_remove))
        .route("/console/support-code", post(console_code))
}

#[derive(Template)]
#[template(path = "mail_link.html")]
struct MailLinkPage {
    csrf: String,
    token: String,
}

/// The page behind the single-use link of a security mail: secure or freeze.
pub(crate) fn mail_link_page(state: &AppState, jar: CookieJar, token: &str) -> Response {
    let (jar, csrf) = csrf(state, jar);
    let page = MailLinkPage {
        csrf,
        token: super::urlencode(token),
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

#[derive(Template)]
#[template(path = "secured.html")]
struct SecuredPage {
    steps: Vec<SecureStep>,
    next: Vec<String>,
}

async fn secure_by_link(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(token): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    match state.incidents.secure_by_link(&token, &client).await {
        Ok(r) => render(
            StatusCode::OK,
            &SecuredPage {
                steps: r.steps,
                next: r.next,
            },
        ),
        Err(e) => link_refused(e, "This link did not secure anything"),
    }
}

#[derive(Template)]
#[template(path = "official_channels.html")]
struct ChannelsPage {
    never_asks: &'static str,
    kinds: Vec<(&'static str, &'static str)>,
    kind: String,
    value: String,
    result: Option<ChannelCheck>,
    error: Option<String>,
    channels: Vec<ChannelView>,
}

#[derive(Deserialize, Default)]
struct CheckQuery {
    kind: Option<String>,
    value: Option<String>,
}

async fn channels_page(
    State(state): State<AppState>,
    query: Result<Query<CheckQuery>, QueryRejection>,
) -> Response {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let channels = match state.incidents.channels().await {
        Ok(c) => c,
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    let (mut result, mut error) = (None, None);
    if let (Some(kind), Some(value)) = (&q.kind, &q.value) {
        match state.incidents.check_channel(kind, value).await {
            Ok(r) => result = Some(r),
            Err(e) => error = Some(error_text(e).1),
        }
    }
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        status,
        &ChannelsPage {
            never_asks: SUPPORT_NEVER_ASKS,
            kinds: ChannelKind::ALL
                .iter()
                .map(|k| (k.as_str(), k.label()))
                .collect(),
            kind: q.kind.unwrap_or_else(|| "web".into()),
            value: q.value.unwrap_or_default(),
            result,
            error,
            channels,
        },
    )
}

#[derive(Template)]
#[template(path = "console_channels.html")]
struct ConsoleChannelsPage {
    nav: Option<ConsoleNav>,
    csrf: String,
    admin: bool,
    channels: Vec<ChannelView>,
    /// The code to read out, for the UID asked about.
    code: Option<(String, String)>,
    error: Option<String>,
}

async fn console_render(
    state: &AppState,
    jar: CookieJar,
    operator: &Operator,
    code: Option<(String, String)>,
    error: Option<String>,
) -> Response {
    let (jar, csrf) = console_csrf(state, jar);
    let nav = ConsoleNav::of(operator, &csrf);
    match state.incidents.channels().await {
        Ok(channels) => (
            jar,
            render(
                StatusCode::OK,
                &ConsoleChannelsPage {
                    nav: Some(nav),
                    csrf,
                    admin: operator.role == Role::Admin,
                    channels,
                    code,
                    error,
                },
            ),
        )
            .into_response(),
        Err(e) => console_refusal(e, Some(nav)),
    }
}

async fn console_page(State(state): State<AppState>, jar: CookieJar) -> Response {
    match console_page_auth(&state, &jar).await {
        Ok((operator, _)) => console_render(&state, jar, &operator, None, None).await,
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct ChannelForm {
    csrf: String,
    kind: String,
    value: String,
    #[serde(default)]
    note: String,
}

async fn console_add(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<ChannelForm>,
) -> Response {
    let (operator, _) = match console_guard(&state, &jar, &f.csrf).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let error = state
        .incidents
        .add_channel(&operator, &f.kind, &f.value, &f.note, &client)
        .await
        .err()
        .map(|e| error_text(e).1);
    console_render(&state, jar, &operator, None, error).await
}

async fn console_remove(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let (operator, _) = match console_guard(&state, &jar, &f.csrf).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let error = state
        .incidents
        .remove_channel(&operator, &id, &client)
        .await
        .err()
        .map(|e| error_text(e).1);
    console_render(&state, jar, &operator, None, error).await
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    uid: String,
}

async fn console_code(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CodeForm>,
) -> Response {
    let (operator, _) = match console_guard(&state, &jar, &f.csrf).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    match state
        .incidents
        .support_code_for(&operator, &f.uid, &client)
        .await
    {
        Ok(c) => {
            let shown = Some((f.uid.trim().to_owned(), c.code));
            console_render(&state, jar, &operator, shown, None).await
        }
        Err(e) => {
            let text = error_text(e).1;
            console_render(&state, jar, &operator, None, Some(text)).await
        }
    }
}
