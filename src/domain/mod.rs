//! The rules, pure: values parsed once at the edge, and the decisions made on them.
//! Nothing here reads the clock, the network or the database.

/// A closed set of states stored as text: `as_str` (what is stored and shown), `parse`
/// (an unknown value is refused, never defaulted), `ALL`.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Result<Self, $crate::domain::Unknown> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::domain::Unknown::new($what, other)),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod api_key;
pub mod audit;
pub mod backend;
pub mod change;
pub mod device;
pub mod email;
pub mod incident;
pub mod mail_kind;
pub mod operator;
pub mod password;
pub mod retry;
pub mod rules;
pub mod secret;
pub mod sign_in;
pub mod step_up;
pub mod support;
pub mod throttle;
pub mod totp;
pub mod withdrawal;

use std::fmt;

/// The account's anti-phishing code: shown in every mail so the owner can tell a genuine
/// Rampart mail from a phishing copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AntiPhishingCode(String);

/// Why a value was refused at the edge. The `code` is stable; the message is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

/// A stored value that is not one of its type's values: the store reports it as corrupt
/// data and the caller refuses, never guessing a default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: {value:?}")]
pub struct Unknown {
    pub what: &'static str,
    pub value: String,
}

impl Unknown {
    pub fn new(what: &'static str, value: impl Into<String>) -> Self {
        Self {
            what,
            value: value.into(),
        }
    }
}

impl Invalid {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl AntiPhishingCode {
    /// 8–32 (configurable) letters, digits, `-` or `_`: readable at a glance in a mail, and
    /// nothing that could be confused or hidden (no spaces, no unicode look-alikes).
    pub fn parse(raw: &str, min: usize, max: usize) -> Result<Self, Invalid> {
        let code = raw.trim();
        let len = code.chars().count();
        if len < min || len > max {
            return Err(Invalid::new(
                "invalid_anti_phishing_code",
                format!("The anti-phishing code must be {min} to {max} characters long."),
            ));
        }
        if !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Invalid::new(
                "invalid_anti_phishing_code",
                "The anti-phishing code may contain only letters A–Z, digits, '-' and '_'.",
            ));
        }
        Ok(Self(code.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AntiPhishingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anti_phishing_code_bounds_and_alphabet() {
        assert!(AntiPhishingCode::parse("Blue-Falcon7", 8, 32).is_ok());
        assert!(AntiPhishingCode::parse("short", 8, 32).is_err());
        assert!(AntiPhishingCode::parse(&"x".repeat(33), 8, 32).is_err());
        assert!(AntiPhishingCode::parse("has space in", 8, 32).is_err());
        assert!(AntiPhishingCode::parse("раураl-code", 8, 32).is_err());
        assert!(AntiPhishingCode::parse("<script>x", 8, 32).is_err());
    }
}
