//! The operator console: operators (added by an admin or `rampart operator add`, enrolled
//! through a single-use link with a password and an authenticator app), their sign-in,
//! sessions (15 minutes idle, 8 hours at most) and roles.

use std::sync::Arc;

use serde_json::json;

use super::hasher::Hasher;
use super::throttles::Throttles;
use super::{Client, Clocked, ServiceError, ServiceResult};
use crate::clock::{Millis, SharedClock, MINUTE};
use crate::domain::email::Email;
use crate::domain::operator::{
    Operator, Power, Role, ENROLMENT_TTL, SESSION_ABSOLUTE, SESSION_IDLE,
};
use crate::domain::password::{self, NewPassword};
use crate::domain::rules::Rules;
use crate::domain::secret::{random_token, token_hash, SecretBox, ServerKey};
use crate::domain::totp;
use crate::domain::Invalid;
use crate::store::{Effects, OperatorRecord, SharedStore, StoreError};

/// Last-active is written at most this often (well inside the 15-minute idle limit).
const TOUCH_INTERVAL: Millis = MINUTE;

/// A new operator and the one-time link that enrols them.
#[derive(Debug, Clone)]
pub struct AddedOperator {
    pub operator: Operator,
    /// `{public_url}/console/enrol/{token}`: shown once, works once, for 24 hours.
    pub enrolment_link: String,
    pub expires_at: Millis,
}

/// The first step of an enrolment: what the authenticator app needs.
#[derive(Debug, Clone)]
pub struct OperatorTotp {
    /// Base32, for typing into the app.
    pub totp_secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// A console session just opened: the token goes into the `rampart_console` cookie.
#[derive(Debug, Clone)]
pub struct OperatorSignedIn {
    pub token: String,
    pub operator: Operator,
}

/// An operator as listed to admins and by `rampart operator list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OperatorListing {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub enrolled_at: Option<Millis>,
    pub disabled_at: Option<Millis>,
    pub created_at: Millis,
}

impl From<&OperatorRecord> for OperatorListing {
    fn from(r: &OperatorRecord) -> Self {
        Self {
            id: r.id.clone(),
            email: r.email.clone(),
            role: r.role,
            enrolled_at: r.enrolled_at,
            disabled_at: r.disabled_at,
            created_at: r.created_at,
        }
    }
}

/// Operators, enrolment, console sign-in and sessions.
pub struct Operators {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) key: ServerKey,
    pub(crate) rules: Rules,
    pub(crate) public_url: String,
    pub(crate) secret_box: Arc<SecretBox>,
    pub(crate) hasher: Arc<Hasher>,
    pub(crate) throttles: Arc<Throttles>,
}

impl Clocked for Operators {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

/// The refusal for anything wrong at the console's sign-in: unknown, disabled, not yet
/// enrolled, wrong password or wrong code all look alike.
fn wrong_credentials() -> ServiceError {
    ServiceError::InvalidCredentials
}

fn enrolment_invalid() -> ServiceError {
    ServiceError::NotFound(
        "enrolment_invalid",
        "This enrolment link is not valid, was already used or has expired (links work once, for 24 hours). Ask an admin for a new one.".into(),
    )
}

/// Refuses unless the operator's role has `power` (403 `role_missing`).
pub fn require(operator: &Operator, power: Power) -> ServiceResult<()> {
    if operator.may(power) {
        return Ok(());
    }
    Err(ServiceError::Forbidden(
        "role_missing",
        format!(
            "This needs the {} role; you are signed in as {}.",
            power.least_role(),
            operator.role
        ),
    ))
}

impl Operators {
    fn enrolment_link(&self, token: &str) -> String {
        format!(
            "{}/console/enrol/{token}",
            self.public_url.trim_end_matches('/')
        )
    }

