//! Step-up: sensitive actions need a proof of identity made within the last five minutes.
//! The list of sensitive actions lives here, and only here, and so does the rule of which
//! proof an account gives: its second factor, or — on an account without one — its
//! password plus a code mailed to its address. A stolen session cookie alone never
//! reaches a sensitive action.

use crate::clock::{Millis, MINUTE};

/// How long a proof counts for sensitive actions.
pub const STEP_UP_WINDOW: Millis = 5 * MINUTE;

/// Every action that needs a fresh proof (`allowed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensitiveAction {
    /// Adding a second factor (the first one too): otherwise a stolen session could plant
    /// the attacker's own authenticator or passkey (a backdoor) and lock the owner out.
    AddSecondFactor,
    RegenerateBackupCodes,
    /// Turning a protection off or down (disable the authenticator app, remove a passkey,
    /// stop requiring passkeys, …). The change itself is delayed as well.
    WeakenProtection,
    ChangePassword,
    RemoveDevice,
    AddApiKey,
    DeleteApiKey,
    AddAllowlistAddress,
    DeleteAllowlistAddress,
    ChangeEmail,
    /// Replacing an anti-phishing code: a thief's own code in the owner's genuine mails
    /// would make his phishing mails look genuine. Setting the first one is strengthening.
    ChangeAntiPhishingCode,
    /// Locking every security setting for a period: a thief's lock would keep the owner
    /// from changing the password he stole.
    LockSettings,
    /// Asking to end the settings lock early (it still waits out the delay chosen).
    EndSettingsLock,
    /// Using a suspended API key again.
    ResumeApiKey,
    /// Letting a blocked device sign in again.
    UnblockDevice,
}

impl SensitiveAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AddSecondFactor => "add_second_factor",
            Self::RegenerateBackupCodes => "regenerate_backup_codes",
            Self::WeakenProtection => "weaken_protection",
            Self::ChangePassword => "change_password",
            Self::RemoveDevice => "remove_device",
            Self::AddApiKey => "add_api_key",
            Self::DeleteApiKey => "delete_api_key",
            Self::AddAllowlistAddress => "add_allowlist_address",
            Self::DeleteAllowlistAddress => "delete_allowlist_address",
            Self::ChangeEmail => "change_email",
            Self::ChangeAntiPhishingCode => "change_anti_phishing_code",
            Self::LockSettings => "lock_settings",
            Self::EndSettingsLock => "end_settings_lock",
            Self::ResumeApiKey => "resume_api_key",
            Self::UnblockDevice => "unblock_device",
        }
    }

    /// Whether a settings lock in force refuses the action: everything that adds access or
    /// changes a setting. Removing access (a device, a key, an address) stays possible, and
    /// so does ending the lock early, which waits out its own delay.
    pub fn blocked_by_settings_lock(self) -> bool {
        !matches!(
            self,
            Self::RemoveDevice
                | Self::DeleteApiKey
                | Self::DeleteAllowlistAddress
                | Self::LockSettings
                | Self::EndSettingsLock
        )
    }

    /// The action checks the password and a mailed code itself (the password change asks
    /// for both), which is the whole step-up of an account without a second factor.
    fn carries_password_and_mailed_code(self) -> bool {
        matches!(self, Self::ChangePassword)
    }
}

/// How an account proves it is its owner before a sensitive action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Authenticator code, backup code or passkey.
    SecondFactor,
    /// The password plus a 6-digit code mailed to the account's address.
    PasswordAndMailedCode,
}

/// The proof an account gives: its second factor if it has one (a mailed code is then not
/// accepted, or a thief with the password and the mailbox would bypass the factor).
pub fn proof_for(has_second_factor: bool) -> Proof {
    if has_second_factor {
        Proof::SecondFactor
    } else {
        Proof::PasswordAndMailedCode
    }
}

/// Whether the action may proceed now: a proof (`proof_for`) was made in this session less
/// than five minutes ago. Having no second factor is no exemption.
pub fn allowed(
    action: SensitiveAction,
    proof: Proof,
    stepped_up_at: Option<Millis>,
    now: Millis,
) -> bool {
    let fresh = stepped_up_at.is_some_and(|at| now - at < STEP_UP_WINDOW);
    fresh || (proof == Proof::PasswordAndMailedCode && action.carries_password_and_mailed_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_minutes_of_grace() {
        let a = SensitiveAction::AddApiKey;
        let f = Proof::SecondFactor;
        assert!(!allowed(a, f, None, 0));
        assert!(allowed(a, f, Some(0), STEP_UP_WINDOW - 1));
        assert!(!allowed(a, f, Some(0), STEP_UP_WINDOW));
    }

    #[test]
    fn no_second_factor_is_no_exemption() {
        let mailed = proof_for(false);
        assert_eq!(mailed, Proof::PasswordAndMailedCode);
        assert_eq!(proof_for(true), Proof::SecondFactor);
        for action in [
            SensitiveAction::AddSecondFactor,
            SensitiveAction::RegenerateBackupCodes,
            SensitiveAction::WeakenProtection,
            SensitiveAction::RemoveDevice,
            SensitiveAction::AddApiKey,
            SensitiveAction::DeleteApiKey,
            SensitiveAction::AddAllowlistAddress,
            SensitiveAction::DeleteAllowlistAddress,
            SensitiveAction::ChangeEmail,
        ] {
            assert!(!allowed(action, mailed, None, 0), "{action:?}");
            assert!(allowed(action, mailed, Some(0), STEP_UP_WINDOW - 1));
            assert!(!allowed(action, mailed, Some(0), STEP_UP_WINDOW));
        }
        // The password change asks for the password and a mailed code itself.
        assert!(allowed(SensitiveAction::ChangePassword, mailed, None, 0));
        assert!(!allowed(
            SensitiveAction::ChangePassword,
            Proof::SecondFactor,
            None,
            0
        ));
    }
}
