//! The Security Center's pages: an overview first (what happened recently, the unusual
//! marked, and a checklist that ticks itself), then one page per area with navigation —
//! devices (and blocked ones), sign-in history, API keys, password and second factors,
//! the inbox, and the incident page (Secure my account's result, the backdoor sweep, the
//! report, the support code). Every action returns to the page it came from with its
//! result ([`finish`]), or that page with the error. Times are written in UTC inside
//! `<time>` elements that a small script shows in the viewer's time zone.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::{ask_to_confirm, csrf, error_text, guarded, page_auth, render, CsrfOnly, PageForm};
use crate::clock::{format_utc, Millis};
use crate::domain::api_key::Permission;
use crate::domain::change::Weakening;
use crate::geo::Location;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::service::api_keys::NewKey;
use crate::service::incidents::{CheckItem, SecureReport};
use crate::service::{Client, ServiceResult};
use crate::store::{ApiKeyRecord, PasskeyRecord, PendingChange, SessionAuth, WithdrawalLock};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/security", get(overview_page))
        .route("/security/{section}", get(section_page))
        .route("/security/anti-phishing-code", post(set_anti_phishing_code))
        .route("/security/secure", post(secure))
        .route("/security/sweep/remove", post(sweep_remove))
        .route("/security/sweep/remove-all", post(sweep_remove_all))
        .route("/security/settings-lock", post(lock_settings))
        .route("/security/settings-lock/end-early", post(end_lock))
        .route("/security/keys", get(keys_page).post(create_key))
        .route("/security/keys/delete-all", post(delete_all_keys))
        .route("/security/keys/{key}/{action}", post(key_action))
        .route("/security/devices/{id}/block", post(block_confirm))
        .route("/security/devices/{id}/block/confirm", post(block_device))
        .route("/security/blocked/{fingerprint}/unblock", post(unblock))
}

/// The pages, by the last part of their path.
const SECTIONS: &[(&str, &str)] = &[
    ("overview", "Security Center"),
    ("devices", "Devices"),
    ("history", "Sign-in history"),
    ("keys", "API keys"),
    ("factors", "Password & two-step verification"),
    ("notifications", "Inbox"),
    ("incident", "Incident response"),
];

/// The page of a section name, `overview` for anything else.
fn section_of(name: &str) -> &'static str {
    SECTIONS
        .iter()
        .find(|(s, _)| *s == name)
        .map_or("overview", |(s, _)| s)
}

fn path_of(section: &str) -> String {
    match section {
        "overview" => "/security".to_owned(),
        s => format!("/security/{s}"),
    }
}

/// A time as the page shows it: ISO 8601 for the script, UTC for people without it.
pub(crate) struct TimeView {
    iso: String,
    utc: String,
}

impl TimeView {
    pub(crate) fn new(ms: Millis) -> Self {
        let iso = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        Self {
            iso,
            utc: format_utc(ms),
        }
    }
}

struct DeviceRow {
    id: String,
    title: String,
    trusted: bool,
    current: bool,
    live: bool,
    new: bool,
    model: String,
    os: String,
    browser: String,
    ip: String,
    location: String,
    first_seen: TimeView,
    last_active: TimeView,
}

struct BlockedRow {
    fingerprint: String,
    what: String,
    at: TimeView,
}

struct LoginRow {
    success: bool,
    result: String,
    at: TimeView,
    ip: String,
    location: String,
    device: String,
    unusual: Option<String>,
}

struct RecentRow {
    at: TimeView,
    what: String,
    place: Option<String>,
    unusual: Option<String>,
}