    /// Adds an operator and answers their one-time enrolment link. `by` is the admin
    /// (`None` from the command line, audited as `system`).
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn add(
        &self,
        email: &str,
        role: &str,
        by: Option<&Operator>,
    ) -> ServiceResult<AddedOperator> {
        let email = Email::parse(email)?;
        let role = Role::parse(role.trim()).ok_or_else(|| {
            Invalid::new(
                "invalid_role",
                "The role must be support, reviewer or admin.",
            )
        })?;
        let now = self.now();
        let record = OperatorRecord {
            id: uuid::Uuid::new_v4().to_string(),
            email: email.as_str().to_owned(),
            role,
            password_hash: None,
            totp_secret: None,
            totp_last_step: 0,
            enrolled_at: None,
            disabled_at: None,
            created_at: now,
        };
        let token = random_token();
        let expires_at = now + ENROLMENT_TTL;
        let actor = by.map_or_else(|| "system".to_owned(), Operator::actor);
        let fx = Effects::audit(self.event(
            None,
            None,
            actor,
            "operator.added",
            json!({ "operator": record.email, "role": role.as_str() }),
        ));
        match self
            .store
            .insert_operator(&record, &token_hash(&token), expires_at, &fx)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(
                    "operator_exists",
                    "An operator with this address already exists.".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        Ok(AddedOperator {
            operator: record.operator(),
            enrolment_link: self.enrolment_link(&token),
            expires_at,
        })
    }

    /// Every operator, for admins and the command line.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn list(&self) -> ServiceResult<Vec<OperatorListing>> {
        Ok(self
            .store
            .operators()
            .await?
            .iter()
            .map(OperatorListing::from)
            .collect())
    }

    /// The operator behind a usable (unused, unexpired) enrolment link.
    async fn usable_enrolment(
        &self,
        token: &str,
    ) -> ServiceResult<(crate::store::EnrolmentRecord, OperatorRecord)> {
        if token.is_empty() || token.len() > 128 {
            return Err(enrolment_invalid());
        }
        let Some(link) = self.store.operator_enrolment(&token_hash(token)).await? else {
            return Err(enrolment_invalid());
        };
        if link.used_at.is_some() || self.now() >= link.expires_at {
            return Err(enrolment_invalid());
        }
        let Some(operator) = self.store.operator_by_id(&link.operator_id).await? else {
            return Err(enrolment_invalid());
        };
        if operator.disabled_at.is_some() {
            return Err(enrolment_invalid());
        }
        Ok((link, operator))
    }

    /// Whether an enrolment link can still be used, and for whom (the enrolment page).
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn enrolment_state(&self, token: &str) -> ServiceResult<Operator> {
        Ok(self.usable_enrolment(token).await?.1.operator())
    }

    /// Enrolment, first step: chooses the password and a fresh authenticator seed (both
    /// kept with the link until a code confirms them). May be repeated until confirmed.
    #[tracing::instrument(level = "info", skip_all, fields(operator), err(level = "info"))]
    pub async fn enrol(&self, token: &str, new_password: &str) -> ServiceResult<OperatorTotp> {
        let (_, operator) = self.usable_enrolment(token).await?;
        tracing::Span::current().record("operator", operator.id.as_str());
        let email = Email::parse(&operator.email)?;
        let chosen = NewPassword::parse(new_password, &email, &self.rules)?;
        let phc = self
            .hasher
            .argon2(move || password::hash(chosen.expose()))
            .await??;
        let secret = totp::new_secret();
        let sealed = self.secret_box.seal(&secret, &operator.id)?;
        let (totp_secret, otpauth_uri) =
            totp::enrolment(&secret, &format!("console {}", operator.email))?;
        let qr_svg = totp::qr_svg(&otpauth_uri)?;
        if !self
            .store
            .stage_operator_enrolment(&token_hash(token), &phc, &sealed)
            .await?
        {
            return Err(enrolment_invalid());
        }
        Ok(OperatorTotp {
            totp_secret,
            otpauth_uri,
            qr_svg,
        })
    }

    /// Enrolment, second step: a code from the app proves the seed; the link is spent and
    /// the operator can sign in. Wrong codes are throttled per link.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn enrol_confirm(&self, token: &str, code: &str) -> ServiceResult<Operator> {
        let (link, operator) = self.usable_enrolment(token).await?;
        let Some(sealed) = link.totp_secret.as_deref() else {
            return Err(ServiceError::Conflict(
                "enrolment_not_started",
                "Choose a password first (POST /api/v1/console/enrol).".into(),
            ));
        };
        let key = format!("op:enrol:{}", token_hash(token));
        self.throttles
            .throttle(&[(key.clone(), self.throttles.account_policy())])
            .await?;
        let secret = self.secret_box.open(sealed, &operator.id)?;
        let Some(step) = totp::verify(&secret, code, self.now(), 0) else {
            return Err(ServiceError::InvalidCode { attempts_left: 0 });
        };
        let fx = Effects::audit(self.event(
            None,
            None,
            operator.operator().actor(),
            "operator.enrolled",
            json!({ "role": operator.role.as_str() }),
        ));
        if !self
            .store
            .complete_operator_enrolment(&token_hash(token), step, self.now(), &fx)
            .await?
        {
            return Err(enrolment_invalid());
        }
        self.store.throttle_clear(&key).await?;
        Ok(operator.operator())
    }

