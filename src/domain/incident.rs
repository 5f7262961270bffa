//! Incident response rules: the settings lock (its bounds and when it ends), the
//! official channels anyone can check (how a phone number, mail sender, web address or chat
//! handle is normalised before comparing), and the short support code that changes every
//! few minutes: the owner sees it in the Security Center, a genuine agent reads it out
//! from the console, so the owner can tell a real agent from an impostor (never the other
//! way round: an owner is never asked to tell a code).

use crate::clock::{Millis, DAY, HOUR, MINUTE};
use crate::domain::secret::ServerKey;
use crate::domain::Invalid;

/// The shortest and longest settings lock an owner can choose.
pub const MIN_SETTINGS_LOCK: Millis = HOUR;
pub const MAX_SETTINGS_LOCK: Millis = 365 * DAY;
/// Bounds of the wait that ending a lock early costs (chosen when locking).
pub const MIN_EARLY_END_DELAY: Millis = HOUR;
pub const MAX_EARLY_END_DELAY: Millis = 30 * DAY;

/// A settings lock as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SettingsLock {
    pub locked_at: Millis,
    /// When the lock ends (moved earlier by a request to end it early).
    pub until: Millis,
    /// What ending it early costs: the lock ends this long after the request.
    pub early_end_delay: Millis,
    pub end_requested_at: Option<Millis>,
}

impl SettingsLock {
    /// Checks the owner's choice: a lock of `duration`, ended early only after `delay`.
    pub fn new(now: Millis, duration: Millis, delay: Millis) -> Result<Self, Invalid> {
        if !(MIN_SETTINGS_LOCK..=MAX_SETTINGS_LOCK).contains(&duration) {
            return Err(Invalid::new(
                "invalid_lock_duration",
                "A settings lock lasts from 1 hour to 365 days.",
            ));
        }
        if !(MIN_EARLY_END_DELAY..=MAX_EARLY_END_DELAY).contains(&delay) {
            return Err(Invalid::new(
                "invalid_early_end_delay",
                "Ending a lock early waits from 1 hour to 30 days.",
            ));
        }
        Ok(Self {
            locked_at: now,
            until: now + duration,
            early_end_delay: delay,
            end_requested_at: None,
        })
    }

    pub fn active(&self, now: Millis) -> bool {
        now < self.until
    }

    /// The lock after asking to end it early at `now`: it ends after the chosen delay, or
    /// when it would have ended anyway, whichever comes first. Asking again changes nothing.
    pub fn end_early(&self, now: Millis) -> Self {
        if self.end_requested_at.is_some() {
            return self.clone();
        }
        Self {
            until: self.until.min(now + self.early_end_delay),
            end_requested_at: Some(now),
            ..self.clone()
        }
    }
}

text_enum!(
    /// A kind of official channel.
    ChannelKind, "channel kind", {
        Phone => "phone",
        Email => "email",
        Web => "web",
        Chat => "chat",
    }
);

/// The longest value a channel check accepts.
const MAX_CHANNEL: usize = 320;

impl ChannelKind {
    /// The form a value is compared in: a phone number as `+` and digits; a mail sender
    /// lower-cased (`@domain` stands for every sender of the domain); a web address as its
    /// host, lower-cased, without scheme, port, path or a trailing dot; a chat handle
    /// lower-cased without a leading `@`. Anything else (spaces inside an address, a host
    /// with characters outside letters, digits, `-` and `.`) is refused: a look-alike
    /// written with other alphabets is reported as not official, never "fixed".
    pub fn normalize(self, raw: &str) -> Result<String, Invalid> {
        let v = raw.trim();
        if v.is_empty() || v.len() > MAX_CHANNEL {
            return Err(Invalid::new(
                "invalid_channel",
                "Enter the phone number, mail sender, web address or chat handle to check.",
            ));
        }
        let bad = |what: &str| Invalid::new("invalid_channel", format!("That is not {what}."));
        match self {
            Self::Phone => {
                let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                let only_phone_chars = v
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +-().".contains(c));
                if !only_phone_chars || !(6..=15).contains(&digits.len()) {
                    return Err(bad("a phone number"));
                }
                let digits = digits.trim_start_matches("00");
                Ok(format!("+{digits}"))
            }
            Self::Email => {
                let v = v.to_ascii_lowercase();
                let (local, domain) = v.rsplit_once('@').ok_or_else(|| bad("a mail address"))?;
                if local.contains(char::is_whitespace) || !host_ok(domain) {
                    return Err(bad("a mail address"));
                }
                Ok(v)
            }
            Self::Web => {
                let lower = v.to_ascii_lowercase();
                let rest = lower
                    .strip_prefix("https://")
                    .or_else(|| lower.strip_prefix("http://"))
                    .unwrap_or(&lower);
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                let host = host.split(':').next().unwrap_or_default();
                let host = host.trim_end_matches('.');
                if !host_ok(host) {
                    return Err(bad("a web address"));
                }
                Ok(host.to_owned())
            }
            Self::Chat => {
                let handle = v.trim_start_matches('@').to_lowercase();
                if handle.is_empty() || handle.contains(char::is_whitespace) {
                    return Err(bad("a chat handle"));
                }
                Ok(handle)
            }
        }
    }

