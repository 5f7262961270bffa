//! API keys, pure: permissions, IP allowlists, key and secret formats and expiry (here),
//! the exchange request-signing scheme (`signing`) (`X-MBX-APIKEY`, `timestamp`, `recvWindow`, `signature` over the
//! query string concatenated with the body; HMAC-SHA256 as hex, Ed25519 and RSA PKCS#1 v1.5
//! SHA-256 as base64), so existing exchange client libraries work unchanged, and the
//! gateway's route table (`routes`).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use rand::Rng;

use super::Invalid;
use crate::clock::{Millis, DAY};

mod routes;
mod signing;

pub use routes::{
    canonical_path, default_routes, route_for, validate_routes, Route, RouteRule, Security,
};
pub use signing::{parse_signed, timestamp_ok, Refusal, SignedRequest, Verifier};

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

/// A key's stored permissions and allowlist, decoded once where they are read. A row that
/// does not decode stays visible to its owner (who can delete it) but is never guessed at:
/// the gateway refuses the key and edits are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAccess {
    Readable {
        permissions: Permissions,
        allowlist: Allowlist,
    },
    Unreadable {
        /// The stored text, as it is.
        permissions: String,
        allowlist: String,
        why: String,
    },
}

impl KeyAccess {
    /// Decodes the stored `permissions` and `ip_allowlist` columns.
    pub fn decode(permissions: String, allowlist: String) -> Self {
        match (
            Permissions::from_csv(&permissions),
            Allowlist::from_csv(&allowlist),
        ) {
            (Ok(permissions), Ok(allowlist)) => KeyAccess::Readable {
                permissions,
                allowlist,
            },
            (p, a) => KeyAccess::Unreadable {
                why: p.err().or(a.err()).map(|e| e.message).unwrap_or_default(),
                permissions,
                allowlist,
            },
        }
    }

    /// `read,spot_trade`: the stored form, and what the API shows.
    pub fn permissions_csv(&self) -> String {
        match self {
            KeyAccess::Readable { permissions, .. } => permissions.to_csv(),
            KeyAccess::Unreadable { permissions, .. } => permissions.clone(),
        }
    }

    /// `203.0.113.7/32,198.51.100.0/24`: the stored form, and what the API shows.
    pub fn allowlist_csv(&self) -> String {
        match self {
            KeyAccess::Readable { allowlist, .. } => allowlist.to_csv(),
            KeyAccess::Unreadable { allowlist, .. } => allowlist.clone(),
        }
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

/// The warnings before a key expires: 7 days and 1 day ahead, each sent once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryWarning {
    SevenDays,
    OneDay,
}

impl ExpiryWarning {
    pub const ALL: [ExpiryWarning; 2] = [ExpiryWarning::SevenDays, ExpiryWarning::OneDay];

    /// How long before the expiry it goes out.
    pub fn ahead(self) -> Millis {
        match self {
            ExpiryWarning::SevenDays => 7 * DAY,
            ExpiryWarning::OneDay => DAY,
        }
    }

    /// Its name in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryWarning::SevenDays => "7d",
            ExpiryWarning::OneDay => "1d",
        }
    }

    /// "Your API key … expires {when}".
    pub fn when(self) -> &'static str {
        match self {
            ExpiryWarning::SevenDays => "in 7 days",
            ExpiryWarning::OneDay => "tomorrow",
        }
    }
}

fn alnum(n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| A[rng.gen_range(0..A.len())] as char)
        .collect()
}

/// How logs name a key: its first 12 characters and an ellipsis, enough to find it in the
/// owner's list, not the whole key.
pub fn key_hint(key: &str) -> String {
    match key.char_indices().nth(12) {
        Some((end, _)) => format!("{}…", &key[..end]),
        None => key.to_owned(),
    }
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

impl TryFrom<String> for KeyType {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        Self::parse(&s)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn stored_access_that_does_not_decode_is_kept_as_it_is_and_marked_unreadable() {
        let ok = KeyAccess::decode("read,spot_trade".into(), "127.0.0.1/32".into());
        assert!(matches!(ok, KeyAccess::Readable { .. }));
        assert_eq!(ok.permissions_csv(), "read,spot_trade");
        assert_eq!(ok.allowlist_csv(), "127.0.0.1/32");
        let damaged = KeyAccess::decode("read".into(), "10.0.0.0/33".into());
        assert!(matches!(damaged, KeyAccess::Unreadable { .. }));
        assert_eq!(damaged.allowlist_csv(), "10.0.0.0/33");
        assert!(matches!(
            KeyAccess::decode("read,fly".into(), String::new()),
            KeyAccess::Unreadable { .. }
        ));
    }
}