    /// Console sign-in: password and authenticator code together, throttled per address
    /// and per source IP before any check; one answer for every failure.
    #[tracing::instrument(level = "info", skip_all, fields(operator), err(level = "info"))]
    pub async fn sign_in(
        &self,
        email: &str,
        password_given: &str,
        code: &str,
        client: &Client,
    ) -> ServiceResult<OperatorSignedIn> {
        let email = email.trim().to_lowercase();
        let ip_key = format!("op:ip:{}", client.ip);
        let email_key = format!("op:email:{}", self.key.mac("operator-throttle", &email));
        self.throttles
            .throttle(&[
                (ip_key.clone(), self.throttles.ip_policy()),
                (email_key.clone(), self.throttles.account_policy()),
            ])
            .await?;
        let record = match Email::parse(&email) {
            Ok(e) => self.store.operator_by_email(e.as_str()).await?,
            Err(_) => None,
        };
        let usable = record
            .filter(|r| r.disabled_at.is_none() && r.enrolled_at.is_some())
            .and_then(|r| {
                let hash = r.password_hash.clone()?;
                let seed = r.totp_secret.clone()?;
                Some((r, hash, seed))
            });
        let stored = usable
            .as_ref()
            .map_or_else(|| self.hasher.dummy_hash.clone(), |(_, h, _)| h.clone());
        let attempt = password_given.to_owned();
        let password_ok = self
            .hasher
            .argon2(move || password::verify(&attempt, &stored))
            .await?;
        let Some((record, _, sealed)) = usable.filter(|_| password_ok) else {
            self.audit_refused(&email, client, "wrong_password_or_unknown")
                .await?;
            return Err(wrong_credentials());
        };
        tracing::Span::current().record("operator", record.id.as_str());
        let secret = self.secret_box.open(&sealed, &record.id)?;
        let step = totp::verify(&secret, code, self.now(), record.totp_last_step);
        let fresh = match step {
            Some(step) => self.store.operator_use_step(&record.id, step).await?,
            None => false,
        };
        if !fresh {
            self.audit_refused(&email, client, "wrong_code").await?;
            return Err(wrong_credentials());
        }
        self.store.throttle_settle(&[email_key], &[ip_key]).await?;
        let operator = record.operator();
        let token = random_token();
        let fx = Effects::audit(self.event(
            Some(client),
            None,
            operator.actor(),
            "operator.signed_in",
            json!({}),
        ));
        self.store
            .open_operator_session(&token_hash(&token), &operator.id, self.now(), &fx)
            .await?;
        Ok(OperatorSignedIn { token, operator })
    }

    async fn audit_refused(&self, email: &str, client: &Client, why: &str) -> ServiceResult<()> {
        let fx = Effects::audit(self.event(
            Some(client),
            None,
            "anonymous".to_owned(),
            "operator.signin_failed",
            json!({ "email_mac": self.key.mac("operator-audit", email), "reason": why }),
        ));
        self.store.append_audit(&fx).await?;
        Ok(())
    }