struct KeyRow {
    api_key: String,
    label: String,
    key_type: &'static str,
    permissions: String,
    perms: Vec<(&'static str, bool)>,
    allowlist: String,
    allowlist_lines: String,
    created: TimeView,
    created_from: String,
    unusual: bool,
    suspended: bool,
    last_used: Option<TimeView>,
    expires: Option<TimeView>,
}

struct PrefRow {
    kind: &'static str,
    description: &'static str,
    enabled: bool,
    turning_off_at: Option<TimeView>,
}

struct NotificationRow {
    subject: String,
    body: String,
    at: TimeView,
    unread: bool,
}

struct PasskeyRow {
    id: String,
    name: String,
    created: TimeView,
    last_used: Option<TimeView>,
    removal_pending: bool,
}

struct PendingRow {
    id: String,
    what: String,
    effective: TimeView,
}

struct LockRow {
    reason: String,
    until: TimeView,
}

struct SweepRow {
    kind: &'static str,
    id: String,
    what: String,
    at: TimeView,
    device: String,
    place: String,
    ip: Option<String>,
    remove: Option<String>,
}

/// Every page of the Security Center; each section fills what it shows.
#[derive(Template, Default)]
#[template(path = "security.html")]
struct SecurityPage {
    title: &'static str,
    section: &'static str,
    csrf: String,
    email: String,
    uid: String,
    notice: Option<String>,
    error: Option<String>,
    recovery_required: bool,
    settings_lock: Option<TimeView>,
    settings_lock_ending: bool,
    geo_attribution: bool,
    // step-up box
    has_second_factor: bool,
    has_passkey: bool,
    stepped_up_until: Option<TimeView>,
    // overview
    checklist: Vec<CheckItem>,
    recent: Vec<RecentRow>,
    // lists
    page: usize,
    has_next: bool,
    history_days: i64,
    devices: Vec<DeviceRow>,
    blocked: Vec<BlockedRow>,
    logins: Vec<LoginRow>,
    // keys
    keys: Vec<KeyRow>,
    new_secret: Option<(String, String)>,
    permission_names: Vec<&'static str>,
    // factors
    totp_enabled: bool,
    backup_codes_left: i64,
    require_passkey: bool,
    passkeys: Vec<PasskeyRow>,
    pending: Vec<PendingRow>,
    locks: Vec<LockRow>,
    pending_email: Option<String>,
    anti_phishing_code: Option<String>,
    // inbox
    unread: usize,
    notifications: Vec<NotificationRow>,
    mail_prefs: Vec<PrefRow>,
    // incident
    secured: Option<SecureReport>,
    since: Millis,
    since_choices: Vec<(String, String, bool)>,
    sweep: Vec<SweepRow>,
    sweep_removable: bool,
    support_code: String,
}

/// Items a list page shows at once.
const PAGE_SIZE: usize = 25;
/// The most items a list reads (pages beyond it are not offered).
const MAX_LISTED: usize = 500;

/// What a page was asked for beyond its section.
#[derive(Default, Deserialize)]
struct PageQuery {
    saved: Option<String>,
    page: Option<usize>,
    since: Option<Millis>,
}

/// One page's slice of a list, and whether there is a next one.
fn paged<T>(mut all: Vec<T>, page: usize) -> (Vec<T>, bool) {
    let start = (page - 1) * PAGE_SIZE;
    let has_next = all.len() > start + PAGE_SIZE;
    let items = if start < all.len() {
        all.drain(start..(start + PAGE_SIZE).min(all.len()))
            .collect()
    } else {
        Vec::new()
    };
    (items, has_next)
}

impl SecurityPage {
    /// Reads what `section` shows (and the few things every page shows) through the services.
    async fn load(
        state: &AppState,
        auth: &SessionAuth,
        section: &'static str,
        q: &PageQuery,
    ) -> ServiceResult<Self> {
        let now = state.now();
        let overview = state.factors.factor_overview(auth).await?;
        let lock = state.store.settings_lock(&auth.account.id).await?;
        let lock = lock.filter(|l| l.active(now));
        let page = q.page.unwrap_or(1).clamp(1, MAX_LISTED / PAGE_SIZE);
        let mut p = Self {
            title: SECTIONS
                .iter()
                .find(|(s, _)| *s == section)
                .map_or("Security Center", |(_, t)| t),
            section,
            email: auth.account.email.clone(),
            uid: auth.account.uid.clone(),
            recovery_required: auth.account.recovery_required,
            settings_lock_ending: lock.as_ref().is_some_and(|l| l.end_requested_at.is_some()),
            settings_lock: lock.map(|l| TimeView::new(l.until)),
            geo_attribution: state.geo.is_loaded(),
            has_second_factor: overview.factors.any(),
            has_passkey: !overview.passkeys.is_empty(),
            stepped_up_until: overview.stepped_up_until.map(TimeView::new),
            page,
            history_days: state.rules.device_history_days,
            ..Self::default()
        };
        match section {
            "overview" => {
                let o = state.incidents.overview(auth).await?;
                p.checklist = o.checklist;
                p.recent = o
                    .recent
                    .into_iter()
                    .map(|e| RecentRow {
                        at: TimeView::new(e.at),
                        what: e.what,
                        place: e.place,
                        unusual: e.unusual,
                    })
                    .collect();
            }
            "devices" => {
                let idle = state.rules.session_idle_minutes * crate::clock::MINUTE;
                let live = state
                    .store
                    .live_devices(&auth.account.id, now, now - idle)
                    .await?;
                let devices = state.sessions.devices(auth).await?;
                let (devices, has_next) = paged(devices, page);
                p.has_next = has_next;
                p.devices = devices
                    .into_iter()
                    .map(|d| DeviceRow {
                        title: format!("{} on {}", d.browser, d.os),
                        trusted: d.trusted_at.is_some(),
                        current: d.id == auth.session.device_id,
                        live: live.contains(&d.id),
                        new: d.first_seen > now - 14 * crate::clock::DAY
                            && d.trusted_at.is_none()
                            && d.id != auth.session.device_id,
                        id: d.id,
                        location: Location::label(d.city.as_deref(), d.country.as_deref()),
                        model: d.model,
                        os: d.os,
                        browser: d.browser,
                        ip: d.ip,
                        first_seen: TimeView::new(d.first_seen),
                        last_active: TimeView::new(d.last_active),
                    })
                    .collect();
                p.blocked = state
                    .protection
                    .blocked_devices(auth)
                    .await?
                    .into_iter()
                    .map(|b| BlockedRow {
                        what: match (&b.browser, &b.os, &b.model) {
                            (Some(br), Some(os), Some(m)) => format!(
                                "{br} on {os} ({m}), last seen at IP {} in {}",
                                b.ip.as_deref().unwrap_or("?"),
                                Location::label(b.city.as_deref(), b.country.as_deref())
                            ),
                            _ => "A device no longer in the list".to_owned(),
                        },
                        at: TimeView::new(b.blocked_at),
                        fingerprint: b.fingerprint,
                    })
                    .collect();
            }
            "history" => {
                let o = state.incidents.overview(auth).await?;
                let logins = state.sessions.logins(auth, MAX_LISTED as i64).await?;
                let (logins, has_next) = paged(logins, page);
                p.has_next = has_next;
                p.logins = logins
                    .into_iter()
                    .map(|l| {
                        let unusual = o
                            .recent
                            .iter()
                            .find(|e| e.at == l.at && e.what.starts_with("Sign-in"))
                            .and_then(|e| e.unusual.clone());
                        LoginRow {
                            success: l.success,
                            result: crate::domain::sign_in::login_result(&l.reason, l.method),
                            at: TimeView::new(l.at),
                            location: Location::label(l.city.as_deref(), l.country.as_deref()),
                            ip: l.ip,
                            device: format!("{} on {} ({})", l.browser, l.os, l.model),
                            unusual,
                        }
                    })
                    .collect();
            }
            "keys" => {
                p.permission_names = Permission::ALL.iter().map(|p| p.as_str()).collect();
                p.keys = state
                    .api_keys
                    .list_api_keys(auth)
                    .await?
                    .into_iter()
                    .map(KeyRow::from)
                    .collect();
            }
            "factors" => {
                p.totp_enabled = overview.factors.totp;
                p.backup_codes_left = overview.factors.backup_codes_left;
                p.require_passkey = overview.require_passkey;
                p.passkeys = PasskeyRow::all(&overview.passkeys, &overview.pending);
                p.pending = overview
                    .pending
                    .iter()
                    .map(|c| PendingRow::new(c, &overview.passkeys))
                    .collect();
                p.locks = overview
                    .withdrawal_locks
                    .iter()
                    .map(LockRow::from)
                    .collect();
                p.pending_email = state.email_change.pending(auth).await?.map(|(e, _)| e);
                p.anti_phishing_code = auth.account.anti_phishing_code.clone();
            }
            "notifications" => {
                let all = state
                    .protection
                    .notifications(auth, MAX_LISTED as i64)
                    .await?;
                p.unread = all.iter().filter(|n| n.read_at.is_none()).count();
                let (page_items, has_next) = paged(all, page);
                p.has_next = has_next;
                p.notifications = page_items
                    .into_iter()
                    .map(|n| NotificationRow {
                        unread: n.read_at.is_none(),
                        subject: n.subject,
                        body: n.body,
                        at: TimeView::new(n.created_at),
                    })
                    .collect();
                p.mail_prefs = state
                    .protection
                    .mail_preferences(auth)
                    .await?
                    .into_iter()
                    .map(|m| PrefRow {
                        kind: m.kind,
                        description: m.description,
                        enabled: m.enabled,
                        turning_off_at: m.turning_off_at.map(TimeView::new),
                    })
                    .collect();
            }
            "incident" => {
                let logins = state.sessions.logins(auth, 50).await?;
                let default_since = now - crate::service::incidents::DEFAULT_LOOKBACK;
                let since = q.since.unwrap_or(default_since);
                p.since = since;
                p.since_choices = std::iter::once((
                    default_since.to_string(),
                    "the last 30 days".to_owned(),
                    since == default_since,
                ))
                .chain(logins.iter().filter(|l| l.success).map(|l| {
                    (
                        l.at.to_string(),
                        format!(
                            "{} UTC · {} on {} · {} · IP {}",
                            format_utc(l.at),
                            l.browser,
                            l.os,
                            Location::label(l.city.as_deref(), l.country.as_deref()),
                            l.ip
                        ),
                        l.at == since,
                    )
                }))
                .collect();
                if !p.since_choices.iter().any(|c| c.2) {
                    p.since_choices.push((
                        since.to_string(),
                        format!("{} UTC", format_utc(since)),
                        true,
                    ));
                }
                let sweep = state.incidents.sweep(auth, Some(since)).await?;
                p.sweep_removable = sweep.items.iter().any(|i| i.remove.is_some());
                p.sweep = sweep
                    .items
                    .into_iter()
                    .map(|i| SweepRow {
                        kind: i.kind,
                        id: i.id,
                        what: i.what,
                        at: TimeView::new(i.at),
                        device: i.device.unwrap_or_else(|| "an unknown device".into()),
                        place: i.place,
                        ip: i.ip,
                        remove: i.remove,
                    })
                    .collect();
                p.support_code = state.incidents.support_code(auth).code;
            }
            _ => {}
        }
        Ok(p)
    }
}

impl From<ApiKeyRecord> for KeyRow {
    fn from(k: ApiKeyRecord) -> Self {
        let csv = k.access.permissions_csv();
        let allow = k.access.allowlist_csv();
        Self {
            perms: Permission::ALL
                .iter()
                .map(|p| (p.as_str(), csv.split(',').any(|x| x == p.as_str())))
                .collect(),
            permissions: csv.replace(',', ", "),
            allowlist: if allow.is_empty() {
                "any (no allowlist)".to_owned()
            } else {
                allow.replace(',', ", ")
            },
            allowlist_lines: allow.replace(',', "\n"),
            key_type: k
                .key_type
                .map_or("unknown", crate::domain::api_key::KeyType::as_str),
            created: TimeView::new(k.created_at),
            created_from: format!("from {} at IP {}", k.created_device, k.created_ip),
            unusual: k.created_unusual,
            suspended: k.suspended_at.is_some(),
            last_used: k.last_used_at.map(TimeView::new),
            expires: k.expires_at.map(TimeView::new),
            label: k.label,
            api_key: k.api_key,
        }
    }
}

impl PasskeyRow {
    /// Every passkey, each marked when its removal is pending.
    fn all(passkeys: &[PasskeyRecord], pending: &[PendingChange]) -> Vec<Self> {
        passkeys
            .iter()
            .map(|p| Self {
                id: p.id.clone(),
                name: p.name.clone(),
                created: TimeView::new(p.created_at),
                last_used: p.last_used_at.map(TimeView::new),
                removal_pending: pending
                    .iter()
                    .any(|c| c.change == Weakening::RemovePasskey(p.id.clone())),
            })
            .collect()
    }
}

impl PendingRow {
    fn new(c: &PendingChange, passkeys: &[PasskeyRecord]) -> Self {
        Self {
            id: c.id.clone(),
            what: match &c.change {
                Weakening::DisableTotp => "Turn off the authenticator app".to_owned(),
                Weakening::RemovePasskey(id) => format!(
                    "Remove the passkey \"{}\"",
                    passkeys
                        .iter()
                        .find(|p| &p.id == id)
                        .map_or("?", |p| p.name.as_str())
                ),
                Weakening::StopRequiringPasskey => "Stop requiring a passkey".to_owned(),
                Weakening::MuteMail(_) => c.change.kind().to_owned(),
                Weakening::DisableAllowlist => "Turn off the withdrawal allowlist".to_owned(),
                Weakening::ShortenWithdrawDelay(days) => {
                    format!("Shorten the withdraw delay to {days} days")
                }
            },
            effective: TimeView::new(c.effective_at),
        }
    }
}

impl From<&WithdrawalLock> for LockRow {
    fn from(l: &WithdrawalLock) -> Self {
        Self {
            reason: match l.reason.as_str() {
                "password_changed" => "password changed".to_owned(),
                "second_factor_reset" => "authenticator reset".to_owned(),
                "account_secured" => "account secured".to_owned(),
                other => other.replace('_', " "),
            },
            until: TimeView::new(l.until),
        }
    }
}

/// A section of the Security Center, after an action with its notice, or with the error
/// (status and sentence) that refused it.
pub(crate) async fn security_center(
    state: &AppState,
    jar: CookieJar,
    auth: SessionAuth,
    section: &str,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Response {
    render_section(
        state,
        jar,
        auth,
        section_of(section),
        &PageQuery::default(),
        notice,
        error,
        |_| {},
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn render_section(
    state: &AppState,
    jar: CookieJar,
    auth: SessionAuth,
    section: &'static str,
    q: &PageQuery,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
    extra: impl FnOnce(&mut SecurityPage),
) -> Response {
    let mut page = match SecurityPage::load(state, &auth, section, q).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (jar, csrf) = csrf(state, jar);
    let status = error.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    page.csrf = csrf;
    page.notice = notice;
    page.error = error.map(|(_, t)| t);
    extra(&mut page);
    (jar, render(status, &page)).into_response()
}

async fn show(
    state: AppState,
    jar: CookieJar,
    section: &'static str,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let auth = match page_auth(&state, &jar).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let notice = q.saved.as_deref().map(|k| notice_text(k).to_owned());
    render_section(&state, jar, auth, section, &q, notice, None, |_| {}).await
}

async fn overview_page(
    State(state): State<AppState>,
    jar: CookieJar,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    show(state, jar, "overview", query).await
}

async fn keys_page(
    State(state): State<AppState>,
    jar: CookieJar,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    show(state, jar, "keys", query).await
}

async fn section_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(section): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let known = section_of(&section);
    if known == "overview" {
        return super::message(
            StatusCode::NOT_FOUND,
            "No such page",
            "The Security Center has no page by that name.",
            "/security",
            "Security Center",
        );
    }
    show(state, jar, known, query).await
}

#[derive(Deserialize)]
struct AntiPhishingForm {
    csrf: String,
    code: String,
}

async fn set_anti_phishing_code(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<AntiPhishingForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .accounts
        .set_anti_phishing_code(&auth, &f.code, &client)
        .await;
    finish(&state, jar, auth, r, "anti_phishing").await
}

async fn secure(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    match state.incidents.secure(&auth, &client).await {
        Ok(report) => {
            render_section(
                &state,
                jar,
                auth,
                "incident",
                &PageQuery::default(),
                None,
                None,
                |p| p.secured = Some(report),
            )
            .await
        }
        Err(e) => security_center(&state, jar, auth, "overview", None, Some(error_text(e))).await,
    }
}

#[derive(Deserialize)]
struct SweepForm {
    csrf: String,
    kind: String,
    id: String,
    since: Millis,
}

async fn sweep_remove(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<SweepForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .incidents
        .sweep_remove(&auth, &f.kind, &f.id, &client)
        .await;
    back_to_sweep(&state, jar, auth, f.since, r).await
}

#[derive(Deserialize)]
struct SinceForm {
    csrf: String,
    since: Millis,
}

async fn sweep_remove_all(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<SinceForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .incidents
        .sweep_remove_all(&auth, Some(f.since), &client)
        .await
        .map(|results| {
            let done = results.iter().filter(|r| r.removed).count();
            let failed: Vec<String> = results
                .iter()
                .filter(|r| !r.removed)
                .map(|r| r.result.clone())
                .collect();
            if failed.is_empty() {
                format!("Removed {done} item(s).")
            } else {
                format!("Removed {done} item(s); not removed: {}", failed.join(" "))
            }
        });
    back_to_sweep(&state, jar, auth, f.since, r).await
}

async fn back_to_sweep(
    state: &AppState,
    jar: CookieJar,
    auth: SessionAuth,
    since: Millis,
    r: ServiceResult<String>,
) -> Response {
    let q = PageQuery {
        since: Some(since),
        ..PageQuery::default()
    };
    match r {
        Ok(text) => {
            render_section(state, jar, auth, "incident", &q, Some(text), None, |_| {}).await
        }
        Err(e) => {
            render_section(
                state,
                jar,
                auth,
                "incident",
                &q,
                None,
                Some(error_text(e)),
                |_| {},
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct LockForm {
    csrf: String,
    days: i64,
    early_end_days: i64,
}

async fn lock_settings(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<LockForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .incidents
        .lock_settings(
            &auth,
            f.days.saturating_mul(24),
            f.early_end_days.saturating_mul(24),
            &client,
        )
        .await
        .map(|_| ());
    finish(&state, jar, auth, r, "settings_locked").await
}

async fn end_lock(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .incidents
        .end_settings_lock(&auth, &client)
        .await
        .map(|_| ());
    finish(&state, jar, auth, r, "settings_unlock").await
}

/// The permissions ticked on a key form (`p_<name>` checkboxes).
#[derive(Deserialize)]
struct KeyForm {
    csrf: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    key_type: String,
    #[serde(default)]
    public_key: String,
    #[serde(default)]
    ip_allowlist: String,
    p_read: Option<String>,
    p_spot_trade: Option<String>,
    p_margin: Option<String>,
    p_futures: Option<String>,
    p_withdraw: Option<String>,
    p_internal_transfer: Option<String>,
}

impl KeyForm {
    fn permissions(&self) -> Vec<String> {
        [
            ("read", &self.p_read),
            ("spot_trade", &self.p_spot_trade),
            ("margin", &self.p_margin),
            ("futures", &self.p_futures),
            ("withdraw", &self.p_withdraw),
            ("internal_transfer", &self.p_internal_transfer),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(p, _)| p.to_owned())
        .collect()
    }

    fn allowlist(&self) -> Vec<String> {
        self.ip_allowlist
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

async fn create_key(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<KeyForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let new = NewKey {
        label: f.label.clone(),
        key_type: f.key_type.clone(),
        public_key: (!f.public_key.trim().is_empty()).then(|| f.public_key.clone()),
        permissions: f.permissions(),
        ip_allowlist: f.allowlist(),
    };
    match state.api_keys.create_api_key(&auth, new, &client).await {
        Ok((record, secret)) => {
            let key = record.api_key.clone();
            let notice = "The key was created. Copy its secret now: it is shown only once.";
            render_section(
                &state,
                jar,
                auth,
                "keys",
                &PageQuery::default(),
                Some(notice.to_owned()),
                None,
                |p| {
                    p.new_secret = secret.map(|s| (key, s));
                },
            )
            .await
        }
        Err(e) => security_center(&state, jar, auth, "keys", None, Some(error_text(e))).await,
    }
}

async fn key_action(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path((key, action)): Path<(String, String)>,
    PageForm(f): PageForm<KeyForm>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let (r, saved) = match action.as_str() {
        "delete" => (
            state.api_keys.delete_api_key(&auth, &key, &client).await,
            "key_deleted",
        ),
        "suspend" | "resume" => (
            state
                .incidents
                .set_key_suspended(&auth, &key, action == "suspend", &client)
                .await,
            if action == "suspend" {
                "key_suspended"
            } else {
                "key_resumed"
            },
        ),
        "update" => (
            state
                .api_keys
                .update_api_key(
                    &auth,
                    &key,
                    Some(f.permissions()),
                    Some(f.allowlist()),
                    &client,
                )
                .await
                .map(|_| ()),
            "key_updated",
        ),
        _ => {
            return super::message(
                StatusCode::NOT_FOUND,
                "No such action",
                "That action does not exist.",
                "/security/keys",
                "API keys",
            )
        }
    };
    finish(&state, jar, auth, r, saved).await
}

async fn delete_all_keys(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .api_keys
        .delete_all_api_keys(&auth, &client)
        .await
        .map(|_| ());
    finish(&state, jar, auth, r, "keys_deleted").await
}

/// "Remove and block" asks first: blocking is easy to do and easy to regret.
async fn block_confirm(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(id): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let what = match state.store.device(&auth.account.id, &id).await {
        Ok(Some(d)) => format!(
            "{} on {} ({}), last seen at IP {} in {}",
            d.browser,
            d.os,
            d.model,
            d.ip,
            Location::label(d.city.as_deref(), d.country.as_deref())
        ),
        Ok(None) => {
            return security_center(
                &state,
                jar,
                auth,
                "devices",
                None,
                Some((
                    StatusCode::NOT_FOUND,
                    "No such device on this account.".into(),
                )),
            )
            .await
        }
        Err(e) => return ApiError::from(crate::service::ServiceError::from(e)).into_response(),
    };
    ask_to_confirm(
        &state,
        jar,
        "Remove and block this device?",
        &format!("{what}. Its sessions end at once and sign-ins from it are refused from now on. You can unblock it later under Devices → Blocked devices."),
        format!("/security/devices/{id}/block/confirm"),
        "Yes, remove and block it",
        true,
    )
}

async fn block_device(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(id): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .protection
        .remove_device(&auth, &id, true, &client)
        .await
        .map(|_| ());
    finish(&state, jar, auth, r, "device_blocked").await
}

async fn unblock(
    State(state): State<AppState>,
    jar: CookieJar,
    client: Client,
    Path(fingerprint): Path<String>,
    PageForm(f): PageForm<CsrfOnly>,
) -> Response {
    let auth = guarded!(state, jar, f.csrf);
    let r = state
        .protection
        .unblock_device(&auth, &fingerprint, &client)
        .await;
    finish(&state, jar, auth, r, "unblocked").await
}

/// The page an action's notice belongs to.
fn section_for(saved: &str) -> &'static str {
    match saved {
        "device_removed" | "device_blocked" | "trusted" | "unblocked" | "signed_out_others" => {
            "devices"
        }
        "read" | "mail_on" | "mail_scheduled" => "notifications",
        "key_deleted" | "key_suspended" | "key_resumed" | "key_updated" | "keys_deleted" => "keys",
        "anti_phishing" | "totp" | "scheduled" | "cancelled" | "stepped_up" | "step_up_code"
        | "require_passkey" | "password_code" | "email_code" | "email_changed" | "password"
        | "totp_reset" | "settings_locked" | "settings_unlock" => "factors",
        _ => "overview",
    }
}

/// Back to the page of the action with a notice, or that page with the error.
pub(crate) async fn finish(
    state: &AppState,
    jar: CookieJar,
    auth: SessionAuth,
    result: ServiceResult<()>,
    saved: &str,
) -> Response {
    finish_in(state, jar, auth, result, section_for(saved), saved).await
}

/// Like [`finish`], to a page named by the form (`back`), when it is one of ours.
pub(crate) async fn finish_in(
    state: &AppState,
    jar: CookieJar,
    auth: SessionAuth,
    result: ServiceResult<()>,
    section: &str,
    saved: &str,
) -> Response {
    let section = section_of(section);
    match result {
        Ok(()) => Redirect::to(&format!("{}?saved={saved}", path_of(section))).into_response(),
        Err(e) => security_center(state, jar, auth, section, None, Some(error_text(e))).await,
    }
}

/// The sentence shown after a Security Center action (`?saved=KEY`).
pub fn notice_text(key: &str) -> &'static str {
    match key {
        "anti_phishing" => "Saved. Every mail from now on shows your anti-phishing code.",
        "totp" => "The authenticator app is on. Signing in now needs a code from it.",
        "scheduled" => "Scheduled: for your protection this takes effect in 48 hours. You can cancel it below until then.",
        "cancelled" => "Cancelled. Nothing changes.",
        "stepped_up" => "Confirmed. You can make sensitive changes for the next 5 minutes.",
        "step_up_code" => "We mailed you a 6-digit code. Enter it with your password below.",
        "require_passkey" => "Done. Signing in and withdrawals now need your passkey.",
        "password_code" => "We mailed you a 6-digit code to confirm the password change.",
        "email_code" => "We mailed a 6-digit code to the new address. Enter it below to finish the change.",
        "email_changed" => "Your address was changed. Withdrawals are locked for 48 hours; for those 48 hours the old address keeps receiving security mail and can cancel the change.",
        "password" => "Your password was changed. Every other device was signed out; withdrawals are locked for 24 hours.",
        "totp_reset" => "The authenticator app was removed and withdrawals are locked for 48 hours. Set it up again below.",
        "device_removed" => "The device was removed; its sessions ended.",
        "device_blocked" => "The device was removed and blocked; its sessions ended and sign-ins from it are refused. It is listed under Blocked devices.",
        "unblocked" => "The device may sign in again.",
        "trusted" => "The trusted-devices list was updated.",
        "signed_out_others" => "Every other device was signed out.",
        "read" => "All notifications marked as read.",
        "mail_on" => "That mail is on again.",
        "mail_scheduled" => "Scheduled: that mail switches off in 48 hours. You can cancel it until then.",
        "key_deleted" => "The key was deleted: every request with it is refused.",
        "keys_deleted" => "Every API key was deleted.",
        "key_suspended" => "The key is suspended: every request with it is refused until you resume it.",
        "key_resumed" => "The key works again.",
        "key_updated" => "The key was updated.",
        "settings_locked" => "Your security settings are locked. We mailed you a confirmation.",
        "settings_unlock" => "The lock ends early, after the delay you chose (shown above).",
        _ => "Saved.",
    }
}
