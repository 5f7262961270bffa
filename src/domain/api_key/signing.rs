//! The exchange request-signing scheme: parsing a signed request, its timestamp window,
//! verifying HMAC-SHA256 / Ed25519 / RSA signatures, and the refusals with their codes.

use std::fmt;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{KeyType, Permission, DEFAULT_RECV_WINDOW, FUTURE_TOLERANCE, MAX_RECV_WINDOW};
use crate::clock::Millis;
use crate::domain::Invalid;

/// Verifies a signature over the payload with one key's material.
#[derive(Clone)]
pub enum Verifier {
    /// Keyed once; cloning the keyed state per request skips the key setup.
    Hmac(Box<Hmac<Sha256>>),
    Ed25519(Box<ed25519_dalek::VerifyingKey>),
    Rsa(Box<rsa::pkcs1v15::VerifyingKey<Sha256>>),
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hmac(_) => "Verifier::Hmac(***)",
            Self::Ed25519(_) => "Verifier::Ed25519",
            Self::Rsa(_) => "Verifier::Rsa",
        })
    }
}

impl Verifier {
    pub fn hmac(secret: &str) -> Self {
        Self::Hmac(Box::new(crate::domain::secret::hmac_sha256(
            secret.as_bytes(),
        )))
    }

    /// Parses a user's public key (PEM, SubjectPublicKeyInfo) of the given type. RSA keys
    /// must be 2048 or 4096 bits.
    pub fn public_key(kind: KeyType, pem: &str) -> Result<Self, Invalid> {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::traits::PublicKeyParts;
        let bad = |m: &str| Invalid::new("invalid_public_key", m.to_owned());
        let pem = pem.trim();
        if pem.len() > 4096 {
            return Err(bad("The public key is too long."));
        }
        match kind {
            KeyType::Hmac => Err(bad(
                "HMAC keys have no public key; Rampart generates the secret.",
            )),
            KeyType::Ed25519 => ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
                .map(|k| Self::Ed25519(Box::new(k)))
                .map_err(|_| {
                    bad("Not an Ed25519 public key in PEM form (-----BEGIN PUBLIC KEY-----).")
                }),
            KeyType::Rsa => {
                let key = rsa::RsaPublicKey::from_public_key_pem(pem)
                    .or_else(|_| {
                        use rsa::pkcs1::DecodeRsaPublicKey;
                        rsa::RsaPublicKey::from_pkcs1_pem(pem)
                    })
                    .map_err(|_| bad("Not an RSA public key in PEM form."))?;
                let bits = key.n().bits();
                if bits != 2048 && bits != 4096 {
                    return Err(bad("RSA keys must be 2048 or 4096 bits."));
                }
                Ok(Self::Rsa(Box::new(rsa::pkcs1v15::VerifyingKey::new(key))))
            }
        }
    }

    /// `true` when `signature` (as sent, already percent-decoded) signs `payload`. HMAC
    /// signatures are hex (any case) and compared in constant time; Ed25519 and RSA are
    /// base64. A signature of the wrong form is simply not valid.
    pub fn verify(&self, payload: &[u8], signature: &str) -> bool {
        match self {
            Self::Hmac(keyed) => {
                if signature.len() != 64 {
                    return false;
                }
                let Ok(sig) = hex::decode(signature) else {
                    return false;
                };
                let mut mac = (**keyed).clone();
                mac.update(payload);
                mac.verify_slice(&sig).is_ok()
            }
            Self::Ed25519(key) => {
                let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature) else {
                    return false;
                };
                let Ok(sig) = ed25519_dalek::Signature::from_slice(&sig) else {
                    return false;
                };
                key.verify_strict(payload, &sig).is_ok()
            }
            Self::Rsa(key) => {
                use rsa::signature::Verifier as _;
                let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature) else {
                    return false;
                };
                let Ok(sig) = rsa::pkcs1v15::Signature::try_from(sig.as_slice()) else {
                    return false;
                };
                key.verify(payload, &sig).is_ok()
            }
        }
    }
}