    /// The operator behind a console session cookie: refused once disabled, after 15
    /// minutes without a request, and 8 hours after sign-in.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn authenticate(&self, token: &str) -> ServiceResult<Operator> {
        let id = token_hash(token);
        let Some(session) = self.store.operator_session(&id).await? else {
            return Err(ServiceError::Unauthenticated);
        };
        let operator = session.operator.operator();
        if session.operator.disabled_at.is_some() {
            return Err(ServiceError::Unauthenticated);
        }
        let now = self.now();
        let idle = now - session.last_active_at >= SESSION_IDLE;
        if idle || now - session.created_at >= SESSION_ABSOLUTE {
            let fx = Effects::audit(self.event(
                None,
                None,
                "system".to_owned(),
                "operator.session_expired",
                json!({
                    "operator": operator.email,
                    "reason": if idle { "idle_timeout" } else { "absolute_timeout" },
                }),
            ));
            self.store.end_operator_session(&id, &fx).await?;
            return Err(ServiceError::SessionExpired);
        }
        if now - session.last_active_at >= TOUCH_INTERVAL {
            self.store.touch_operator_session(&id, now).await?;
        }
        Ok(operator)
    }

    /// Ends the console session behind `token`.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn sign_out(
        &self,
        operator: &Operator,
        token: &str,
        client: &Client,
    ) -> ServiceResult<()> {
        let fx = Effects::audit(self.event(
            Some(client),
            None,
            operator.actor(),
            "operator.signed_out",
            json!({}),
        ));
        self.store
            .end_operator_session(&token_hash(token), &fx)
            .await?;
        Ok(())
    }

    /// Disables an operator by id: every session of theirs ends at once, sign-in and
    /// unused enrolment links are refused from then on.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn disable(&self, operator_id: &str, by: Option<&Operator>) -> ServiceResult<()> {
        let Some(target) = self.store.operator_by_id(operator_id).await? else {
            return Err(ServiceError::NotFound(
                "operator_not_found",
                "No such operator.".into(),
            ));
        };
        if by.is_some_and(|b| b.id == target.id) {
            return Err(ServiceError::Conflict(
                "cannot_disable_self",
                "You cannot disable yourself; ask another admin.".into(),
            ));
        }
        let actor = by.map_or_else(|| "system".to_owned(), Operator::actor);
        let fx = Effects::audit(self.event(
            None,
            None,
            actor,
            "operator.disabled",
            json!({ "operator": target.email }),
        ));
        self.store
            .disable_operator(&target.id, self.now(), &fx)
            .await?;
        Ok(())
    }

    /// Disables an operator by address (the command line).
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn disable_by_email(&self, email: &str) -> ServiceResult<()> {
        let email = Email::parse(email)?;
        let Some(target) = self.store.operator_by_email(email.as_str()).await? else {
            return Err(ServiceError::NotFound(
                "operator_not_found",
                "No operator has this address.".into(),
            ));
        };
        self.disable(&target.id, None).await
    }
}

// ---- account lookup and operator freeze ------------------------------------------------

/// Why and by whom the account was frozen, from its audit events.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FreezeInfo {
    pub at: Millis,
    /// `account:<uid>` (the owner), `operator:<email>`.
    pub by: String,
    /// How: "from the Security Center", "with the link in a security mail", "by support".
    pub via: Option<String>,
    /// The operator's reason, when support froze it.
    pub reason: Option<String>,
}

/// The account as the console shows it; never a secret (no password hash, no
/// anti-phishing code: only whether one is set).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountProfile {
    pub uid: String,
    pub email: String,
    pub created_at: Millis,
    pub email_confirmed_at: Option<Millis>,
    pub frozen_at: Option<Millis>,
    pub frozen: Option<FreezeInfo>,
    pub anti_phishing_code_set: bool,
    pub require_passkey: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LookupDevice {
    pub id: String,
    pub model: String,
    pub os: String,
    pub browser: String,
    pub ip: String,
    pub city: Option<String>,
    pub country: Option<String>,
    pub first_seen: Millis,
    pub last_active: Millis,
    pub trusted: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LookupSignIn {
    pub at: Millis,
    pub success: bool,
    pub reason: String,
    pub method: String,
    pub ip: String,
    pub city: Option<String>,
    pub country: Option<String>,
    pub device: String,
}

/// An API key without its secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LookupKey {
    pub api_key: String,
    pub label: String,
    pub key_type: String,
    pub permissions: String,
    pub created_at: Millis,
    pub created_ip: String,
    pub expires_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    pub last_used_ip: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LookupLock {
    pub reason: String,
    pub created_at: Millis,
    pub until: Millis,
}

/// One audit event of the account, with whether its own hash and its link check out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LookupEvent {
    pub seq: i64,
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub detail: serde_json::Value,
    /// The hash recomputed from the event's content matches the stored one, and the
    /// stored previous hash is the hash of the event before it in the log.
    pub verified: bool,
}

/// The verdict on the account's events.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChainVerdict {
    pub intact: bool,
    pub events_checked: usize,
    /// The first (oldest) event that fails, and why.
    pub broken_at: Option<i64>,
    pub problem: Option<String>,
}

