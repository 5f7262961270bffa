//! The numbers of the rules table (PRODUCT.md), with their defaults. They are read from the
//! settings (`[rules]` in `rampart.toml`) but belong to the domain: the rules that use them
//! (password policy, throttling, sessions, devices) take them from here, so the domain needs
//! nothing from the configuration layer.

use serde::Deserialize;

/// Every number of the rules table, with PRODUCT.md's defaults.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    pub password_min_chars: usize,
    pub password_max_bytes: usize,
    pub password_min_zxcvbn_score: u8,
    pub confirm_code_ttl_minutes: i64,
    pub confirm_code_max_attempts: i64,
    /// Failed sign-ins per account (and per device cookie) allowed in the window before
    /// each further attempt has to wait.
    pub signin_account_free_failures: i64,
    /// Failed sign-ins per source IP allowed in the window before delays begin.
    pub signin_ip_free_failures: i64,
    pub signin_window_minutes: i64,
    /// The longest a throttled client ever waits: throttling delays, it never locks out.
    pub signin_max_delay_minutes: i64,
    /// Registrations per source IP allowed in the registration window before each further
    /// one has to wait (doubling from a second, capped at the window).
    pub register_ip_free_attempts: i64,
    /// Registrations per email address (new or existing alike) allowed in the window.
    pub register_address_free_attempts: i64,
    pub register_window_minutes: i64,
    pub session_idle_minutes: i64,
    pub session_absolute_hours: i64,
    pub device_history_days: i64,
    pub anti_phishing_min_chars: usize,
    pub anti_phishing_max_chars: usize,
    /// A sign-in from a device new to an account that has others is unusable until the
    /// mailed confirmation link is clicked.
    pub new_device_confirmation: bool,
    pub max_trusted_devices: i64,
    /// A frozen account is reopened only through an approved recovery, never sooner than
    /// this after the freeze.
    pub unfreeze_min_minutes: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            password_min_chars: 12,
            password_max_bytes: 1024,
            password_min_zxcvbn_score: 3,
            confirm_code_ttl_minutes: 10,
            confirm_code_max_attempts: 5,
            signin_account_free_failures: 5,
            signin_ip_free_failures: 20,
            signin_window_minutes: 15,
            signin_max_delay_minutes: 15,
            register_ip_free_attempts: 10,
            register_address_free_attempts: 5,
            register_window_minutes: 60,
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            device_history_days: 90,
            anti_phishing_min_chars: 8,
            anti_phishing_max_chars: 32,
            new_device_confirmation: true,
            max_trusted_devices: 3,
            unfreeze_min_minutes: 120,
        }
    }
}