/// Why a signed request was refused, each with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    MissingKey,
    MissingParameter(&'static str),
    /// A parameter named twice, in the query string, the body or across both (names
    /// compared decoded): upstreams disagree on which one counts.
    DuplicateParameter(String),
    BadParameter(&'static str, &'static str),
    UnknownKey,
    TimestampOutsideWindow,
    BadSignature,
    KeyExpired,
    AccountFrozen,
    /// The owner suspended the key ("Secure my account" suspends them all).
    KeySuspended,
    IpNotAllowed,
    PermissionMissing(Permission),
    /// A request to a route that no rule of the gateway's table covers.
    UnknownRoute,
    /// A path an upstream could route differently from how it reads (dot or empty
    /// segments, encoded unreserved characters or slashes, backslashes).
    NonCanonicalPath,
    /// A withdrawal while a withdrawal lock (or a freeze) is in force, until the time given.
    WithdrawalsLocked {
        until: Millis,
    },
    /// The key's stored settings could not be read; it is refused until repaired.
    KeyUnusable,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing_api_key",
            Self::MissingParameter(_) => "missing_parameter",
            Self::DuplicateParameter(_) => "duplicate_parameter",
            Self::BadParameter(..) => "bad_parameter",
            Self::UnknownKey => "unknown_key",
            Self::TimestampOutsideWindow => "timestamp_outside_window",
            Self::BadSignature => "bad_signature",
            Self::KeyExpired => "key_expired",
            Self::AccountFrozen => "account_frozen",
            Self::KeySuspended => "key_suspended",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::PermissionMissing(_) => "permission_missing",
            Self::UnknownRoute => "unknown_route",
            Self::NonCanonicalPath => "non_canonical_path",
            Self::WithdrawalsLocked { .. } => "withdrawals_locked",
            Self::KeyUnusable => "key_unusable",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::MissingKey => "Send your API key in the X-MBX-APIKEY header.".into(),
            Self::MissingParameter(p) => format!("The {p} parameter is required on signed requests."),
            Self::DuplicateParameter(p) => format!("The {p} parameter appears more than once (query string and body count together)."),
            Self::BadParameter(p, why) => format!("The {p} parameter {why}."),
            Self::UnknownKey => "This API key does not exist (it may have been deleted).".into(),
            Self::TimestampOutsideWindow => "The timestamp is outside the receive window: check your clock (server time is UTC milliseconds).".into(),
            Self::BadSignature => "The signature does not match: sign the exact query string followed by the body, with this key's secret or private key.".into(),
            Self::KeyExpired => "This API key has expired. Create a new one; keys with write permissions and no IP allowlist last 30 days.".into(),
            Self::AccountFrozen => "The account is frozen; its API keys are refused.".into(),
            Self::KeySuspended => "This API key is suspended by its owner (after \"Secure my account\"). Resume it in the Security Center, or create a new one.".into(),
            Self::IpNotAllowed => "Requests from this IP address are not allowed for this key.".into(),
            Self::PermissionMissing(p) => format!("This key lacks the {p} permission needed here."),
            Self::UnknownRoute => "This route is not in the gateway's route table, so it is refused.".into(),
            Self::NonCanonicalPath => "The path is not in canonical form: no \".\" or \"..\" segments, no empty segments, no backslashes, and no percent-encoded letters, digits, \"-._~\" or slashes.".into(),
            Self::WithdrawalsLocked { until } => format!(
                "Withdrawals are locked on this account until {} for its protection (after a password change, a second-factor reset or a freeze).",
                crate::clock::format_utc(*until)
            ),
            Self::KeyUnusable => "This key's stored settings cannot be read, so it is refused. Delete it and create a new one.".into(),
        }
    }

    /// 401 when who is asking is not established, 403 when they may not do this, 400 for
    /// malformed requests, 404 for a route the gateway does not know.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingParameter(_) | Self::DuplicateParameter(_) | Self::BadParameter(..) => 400,
            Self::IpNotAllowed
            | Self::PermissionMissing(_)
            | Self::WithdrawalsLocked { .. }
            | Self::KeyUnusable => 403,
            Self::UnknownRoute => 404,
            _ => 401,
        }
    }

    /// The exchange's HTTP status and error code for this refusal, so that client
    /// libraries raise their usual exceptions (`{"code": -1022, "msg": …}`): -2014 no key,
    /// -2015 a key that may not do this (unknown, expired, frozen, wrong IP, missing
    /// permission), -1021 timestamp, -1022 signature, -1102 missing or malformed parameter,
    /// -1101 duplicate, -1131 receive window, -1002 not authorised now (withdrawal lock),
    /// -1020 a route or path the gateway does not serve.
    pub fn exchange_error(&self) -> (u16, i32) {
        match self {
            Self::MissingKey => (401, -2014),
            Self::UnknownKey
            | Self::KeyExpired
            | Self::AccountFrozen
            | Self::KeySuspended
            | Self::IpNotAllowed
            | Self::PermissionMissing(_)
            | Self::KeyUnusable => (401, -2015),
            Self::TimestampOutsideWindow => (400, -1021),
            Self::BadSignature => (400, -1022),
            Self::MissingParameter(_) => (400, -1102),
            Self::BadParameter("recvWindow", _) => (400, -1131),
            Self::BadParameter(..) => (400, -1102),
            Self::DuplicateParameter(_) => (400, -1101),
            Self::WithdrawalsLocked { .. } => (401, -1002),
            Self::UnknownRoute => (404, -1020),
            Self::NonCanonicalPath => (400, -1020),
        }
    }
}