/// A ticket as the lookup lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LookupTicket {
    pub id: String,
    pub status: &'static str,
    pub requests: Vec<&'static str>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Everything the console shows about one account.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountLookup {
    pub profile: AccountProfile,
    pub devices: Vec<LookupDevice>,
    pub sign_ins: Vec<LookupSignIn>,
    pub api_keys: Vec<LookupKey>,
    pub withdrawal_locks: Vec<LookupLock>,
    pub recovery_requests: Vec<crate::store::RecoveryRequestSummary>,
    /// Support tickets, newest first.
    pub tickets: Vec<LookupTicket>,
    /// Newest first.
    pub audit_events: Vec<LookupEvent>,
    pub audit_chain: ChainVerdict,
}

/// How many of the account's latest events and sign-ins the lookup shows.
const LOOKUP_EVENTS: i64 = 200;
const LOOKUP_SIGN_INS: i64 = 50;
/// An operator's freeze reason: required, and short enough for a mail's first line.
const REASON_MAX_CHARS: usize = 500;

/// Account lookup and the operator's freeze.
pub struct Console {
    pub(crate) store: SharedStore,
    pub(crate) clock: SharedClock,
    pub(crate) rules: Rules,
    pub(crate) notices: Arc<super::notices::Notices>,
    pub(crate) invalidator: Arc<super::key_cache::CacheInvalidator>,
}

impl Clocked for Console {
    fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

fn account_not_found() -> ServiceError {
    ServiceError::NotFound(
        "account_not_found",
        "No account has this UID or email address.".into(),
    )
}

/// Checks each event's own hash and its link to the event before it in the whole log
/// (`prev_hashes`: the stored hash of each event `seq - 1`).
pub(crate) fn verify_events(
    events: &[crate::domain::audit::AuditRecord],
    prev_hashes: &std::collections::HashMap<i64, String>,
) -> (Vec<bool>, ChainVerdict) {
    use crate::domain::audit::GENESIS;
    let mut marks = Vec::with_capacity(events.len());
    let mut first_bad: Option<(i64, String)> = None;
    for e in events {
        let altered = e.expected_hash() != e.hash;
        let expected_prev = if e.seq == 1 {
            Some(GENESIS.to_owned())
        } else {
            prev_hashes.get(&(e.seq - 1)).cloned()
        };
        let unlinked = expected_prev.as_deref() != Some(e.prev_hash.as_str());
        marks.push(!altered && !unlinked);
        let why = if altered {
            Some(format!(
                "event {} was altered after it was written (its hash does not match its content)",
                e.seq
            ))
        } else if unlinked {
            Some(format!(
                "event {} does not follow the event before it in the log (events removed or reordered)",
                e.seq
            ))
        } else {
            None
        };
        if let Some(why) = why {
            if first_bad.as_ref().is_none_or(|(seq, _)| e.seq < *seq) {
                first_bad = Some((e.seq, why));
            }
        }
    }
    let verdict = ChainVerdict {
        intact: first_bad.is_none(),
        events_checked: events.len(),
        broken_at: first_bad.as_ref().map(|(s, _)| *s),
        problem: first_bad.map(|(_, w)| w),
    };
    (marks, verdict)
}

impl Console {
    async fn find(&self, q: &str) -> ServiceResult<crate::store::Account> {
        let q = q.trim();
        if q.is_empty() || q.len() > 320 {
            return Err(account_not_found());
        }
        let account = if q.contains('@') {
            match Email::parse(q) {
                Ok(e) => self.store.account_by_email(e.as_str()).await?,
                Err(_) => None,
            }
        } else {
            self.store.account_by_uid(q).await?
        };
        account.ok_or_else(account_not_found)
    }

