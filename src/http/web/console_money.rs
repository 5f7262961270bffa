//! The console's "following the money": internal transfers out of an account, several
//! hops deep, and freezing the receiving accounts with a reason, each opening a case.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::console::{console_csrf, console_guard, console_page_auth, console_refusal, ConsoleNav};
use super::{render, PageForm};
use crate::clock::format_utc;
use crate::http::AppState;
use crate::service::console::{MoneyGraph, ReceiverFrozen};
use crate::service::Client;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/accounts/{uid}/money", get(page))
        .route("/console/accounts/{uid}/freeze-receivers", post(freeze))
}

struct EdgeRow {
    depth: u32,
    from: String,
    to: String,
    what: String,
    at: String,
    to_frozen: bool,
}

#[derive(Template)]
#[template(path = "console_money.html")]
struct MoneyPage {
    nav: Option<ConsoleNav>,
    csrf: String,
    uid: String,
    edges: Vec<EdgeRow>,
    receivers: Vec<(String, String, bool)>,
    capped: bool,
    results: Vec<ReceiverFrozen>,
}

fn view(
    uid: &str,
    g: &MoneyGraph,
    nav: ConsoleNav,
    csrf: String,
    results: Vec<ReceiverFrozen>,
) -> MoneyPage {
    let frozen = |u: &str| g.nodes.iter().any(|n| n.uid == u && n.frozen);
    MoneyPage {
        nav: Some(nav),
        csrf,
        uid: uid.to_owned(),
        edges: g
            .edges
            .iter()
            .map(|e| EdgeRow {
                depth: e.depth,
                from: e.from_uid.clone(),
                to: e.to_uid.clone(),
                what: format!("{} {}", e.amount, e.asset),
                at: format_utc(e.at),
                to_frozen: frozen(&e.to_uid),
            })
            .collect(),
        receivers: g
            .nodes
            .iter()
            .filter(|n| n.depth > 0)
            .map(|n| (n.uid.clone(), n.email.clone(), n.frozen))
            .collect(),
        capped: g.capped,
        results,
    }
}

async fn page(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(uid): Path<String>,
) -> Response {
    let (operator, _) = match console_page_auth(&state, &jar).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (jar, csrf) = console_csrf(&state, jar);
    let nav = ConsoleNav::of(&operator, &csrf);
    match state
        .console
        .money_graph(&operator, &uid, 3, None, &client)
        .await
    {
        Ok(g) => (
            jar,
            render(
                axum::http::StatusCode::OK,
                &view(&uid, &g, nav, csrf, Vec::new()),
            ),
        )
            .into_response(),
        Err(e) => console_refusal(e, Some(nav)),
    }
}

#[derive(Deserialize)]
struct FreezeForm {
    csrf: String,
    reason: String,
    /// One `r_<UID>=on` per ticked receiver (a plain form decoder keeps one value per name).
    #[serde(flatten)]
    ticked: std::collections::HashMap<String, String>,
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
    let (jar, csrf) = console_csrf(&state, jar);
    let nav = ConsoleNav::of(&operator, &csrf);
    let uids: Vec<String> = f
        .ticked
        .keys()
        .filter_map(|k| k.strip_prefix("r_"))
        .map(str::to_owned)
        .collect();
    let results = match state
        .console
        .freeze_receivers(&operator, &uid, &uids, &f.reason, &client)
        .await
    {
        Ok(r) => r,
        Err(e) => return console_refusal(e, Some(nav)),
    };
    match state
        .console
        .money_graph(&operator, &uid, 3, None, &client)
        .await
    {
        Ok(g) => (
            jar,
            render(
                axum::http::StatusCode::OK,
                &view(&uid, &g, nav, csrf, results),
            ),
        )
            .into_response(),
        Err(e) => console_refusal(e, Some(nav)),
    }
}