    /// What the page calls it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Phone => "phone number",
            Self::Email => "mail sender",
            Self::Web => "web address",
            Self::Chat => "chat handle",
        }
    }
}

/// A host name of ASCII letters, digits, `-` and dots, with at least one dot.
fn host_ok(host: &str) -> bool {
    !host.is_empty()
        && host.contains('.')
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// Whether a normalised mail sender is covered by an official entry: the same address, or
/// an `@domain` entry for its domain.
pub fn email_covered(entry: &str, sender: &str) -> bool {
    entry == sender || (entry.starts_with('@') && sender.ends_with(entry))
}

/// How long one support code lasts.
pub const SUPPORT_CODE_PERIOD: Millis = 5 * MINUTE;

/// The account's support code for the period holding `at`: six digits from a keyed MAC of
/// the account and the period, so it cannot be predicted without the server key and says
/// nothing about the account.
pub fn support_code(key: &ServerKey, account_id: &str, at: Millis) -> String {
    code_for_period(key, account_id, at.div_euclid(SUPPORT_CODE_PERIOD))
}

fn code_for_period(key: &ServerKey, account_id: &str, period: i64) -> String {
    let mac = key.mac("support-code", &format!("{account_id}:{period}"));
    let n = u32::from_str_radix(&mac[..8], 16).unwrap_or_default() % 1_000_000;
    format!("{n:06}")
}

/// When the current support code is replaced.
pub fn support_code_expires(now: Millis) -> Millis {
    (now.div_euclid(SUPPORT_CODE_PERIOD) + 1) * SUPPORT_CODE_PERIOD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_end_waits_the_chosen_delay_but_never_extends() {
        let l = SettingsLock::new(0, 30 * DAY, 3 * DAY).unwrap();
        assert!(l.active(29 * DAY));
        let e = l.end_early(DAY);
        assert_eq!(e.until, 4 * DAY);
        assert_eq!(e.end_early(2 * DAY), e, "asking twice changes nothing");
        let late = l.end_early(29 * DAY);
        assert_eq!(late.until, 30 * DAY, "never later than it was");
        assert!(SettingsLock::new(0, 10 * MINUTE, HOUR).is_err());
        assert!(SettingsLock::new(0, DAY, 31 * DAY).is_err());
    }

    #[test]
    fn channels_normalise_and_refuse_lookalikes() {
        use ChannelKind::*;
        assert_eq!(
            Phone.normalize("+44 (20) 7946-0000").unwrap(),
            "+442079460000"
        );
        assert_eq!(
            Phone.normalize("0044 20 7946 0000").unwrap(),
            "+442079460000"
        );
        assert!(Phone.normalize("call me").is_err());
        assert_eq!(
            Web.normalize("HTTPS://Rampart.Example:443/login?x=1")
                .unwrap(),
            "rampart.example"
        );
        assert_eq!(
            Web.normalize("https://rampart.example@evil.example/")
                .unwrap(),
            "evil.example"
        );
        assert!(
            Web.normalize("https://rаmpart.example").is_err(),
            "Cyrillic a"
        );
        assert_eq!(
            Email.normalize("Security@Rampart.Example").unwrap(),
            "security@rampart.example"
        );
        assert!(email_covered(
            "@rampart.example",
            "security@rampart.example"
        ));
        assert!(!email_covered(
            "@rampart.example",
            "x@notrampart.example.evil"
        ));
        assert_eq!(
            Chat.normalize("@Rampart_Support").unwrap(),
            "rampart_support"
        );
    }

    #[test]
    fn support_code_changes_each_period_and_differs_between_accounts() {
        let key = ServerKey::generate();
        let now = 1_000 * SUPPORT_CODE_PERIOD + 10;
        let code = support_code(&key, "a", now);
        assert_eq!(code.len(), 6);
        assert_eq!(
            support_code(&key, "a", now + SUPPORT_CODE_PERIOD - 11),
            code
        );
        assert_ne!(support_code(&key, "a", now + SUPPORT_CODE_PERIOD), code);
        assert_ne!(support_code(&key, "b", now), code);
        assert_ne!(support_code(&ServerKey::generate(), "a", now), code);
        assert_eq!(support_code_expires(now), 1_001 * SUPPORT_CODE_PERIOD);
    }
}