    /// Looks an account up by UID or email (Lookup). Every lookup is audited on the
    /// account, with the operator as the actor, before anything is shown.
    #[tracing::instrument(level = "info", skip_all, fields(operator = %operator.id, account), err(level = "info"))]
    pub async fn lookup(
        &self,
        operator: &Operator,
        q: &str,
        client: &Client,
    ) -> ServiceResult<AccountLookup> {
        require(operator, Power::Lookup)?;
        let account = self.find(q).await?;
        tracing::Span::current().record("account", account.id.as_str());
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            operator.actor(),
            "console.lookup",
            json!({}),
        ));
        self.store.append_audit(&fx).await?;
        let now = self.now();
        let since = now - self.rules.device_history_days * crate::clock::DAY;
        let devices = self.store.devices(&account.id, since).await?;
        let logins = self.store.logins(&account.id, LOOKUP_SIGN_INS).await?;
        let keys = self.store.api_keys(&account.id).await?;
        let locks = self.store.withdrawal_locks(&account.id, now).await?;
        let recoveries = self.store.recovery_requests_of(&account.id).await?;
        let tickets = self.store.tickets_of(&account.id).await?;
        let events = self
            .store
            .audit_for_account(&account.id, LOOKUP_EVENTS)
            .await?;
        let wanted: Vec<i64> = events
            .iter()
            .map(|e| e.seq - 1)
            .filter(|s| *s > 0)
            .collect();
        let prev: std::collections::HashMap<i64, String> = self
            .store
            .audit_hashes(&wanted)
            .await?
            .into_iter()
            .collect();
        let (marks, verdict) = verify_events(&events, &prev);
        let frozen = account.frozen_at.map(|at| {
            let event = events.iter().find(|e| e.action == "account.frozen");
            let detail: serde_json::Value = event
                .and_then(|e| serde_json::from_str(&e.detail).ok())
                .unwrap_or_default();
            FreezeInfo {
                at,
                by: event.map_or_else(|| "unknown".to_owned(), |e| e.actor.clone()),
                via: detail["via"].as_str().map(str::to_owned),
                reason: detail["reason"].as_str().map(str::to_owned),
            }
        });
        Ok(AccountLookup {
            profile: AccountProfile {
                uid: account.uid.clone(),
                email: account.email.clone(),
                created_at: account.created_at,
                email_confirmed_at: account.email_confirmed_at,
                frozen_at: account.frozen_at,
                frozen,
                anti_phishing_code_set: account.anti_phishing_code.is_some(),
                require_passkey: account.require_passkey,
            },
            devices: devices
                .into_iter()
                .map(|d| LookupDevice {
                    trusted: d.trusted_at.is_some(),
                    id: d.id,
                    model: d.model,
                    os: d.os,
                    browser: d.browser,
                    ip: d.ip,
                    city: d.city,
                    country: d.country,
                    first_seen: d.first_seen,
                    last_active: d.last_active,
                })
                .collect(),
            sign_ins: logins
                .into_iter()
                .map(|l| LookupSignIn {
                    at: l.at,
                    success: l.success,
                    reason: l.reason,
                    method: l.method.as_str().to_owned(),
                    ip: l.ip,
                    city: l.city,
                    country: l.country,
                    device: format!("{} on {} ({})", l.browser, l.os, l.model),
                })
                .collect(),
            api_keys: keys
                .into_iter()
                .filter(|k| k.deleted_at.is_none())
                .map(|k| LookupKey {
                    permissions: k.access.permissions_csv(),
                    key_type: k.key_type.map_or("unknown", |t| t.as_str()).to_owned(),
                    api_key: k.api_key,
                    label: k.label,
                    created_at: k.created_at,
                    created_ip: k.created_ip,
                    expires_at: k.expires_at,
                    last_used_at: k.last_used_at,
                    last_used_ip: k.last_used_ip,
                })
                .collect(),
            withdrawal_locks: locks
                .into_iter()
                .map(|l| LookupLock {
                    reason: l.reason,
                    created_at: l.created_at,
                    until: l.until,
                })
                .collect(),
            recovery_requests: recoveries,
            tickets: tickets
                .into_iter()
                .map(|t| LookupTicket {
                    status: t.status.as_str(),
                    requests: t.requests.iter().map(|r| r.as_str()).collect(),
                    id: t.id,
                    created_at: t.created_at,
                    updated_at: t.updated_at,
                })
                .collect(),
            audit_events: events
                .into_iter()
                .zip(marks)
                .map(|(e, verified)| LookupEvent {
                    detail: serde_json::from_str(&e.detail)
                        .unwrap_or(serde_json::Value::String(e.detail.clone())),
                    seq: e.seq,
                    at: e.at,
                    actor: e.actor,
                    action: e.action,
                    ip: e.ip,
                    device: e.device,
                    verified,
                })
                .collect(),
            audit_chain: verdict,
        })
    }

    /// Freezes an account (Freeze) with a mandatory reason: the same freeze as the
    /// owner's (every session ends, every key is refused at once, idempotent), audited
    /// with the operator and the reason, and told to the owner by mail and in the inbox.
    #[tracing::instrument(level = "info", skip_all, fields(operator = %operator.id, account), err(level = "info"))]
    pub async fn freeze(
        &self,
        operator: &Operator,
        uid: &str,
        reason: &str,
        client: &Client,
    ) -> ServiceResult<crate::store::FreezeOutcome> {
        require(operator, Power::Freeze)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > REASON_MAX_CHARS {
            return Err(Invalid::new(
                "reason_required",
                format!("Give the reason for the freeze (1 to {REASON_MAX_CHARS} characters); the owner is told it."),
            )
            .into());
        }
        let account = self
            .store
            .account_by_uid(uid.trim())
            .await?
            .ok_or_else(account_not_found)?;
        tracing::Span::current().record("account", account.id.as_str());
        let now = self.now();
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            operator.actor(),
            "account.frozen",
            json!({ "via": "by support", "reason": reason }),
        ))
        .with_mail(self.notices.notice(
            &account,
            "Support froze your account",
            &format!(
                "Support froze your account: {reason}\n\n\
                 Frozen at {}. Done: every session was ended, every API key is refused, sign-ins are refused, and held withdrawals are cancelled.\n\
                 To get your account back, contact support: a person reviews the recovery, never sooner than 2 hours after the freeze.",
                crate::clock::format_utc(now)
            ),
        ));
        let outcome = self.store.freeze_account(&account.id, now, &fx).await?;
        self.invalidator
            .invalidate_keys(&format!("account:{}", account.id))
            .await?;
        Ok(outcome)
    }
}

