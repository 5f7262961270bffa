//! Getting the account back, as rules: the states of tickets and recovery requests, the
//! links that set a new password, and the two-person rule.

use super::Unknown;
use crate::clock::{Millis, DAY, HOUR, MINUTE};

/// A "forgot password" link works for 30 minutes, once.
pub const RESET_LINK_TTL: Millis = 30 * MINUTE;
/// The link an approved recovery mails works for 72 hours, once.
pub const RECOVERY_LINK_TTL: Millis = 72 * HOUR;
/// Support access (an owner who proved the mailbox but cannot sign in) lasts an hour.
pub const SUPPORT_ACCESS_TTL: Millis = HOUR;
/// Withdrawals stay locked this long after a password reset.
pub const RESET_LOCK: Millis = 24 * HOUR;
/// Withdrawals stay locked this long after an approved recovery.
pub const RECOVERY_LOCK: Millis = 48 * HOUR;
/// How far before the freeze (or the request) the two-person rule looks.
pub const TWO_PERSON_WINDOW: Millis = 7 * DAY;
/// Identity evidence: at most this many files per request, each at most this big, kept
/// this long after the decision.
pub const EVIDENCE_MAX_FILES: i64 = 3;
pub const EVIDENCE_MAX_BYTES: usize = 5 * 1024 * 1024;
pub const EVIDENCE_RETENTION: Millis = 30 * DAY;

/// The evidence types accepted, recognised by their first bytes (a declared type that the
/// content does not match is refused: no polyglots, no HTML served as an image).
pub fn evidence_type(declared: &str, bytes: &[u8]) -> Option<&'static str> {
    let declared = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let actual = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        "image/png"
    } else if bytes.starts_with(b"%PDF-") {
        "application/pdf"
    } else {
        return None;
    };
    (declared == actual).then_some(actual)
}

/// A ticket's description: enough for the story, not a dump.
pub const DESCRIPTION_MAX_CHARS: usize = 4000;
pub const MESSAGE_MAX_CHARS: usize = 4000;

text_enum!(
    /// What a password link is for.
    LinkPurpose, "password link purpose", { Reset => "reset", Recovery => "recovery" }
);

text_enum!(
    /// `open` (waiting for support), `answered` (waiting for the owner), `closed`.
    TicketStatus, "ticket status", { Open => "open", Answered => "answered", Closed => "closed" }
);

text_enum!(
    /// What the owner asks support for, as the guides word it.
    TicketRequest, "ticket request", {
        FullAudit => "full_audit",
        WithdrawalLock => "withdrawal_lock",
        Unfreeze => "unfreeze",
    }
);

text_enum!(
    /// A frozen account to reopen, or a lost second factor.
    RecoveryKind, "recovery kind", {
        Reactivation => "reactivation",
        SecondFactorReset => "second_factor_reset",
    }
);

text_enum!(
    /// Where a recovery request is.
    RecoveryStatus, "recovery status", {
        Submitted => "submitted",
        AwaitingSecondApproval => "awaiting_second_approval",
        Approved => "approved",
        Rejected => "rejected",
    }
);

impl RecoveryStatus {
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RecoveryStatus::Submitted | RecoveryStatus::AwaitingSecondApproval
        )
    }
}

impl TicketRequest {
    pub fn label(self) -> &'static str {
        match self {
            TicketRequest::FullAudit => "A full audit of my account",
            TicketRequest::WithdrawalLock => "Lock withdrawals",
            TicketRequest::Unfreeze => "Unfreeze my account after review",
        }
    }
}

/// What an account whose recovery was approved may still do before it has a new second
/// factor: look at itself, prove a step-up, add the factor, freeze, sign out.
pub fn allowed_during_recovery(method: &str, path: &str) -> bool {
    let read = method == "GET" || method == "HEAD";
    match path {
        "/api/v1/me" | "/api/v1/me/second-factors" | "/api/v1/me/notifications" => read,
        "/api/v1/me/totp"
        | "/api/v1/me/totp/confirm"
        | "/api/v1/me/passkeys/register/start"
        | "/api/v1/me/passkeys/register/finish"
        | "/api/v1/me/freeze"
        | "/api/v1/sessions/current" => true,
        p => p == "/api/v1/me/step-up" || p.starts_with("/api/v1/me/step-up/"),
    }
}

/// Parses a comma-separated list as stored.
pub fn parse_requests(csv: &str) -> Result<Vec<TicketRequest>, Unknown> {
    csv.split(',')
        .filter(|s| !s.is_empty())
        .map(TicketRequest::parse)
        .collect()
}

pub fn requests_csv(requests: &[TicketRequest]) -> String {
    requests
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The changes that make a recovery need two reviewers when they happened in the week
/// before the freeze: a key was created, the allowlist or the email changed, or money
/// left. Judged from the audit actions.
pub fn weighs_double(action: &str) -> bool {
    action == "api_key.created"
        || action.starts_with("allowlist.")
        || action.starts_with("email.")
        || action.starts_with("withdrawal.")
}

/// Whether a recovery needs a second approver: any heavy change in the window before
/// `until` (the freeze, or the request when the account is not frozen).
pub fn needs_two_approvals<'a>(
    events: impl IntoIterator<Item = (Millis, &'a str)>,
    until: Millis,
) -> bool {
    events
        .into_iter()
        .any(|(at, action)| at <= until && at > until - TWO_PERSON_WINDOW && weighs_double(action))
}

/// The earliest time a reactivation may be approved.
pub fn unfreeze_allowed_at(frozen_at: Millis, min_minutes: i64) -> Millis {
    frozen_at + min_minutes * MINUTE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_person_rule_looks_at_the_week_before() {
        let freeze = 100 * DAY;
        assert!(needs_two_approvals(
            [(freeze - DAY, "api_key.created")],
            freeze
        ));
        assert!(needs_two_approvals(
            [(freeze - HOUR, "email.changed")],
            freeze
        ));
        assert!(!needs_two_approvals(
            [(freeze - 8 * DAY, "api_key.created")],
            freeze
        ));
        assert!(!needs_two_approvals(
            [(freeze - DAY, "signin.succeeded")],
            freeze
        ));
        assert!(!needs_two_approvals(
            [(freeze + HOUR, "api_key.created")],
            freeze
        ));
    }

    #[test]
    fn evidence_is_recognised_by_its_bytes_and_must_match_its_declared_type() {
        assert_eq!(
            evidence_type("image/png", b"\x89PNG\r\n\x1a\nrest"),
            Some("image/png")
        );
        assert_eq!(
            evidence_type("application/pdf", b"%PDF-1.7"),
            Some("application/pdf")
        );
        assert_eq!(
            evidence_type("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0]),
            Some("image/jpeg")
        );
        assert_eq!(evidence_type("image/png", b"%PDF-1.7"), None);
        assert_eq!(evidence_type("text/html", b"<html>"), None);
    }

    #[test]
    fn states_round_trip_and_unknown_refuses() {
        for s in RecoveryStatus::ALL {
            assert_eq!(RecoveryStatus::parse(s.as_str()).ok(), Some(*s));
        }
        assert!(TicketStatus::parse("pending").is_err());
        assert_eq!(
            parse_requests("full_audit,unfreeze").ok(),
            Some(vec![TicketRequest::FullAudit, TicketRequest::Unfreeze])
        );
        assert!(parse_requests("full_audit,everything").is_err());
    }
}
