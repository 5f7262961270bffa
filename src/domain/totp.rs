//! Authenticator-app codes: RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s steps) through
//! `totp-rs`, with ±1 step of clock skew and a replay guard: a code is accepted only for a
//! step later than the last accepted one, so a code seen over someone's shoulder cannot be
//! used again in its window.

use rand::RngCore;
use totp_rs::{Algorithm, TOTP};

use crate::clock::Millis;
use crate::domain::secret::constant_time_eq;

pub const STEP_SECONDS: u64 = 30;
pub const DIGITS: usize = 6;
/// Steps accepted either side of the current one.
pub const SKEW_STEPS: i64 = 1;

/// 20 random bytes (160 bits, as RFC 4226 recommends for SHA-1).
pub fn new_secret() -> Vec<u8> {
    let mut s = vec![0u8; 20];
    rand::thread_rng().fill_bytes(&mut s);
    s
}

fn totp(secret: &[u8], digits: usize, issuer: &str, account: &str) -> anyhow::Result<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        digits,
        0,
        STEP_SECONDS,
        secret.to_vec(),
        Some(issuer.to_owned()),
        account.replace(':', "_"),
    )
    .map_err(|e| anyhow::anyhow!("invalid TOTP parameters: {e}"))
}

/// The 30-second step that `at` falls in.
pub fn step_of(at: Millis) -> i64 {
    at.div_euclid(1000) / STEP_SECONDS as i64
}

/// The code for a step, with `digits` digits.
pub fn code_for_step(secret: &[u8], step: i64, digits: usize) -> anyhow::Result<String> {
    let t = totp(secret, digits, "Rampart", "account")?;
    Ok(t.generate(u64::try_from(step).unwrap_or(0) * STEP_SECONDS))
}

/// Enrolment data: the base32 secret shown as the "backup key" and the `otpauth://` URI
/// that the QR code carries.
pub fn enrolment(secret: &[u8], account: &str) -> anyhow::Result<(String, String)> {
    let t = totp(secret, DIGITS, "Rampart", account)?;
    Ok((t.get_secret_base32(), t.get_url()))
}

/// The step a code is valid for at `now` (current step ±1), if any step later than
/// `last_step` matches. Every candidate is compared in constant time.
pub fn verify(secret: &[u8], code: &str, now: Millis, last_step: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_of(now);
    let mut matched = None;
    for step in (current - SKEW_STEPS)..=(current + SKEW_STEPS) {
        let Ok(expected) = code_for_step(secret, step, DIGITS) else {
            continue;
        };
        if constant_time_eq(&expected, code) && step > last_step && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// The otpauth URI as an SVG QR code (inline in the page; no script, no external image).
pub fn qr_svg(uri: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(uri.as_bytes())?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_sha1_test_vectors() {
        // RFC 6238 appendix B (SHA-1), 8 digits.
        for (t, expected) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let step = (t / STEP_SECONDS) as i64;
            assert_eq!(
                code_for_step(RFC_SECRET, step, 8).expect("code"),
                expected,
                "T={t}"
            );
            // The 6-digit code is the same truncation mod 10^6.
            assert_eq!(
                code_for_step(RFC_SECRET, step, 6).expect("code"),
                &expected[2..]
            );
        }
    }

    #[test]
    fn skew_of_one_step_is_accepted_two_is_not() {
        let now = 1_111_111_109_000;
        let step = step_of(now);
        for (delta, ok) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = code_for_step(RFC_SECRET, step + delta, 6).expect("code");
            assert_eq!(
                verify(RFC_SECRET, &code, now, 0).is_some(),
                ok,
                "delta {delta}"
            );
        }
    }

    #[test]
    fn a_code_is_refused_once_its_step_was_used() {
        let now = 1_234_567_890_000;
        let code = code_for_step(RFC_SECRET, step_of(now), 6).expect("code");
        let used = verify(RFC_SECRET, &code, now, 0).expect("first use");
        assert_eq!(verify(RFC_SECRET, &code, now, used), None, "replay refused");
        let older = code_for_step(RFC_SECRET, step_of(now) - 1, 6).expect("code");
        assert_eq!(
            verify(RFC_SECRET, &older, now, used),
            None,
            "an earlier step too"
        );
        assert_eq!(verify(RFC_SECRET, "12345", now, 0), None);
        assert_eq!(verify(RFC_SECRET, "abcdef", now, 0), None);
    }

    #[test]
    fn enrolment_uri_and_qr() {
        let (b32, uri) = enrolment(RFC_SECRET, "alice@example.com").expect("enrolment");
        assert_eq!(b32, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(
            uri.starts_with("otpauth://totp/Rampart:alice%40example.com?"),
            "{uri}"
        );
        assert!(uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
        assert!(qr_svg(&uri).expect("svg").contains("<svg"));
    }
}