/// An account reached by following transfers.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MoneyNode {
    pub uid: String,
    pub email: String,
    pub frozen: bool,
    /// Hops from the account followed (0: that account).
    pub depth: u32,
}

/// One transfer on the trail.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MoneyEdge {
    pub transfer_id: String,
    pub from_uid: String,
    pub to_uid: String,
    pub asset: String,
    pub amount: String,
    pub at: Millis,
    pub depth: u32,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MoneyGraph {
    pub nodes: Vec<MoneyNode>,
    pub edges: Vec<MoneyEdge>,
    /// More transfers exist than were followed (the edge cap was reached).
    pub capped: bool,
}

/// What freezing one receiving account did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ReceiverFrozen {
    pub uid: String,
    /// `frozen`, `already_frozen` or `unknown_account`.
    pub status: &'static str,
    pub case_id: Option<String>,
}

/// The trail stops after this many transfers.
pub const MONEY_MAX_EDGES: usize = 500;

impl Console {
    /// The internal transfers out of an account since `since`, followed up to `hops` deep
    /// (breadth first: each hop follows only transfers made after the money arrived).
    #[tracing::instrument(level = "info", skip_all, fields(account = tracing::field::Empty), err(level = "info"))]
    pub async fn money_graph(
        &self,
        operator: &Operator,
        uid: &str,
        hops: u32,
        since: Option<Millis>,
        client: &Client,
    ) -> ServiceResult<MoneyGraph> {
        require(operator, Power::Lookup)?;
        let hops = hops.clamp(1, 5);
        let account = self
            .store
            .account_by_uid(uid.trim())
            .await?
            .ok_or_else(account_not_found)?;
        tracing::Span::current().record("account", account.id.as_str());
        let since = since.unwrap_or_else(|| self.now() - 30 * crate::clock::DAY);
        let fx = Effects::audit(self.event(
            Some(client),
            Some(&account.id),
            operator.actor(),
            "console.money_graph",
            json!({"hops": hops, "since": since}),
        ));
        self.store.append_audit(&fx).await?;
        let mut nodes = vec![MoneyNode {
            uid: account.uid.clone(),
            email: account.email.clone(),
            frozen: account.frozen_at.is_some(),
            depth: 0,
        }];
        let mut known: std::collections::HashMap<String, String> =
            [(account.id.clone(), account.uid.clone())].into();
        // Each frontier account with the time money first reached it.
        let mut frontier = vec![(account.id.clone(), since)];
        let mut edges = Vec::new();
        let mut capped = false;
        for depth in 1..=hops {
            if frontier.is_empty() || capped {
                break;
            }
            let ids: Vec<String> = frontier.iter().map(|(id, _)| id.clone()).collect();
            let earliest = frontier.iter().map(|(_, at)| *at).min().unwrap_or(since);
            let transfers = self
                .store
                .transfers_out_of(&ids, earliest, (MONEY_MAX_EDGES + 1) as i64)
                .await?;
            let mut next = Vec::new();
            for t in transfers {
                let reached_at = frontier
                    .iter()
                    .find(|(id, _)| *id == t.from_account_id)
                    .map_or(since, |(_, at)| *at);
                if t.created_at < reached_at {
                    continue;
                }
                if edges.len() >= MONEY_MAX_EDGES {
                    capped = true;
                    break;
                }
                if !known.contains_key(&t.to_account_id) {
                    let Some(to) = self.store.account_by_id(&t.to_account_id).await? else {
                        continue;
                    };
                    known.insert(to.id.clone(), to.uid.clone());
                    nodes.push(MoneyNode {
                        uid: to.uid.clone(),
                        email: to.email.clone(),
                        frozen: to.frozen_at.is_some(),
                        depth,
                    });
                    next.push((to.id.clone(), t.created_at));
                }
                edges.push(MoneyEdge {
                    transfer_id: t.id.clone(),
                    from_uid: known.get(&t.from_account_id).cloned().unwrap_or_default(),
                    to_uid: known.get(&t.to_account_id).cloned().unwrap_or_default(),
                    asset: t.asset,
                    amount: t.amount,
                    at: t.created_at,
                    depth,
                });
            }
            frontier = next;
        }
        Ok(MoneyGraph {
            nodes,
            edges,
            capped,
        })
    }

