//! Random tokens, short codes and keyed hashes. Secrets are stored only as keyed hashes and
//! compared in constant time.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The server's secret key (32 bytes): keys the HMACs of codes and CSRF tokens.
#[derive(Clone)]
pub struct ServerKey([u8; 32]);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(***)")
    }
}

impl ServerKey {
    pub fn generate() -> Self {
        Self(rand::thread_rng().gen())
    }

    pub fn from_base64(s: &str) -> anyhow::Result<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| anyhow::anyhow!("secret key is not base64: {e}"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            anyhow::anyhow!("secret key must be exactly 32 bytes (44 base64 characters)")
        })?;
        Ok(Self(key))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// HMAC-SHA256 of `purpose` and `value`, hex. Distinct purposes never collide.
    pub fn mac(&self, purpose: &str, value: &str) -> String {
        #[allow(clippy::expect_used)]
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(purpose.as_bytes());
        m.update(&[0]);
        m.update(value.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }
}

/// A random token of 32 bytes, base64url: session cookies, device cookies, links.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A uniformly random 6-digit code, leading zeros kept.
pub fn six_digit_code() -> String {
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32))
}

/// SHA-256 hex: how high-entropy tokens (sessions, device cookies) are stored. A stolen
/// database does not yield usable cookies.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time equality of two strings (length may leak, contents do not).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_tokens_and_macs() {
        let code = six_digit_code();
        assert_eq!(code.len(), 6);
        assert!(code.chars().all(|c| c.is_ascii_digit()));
        assert_ne!(random_token(), random_token());
        let k = ServerKey::generate();
        assert_eq!(k.mac("a", "x"), k.mac("a", "x"));
        assert_ne!(k.mac("a", "x"), k.mac("b", "x"));
        assert!(constant_time_eq(&k.mac("a", "x"), &k.mac("a", "x")));
        assert!(!constant_time_eq("abc", "abd"));
        let again = ServerKey::from_base64(&k.to_base64()).expect("roundtrip");
        assert_eq!(again.mac("p", "v"), k.mac("p", "v"));
        assert!(ServerKey::from_base64("c2hvcnQ=").is_err());
    }
}
