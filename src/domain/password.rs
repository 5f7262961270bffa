//! Passwords: the strength policy of the rules table and argon2id hashing.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};

use super::email::Email;
use super::Invalid;
use crate::domain::rules::Rules;

/// A password that passed the policy. Never logged, never stored in clear.
pub struct NewPassword(String);

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(***)")
    }
}

/// zxcvbn's cost grows with length; beyond this many characters the estimate cannot get
/// lower, so only this prefix is scored.
const ZXCVBN_PREFIX_CHARS: usize = 100;

impl NewPassword {
    /// At least `password_min_chars` characters, zxcvbn score ≥ `password_min_zxcvbn_score`,
    /// and not containing the email's local part.
    pub fn parse(raw: &str, email: &Email, rules: &Rules) -> Result<Self, Invalid> {
        let weak = |m: String| Invalid::new("weak_password", m);
        if raw.len() > rules.password_max_bytes {
            return Err(weak(format!(
                "Passwords may be at most {} bytes long.",
                rules.password_max_bytes
            )));
        }
        if raw.chars().count() < rules.password_min_chars {
            return Err(weak(format!(
                "Use at least {} characters; a few unrelated words make a strong one.",
                rules.password_min_chars
            )));
        }
        let local = email.local_part();
        if local.len() >= 3 && raw.to_lowercase().contains(local) {
            return Err(weak(
                "The password must not contain your email address.".to_owned(),
            ));
        }
        let prefix: String = raw.chars().take(ZXCVBN_PREFIX_CHARS).collect();
        let estimate = zxcvbn::zxcvbn(&prefix, &[local, email.as_str(), "rampart"]);
        let score = u8::from(estimate.score());
        if score < rules.password_min_zxcvbn_score {
            let mut message = format!(
                "This password is too easy to guess (strength {score} of 4, {} needed).",
                rules.password_min_zxcvbn_score
            );
            if let Some(feedback) = estimate.feedback() {
                if let Some(warning) = feedback.warning() {
                    message.push_str(&format!(" {warning}."));
                }
                for s in feedback.suggestions() {
                    message.push_str(&format!(" {s}"));
                }
            }
            return Err(weak(message));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// argon2id with OWASP's recommended parameters: m = 19 MiB, t = 2, p = 1.
pub fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (algorithm, parameters and salt included).
/// CPU-heavy (~20–40 ms): call from a blocking thread.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

/// Verifies in constant time (argon2's own comparison). A malformed stored hash verifies
/// as false. CPU-heavy: call from a blocking thread.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            hasher()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("alice.wonder@example.com").expect("valid")
    }

    #[test]
    fn policy_rejects_short_common_and_email_derived() {
        let r = Rules::default();
        assert_eq!(
            NewPassword::parse("Sh0rt!", &email(), &r)
                .expect_err("short")
                .code,
            "weak_password"
        );
        assert!(NewPassword::parse("password1234", &email(), &r).is_err());
        assert!(NewPassword::parse("aaaaaaaaaaaaaaaa", &email(), &r).is_err());
        assert!(NewPassword::parse("Alice.Wonder-Qx7#mZ!9", &email(), &r).is_err());
        assert!(NewPassword::parse(&"x".repeat(2000), &email(), &r).is_err());
        assert!(NewPassword::parse("Tr0ub4dor&3-horse-staple-battery", &email(), &r).is_ok());
    }

    #[test]
    fn hash_roundtrip_uses_argon2id_owasp_parameters() {
        let phc = hash("correct horse battery staple").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery staple", &phc));
        assert!(!verify("correct horse battery stapler", &phc));
        assert!(!verify("x", "not a phc string"));
    }
}