    /// Freezes accounts that received money from `source_uid`, each with the reason and a
    /// case linking it to the source account; the owners are told, their keys evicted.
    #[tracing::instrument(level = "info", skip_all, err(level = "info"))]
    pub async fn freeze_receivers(
        &self,
        operator: &Operator,
        source_uid: &str,
        uids: &[String],
        reason: &str,
        client: &Client,
    ) -> ServiceResult<Vec<ReceiverFrozen>> {
        require(operator, Power::Freeze)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > REASON_MAX_CHARS {
            return Err(Invalid::new(
                "reason_required",
                format!("Give the reason for the freeze (1 to {REASON_MAX_CHARS} characters); the owners are told it."),
            )
            .into());
        }
        if uids.is_empty() || uids.len() > 100 {
            return Err(Invalid::new("invalid_uids", "Name 1 to 100 receiving accounts.").into());
        }
        let source = self
            .store
            .account_by_uid(source_uid.trim())
            .await?
            .ok_or_else(account_not_found)?;
        let mut done = Vec::new();
        for uid in uids {
            let Some(account) = self.store.account_by_uid(uid.trim()).await? else {
                done.push(ReceiverFrozen {
                    uid: uid.clone(),
                    status: "unknown_account",
                    case_id: None,
                });
                continue;
            };
            let now = self.now();
            let case = crate::store::withdrawals::CaseRecord {
                id: uuid::Uuid::new_v4().to_string(),
                account_id: account.id.clone(),
                source_account_id: source.id.clone(),
                reason: reason.to_owned(),
                operator: operator.actor(),
                created_at: now,
            };
            let fx = Effects::audit(self.event(
                Some(client),
                Some(&account.id),
                operator.actor(),
                "account.frozen",
                json!({"via": "by support", "reason": reason, "case_id": case.id, "source_uid": source.uid}),
            ))
            .with_mail(self.notices.notice(
                &account,
                "Support froze your account",
                &format!(
                    "Support froze your account: {reason}\n\n\
                     Frozen at {}. Every session was ended, every API key is refused, sign-ins are refused, and held withdrawals are cancelled.\n\
                     Contact support to have it reviewed.",
                    crate::clock::format_utc(now)
                ),
            ));
            let outcome = self.store.freeze_with_case(&case, &fx).await?;
            self.invalidator
                .invalidate_keys(&format!("account:{}", account.id))
                .await?;
            done.push(ReceiverFrozen {
                uid: account.uid.clone(),
                status: match outcome {
                    crate::store::FreezeOutcome::Frozen { .. } => "frozen",
                    crate::store::FreezeOutcome::AlreadyFrozen { .. } => "already_frozen",
                },
                case_id: Some(case.id),
            });
        }
        Ok(done)
    }

    /// The cases that name this account (as receiver or as source).
    pub async fn cases(
        &self,
        operator: &Operator,
        uid: &str,
    ) -> ServiceResult<Vec<crate::store::withdrawals::CaseRecord>> {
        require(operator, Power::Lookup)?;
        let account = self
            .store
            .account_by_uid(uid.trim())
            .await?
            .ok_or_else(account_not_found)?;
        Ok(self.store.cases(&account.id).await?)
    }
}
