//! Random tokens, short codes and keyed hashes. Secrets are stored only as keyed hashes and
//! compared in constant time.

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// An HMAC-SHA256 keyed with `key`, ready for `update`: every HMAC in Rampart starts here.
///
/// HMAC takes a key of any length (RFC 2104: a longer key is hashed, a shorter one padded
/// with zeros), and the `hmac` crate's `new_from_slice` does exactly that; it returns a
/// `Result` only because it shares its signature with MACs of fixed key sizes. So the error
/// cannot happen, and this is the one place that says so instead of handling it at each use.
pub fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    #[allow(clippy::expect_used)] // cannot fail for HMAC, see above; tested below
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length")
}

/// A URL for messages and logs: the password, if any (`user:PASSWORD@` or a PostgreSQL
/// `?password=` parameter), shown as `***`. A string that does not parse as a URL is shown
/// by its scheme alone (as is one without an authority, like `user:pass@host`, which parses
/// as scheme `user`), since it may still hold a password. SQLite URLs name a file: shown whole.
pub fn redact_url_password(url: &str) -> String {
    let scheme_only = || match url.split_once(':') {
        Some((scheme, _)) => format!("{scheme}:…"),
        None => "(not a URL)".to_owned(),
    };
    let Ok(mut parsed) = url::Url::parse(url) else {
        return scheme_only();
    };
    if parsed.scheme() == "sqlite" {
        return url.to_owned();
    }
    if parsed.cannot_be_a_base() {
        return scheme_only();
    }
    if parsed.password().is_some() {
        // Cannot fail: a URL with a password has a host.
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" { "***".into() } else { v };
                (k.into_owned(), v.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

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
        let mut m = hmac_sha256(&self.0);
        m.update(purpose.as_bytes());
        m.update(&[0]);
        m.update(value.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }
}

impl ServerKey {
    /// A 32-byte subkey for one purpose (HMAC-SHA256 of the purpose), so one configured
    /// secret serves several uses without any two sharing a key.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut m = hmac_sha256(&self.0);
        m.update(b"rampart-subkey\0");
        m.update(purpose.as_bytes());
        m.finalize().into_bytes().into()
    }
}

/// Authenticated encryption of small secrets at rest (TOTP seeds): XChaCha20-Poly1305
/// with a random 192-bit nonce, stored as base64(nonce || ciphertext). The account id is
/// bound as associated data, so a ciphertext moved to another row does not decrypt.
pub struct SecretBox(chacha20poly1305::XChaCha20Poly1305);

impl SecretBox {
    pub fn new(key: &ServerKey) -> Self {
        use chacha20poly1305::KeyInit;
        Self(chacha20poly1305::XChaCha20Poly1305::new(
            &key.derive("secret-box-v1").into(),
        ))
    }

    pub fn seal(&self, plaintext: &[u8], bound_to: &str) -> anyhow::Result<String> {
        use chacha20poly1305::aead::{Aead, Payload};
        let nonce: [u8; 24] = rand::thread_rng().gen();
        let sealed = self
            .0
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: bound_to.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    pub fn open(&self, sealed: &str, bound_to: &str) -> anyhow::Result<Vec<u8>> {
        use chacha20poly1305::aead::{Aead, Payload};
        let bytes = base64::engine::general_purpose::STANDARD.decode(sealed)?;
        if bytes.len() < 24 + 16 {
            anyhow::bail!("sealed secret is truncated");
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into()?;
        self.0
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: bound_to.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!("sealed secret does not open with this key (wrong key or tampered)")
            })
    }
}

/// Backup codes: 10 characters from an alphabet without look-alikes (no 0/o, 1/l/i),
/// shown as `xxxxx-xxxxx`; about 50 bits each.
pub fn backup_code() -> String {
    const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let raw: String = (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{}-{}", &raw[..5], &raw[5..])
}

/// The form a backup code is compared in: lower case, without spaces or dashes.
pub fn normalize_backup_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
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
    fn urls_are_shown_without_their_passwords() {
        assert_eq!(
            redact_url_password("postgres://app:hunter22@db:5432/rampart"),
            "postgres://app:***@db:5432/rampart"
        );
        assert_eq!(
            redact_url_password("postgres://db/rampart?user=app&password=hunter22&sslmode=require"),
            "postgres://db/rampart?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url_password("sqlite://rampart.db"),
            "sqlite://rampart.db"
        );
        assert_eq!(redact_url_password("app:hunter22@db"), "app:…");
    }

    /// The `expect` in `hmac_sha256` is safe: keys shorter than, equal to and longer than
    /// the block, and the empty key, all key a MAC (RFC 4231 cases 1 and 6 for the values).
    #[test]
    fn hmac_takes_a_key_of_any_length() {
        let mac = |key: &[u8], data: &[u8]| {
            let mut m = hmac_sha256(key);
            m.update(data);
            hex::encode(m.finalize().into_bytes())
        };
        assert_eq!(
            mac(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            mac(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        for len in [0, 32, 64, 65, 1000] {
            assert_eq!(mac(&vec![7; len], b"x").len(), 64);
        }
    }

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

    #[test]
    fn secret_box_roundtrip_binding_and_tamper() {
        let k = ServerKey::generate();
        let b = SecretBox::new(&k);
        let sealed = b.seal(b"seed", "account-1").expect("seal");
        assert_ne!(
            sealed,
            b.seal(b"seed", "account-1").expect("seal"),
            "fresh nonce each time"
        );
        assert_eq!(b.open(&sealed, "account-1").expect("open"), b"seed");
        assert!(b.open(&sealed, "account-2").is_err(), "bound to its row");
        assert!(SecretBox::new(&ServerKey::generate())
            .open(&sealed, "account-1")
            .is_err());
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .expect("b64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(b.open(&tampered, "account-1").is_err());
    }

    #[test]
    fn backup_codes_are_readable_and_normalised() {
        let c = backup_code();
        assert_eq!(c.len(), 11);
        assert_eq!(&c[5..6], "-");
        assert_eq!(normalize_backup_code(" ABCDE-fghjk "), "abcdefghjk");
    }
}