/// The parts of a signed request that authentication needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// Query string and body without the signature parameter, concatenated: what was signed.
    pub payload: String,
    /// Percent-decoded.
    pub signature: String,
    pub timestamp: i64,
    pub recv_window: i64,
}

const MAX_PAYLOAD: usize = 64 * 1024;

/// Parses `query` (without `?`) and `body` (form-encoded, or empty). The signature must
/// appear exactly once, in either; `timestamp` exactly once; `recvWindow` at most once; and
/// no parameter twice, whether in one part or across both (names compared after
/// form-decoding, so `%74imestamp` is `timestamp`): an upstream reading the first, the last
/// or the query's copy would act on a value that was not what Rampart judged.
pub fn parse_signed(query: &str, body: &str) -> Result<SignedRequest, Refusal> {
    if query.len() + body.len() > MAX_PAYLOAD {
        return Err(Refusal::BadParameter("request", "is too long"));
    }
    let mut signature: Option<String> = None;
    let mut timestamp: Option<i64> = None;
    let mut recv_window: Option<i64> = None;
    let mut seen = Names::default();
    let mut payload = String::with_capacity(query.len() + body.len());
    for part in [query, body] {
        let mut kept = 0usize;
        for pair in part.split('&').filter(|p| !p.is_empty()) {
            // `name=value` only: a bare word or an empty name is where a captured request
            // could be re-split between query string and body with its signature intact.
            let Some((raw_name, value)) = pair.split_once('=').filter(|(n, _)| !n.is_empty())
            else {
                return Err(Refusal::BadParameter(
                    "parameter",
                    "must be name=value (a name without a value, or a value without a name, is refused)",
                ));
            };
            let name = decoded_name(raw_name);
            if !seen.insert(name.clone()) {
                let shown: String = name.chars().take(64).collect();
                return Err(Refusal::DuplicateParameter(shown));
            }
            match (raw_name, name.as_ref()) {
                ("signature", _) => {
                    let decoded = percent_encoding::percent_decode_str(value)
                        .decode_utf8()
                        .map_err(|_| Refusal::BadParameter("signature", "is not valid text"))?;
                    if decoded.is_empty() || decoded.len() > 1024 {
                        return Err(Refusal::BadParameter("signature", "has the wrong length"));
                    }
                    signature = Some(decoded.into_owned());
                    continue;
                }
                ("timestamp", _) => {
                    timestamp = Some(number(value).ok_or(Refusal::BadParameter(
                        "timestamp",
                        "must be milliseconds since 1970",
                    ))?);
                }
                ("recvWindow", _) => {
                    let w = number(value).ok_or(Refusal::BadParameter(
                        "recvWindow",
                        "must be a number of milliseconds",
                    ))?;
                    if !(1..=MAX_RECV_WINDOW).contains(&w) {
                        return Err(Refusal::BadParameter(
                            "recvWindow",
                            "must be between 1 and 60000",
                        ));
                    }
                    recv_window = Some(w);
                }
                (_, "signature" | "timestamp" | "recvWindow") => {
                    // Encoded: the upstream would decode it into the real parameter.
                    return Err(Refusal::BadParameter(
                        "name",
                        "of signature, timestamp and recvWindow must not be percent-encoded",
                    ));
                }
                _ => {}
            }
            if kept > 0 {
                payload.push('&');
            }
            payload.push_str(pair);
            kept += 1;
        }
    }
    Ok(SignedRequest {
        payload,
        signature: signature.ok_or(Refusal::MissingParameter("signature"))?,
        timestamp: timestamp.ok_or(Refusal::MissingParameter("timestamp"))?,
        recv_window: recv_window.unwrap_or(DEFAULT_RECV_WINDOW),
    })
}

