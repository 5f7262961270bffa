//! The local mailbox (`/dev/mailbox`, development only): every mail of the outbox, with
//! links to this server clickable.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::render;
use crate::clock::format_utc;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::service::ServiceError;

pub fn routes() -> Router<AppState> {
    Router::new().route("/dev/mailbox", get(mailbox_page))
}

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
    let mails = match state.store.recent_mails(200).await {
        Ok(m) => m,
        Err(e) => return ApiError::from(ServiceError::from(e)).into_response(),
    };
    let public_url = &state.composer.public_url;
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
