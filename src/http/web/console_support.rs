//! Console pages of support: the ticket and recovery queues, a ticket with its reply
//! form, and a recovery request with its approve and reject forms.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::console::{console_csrf, console_guard, console_page_auth, console_refusal, ConsoleNav};
use super::{render, urlencode, PageForm};
use crate::clock::{format_utc, Millis, HOUR, MINUTE};
use crate::http::AppState;
use crate::service::Client;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/tickets", get(tickets))
        .route("/console/tickets/{id}", get(ticket))
        .route("/console/tickets/{id}/reply", post(reply))
        .route("/console/tickets/{id}/close", post(close))
        .route("/console/recoveries", get(recoveries))
        .route("/console/recoveries/{id}", get(recovery))
        .route("/console/recoveries/{id}/approve", post(approve))
        .route("/console/recoveries/{id}/reject", post(reject))
}

/// "3 h 12 min", "4 min".
fn waited(ms: Millis) -> String {
    let ms = ms.max(0);
    if ms >= HOUR {
        format!("{} h {} min", ms / HOUR, (ms % HOUR) / MINUTE)
    } else {
        format!("{} min", ms / MINUTE)
    }
}

struct QueueRow {
    waited: String,
    account: String,
    what: String,
    link: String,
    status: &'static str,
}

#[derive(Template)]
#[template(path = "console_queue.html")]
struct QueuePage {
    nav: Option<ConsoleNav>,
    title: &'static str,
    rows: Vec<QueueRow>,
}

async fn uid_of(state: &AppState, account_id: &str) -> String {
    match state.store.account_by_id(account_id).await {
        Ok(Some(a)) => a.uid,
        _ => "?".into(),
    }
}

