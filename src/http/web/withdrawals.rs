//! The Security Center's withdrawal page (locks in force, allowlist and its switch, the
//! withdraw delay, withdrawals with Cancel on held ones, transfers and deposits) and the
//! one-click cancel link of a held withdrawal.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::{
    ask_to_confirm, csrf, csrf_ok, csrf_refused, error_text, guarded, message, page_auth, render,
    urlencode, PageForm,
};
use crate::clock::format_utc;
use crate::http::AppState;
use crate::service::withdrawals::{NewAddress, WithdrawalView};
use crate::service::{Client, ServiceError, ServiceResult};
use crate::store::SessionAuth;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/security/withdrawals", get(page))
        .route("/security/withdrawals/allowlist", post(set_allowlist))
        .route("/security/withdrawals/delay", post(set_delay))
        .route("/security/withdrawals/addresses", post(add_address))
        .route(
            "/security/withdrawals/addresses/{id}/remove",
            post(remove_address),
        )
        .route("/security/withdrawals/{id}/cancel", post(cancel))
        .route(
            "/withdrawals/cancel/{token}",
            get(cancel_link_page).post(cancel_by_link),
        )
}

struct Row {
    id: String,
    state: String,
    held: bool,
    what: String,
    destination: String,
    txid: String,
    requested: String,
    release: String,
    reasons: Vec<String>,
    lookalike: bool,
}

impl Row {
    fn new(w: &WithdrawalView) -> Self {
        Self {
            id: w.id.clone(),
            held: w.state == "held",
            state: match (w.state.as_str(), w.cancel_reason.as_deref()) {
                ("cancelled", Some("account_frozen")) => "cancelled (account frozen)".into(),
                ("cancelled", _) => "cancelled".into(),
                (s, _) => s.to_owned(),
            },
            what: format!("{} {} on {}", w.amount, w.asset, w.network),
            destination: match &w.memo {
                Some(m) => format!("{} (memo {m})", w.address),
                None => w.address.clone(),
            },
            txid: w.txid.clone().unwrap_or_default(),
            requested: format_utc(w.created_at),
            release: w.release_at.map(format_utc).unwrap_or_default(),
            lookalike: w.reasons.iter().any(|r| r.code == "lookalike_address"),
            reasons: w.reasons.iter().map(|r| r.message.clone()).collect(),
        }
    }
}

struct AddressRow {
    id: String,
    label: String,
    asset: String,
    network: String,
    address: String,
    memo: String,
    usable: String,
    usable_now: bool,
}

struct MoneyRow {
    at: String,
    what: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "withdrawals.html")]
struct WithdrawalsPage {
    /// The cursor of the next (older) page of withdrawals.
    next_before: Option<i64>,
    /// This is not the first page.
    paged: bool,
    /// Transfers or deposits beyond the newest 25 exist (the API lists them all).
    more_money: bool,
    csrf: String,
    notice: Option<&'static str>,
    error: Option<String>,
    locks: Vec<(String, String)>,
    allowlist_enabled: bool,
    allowlist_off_at: Option<String>,
    delay_days: i64,
    delay_next: Option<String>,
    addresses: Vec<AddressRow>,
    withdrawals: Vec<Row>,
    transfers: Vec<MoneyRow>,
    deposits: Vec<MoneyRow>,
    assets: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Saved {
    saved: Option<String>,
    /// Withdrawals requested before this time (Unix ms): the next page.
    before: Option<i64>,
}

/// Rows a list of this page shows at once.
const PAGE: usize = 25;

fn notice_text(key: &str) -> &'static str {
    match key {
        "allowlist_on" => "The allowlist is on: withdrawals go only to its addresses that were added more than 24 hours ago.",
        "scheduled" => "Scheduled: for your protection this takes effect later (shown below). You can cancel it from the mailed link or the Security Center until then.",
        "delay" => "The withdraw delay was updated.",
        "address_added" => "Address added. It is usable in 24 hours; we mailed you about it.",
        "address_removed" => "Address removed from the allowlist.",
        "cancelled" => "Cancelled. Nothing was sent.",
        _ => "Saved.",
    }
}

async fn page(State(state): State<AppState>, jar: CookieJar, Query(q): Query<Saved>) -> Response {
    let auth = match page_auth(&state, &jar).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let notice = q.saved.as_deref().map(notice_text);
    render_list(&state, jar, &auth, notice, None, q.before).await
}

