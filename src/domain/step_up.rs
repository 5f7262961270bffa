//! Step-up: sensitive actions need a second factor proved within the last five minutes.
//! The list of sensitive actions lives here, and only here.

use crate::clock::{Millis, MINUTE};

/// How long a proof of a second factor counts for sensitive actions.
pub const STEP_UP_WINDOW: Millis = 5 * MINUTE;

/// Every action that needs a fresh second factor when the account has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensitiveAction {
    /// Adding another second factor: otherwise a stolen session could plant the attacker's
    /// own authenticator or passkey (a backdoor).
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
        }
    }
}

/// Whether the action may proceed now. An account without any second factor has nothing
/// to step up with; its sensitive actions are guarded by the password and emailed codes.
pub fn allowed(has_second_factor: bool, stepped_up_at: Option<Millis>, now: Millis) -> bool {
    !has_second_factor || stepped_up_at.is_some_and(|at| now - at < STEP_UP_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_minutes_of_grace() {
        assert!(allowed(false, None, 0));
        assert!(!allowed(true, None, 0));
        assert!(allowed(true, Some(0), STEP_UP_WINDOW - 1));
        assert!(!allowed(true, Some(0), STEP_UP_WINDOW));
    }
}