async fn tickets(State(state): State<AppState>, jar: CookieJar) -> Response {
    let (operator, _) = match console_page_auth(&state, &jar).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (jar, csrf) = console_csrf(&state, jar);
    let nav = Some(ConsoleNav::of(&operator, &csrf));
    let list = match state.support.ticket_queue(&operator, None).await {
        Ok(l) => l,
        Err(e) => return console_refusal(e, nav),
    };
    let now = state.now();
    let mut rows = Vec::with_capacity(list.len());
    for t in list {
        let what: String = t.description.chars().take(80).collect();
        rows.push(QueueRow {
            waited: waited(now - t.updated_at),
            account: uid_of(&state, &t.account_id).await,
            what,
            link: format!("/console/tickets/{}", t.id),
            status: t.status.as_str(),
        });
    }
    let page = QueuePage {
        nav,
        title: "Tickets",
        rows,
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

async fn recoveries(State(state): State<AppState>, jar: CookieJar) -> Response {
    let (operator, _) = match console_page_auth(&state, &jar).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (jar, csrf) = console_csrf(&state, jar);
    let nav = Some(ConsoleNav::of(&operator, &csrf));
    let list = match state.support.recovery_queue(&operator, None).await {
        Ok(l) => l,
        Err(e) => return console_refusal(e, nav),
    };
    let now = state.now();
    let mut rows = Vec::with_capacity(list.len());
    for r in list {
        rows.push(QueueRow {
            waited: waited(now - r.created_at),
            account: uid_of(&state, &r.account_id).await,
            what: format!(
                "{}: {}",
                r.kind,
                r.reason.chars().take(60).collect::<String>()
            ),
            link: format!("/console/recoveries/{}", r.id),
            status: r.status.as_str(),
        });
    }
    let page = QueuePage {
        nav,
        title: "Recoveries",
        rows,
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

struct MessageRow {
    author: String,
    internal: bool,
    when: String,
    body: String,
}

#[derive(Template)]
#[template(path = "console_ticket.html")]
struct TicketPage {
    nav: Option<ConsoleNav>,
    csrf: String,
    id: String,
    uid: String,
    status: &'static str,
    created: String,
    noticed: Option<String>,
    requests: String,
    recovery_id: Option<String>,
    details: String,
    messages: Vec<MessageRow>,
}

async fn ticket(State(state): State<AppState>, jar: CookieJar, Path(id): Path<String>) -> Response {
    let (operator, _) = match console_page_auth(&state, &jar).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (jar, csrf) = console_csrf(&state, jar);
    let nav = Some(ConsoleNav::of(&operator, &csrf));
    let (t, messages, account) = match state.support.console_ticket(&operator, &id).await {
        Ok(x) => x,
        Err(e) => return console_refusal(e, nav),
    };
    let page = TicketPage {
        nav,
        csrf,
        id: t.id,
        uid: account.uid,
        status: t.status.as_str(),
        created: format_utc(t.created_at),
        noticed: t.noticed_at.map(format_utc),
        requests: if t.requests.is_empty() {
            "none".into()
        } else {
            t.requests
                .iter()
                .map(|r| r.label())
                .collect::<Vec<_>>()
                .join("; ")
        },
        recovery_id: t.recovery_id,
        details: serde_json::to_string_pretty(&t.details).unwrap_or_default(),
        messages: messages
            .into_iter()
            .map(|m| MessageRow {
                author: m.author,
                internal: m.internal,
                when: format_utc(m.created_at),
                body: m.body,
            })
            .collect(),
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

#[derive(Deserialize)]
struct ReplyForm {
    csrf: String,
    body: String,
    #[serde(default)]
    internal: Option<String>,
}

async fn reply(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<ReplyForm>,
) -> Response {
    let (operator, _) = match console_guard(&state, &jar, &f.csrf).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (_, csrf) = console_csrf(&state, jar.clone());
    let nav = Some(ConsoleNav::of(&operator, &csrf));
    let internal = f.internal.is_some_and(|v| v == "on");
    match state
        .support
        .operator_reply(&operator, &id, &f.body, internal, &client)
        .await
    {
        Ok(()) => Redirect::to(&format!("/console/tickets/{}", urlencode(&id))).into_response(),
        Err(e) => console_refusal(e, nav),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn close(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<CsrfForm>,
) -> Response {
    let (operator, _) = match console_guard(&state, &jar, &f.csrf).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (_, csrf) = console_csrf(&state, jar.clone());
    let nav = Some(ConsoleNav::of(&operator, &csrf));
    match state.support.close_ticket(&operator, &id, &client).await {
        Ok(()) => Redirect::to("/console/tickets").into_response(),
        Err(e) => console_refusal(e, nav),
    }
}

#[derive(Template)]
#[template(path = "console_recovery.html")]
struct RecoveryPage {
    nav: Option<ConsoleNav>,
    csrf: String,
    notice: Option<String>,
    id: String,
    kind: &'static str,
    uid: String,
    email: String,
    frozen: Option<String>,
    created: String,
    status: &'static str,
    first_approver: Option<String>,
    decision: Option<String>,
    needs_two: bool,
    what_happened: String,
    open: bool,
    evidence: Vec<EvidenceRow>,
}

struct EvidenceRow {
    n: i64,
    kind: String,
    size: String,
}

async fn recovery_view(
    state: &AppState,
    jar: CookieJar,
    id: &str,
    notice: Option<String>,
) -> Response {
    let (operator, _) = match console_page_auth(state, &jar).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (jar, csrf) = console_csrf(state, jar);
    let nav = Some(ConsoleNav::of(&operator, &csrf));
    let (r, account) = match state.support.console_recovery(&operator, id).await {
        Ok(x) => x,
        Err(e) => return console_refusal(e, nav),
    };
    let evidence = state
        .support
        .evidence_of(&r.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|e| EvidenceRow {
            n: e.n,
            kind: e.content_type,
            size: format!("{} KiB", (e.size_bytes + 1023) / 1024),
        })
        .collect();
    let page = RecoveryPage {
        nav,
        csrf,
        notice,
        evidence,
        kind: r.kind.as_str(),
        uid: account.uid,
        email: account.email,
        frozen: account.frozen_at.map(format_utc),
        created: format_utc(r.created_at),
        status: r.status.as_str(),
        decision: r.decided_by.map(|by| {
            format!(
                "decided by {by}: {}",
                r.decision_reason.clone().unwrap_or_default()
            )
        }),
        first_approver: r.first_approver,
        needs_two: r.needs_two,
        what_happened: r.reason,
        open: r.status.is_open(),
        id: r.id,
    };
    (jar, render(StatusCode::OK, &page)).into_response()
}

async fn recovery(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(id): Path<String>,
) -> Response {
    recovery_view(&state, jar, &id, None).await
}

#[derive(Deserialize)]
struct ReasonForm {
    csrf: String,
    reason: String,
}

async fn decide(
    state: AppState,
    jar: CookieJar,
    client: Client,
    id: String,
    f: ReasonForm,
    approve: bool,
) -> Response {
    let (operator, _) = match console_guard(&state, &jar, &f.csrf).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (_, csrf) = console_csrf(&state, jar.clone());
    let nav = Some(ConsoleNav::of(&operator, &csrf));
    let decided = if approve {
        state
            .support
            .approve(&operator, &id, &f.reason, &client)
            .await
    } else {
        state
            .support
            .reject(&operator, &id, &f.reason, &client)
            .await
    };
    match decided {
        Ok(d) => recovery_view(&state, jar, &id, Some(d.message)).await,
        Err(e) => console_refusal(e, nav),
    }
}

async fn approve(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<ReasonForm>,
) -> Response {
    decide(state, jar, client, id, f, true).await
}

async fn reject(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<ReasonForm>,
) -> Response {
    decide(state, jar, client, id, f, false).await
}
