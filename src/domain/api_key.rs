//! API keys, pure: permissions, IP allowlists, key and secret formats, and the exchange
//! request-signing scheme (`X-MBX-APIKEY`, `timestamp`, `recvWindow`, `signature` over the
//! query string concatenated with the body; HMAC-SHA256 as hex, Ed25519 and RSA PKCS#1 v1.5
//! SHA-256 as base64), so existing exchange client libraries work unchanged.

use std::fmt;
use std::net::IpAddr;

use base64::Engine;
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use rand::Rng;
use sha2::Sha256;

use super::Invalid;
use crate::clock::{Millis, DAY};

/// A key with write permissions and no IP allowlist expires this long after creation.
pub const UNRESTRICTED_WRITE_KEY_LIFETIME: Millis = 30 * DAY;
pub const MAX_ALLOWLIST: usize = 30;
pub const DEFAULT_RECV_WINDOW: i64 = 5_000;
pub const MAX_RECV_WINDOW: i64 = 60_000;
/// A timestamp this far ahead of the server clock is refused.
pub const FUTURE_TOLERANCE: Millis = 1_000;

/// Prefix of every API key Rampart issues (public half, sent in `X-MBX-APIKEY`).
pub const KEY_PREFIX: &str = "rmpk_";
/// Prefix of every HMAC secret Rampart issues, so secret scanners can find a leaked one:
/// `rmps_` followed by 48 characters of `[A-Za-z0-9]`.
pub const SECRET_PREFIX: &str = "rmps_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Read,
    SpotTrade,
    Margin,
    Futures,
    Withdraw,
    InternalTransfer,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Self::Read,
        Self::SpotTrade,
        Self::Margin,
        Self::Futures,
        Self::Withdraw,
        Self::InternalTransfer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::SpotTrade => "spot_trade",
            Self::Margin => "margin",
            Self::Futures => "futures",
            Self::Withdraw => "withdraw",
            Self::InternalTransfer => "internal_transfer",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| {
            Invalid::new(
                "invalid_permission",
                format!("Unknown permission {s:?}; use read, spot_trade, margin, futures, withdraw or internal_transfer."),
            )
        })
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Moving money or trading: these need an IP allowlist.
    pub fn needs_allowlist(self) -> bool {
        matches!(
            self,
            Self::SpotTrade | Self::Margin | Self::Futures | Self::Withdraw
        )
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Permission {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Permission {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// A set of permissions as a bit set: checking one on the hot path is one AND.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions(u8);

impl Permissions {
    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }
    pub fn insert(&mut self, p: Permission) {
        self.0 |= p.bit();
    }
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Anything beyond reading.
    pub fn writes(self) -> bool {
        self.iter().any(|p| p != Permission::Read)
    }
    /// `read,spot_trade`, the stored and header form.
    pub fn to_csv(self) -> String {
        self.iter()
            .map(Permission::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
    /// The stored form back. Any entry that does not decode is an error: a key whose stored
    /// state cannot be read is refused, never run with a guess.
    pub fn from_csv(s: &str) -> Result<Self, Invalid> {
        let mut set = Self::default();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            set.insert(Permission::parse(p)?);
        }
        Ok(set)
    }
    pub fn parse_list(list: &[String]) -> Result<Self, Invalid> {
        let mut set = Self::default();
        for p in list {
            set.insert(Permission::parse(p)?);
        }
        if set.is_empty() {
            return Err(Invalid::new(
                "invalid_permission",
                "Choose at least one permission (read, for a start).",
            ));
        }
        Ok(set)
    }
    pub fn added_since(self, before: Self) -> Self {
        Self(self.0 & !before.0)
    }
}

/// An IP allowlist: up to 30 addresses or CIDRs. A CIDR matching every address is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist(Vec<IpNet>);

impl Allowlist {
    pub fn parse(entries: &[String]) -> Result<Self, Invalid> {
        if entries.len() > MAX_ALLOWLIST {
            return Err(Invalid::new(
                "invalid_allowlist",
                format!("An IP allowlist holds at most {MAX_ALLOWLIST} entries."),
            ));
        }
        let mut nets = Vec::with_capacity(entries.len());
        for e in entries {
            let e = e.trim();
            let net = e
                .parse::<IpNet>()
                .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Invalid::new(
                        "invalid_allowlist",
                        format!("{e:?} is not an IP address or CIDR."),
                    )
                })?;
            if net.prefix_len() == 0 {
                return Err(Invalid::new(
                    "invalid_allowlist",
                    format!("{e} would allow every address; list your servers' addresses."),
                ));
            }
            let net = net.trunc();
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        Ok(Self(nets))
    }
    /// The stored form back. An entry that does not decode is an error, never dropped: a
    /// list that lost its only entry would read as empty, and empty allows every address.
    pub fn from_csv(s: &str) -> Result<Self, Invalid> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.parse::<IpNet>().map_err(|_| {
                    Invalid::new(
                        "stored_allowlist_unreadable",
                        format!("stored allowlist entry {e:?} is not a CIDR"),
                    )
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
    pub fn to_csv(&self) -> String {
        self.0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
    pub fn entries(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// An empty allowlist allows every address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.is_empty() || self.0.iter().any(|n| n.contains(&ip))
    }
    pub fn added_since(&self, before: &Self) -> bool {
        self.0.iter().any(|n| !before.0.contains(n))
    }
}

/// Checks the rules table: trading and withdrawing need an allowlist.
pub fn check_key_rules(perms: Permissions, allowlist: &Allowlist) -> Result<(), Invalid> {
    if allowlist.is_empty() {
        if let Some(p) = perms.iter().find(|p| p.needs_allowlist()) {
            return Err(Invalid::new(
                "allowlist_required",
                format!("The {p} permission needs an IP allowlist: list the addresses your bot or server calls from."),
            ));
        }
    }
    Ok(())
}

/// When a key expires: a writing key without allowlist after 30 days, others never.
pub fn expiry(perms: Permissions, allowlist: &Allowlist, created_at: Millis) -> Option<Millis> {
    (perms.writes() && allowlist.is_empty()).then_some(created_at + UNRESTRICTED_WRITE_KEY_LIFETIME)
}

fn alnum(n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| A[rng.gen_range(0..A.len())] as char)
        .collect()
}

/// A new public API key: `rmpk_` + 59 characters (64 in all, as exchange clients expect).
pub fn new_key() -> String {
    format!("{KEY_PREFIX}{}", alnum(59))
}

/// A new HMAC secret: `rmps_` + 48 characters (about 285 bits).
pub fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", alnum(48))
}

/// The key types a user can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Hmac,
    Ed25519,
    Rsa,
}

impl KeyType {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "hmac" => Ok(Self::Hmac),
            "ed25519" => Ok(Self::Ed25519),
            "rsa" => Ok(Self::Rsa),
            _ => Err(Invalid::new(
                "invalid_key_type",
                "The key type must be hmac, ed25519 or rsa.",
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hmac => "hmac",
            Self::Ed25519 => "ed25519",
            Self::Rsa => "rsa",
        }
    }
}

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
    DuplicateParameter(&'static str),
    BadParameter(&'static str, &'static str),
    UnknownKey,
    TimestampOutsideWindow,
    BadSignature,
    KeyExpired,
    AccountFrozen,
    IpNotAllowed,
    PermissionMissing(Permission),
    /// A write to a route that no rule of the gateway's table covers.
    RouteUnmapped,
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
            Self::IpNotAllowed => "ip_not_allowed",
            Self::PermissionMissing(_) | Self::RouteUnmapped => "permission_missing",
            Self::NonCanonicalPath => "non_canonical_path",
            Self::WithdrawalsLocked { .. } => "withdrawals_locked",
            Self::KeyUnusable => "key_unusable",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::MissingKey => "Send your API key in the X-MBX-APIKEY header.".into(),
            Self::MissingParameter(p) => format!("The {p} parameter is required on signed requests."),
            Self::DuplicateParameter(p) => format!("The {p} parameter appears more than once."),
            Self::BadParameter(p, why) => format!("The {p} parameter {why}."),
            Self::UnknownKey => "This API key does not exist (it may have been deleted).".into(),
            Self::TimestampOutsideWindow => "The timestamp is outside the receive window: check your clock (server time is UTC milliseconds).".into(),
            Self::BadSignature => "The signature does not match: sign the exact query string followed by the body, with this key's secret or private key.".into(),
            Self::KeyExpired => "This API key has expired. Create a new one; keys with write permissions and no IP allowlist last 30 days.".into(),
            Self::AccountFrozen => "The account is frozen; its API keys are refused.".into(),
            Self::IpNotAllowed => "Requests from this IP address are not allowed for this key.".into(),
            Self::PermissionMissing(p) => format!("This key lacks the {p} permission needed here."),
            Self::RouteUnmapped => "No permission grants this route to API keys.".into(),
            Self::NonCanonicalPath => "The path is not in canonical form: no \".\" or \"..\" segments, no empty segments, no backslashes, and no percent-encoded letters, digits, \"-._~\" or slashes.".into(),
            Self::WithdrawalsLocked { until } => format!(
                "Withdrawals are locked on this account until {} for its protection (after a password change, a second-factor reset or a freeze).",
                crate::clock::format_utc(*until)
            ),
            Self::KeyUnusable => "This key's stored settings cannot be read, so it is refused. Delete it and create a new one.".into(),
        }
    }

    /// 401 when who is asking is not established, 403 when they may not do this, 400 for
    /// malformed requests.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingParameter(_) | Self::DuplicateParameter(_) | Self::BadParameter(..) => 400,
            Self::IpNotAllowed
            | Self::PermissionMissing(_)
            | Self::RouteUnmapped
            | Self::WithdrawalsLocked { .. }
            | Self::KeyUnusable => 403,
            _ => 401,
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
/// appear exactly once, in either; `timestamp` exactly once; `recvWindow` at most once.
pub fn parse_signed(query: &str, body: &str) -> Result<SignedRequest, Refusal> {
    if query.len() + body.len() > MAX_PAYLOAD {
        return Err(Refusal::BadParameter("request", "is too long"));
    }
    let mut signature: Option<String> = None;
    let mut timestamp: Option<i64> = None;
    let mut recv_window: Option<i64> = None;
    let mut payload = String::with_capacity(query.len() + body.len());
    for part in [query, body] {
        let mut kept = 0usize;
        for pair in part.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "signature" => {
                    if signature.is_some() {
                        return Err(Refusal::DuplicateParameter("signature"));
                    }
                    let decoded = percent_encoding::percent_decode_str(value)
                        .decode_utf8()
                        .map_err(|_| Refusal::BadParameter("signature", "is not valid text"))?;
                    if decoded.is_empty() || decoded.len() > 1024 {
                        return Err(Refusal::BadParameter("signature", "has the wrong length"));
                    }
                    signature = Some(decoded.into_owned());
                    continue;
                }
                "timestamp" => {
                    if timestamp.is_some() {
                        return Err(Refusal::DuplicateParameter("timestamp"));
                    }
                    timestamp = Some(number(value).ok_or(Refusal::BadParameter(
                        "timestamp",
                        "must be milliseconds since 1970",
                    ))?);
                }
                "recvWindow" => {
                    if recv_window.is_some() {
                        return Err(Refusal::DuplicateParameter("recvWindow"));
                    }
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

/// A route → permission rule of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// `GET`, `POST`, …; absent = any method.
    pub method: Option<String>,
    pub path_prefix: String,
    pub permission: Permission,
}

/// The exchange's usual layout; platforms replace it in `rampart.toml`.
pub fn default_routes() -> Vec<RouteRule> {
    let r = |method: Option<&str>, prefix: &str, permission| RouteRule {
        method: method.map(str::to_owned),
        path_prefix: prefix.to_owned(),
        permission,
    };
    vec![
        r(
            Some("POST"),
            "/sapi/v1/capital/withdraw",
            Permission::Withdraw,
        ),
        r(
            None,
            "/sapi/v1/asset/transfer",
            Permission::InternalTransfer,
        ),
        r(
            None,
            "/sapi/v1/sub-account/transfer",
            Permission::InternalTransfer,
        ),
        r(Some("POST"), "/sapi/v1/margin", Permission::Margin),
        r(Some("DELETE"), "/sapi/v1/margin", Permission::Margin),
        r(Some("POST"), "/fapi/", Permission::Futures),
        r(Some("DELETE"), "/fapi/", Permission::Futures),
        r(Some("PUT"), "/fapi/", Permission::Futures),
        r(Some("POST"), "/api/v3/order", Permission::SpotTrade),
        r(Some("DELETE"), "/api/v3/order", Permission::SpotTrade),
        r(Some("POST"), "/api/v3/orderList", Permission::SpotTrade),
        r(Some("DELETE"), "/api/v3/openOrders", Permission::SpotTrade),
    ]
}

/// The methods a route rule may name.
const METHODS: [&str; 7] = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"];

/// Checks a configured route table: every prefix canonical and absolute, every method known,
/// and no rule shadowed by an earlier one that grants a different permission (it would
/// never apply, which is never what the operator meant; prefixes are plain string prefixes,
/// so `/api/v3/order` also covers `/api/v3/orderList`). The error names the rule by its
/// position (1-based) and says why.
pub fn validate_routes(rules: &[RouteRule]) -> Result<(), String> {
    for (i, rule) in rules.iter().enumerate() {
        let n = i + 1;
        if let Some(m) = &rule.method {
            if !METHODS.iter().any(|k| k.eq_ignore_ascii_case(m)) {
                return Err(format!(
                    "gateway_routes rule {n}: method {m:?} is not one of {}",
                    METHODS.join(", ")
                ));
            }
        }
        if !rule.path_prefix.starts_with('/')
            || rule.path_prefix.contains(['?', '#'])
            || canonical_path(&rule.path_prefix).is_err()
        {
            return Err(format!(
                "gateway_routes rule {n}: path_prefix {:?} must start with / and be a canonical path \
                 (no . or .. or empty segments, no backslashes, no %-encoded letters, digits or slashes, \
                 no ? or #: the query string is not part of the route)",
                rule.path_prefix
            ));
        }
        for (j, earlier) in rules[..i].iter().enumerate() {
            let method_covered = match (&earlier.method, &rule.method) {
                (None, _) => true,
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                (Some(_), None) => false,
            };
            if method_covered
                && earlier.permission != rule.permission
                && starts_with_ignore_case(&rule.path_prefix, &earlier.path_prefix)
            {
                return Err(format!(
                    "gateway_routes rule {n} ({} {}) is never used: rule {} ({} {}) matches every request it would",
                    rule.method.as_deref().unwrap_or("any method"),
                    rule.path_prefix,
                    j + 1,
                    earlier.method.as_deref().unwrap_or("any method"),
                    earlier.path_prefix
                ));
            }
        }
    }
    Ok(())
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Refuses a path that an upstream could normalise into a different route from the one it
/// reads as: `.` and `..` segments (plain or encoded), empty segments (`//`), backslashes,
/// percent-encoded unreserved characters (`%2e`, `%74`) or slashes (`%2f`, `%5c`), encoded
/// control characters, malformed escapes, and `;` (path parameters, which some servers
/// strip). What passes means the same to every HTTP server, so the permission Rampart
/// checks is the permission of the route the upstream runs. A single trailing slash is
/// allowed (`/api/v3/order/` is still read by prefix as `/api/v3/order`).
pub fn canonical_path(path: &str) -> Result<&str, Refusal> {
    let bad = Err(Refusal::NonCanonicalPath);
    if !path.starts_with('/') {
        return bad;
    }
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' | b';' => return bad,
            b if b.is_ascii_control() || b == b' ' || !b.is_ascii() => return bad,
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return bad;
                };
                let decoded = u8::try_from(h * 16 + l).unwrap_or(0);
                // Non-ASCII escapes too: exchange paths are ASCII, and an upstream that
                // decodes overlong UTF-8 (`%c0%ae`) or folds full-width forms (`%ef%bc%8e`)
                // would see dots.
                let unreserved = decoded.is_ascii_alphanumeric()
                    || b"-._~".contains(&decoded)
                    || !decoded.is_ascii();
                if unreserved
                    || decoded == b'/'
                    || decoded == b'\\'
                    || decoded.is_ascii_control()
                    || decoded == b';'
                    || decoded == b'%'
                {
                    return bad;
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if (seg.is_empty() && !last) || seg == "." || seg == ".." {
            return bad;
        }
    }
    Ok(path)
}

/// The permission a request needs: the first matching rule (prefixes match case-insensitively,
/// as many upstreams route), else `read` for reading methods; any other unlisted write is
/// refused outright (`None`). `path` must have passed [`canonical_path`].
pub fn required_permission(rules: &[RouteRule], method: &str, path: &str) -> Option<Permission> {
    for rule in rules {
        // HEAD runs the GET handler in most frameworks: a GET rule covers it.
        let method_ok = rule.method.as_deref().is_none_or(|m| {
            m.eq_ignore_ascii_case(method)
                || (m.eq_ignore_ascii_case("GET") && method.eq_ignore_ascii_case("HEAD"))
        });
        if method_ok && starts_with_ignore_case(path, &rule.path_prefix) {
            return Some(rule.permission);
        }
    }
    matches!(method, "GET" | "HEAD" | "OPTIONS").then_some(Permission::Read)
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
            Err(Refusal::DuplicateParameter("timestamp"))
        );
        assert_eq!(
            parse_signed("timestamp=1&signature=a", "signature=b"),
            Err(Refusal::DuplicateParameter("signature"))
        );
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
    fn permissions_allowlists_and_expiry() {
        let trade = Permissions::parse_list(&["read".into(), "spot_trade".into()]).expect("valid");
        assert!(trade.contains(Permission::SpotTrade) && !trade.contains(Permission::Withdraw));
        assert_eq!(Permissions::from_csv(&trade.to_csv()), Ok(trade));
        assert!(Permissions::from_csv("read,fly").is_err());
        assert!(Allowlist::from_csv("10.0.0.0/8,nonsense").is_err());
        assert_eq!(Allowlist::from_csv(""), Ok(Allowlist::default()));
        assert!(Permissions::parse_list(&["fly".into()]).is_err());
        assert!(Permissions::parse_list(&[]).is_err());
        assert_eq!(
            check_key_rules(trade, &Allowlist::default())
                .expect_err("needs list")
                .code,
            "allowlist_required"
        );
        let list = Allowlist::parse(&[
            "203.0.113.7".into(),
            "198.51.100.0/24".into(),
            "2001:db8::/32".into(),
        ])
        .expect("valid");
        assert!(check_key_rules(trade, &list).is_ok());
        assert!(list.allows("198.51.100.200".parse().expect("ip")));
        assert!(
            list.allows("::ffff:203.0.113.7".parse().expect("ip")),
            "IPv4-mapped IPv6"
        );
        assert!(!list.allows("203.0.113.8".parse().expect("ip")));
        assert!(Allowlist::parse(&["0.0.0.0/0".into()]).is_err());
        assert!(Allowlist::parse(&["10.0.0.1; DROP".into()]).is_err());
        assert!(Allowlist::parse(&vec!["10.0.0.1".to_owned(); 31]).is_err());
        let transfer = Permissions::parse_list(&["internal_transfer".into()]).expect("valid");
        assert!(check_key_rules(transfer, &Allowlist::default()).is_ok());
        assert_eq!(expiry(transfer, &Allowlist::default(), 0), Some(30 * DAY));
        assert_eq!(expiry(transfer, &list, 0), None);
        let read = Permissions::parse_list(&["read".into()]).expect("valid");
        assert_eq!(expiry(read, &Allowlist::default(), 0), None);
    }

    #[test]
    fn keys_and_secrets_are_recognisable() {
        let k = new_key();
        assert_eq!(k.len(), 64);
        assert!(k.starts_with(KEY_PREFIX));
        let s = new_secret();
        assert!(s.starts_with(SECRET_PREFIX) && s.len() == 53);
        assert!(s[5..].bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn routes_map_to_permissions() {
        let rules = default_routes();
        assert_eq!(
            required_permission(&rules, "GET", "/api/v3/account"),
            Some(Permission::Read)
        );
        assert_eq!(
            required_permission(&rules, "POST", "/api/v3/order"),
            Some(Permission::SpotTrade)
        );
        assert_eq!(
            required_permission(&rules, "POST", "/sapi/v1/capital/withdraw/apply"),
            Some(Permission::Withdraw)
        );
        assert_eq!(
            required_permission(&rules, "POST", "/sapi/v1/asset/transfer"),
            Some(Permission::InternalTransfer)
        );
        assert_eq!(required_permission(&rules, "POST", "/unknown"), None);
        assert_eq!(
            required_permission(&rules, "GET", "/SAPI/v1/Asset/Transfer"),
            Some(Permission::InternalTransfer),
            "prefixes match whatever the case"
        );
        let get_rule = [RouteRule {
            method: Some("GET".into()),
            path_prefix: "/sapi/v1/capital/withdraw/address".into(),
            permission: Permission::Withdraw,
        }];
        assert_eq!(
            required_permission(&get_rule, "HEAD", "/sapi/v1/capital/withdraw/address"),
            Some(Permission::Withdraw),
            "HEAD runs the GET handler"
        );
    }

    #[test]
    fn paths_an_upstream_could_reroute_are_refused() {
        for path in [
            "/api/v3/order/../../../sapi/v1/capital/withdraw/apply",
            "/api/v3/order/%2e%2e/%2E%2E/sapi/v1/capital/withdraw/apply",
            "/api/v3/order/..%2f..%2fsapi/v1/capital/withdraw/apply",
            "/sapi/v1//asset/transfer",
            "/sapi/v1/asset/%74ransfer",
            "/sapi/v1/asset/./transfer",
            "/sapi/v1/asset\\transfer",
            "/sapi/v1/asset%5ctransfer",
            "/sapi/v1/asset;x/transfer",
            "/sapi/v1/asset/transfer%00",
            "/sapi/v1/asset/transfer%2",
            "/sapi/v1/asset/transfer%zz",
            "/sapi/v1/asset/%252e%252e/transfer",
            "/api/v3/order/%c0%ae%c0%ae/sapi/v1/capital/withdraw/apply",
            "/api/v3/order/%ef%bc%8e%ef%bc%8e/sapi",
            "/..",
            "/.",
            "//",
            "relative/path",
            "",
        ] {
            assert_eq!(
                canonical_path(path),
                Err(Refusal::NonCanonicalPath),
                "{path}"
            );
        }
        for path in [
            "/",
            "/api/v3/order",
            "/api/v3/order/",
            "/api/v3/ticker/price",
            "/sapi/v1/a%20b",
            "/api/v3/.well",
            "/api/v3/...",
        ] {
            assert_eq!(canonical_path(path), Ok(path), "{path}");
        }
    }

    #[test]
    fn configured_route_tables_are_checked() {
        assert_eq!(validate_routes(&default_routes()), Ok(()));
        use Permission::{Read, Withdraw};
        let rule = |method: Option<&str>, prefix: &str, permission| RouteRule {
            method: method.map(str::to_owned),
            path_prefix: prefix.to_owned(),
            permission,
        };
        let err = |rules: &[RouteRule]| validate_routes(rules).expect_err("refused");
        assert!(err(&[rule(Some("FETCH"), "/x", Read)]).contains("method"));
        assert!(err(&[rule(None, "sapi/v1", Read)]).contains("must start with /"));
        assert!(err(&[rule(None, "/sapi/../x", Read)]).contains("canonical"));
        assert!(err(&[rule(None, "/sapi/v1/capital/withdraw?x", Read)]).contains("query string"));
        let shadowed = err(&[
            rule(None, "/sapi/v1/capital", Read),
            rule(Some("GET"), "/SAPI/v1/capital/withdraw", Withdraw),
        ]);
        assert!(
            shadowed.contains("rule 2") && shadowed.contains("never used"),
            "{shadowed}"
        );
        // A narrower rule first, then a wider one, is a normal table; so is a redundant one.
        assert_eq!(
            validate_routes(&[
                rule(Some("GET"), "/sapi/v1/capital/withdraw/address", Withdraw),
                rule(None, "/sapi/v1/capital", Read),
                rule(None, "/sapi/v1/capital/config", Read),
            ]),
            Ok(())
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