async fn render_page(
    state: &AppState,
    jar: CookieJar,
    auth: &SessionAuth,
    notice: Option<&'static str>,
    error: Option<String>,
) -> Response {
    render_list(state, jar, auth, notice, error, None).await
}

/// The page with the withdrawals requested before `before` (the newest first page when
/// `None`), 25 at a time; transfers and deposits show their newest 25.
async fn render_list(
    state: &AppState,
    jar: CookieJar,
    auth: &SessionAuth,
    notice: Option<&'static str>,
    error: Option<String>,
    before: Option<i64>,
) -> Response {
    let w = &state.withdrawals;
    let loaded = async {
        Ok::<_, ServiceError>((
            w.overview(auth).await?,
            w.allowlist(auth).await?,
            w.list(auth, before, PAGE as i64 + 1).await?,
            w.transfers(auth).await?,
            w.deposits(auth).await?,
        ))
    }
    .await;
    let (overview, allowlist, mut list, mut transfers, mut deposits) = match loaded {
        Ok(x) => x,
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    let next_before = (list.len() > PAGE).then(|| list[PAGE - 1].created_at);
    list.truncate(PAGE);
    let more_money = transfers.len() > PAGE || deposits.len() > PAGE;
    transfers.truncate(PAGE);
    deposits.truncate(PAGE);
    let now = state.now();
    let (jar, csrf) = csrf(state, jar);
    let page = WithdrawalsPage {
        next_before,
        paged: before.is_some(),
        more_money,
        csrf,
        notice,
        error,
        locks: overview
            .locks
            .iter()
            .map(|l| {
                (
                    l.message.clone(),
                    l.until.map_or("until a recovery review".into(), format_utc),
                )
            })
            .collect(),
        allowlist_enabled: overview.allowlist_enabled,
        allowlist_off_at: overview.allowlist_off_at.map(format_utc),
        delay_days: overview.delay_days,
        delay_next: overview
            .delay_next_days
            .zip(overview.delay_next_at)
            .map(|(d, at)| format!("{d} day(s) from {}", format_utc(at))),
        addresses: allowlist
            .iter()
            .map(|a| AddressRow {
                id: a.id.clone(),
                label: a.label.clone(),
                asset: a.asset.clone(),
                network: a.network.clone(),
                address: a.address.clone(),
                memo: a.memo.clone().unwrap_or_default(),
                usable: format_utc(a.usable_at),
                usable_now: a.usable_at <= now,
            })
            .collect(),
        withdrawals: list.iter().map(Row::new).collect(),
        transfers: transfers
            .iter()
            .map(|t| MoneyRow {
                at: format_utc(t.created_at),
                what: format!("{} {}", t.amount, t.asset),
                detail: format!(
                    "{} {}{}",
                    if t.direction == "out" {
                        "sent to"
                    } else {
                        "received from"
                    },
                    t.counterparty_uid,
                    if t.state == "refused" {
                        " (refused)"
                    } else {
                        ""
                    }
                ),
            })
            .collect(),
        deposits: deposits
            .iter()
            .map(|d| MoneyRow {
                at: format_utc(d.created_at),
                what: format!("{} {} on {}", d.amount, d.asset, d.network),
                detail: format!("TxID {}", d.txid),
            })
            .collect(),
        assets: overview
            .assets
            .iter()
            .flat_map(|a| {
                a.networks
                    .iter()
                    .map(|n| (a.symbol.clone(), n.name.clone()))
                    .collect::<Vec<_>>()
            })
            .collect(),
    };
    let status = if page.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    (jar, render(status, &page)).into_response()
}

/// Back to the page with the result, or the page again with the error next to the forms.
async fn finish<T>(
    state: &AppState,
    jar: CookieJar,
    auth: &SessionAuth,
    result: ServiceResult<T>,
    saved: &str,
) -> Response {
    match result {
        Ok(_) => Redirect::to(&format!("/security/withdrawals?saved={saved}")).into_response(),
        Err(ServiceError::StepUpRequired { .. }) => {
            render_page(
                state,
                jar,
                auth,
                None,
                Some("This change needs a fresh confirmation that it is you: use \"Confirm it's me\" in the Security Center (Two-step verification), then come back within 5 minutes.".into()),
            )
            .await
        }
        Err(e) => {
            let (_, text) = error_text(e);
            render_page(state, jar, auth, None, Some(text)).await
        }
    }
}

#[derive(Deserialize)]
struct SwitchForm {
    csrf: String,
    enabled: String,
}

async fn set_allowlist(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<SwitchForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let on = f.enabled == "on";
    let r = state.withdrawals.set_allowlist(&auth, on, &client).await;
    let saved = match &r {
        Ok(Some(_)) => "scheduled",
        _ if on => "allowlist_on",
        _ => "saved",
    };
    finish(&state, jar, &auth, r, saved).await
}

#[derive(Deserialize)]
struct DelayForm {
    csrf: String,
    days: String,
}

async fn set_delay(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<DelayForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let days = f.days.trim().parse::<i64>().unwrap_or(-1);
    let r = state.withdrawals.set_delay(&auth, days, &client).await;
    let saved = if matches!(r, Ok(Some(_))) {
        "scheduled"
    } else {
        "delay"
    };
    finish(&state, jar, &auth, r, saved).await
}

#[derive(Deserialize)]
struct AddressForm {
    csrf: String,
    asset_network: String,
    address: String,
    #[serde(default)]
    memo: String,
    label: String,
}

async fn add_address(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<AddressForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let (asset, network) = f
        .asset_network
        .split_once('/')
        .map(|(a, n)| (a.to_owned(), n.to_owned()))
        .unwrap_or_default();
    let new = NewAddress {
        asset,
        network,
        address: f.address,
        memo: Some(f.memo).filter(|m| !m.is_empty()),
        label: f.label,
    };
    let r = state.withdrawals.add_address(&auth, &new, &client).await;
    finish(&state, jar, &auth, r, "address_added").await
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn remove_address(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<CsrfForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state.withdrawals.remove_address(&auth, &id, &client).await;
    finish(&state, jar, &auth, r, "address_removed").await
}

async fn cancel(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<CsrfForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state.withdrawals.cancel(&auth, &id, &client).await;
    finish(&state, jar, &auth, r, "cancelled").await
}

/// The mailed link: shows what would be cancelled and asks for one click (mail scanners
/// fetch links; only the POST acts).
async fn cancel_link_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Response {
    if token.len() > 128 {
        return message(
            StatusCode::NOT_FOUND,
            "This link cannot cancel anything",
            "This link is not valid.",
            "/signin",
            "Sign in",
        );
    }
    match state.withdrawals.cancel_link(&token).await {
        Ok(w) if w.state == "held" => {
            let why = w
                .reasons
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            ask_to_confirm(
                &state,
                jar,
                "Cancel this withdrawal?",
                &format!(
                    "{} {} on {} to {}, requested at {}, is held until {}. {why} If you did not ask for it, cancel it: nothing is sent. Then freeze your account or change your password.",
                    w.amount,
                    w.asset,
                    w.network,
                    w.address,
                    format_utc(w.created_at),
                    w.release_at.map(format_utc).unwrap_or_default()
                ),
                format!("/withdrawals/cancel/{}", urlencode(&token)),
                "Cancel this withdrawal",
                true,
            )
        }
        Ok(_) | Err(_) => message(
            StatusCode::NOT_FOUND,
            "This link cannot cancel anything",
            "The withdrawal was released or cancelled already, or the link is not valid.",
            "/signin",
            "Sign in",
        ),
    }
}

async fn cancel_by_link(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(token): Path<String>,
    PageForm(f): PageForm<CsrfForm>,
) -> Response {
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    if token.len() > 128 {
        return message(
            StatusCode::NOT_FOUND,
            "This link cannot cancel anything",
            "This link is not valid.",
            "/signin",
            "Sign in",
        );
    }
    match state.withdrawals.cancel_by_link(&token, &client).await {
        Ok(w) => message(
            StatusCode::OK,
            "Withdrawal cancelled",
            &format!(
                "Cancelled: {} {} to {}. Nothing was sent. If someone else asked for it, your account may be compromised: freeze it from the link in any of our mails, or sign in and change your password.",
                w.amount, w.asset, w.address
            ),
            "/signin",
            "Sign in",
        ),
        Err(e) => {
            let (status, text) = error_text(e);
            message(status, "This link cannot cancel anything", &text, "/signin", "Sign in")
        }
    }
}