/// The parameter names seen so far: a short list scanned in place (requests name a dozen
/// or so; no hashing or allocation per name), a hash set once there are many, so a request
/// with thousands of names costs linear time, not quadratic.
#[derive(Default)]
struct Names<'a> {
    few: Vec<std::borrow::Cow<'a, str>>,
    many: std::collections::HashSet<std::borrow::Cow<'a, str>>,
}

impl<'a> Names<'a> {
    const FEW: usize = 32;

    /// `false` when `name` was seen before.
    fn insert(&mut self, name: std::borrow::Cow<'a, str>) -> bool {
        if self.few.len() < Self::FEW {
            if self.few.contains(&name) {
                return false;
            }
            self.few.push(name);
            return true;
        }
        if self.many.is_empty() {
            self.many.extend(self.few.iter().cloned());
        }
        self.many.insert(name)
    }
}

/// A parameter name as an upstream's form decoder reads it (`+` is a space, `%xx` a byte).
fn decoded_name(raw: &str) -> std::borrow::Cow<'_, str> {
    if !raw.contains(['%', '+']) {
        return raw.into();
    }
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
        .into()
}

fn number(v: &str) -> Option<i64> {
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The exchange's timing rule: refused if the timestamp is 1 s or more ahead of the server
/// clock, or older than the receive window.
pub fn timestamp_ok(req: &SignedRequest, now: Millis) -> bool {
    req.timestamp < now + FUTURE_TOLERANCE && now - req.timestamp <= req.recv_window
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

    #[test]
    fn the_exchange_documentation_examples_verify() {
        let v = Verifier::hmac(DOC_SECRET);
        // Example 1: everything in the query string.
        let q = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
        let r = parse_signed(q, "").expect("parses");
        assert_eq!(r.timestamp, 1_499_827_319_559);
        assert_eq!(r.recv_window, 5000);
        assert!(v.verify(r.payload.as_bytes(), &r.signature));
        // Example 2: everything in the body.
        let r = parse_signed("", q).expect("parses");
        assert!(v.verify(r.payload.as_bytes(), &r.signature));
        // Example 3: mixed; no '&' between the query string and the body.
        let r = parse_signed(
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
            "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77",
        )
        .expect("parses");
        assert_eq!(r.payload, "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTCquantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559");
        assert!(v.verify(r.payload.as_bytes(), &r.signature));
        // Unicode parameters are signed percent-encoded, exactly as sent.
        let r = parse_signed("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3", "").expect("parses");
        assert!(v.verify(r.payload.as_bytes(), &r.signature));
        // HMAC signatures are case-insensitive hex.
        let upper = "C8DB56825AE71D6D79447849E617115F4A920FA2ACDCAB2B053C4B2838BD6B71";
        let r = parse_signed(
            &q.replace(
                "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
                upper,
            ),
            "",
        )
        .expect("parses");
        assert!(v.verify(r.payload.as_bytes(), &r.signature));
        // One changed character fails.
        let r = parse_signed(&q.replace("quantity=1", "quantity=2"), "").expect("parses");
        assert!(!v.verify(r.payload.as_bytes(), &r.signature));
    }

    #[test]
    fn malformed_requests_are_refused_with_their_reason() {
        assert_eq!(
            parse_signed("timestamp=1", ""),
            Err(Refusal::MissingParameter("signature"))
        );
        assert_eq!(
            parse_signed("signature=ab", ""),
            Err(Refusal::MissingParameter("timestamp"))
        );
        assert_eq!(
            parse_signed("timestamp=1&timestamp=2&signature=a", ""),
            Err(Refusal::DuplicateParameter("timestamp".into()))
        );
        assert_eq!(
            parse_signed("timestamp=1&signature=a", "signature=b"),
            Err(Refusal::DuplicateParameter("signature".into()))
        );
        for (query, body, name) in [
            (
                "symbol=A&quantity=1&timestamp=1&signature=a",
                "quantity=100",
                "quantity",
            ),
            ("symbol=A&symbol=B&timestamp=1&signature=a", "", "symbol"),
            ("timestamp=1&signature=a", "symbol=A&symbo%6C=B", "symbol"),
            ("timestamp=1&signature=a", "side=BUY&side=SELL", "side"),
            ("a+b=1&a%20b=2&timestamp=1&signature=a", "", "a b"),
            ("timestamp=1&%74imestamp=2&signature=a", "", "timestamp"),
        ] {
            assert_eq!(
                parse_signed(query, body),
                Err(Refusal::DuplicateParameter(name.into())),
                "{query} | {body}"
            );
        }
        for (query, body) in [
            ("symbol=A&quantity=1&signature=a", "0&price=0.1&timestamp=1"),
            ("symbol=A&flag&timestamp=1&signature=a", ""),
            ("=x&timestamp=1&signature=a", ""),
        ] {
            assert!(
                matches!(
                    parse_signed(query, body),
                    Err(Refusal::BadParameter("parameter", _))
                ),
                "{query} | {body}"
            );
        }
        // Past the short list, duplicates are still found.
        let many: Vec<String> = (0..40).map(|i| format!("p{i}=1")).collect();
        assert_eq!(
            parse_signed(
                &format!("{}&p3=2&timestamp=1&signature=a", many.join("&")),
                ""
            ),
            Err(Refusal::DuplicateParameter("p3".into()))
        );
        assert!(matches!(
            parse_signed("%74imestamp=2&signature=a", ""),
            Err(Refusal::BadParameter("name", _))
        ));
        assert!(matches!(
            parse_signed("timestamp=12x&signature=a", ""),
            Err(Refusal::BadParameter("timestamp", _))
        ));
        assert!(matches!(
            parse_signed("timestamp=-5&signature=a", ""),
            Err(Refusal::BadParameter("timestamp", _))
        ));
        assert!(matches!(
            parse_signed("timestamp=99999999999999999999&signature=a", ""),
            Err(Refusal::BadParameter("timestamp", _))
        ));
        assert!(matches!(
            parse_signed("timestamp=1&recvWindow=60001&signature=a", ""),
            Err(Refusal::BadParameter("recvWindow", _))
        ));
        assert!(matches!(
            parse_signed("timestamp=1&signature=%FF", ""),
            Err(Refusal::BadParameter("signature", _))
        ));
        assert!(matches!(
            parse_signed("timestamp=1&signature=", ""),
            Err(Refusal::BadParameter("signature", _))
        ));
        let v = Verifier::hmac("s");
        for sig in ["zz", "abc", &"g".repeat(64), "AAAA+/=="] {
            assert!(!v.verify(b"x", sig), "{sig}");
        }
    }

    #[test]
    fn timing_window() {
        let r = |ts, w| SignedRequest {
            payload: String::new(),
            signature: String::new(),
            timestamp: ts,
            recv_window: w,
        };
        assert!(timestamp_ok(&r(10_000, 5000), 10_000));
        assert!(timestamp_ok(&r(10_999, 5000), 10_000));
        assert!(!timestamp_ok(&r(11_000, 5000), 10_000), "1 s ahead");
        assert!(timestamp_ok(&r(5_000, 5000), 10_000));
        assert!(
            !timestamp_ok(&r(4_999, 5000), 10_000),
            "older than recvWindow"
        );
    }

    #[test]
    fn the_parser_never_panics_on_garbage() {
        let mut seed = 0x2545F4914F6CDD1Du64;
        let alphabet = b"=&%0123456789abcdefsignaturetimestamprecvWindow\xff\xfe+/ ";
        for _ in 0..20_000 {
            let len = (seed % 80) as usize;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let s = String::from_utf8_lossy(&bytes);
            let mid = (0..=s.len() / 2)
                .rev()
                .find(|i| s.is_char_boundary(*i))
                .unwrap_or(0);
            let (q, b) = s.split_at(mid);
            if let Ok(r) = parse_signed(q, b) {
                let _ = Verifier::hmac("k").verify(r.payload.as_bytes(), &r.signature);
            }
        }
    }
}
