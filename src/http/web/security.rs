//! The Security Center (`/security`): one page that shows everything about the account's
//! protection, and where every action of the other pages returns, with a notice
//! ([`finish`]) or the error.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::CookieJar;
use serde::Deserialize;

use super::{csrf, csrf_ok, csrf_refused, error_text, page_auth, render, PageForm};
use crate::clock::format_utc;
use crate::domain::change::Weakening;
use crate::domain::sign_in::login_result;
use crate::geo::Location;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::service::factors::FactorOverview;
use crate::service::protection::MailPreference;
use crate::service::{Client, ServiceResult};
use crate::store::{
    Device, Login, Notification, PasskeyRecord, PendingChange, SessionAuth, WithdrawalLock,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/security", get(security_page))
        .route("/security/anti-phishing-code", post(set_anti_phishing_code))
}

struct DeviceRow {
    id: String,
    trusted: bool,
    current: bool,
    model: String,
    os: String,
    browser: String,
    ip: String,
    location: String,
    first_seen: String,
    last_active: String,
}

struct LoginRow {
    success: bool,
    result: String,
    at: String,
    ip: String,
    location: String,
    device: String,
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage {
    csrf: String,
    email: String,
    uid: String,
    anti_phishing_code: Option<String>,
    notice: Option<String>,
    error: Option<String>,
    history_days: i64,
    devices: Vec<DeviceRow>,
    logins: Vec<LoginRow>,
    geo_attribution: bool,
    totp_enabled: bool,
    backup_codes_left: i64,
    has_second_factor: bool,
    require_passkey: bool,
    passkeys: Vec<PasskeyRow>,
    pending: Vec<PendingRow>,
    locks: Vec<LockRow>,
    stepped_up_until: Option<String>,
    notifications: Vec<NotificationRow>,
    unread: usize,
    mail_prefs: Vec<PrefRow>,
    /// An approved recovery: a new second factor comes before anything else.
    recovery_required: bool,
    /// An email change waiting for its code: the new address.
    pending_email: Option<String>,
}

struct PrefRow {
    kind: &'static str,
    description: &'static str,
    enabled: bool,
    turning_off_at: Option<String>,
}

struct NotificationRow {
    subject: String,
    body: String,
    at: String,
    unread: bool,
}

struct PasskeyRow {
    id: String,
    name: String,
    created: String,
    last_used: String,
    removal_pending: bool,
}

struct PendingRow {
    id: String,
    what: String,
    effective: String,
}

struct LockRow {
    reason: String,
    until: String,
}

/// The Security Center page, after an action with its notice, or with the error (status
/// and sentence) that refused it.
pub(crate) async fn security_center(
    state: &AppState,
    jar: CookieJar,
    auth: SessionAuth,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let shown = match Shown::load(state, &auth).await {
        Ok(shown) => shown,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (jar, csrf) = csrf(state, jar);
    let status = error.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    let page = SecurityPage::new(state, auth, shown, csrf, notice, error.map(|(_, t)| t));
    (jar, render(status, &page)).into_response()
}

/// What the page shows of the account, read through the services (one read per area).
struct Shown {
    devices: Vec<Device>,
    overview: FactorOverview,
    notifications: Vec<Notification>,
    mail_prefs: Vec<MailPreference>,
    logins: Vec<Login>,
    pending_email: Option<String>,
}

impl Shown {
    async fn load(state: &AppState, auth: &SessionAuth) -> ServiceResult<Self> {
        Ok(Self {
            devices: state.sessions.devices(auth).await?,
            overview: state.factors.factor_overview(auth).await?,
            notifications: state.protection.notifications(auth, 30).await?,
            mail_prefs: state.protection.mail_preferences(auth).await?,
            logins: state.sessions.logins(auth, 50).await?,
            pending_email: state.email_change.pending(auth).await?.map(|(e, _)| e),
        })
    }
}

impl SecurityPage {
    fn new(
        state: &AppState,
        auth: SessionAuth,
        shown: Shown,
        csrf: String,
        notice: Option<String>,
        error: Option<String>,
    ) -> Self {
        let Shown {
            devices,
            overview,
            notifications,
            mail_prefs,
            logins,
            pending_email,
        } = shown;
        let current = auth.session.device_id;
        Self {
            recovery_required: auth.account.recovery_required,
            pending_email,
            csrf,
            email: auth.account.email,
            uid: auth.account.uid,
            anti_phishing_code: auth.account.anti_phishing_code,
            notice,
            error,
            history_days: state.rules.device_history_days,
            devices: devices
                .into_iter()
                .map(|d| DeviceRow::new(d, &current))
                .collect(),
            logins: logins.into_iter().map(LoginRow::from).collect(),
            geo_attribution: state.geo.is_loaded(),
            totp_enabled: overview.factors.totp,
            backup_codes_left: overview.factors.backup_codes_left,
            has_second_factor: overview.factors.any(),
            require_passkey: overview.require_passkey,
            passkeys: PasskeyRow::all(&overview),
            pending: overview
                .pending
                .iter()
                .map(|c| PendingRow::new(c, &overview.passkeys))
                .collect(),
            locks: overview
                .withdrawal_locks
                .iter()
                .map(LockRow::from)
                .collect(),
            stepped_up_until: overview.stepped_up_until.map(format_utc),
            mail_prefs: mail_prefs.into_iter().map(PrefRow::from).collect(),
            unread: notifications.iter().filter(|n| n.read_at.is_none()).count(),
            notifications: notifications
                .into_iter()
                .map(NotificationRow::from)
                .collect(),
        }
    }
}

impl DeviceRow {
    fn new(d: Device, current: &str) -> Self {
        Self {
            trusted: d.trusted_at.is_some(),
            current: d.id == current,
            id: d.id.clone(),
            location: Location::label(d.city.as_deref(), d.country.as_deref()),
            model: d.model,
            os: d.os,
            browser: d.browser,
            ip: d.ip,
            first_seen: format_utc(d.first_seen),
            last_active: format_utc(d.last_active),
        }
    }
}

impl From<Login> for LoginRow {
    fn from(l: Login) -> Self {
        Self {
            success: l.success,
            result: login_result(&l.reason, l.method),
            at: format_utc(l.at),
            location: Location::label(l.city.as_deref(), l.country.as_deref()),
            ip: l.ip,
            device: format!("{} · {} · {}", l.model, l.os, l.browser),
        }
    }
}

impl PasskeyRow {
    /// Every passkey, each marked when its removal is pending.
    fn all(overview: &FactorOverview) -> Vec<Self> {
        overview
            .passkeys
            .iter()
            .map(|p| Self {
                id: p.id.clone(),
                name: p.name.clone(),
                created: format_utc(p.created_at),
                last_used: p
                    .last_used_at
                    .map_or_else(|| "never".to_owned(), format_utc),
                removal_pending: overview
                    .pending
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
            effective: format_utc(c.effective_at),
        }
    }
}

impl From<&WithdrawalLock> for LockRow {
    fn from(l: &WithdrawalLock) -> Self {
        Self {
            reason: match l.reason.as_str() {
                "password_changed" => "password changed".to_owned(),
                "second_factor_reset" => "authenticator reset".to_owned(),
                other => other.replace('_', " "),
            },
            until: format_utc(l.until),
        }
    }
}

impl From<MailPreference> for PrefRow {
    fn from(p: MailPreference) -> Self {
        Self {
            kind: p.kind,
            description: p.description,
            enabled: p.enabled,
            turning_off_at: p.turning_off_at.map(format_utc),
        }
    }
}

impl From<Notification> for NotificationRow {
    fn from(n: Notification) -> Self {
        Self {
            unread: n.read_at.is_none(),
            subject: n.subject,
            body: n.body,
            at: format_utc(n.created_at),
        }
    }
}

#[derive(Deserialize)]
struct SecurityQuery {
    saved: Option<String>,
}

async fn security_page(
    State(state): State<AppState>,
    jar: CookieJar,
    query: Result<Query<SecurityQuery>, QueryRejection>,
) -> Response {
    let auth = match page_auth(&state, &jar).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let notice = query
        .ok()
        .and_then(|Query(q)| q.saved)
        .map(|key| notice_text(&key).to_owned());
    security_center(&state, jar, auth, notice, None).await
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
    if !csrf_ok(&state, &jar, &f.csrf) {
        return csrf_refused();
    }
    let auth = match page_auth(&state, &jar).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match state
        .accounts
        .set_anti_phishing_code(&auth, &f.code, &client)
        .await
    {
        Ok(()) => Redirect::to("/security?saved=anti_phishing").into_response(),
        Err(e) => security_center(&state, jar, auth, None, Some(error_text(e))).await,
    }
}

/// Back to the Security Center with a notice, or the Security Center with the error.
pub(crate) async fn finish(
    state: &AppState,
    jar: CookieJar,
    auth: SessionAuth,
    result: crate::service::ServiceResult<()>,
    saved: &str,
) -> Response {
    match result {
        Ok(()) => Redirect::to(&format!("/security?saved={saved}")).into_response(),
        Err(e) => security_center(state, jar, auth, None, Some(error_text(e))).await,
    }
}

/// The sentence shown after a Security Center action (`/security?saved=KEY`).
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
        "device_blocked" => "The device was removed and blocked; its sessions ended and sign-ins from it are refused.",
        "trusted" => "The trusted-devices list was updated.",
        "signed_out_others" => "Every other device was signed out.",
        "read" => "All notifications marked as read.",
        "mail_on" => "That mail is on again.",
        _ => "Saved.",
    }
}
