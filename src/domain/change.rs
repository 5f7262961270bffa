//! Weakening changes (they wait 48 hours, cancellable) and what applying each one does.
//! Stored in `pending_changes` as `kind` and `target` text; both strings are also what the
//! audit log and the API show.

use super::mail_kind::MailKind;
use super::Unknown;

/// A change that weakens an account's protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weakening {
    /// `totp.disable`: turn the authenticator app off.
    DisableTotp,
    /// `passkey.remove` (target: the passkey's id).
    RemovePasskey(String),
    /// `require_passkey.disable`.
    StopRequiringPasskey,
    /// `mail.mute` (target: the mail kind).
    MuteMail(MailKind),
    /// `allowlist.disable`: withdrawals to any address again.
    DisableAllowlist,
    /// `withdraw_delay.shorten` (target: the new number of days, 0–6).
    ShortenWithdrawDelay(i64),
}

/// One write of an applied change; the store executes them in order, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeStep {
    DeleteTotp,
    RemovePasskey(String),
    StopRequiringPasskey,
    /// "Require a passkey" cannot outlive the last passkey.
    StopRequiringPasskeyIfNoneLeft,
    MuteMail(MailKind),
    DisableAllowlist,
    SetWithdrawDelay(i64),
    /// Without any second factor left, backup codes have nothing to stand in for.
    DropBackupCodesIfNoFactorLeft,
}

impl Weakening {
    pub fn kind(&self) -> &'static str {
        match self {
            Weakening::DisableTotp => "totp.disable",
            Weakening::RemovePasskey(_) => "passkey.remove",
            Weakening::StopRequiringPasskey => "require_passkey.disable",
            Weakening::MuteMail(_) => "mail.mute",
            Weakening::DisableAllowlist => "allowlist.disable",
            Weakening::ShortenWithdrawDelay(_) => "withdraw_delay.shorten",
        }
    }

    pub fn target(&self) -> Option<String> {
        match self {
            Weakening::DisableTotp
            | Weakening::StopRequiringPasskey
            | Weakening::DisableAllowlist => None,
            Weakening::RemovePasskey(id) => Some(id.clone()),
            Weakening::MuteMail(kind) => Some(kind.as_str().to_owned()),
            Weakening::ShortenWithdrawDelay(days) => Some(days.to_string()),
        }
    }

    /// Reads a stored `kind` and `target`; an unknown kind or a missing target is refused.
    pub fn decode(kind: &str, target: Option<&str>) -> Result<Self, Unknown> {
        let needs_target = || Unknown::new("pending change without target", kind);
        match kind {
            "totp.disable" => Ok(Weakening::DisableTotp),
            "passkey.remove" => Ok(Weakening::RemovePasskey(
                target.ok_or_else(needs_target)?.to_owned(),
            )),
            "require_passkey.disable" => Ok(Weakening::StopRequiringPasskey),
            "mail.mute" => Ok(Weakening::MuteMail(MailKind::parse(
                target.ok_or_else(needs_target)?,
            )?)),
            "allowlist.disable" => Ok(Weakening::DisableAllowlist),
            "withdraw_delay.shorten" => {
                let t = target.ok_or_else(needs_target)?;
                match t.parse::<i64>() {
                    Ok(days) if (0..super::withdrawal::MAX_DELAY_DAYS).contains(&days) => {
                        Ok(Weakening::ShortenWithdrawDelay(days))
                    }
                    _ => Err(Unknown::new("withdraw delay", t)),
                }
            }
            other => Err(Unknown::new("pending change kind", other)),
        }
    }

    /// The sentence mails use for it.
    pub fn label(&self) -> &'static str {
        match self {
            Weakening::DisableTotp => "Turn off the authenticator app",
            Weakening::RemovePasskey(_) => "Remove a passkey",
            Weakening::StopRequiringPasskey => "Stop requiring a passkey for important actions",
            Weakening::MuteMail(_) => "Stop a security mail",
            Weakening::DisableAllowlist => "Turn off the withdrawal allowlist",
            Weakening::ShortenWithdrawDelay(_) => "Shorten the withdraw delay",
        }
    }

    /// What applying the change writes, consequences included.
    pub fn steps(&self) -> Vec<ChangeStep> {
        let mut steps = match self {
            Weakening::DisableTotp => vec![ChangeStep::DeleteTotp],
            Weakening::RemovePasskey(id) => vec![
                ChangeStep::RemovePasskey(id.clone()),
                ChangeStep::StopRequiringPasskeyIfNoneLeft,
            ],
            Weakening::StopRequiringPasskey => vec![ChangeStep::StopRequiringPasskey],
            Weakening::MuteMail(kind) => vec![ChangeStep::MuteMail(*kind)],
            Weakening::DisableAllowlist => vec![ChangeStep::DisableAllowlist],
            Weakening::ShortenWithdrawDelay(days) => vec![ChangeStep::SetWithdrawDelay(*days)],
        };
        steps.push(ChangeStep::DropBackupCodesIfNoFactorLeft);
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips_and_unknown_or_incomplete_ones_are_refused() {
        for w in [
            Weakening::DisableTotp,
            Weakening::RemovePasskey("pk1".into()),
            Weakening::StopRequiringPasskey,
            Weakening::MuteMail(MailKind::Signin),
            Weakening::DisableAllowlist,
            Weakening::ShortenWithdrawDelay(2),
        ] {
            assert_eq!(Weakening::decode(w.kind(), w.target().as_deref()), Ok(w));
        }
        assert!(Weakening::decode("totp.enable", None).is_err());
        assert!(Weakening::decode("passkey.remove", None).is_err());
        assert!(Weakening::decode("mail.mute", Some("everything")).is_err());
        assert!(Weakening::decode("withdraw_delay.shorten", Some("9")).is_err());
    }

    #[test]
    fn removing_a_passkey_can_end_require_passkey_and_every_change_drops_orphan_codes() {
        let steps = Weakening::RemovePasskey("pk1".into()).steps();
        assert!(steps.contains(&ChangeStep::StopRequiringPasskeyIfNoneLeft));
        assert_eq!(
            Weakening::DisableTotp.steps().last(),
            Some(&ChangeStep::DropBackupCodesIfNoFactorLeft)
        );
    }
}
