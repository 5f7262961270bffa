//! The withdrawal guard, as rules: assets and their precision, exact amounts, destination
//! addresses and memos, the look-alike (address-poisoning) key, the states of a withdrawal,
//! and the decision itself: given the account's state at the moment of the request,
//! release, hold (until when, and why) or refuse (and why).
//!
//! Amounts are exact: a decimal string becomes an integer count of the asset's smallest
//! unit (`u128`, enough for 18 decimals up to 3.4 × 10²⁰ whole units); no floating point.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Invalid;
use crate::clock::{format_utc, Millis, DAY, HOUR};

/// A new allowlist address is usable this long after it is added.
pub const ALLOWLIST_ADDRESS_DELAY: Millis = 24 * HOUR;
/// The withdraw delay ("withdraw protection") is 0 (off) to this many days.
pub const MAX_DELAY_DAYS: i64 = 7;
/// A withdrawal to a look-alike destination is held at least this long (longer if the
/// withdraw delay is), so the owner's mail arrives before the money leaves.
pub const LOOKALIKE_HOLD: Millis = 24 * HOUR;
/// Per-key daily limits count the last this long.
pub const KEY_LIMIT_WINDOW: Millis = DAY;
/// An address is 14 to 128 characters: shorter is no address of any network.
const ADDRESS_CHARS: std::ops::RangeInclusive<usize> = 14..=128;
const MEMO_MAX_CHARS: usize = 64;
const LABEL_MAX_CHARS: usize = 64;
/// Characters compared at each end for the look-alike check (after a common prefix).
const LOOKALIKE_ENDS: usize = 4;

/// A network an asset moves on, and whether its transfers take a memo (destination tag).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    #[serde(default)]
    pub memo: bool,
}

/// An asset the platform lets people withdraw: its symbol, how many decimals an amount may
/// have, and its networks (`[[assets]]` in `rampart.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    pub symbol: String,
    pub precision: u32,
    pub networks: Vec<Network>,
}

impl Asset {
    fn new(symbol: &str, precision: u32, networks: &[(&str, bool)]) -> Self {
        Self {
            symbol: symbol.into(),
            precision,
            networks: networks
                .iter()
                .map(|&(name, memo)| Network {
                    name: name.into(),
                    memo,
                })
                .collect(),
        }
    }

    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }
}

/// The assets a fresh installation knows; a platform lists its own.
pub fn default_assets() -> Vec<Asset> {
    vec![
        Asset::new("BTC", 8, &[("BTC", false), ("BSC", false)]),
        Asset::new(
            "ETH",
            18,
            &[("ETH", false), ("ARBITRUM", false), ("BSC", false)],
        ),
        Asset::new("USDT", 6, &[("ETH", false), ("TRX", false), ("BSC", false)]),
        Asset::new("USDC", 6, &[("ETH", false), ("SOL", false)]),
        Asset::new("XRP", 6, &[("XRP", true)]),
        Asset::new("BNB", 8, &[("BSC", false), ("BNB", true)]),
        Asset::new("SOL", 9, &[("SOL", false)]),
    ]
}

/// The configured assets, checked once at start: symbols and networks unique, precision
/// at most 18 (what `u128` holds with room for sums).
pub fn check_assets(assets: &[Asset]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for a in assets {
        if a.symbol.is_empty() || !a.symbol.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "asset symbol {:?} must be letters and digits",
                a.symbol
            ));
        }
        if !seen.insert(a.symbol.as_str()) {
            return Err(format!("asset {} is listed twice", a.symbol));
        }
        if a.precision > 18 {
            return Err(format!(
                "asset {}: precision {} is above 18",
                a.symbol, a.precision
            ));
        }
        if a.networks.is_empty() {
            return Err(format!("asset {} has no network", a.symbol));
        }
        let mut nets = std::collections::HashSet::new();
        for n in &a.networks {
            if n.name.is_empty() || !nets.insert(n.name.as_str()) {
                return Err(format!(
                    "asset {}: network {:?} empty or listed twice",
                    a.symbol, n.name
                ));
            }
        }
    }
    Ok(())
}

/// Finds the asset and network of a request; unknown ones are refused with their own codes.
pub fn asset_network<'a>(
    assets: &'a [Asset],
    asset: &str,
    network: &str,
) -> Result<(&'a Asset, &'a Network), Invalid> {
    let a = assets.iter().find(|a| a.symbol == asset).ok_or_else(|| {
        Invalid::new(
            "unknown_asset",
            format!("{asset:?} is not an asset that can be withdrawn here."),
        )
    })?;
    let n = a.network(network).ok_or_else(|| {
        Invalid::new(
            "unknown_network",
            format!(
                "{network:?} is not a network for {}; use one of: {}.",
                a.symbol,
                a.networks
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    Ok((a, n))
}

/// An exact, positive amount of an asset: `units` of 10^-`scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount {
    units: u128,
    scale: u32,
}

impl Amount {
    /// A plain decimal string (`"12"`, `"0.015"`): digits, at most one point with digits on
    /// both sides, no sign, no exponent, no spaces, at most `precision` decimals, above 0.
    pub fn parse(raw: &str, precision: u32) -> Result<Self, Invalid> {
        let bad = || {
            Invalid::new(
                "invalid_amount",
                "The amount must be a plain decimal number such as 0.25 (digits, one point, no sign or exponent).",
            )
        };
        if raw.starts_with('-') {
            return Err(Invalid::new(
                "negative_amount",
                "The amount cannot be negative.",
            ));
        }
        if raw.is_empty() || raw.len() > 60 {
            return Err(bad());
        }
        let (whole, frac) = match raw.split_once('.') {
            Some((w, f)) => (w, f),
            None => (raw, ""),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (raw.contains('.') && !digits(frac)) {
            return Err(bad());
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() as u32 > precision {
            return Err(Invalid::new(
                "too_many_decimals",
                format!("This asset takes at most {precision} decimals."),
            ));
        }
        let mut units: u128 = 0;
        for b in whole.bytes().chain(frac.bytes()) {
            units = units
                .checked_mul(10)
                .and_then(|u| u.checked_add(u128::from(b - b'0')))
                .ok_or_else(bad)?;
        }
        let units = units
            .checked_mul(10u128.pow(precision - frac.len() as u32))
            .ok_or_else(bad)?;
        if units == 0 {
            return Err(Invalid::new(
                "amount_not_positive",
                "The amount must be above zero.",
            ));
        }
        Ok(Self {
            units,
            scale: precision,
        })
    }

    /// An amount read back from storage (written by [`Amount::to_string`]).
    pub fn stored(raw: &str, precision: u32) -> Option<Self> {
        Self::parse(raw, precision).ok()
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        (self.scale == other.scale).then_some(())?;
        Some(Self {
            units: self.units.checked_add(other.units)?,
            scale: self.scale,
        })
    }
}

impl std::fmt::Display for Amount {
    /// The canonical form: no leading zeros, no trailing decimal zeros.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let base = 10u128.pow(self.scale);
        let (whole, frac) = (self.units / base, self.units % base);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let frac = format!("{frac:0width$}", width = self.scale as usize);
        write!(f, "{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// A destination address as the platform sent it, checked: ASCII letters and digits (and
/// `:` `-` `_` `.` that some networks use), 14–128 characters, no spaces anywhere, and no
/// character that only looks like a Latin letter or digit (a Cyrillic `а` in an address
/// is a trap, never a typo to fix).
pub fn check_address(raw: &str) -> Result<&str, Invalid> {
    if raw.chars().any(char::is_whitespace) {
        return Err(Invalid::new(
            "address_has_spaces",
            "The address contains a space or line break; copy it again without them.",
        ));
    }
    if let Some(c) = raw.chars().find(|c| !c.is_ascii()) {
        return Err(Invalid::new(
            "address_not_ascii",
            format!(
                "The address contains {c:?} (U+{:04X}), a character that only looks like a letter or digit. Real addresses use plain letters and digits: copy it from the recipient again.",
                c as u32
            ),
        ));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'.'))
    {
        return Err(Invalid::new(
            "invalid_address",
            "The address may contain only letters, digits and : - _ .",
        ));
    }
    if !ADDRESS_CHARS.contains(&raw.len()) {
        return Err(Invalid::new(
            "invalid_address",
            "An address is 14 to 128 characters long.",
        ));
    }
    Ok(raw)
}

/// A memo (destination tag), only on networks that take one; empty means none.
pub fn check_memo<'a>(
    network: &Network,
    memo: Option<&'a str>,
) -> Result<Option<&'a str>, Invalid> {
    let Some(memo) = memo.filter(|m| !m.is_empty()) else {
        return Ok(None);
    };
    if !network.memo {
        return Err(Invalid::new(
            "memo_not_allowed",
            format!(
                "Network {} takes no memo or tag; send the request without one.",
                network.name
            ),
        ));
    }
    if memo.len() > MEMO_MAX_CHARS || !memo.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Invalid::new(
            "invalid_memo",
            "A memo or tag is 1 to 64 letters and digits.",
        ));
    }
    Ok(Some(memo))
}

/// A label the owner gives an allowlist address.
pub fn check_label(raw: &str) -> Result<String, Invalid> {
    let label = raw.trim();
    if label.is_empty()
        || label.chars().count() > LABEL_MAX_CHARS
        || label.chars().any(char::is_control)
    {
        return Err(Invalid::new(
            "invalid_label",
            "A label is 1 to 64 characters, without control characters.",
        ));
    }
    Ok(label.to_owned())
}

/// What two addresses that look alike at a glance share: the first and last four
/// characters after any prefix every address of the network shares (`0x`, a bech32
/// `bc1q`), lower-cased. An address poisoner generates an address with the same ends as
/// one the victim used, hoping the victim copies it from the history; the key is indexed
/// so the check is one lookup.
pub fn lookalike_key(address: &str) -> String {
    let lower = address.to_ascii_lowercase();
    let mut body = lower.as_str();
    if let Some(rest) = body.strip_prefix("0x") {
        body = rest;
    } else if let Some(sep) = body.find('1').filter(|&i| (2..=4).contains(&i)) {
        // bech32: human-readable part, '1', then the witness version.
        if body[..sep].bytes().all(|b| b.is_ascii_alphabetic()) && body.len() > sep + 2 {
            body = &body[sep + 2..];
        }
    }
    let n = LOOKALIKE_ENDS.min(body.len() / 2);
    format!("{}…{}", &body[..n], &body[body.len() - n..])
}

text_enum!(
    /// Where a withdrawal is: `held` → `released` → `broadcast` → `confirmed`, or
    /// `cancelled` (by the owner, a freeze, or a recall) or `refused` at the request.
    WithdrawalState, "withdrawal state", {
        Held => "held",
        Released => "released",
        Broadcast => "broadcast",
        Confirmed => "confirmed",
        Cancelled => "cancelled",
        Refused => "refused",
    }
);

text_enum!(
    /// How the withdrawal was asked for: in a signed-in session, or with an API key.
    Via, "withdrawal channel", { Session => "session", ApiKey => "api_key" }
);

/// One reason of a decision: a stable code and a sentence for the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

impl Reason {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// A key's own withdrawal rules: the allowlist addresses it may send to (`None`: any the
/// account may), and how many withdrawals and how much per asset in 24 hours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWithdrawRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_count: Option<i64>,
    /// Asset symbol → the most per 24 hours, as a decimal string.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub daily_amounts: BTreeMap<String, String>,
}

/// An allowlist entry that matches the destination.
#[derive(Debug, Clone)]
pub struct AllowlistMatch {
    pub id: String,
    pub label: String,
    pub usable_at: Millis,
}

/// What the API key of a key-made withdrawal is allowed, as read in the decision's
/// transaction.
#[derive(Debug, Clone)]
pub enum KeyCheck {
    /// No key, unknown, another account's, deleted or expired.
    Unusable(&'static str),
    MissingPermission,
    Usable {
        rules: KeyWithdrawRules,
        /// Withdrawals the key made in the last 24 hours (neither refused nor cancelled),
        /// and their total in this asset.
        count_24h: i64,
        amount_24h: Option<Amount>,
    },
}

/// Everything a decision looks at, read in the decision's own transaction.
#[derive(Debug, Clone)]
pub struct Situation {
    pub now: Millis,
    pub frozen: bool,
    pub recovery_required: bool,
    /// The end of the latest withdrawal lock still in force.
    pub locked_until: Option<Millis>,
    pub allowlist_on: bool,
    pub allowlisted: Option<AllowlistMatch>,
    pub delay_days: i64,
    /// A known address this destination imitates (same ends, different middle).
    pub imitates: Option<String>,
    pub key: Option<KeyCheck>,
    pub amount: Amount,
    pub precision: u32,
    pub asset: String,
}

/// The answer: released now, held until `release_at`, or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub state: WithdrawalState,
    pub release_at: Option<Millis>,
    pub reasons: Vec<Reason>,
}

impl Decision {
    /// The first reason's code, for a refusal.
    pub fn code(&self) -> Option<&str> {
        (self.state == WithdrawalState::Refused)
            .then(|| self.reasons.first().map(|r| r.code.as_str()))
            .flatten()
    }
}

/// Decides. Refusals first (all that apply are given), then holds (the latest release
/// time wins, every reason is given), else release.
pub fn decide(s: &Situation) -> Decision {
    let mut refusals = Vec::new();
    if s.frozen {
        refusals.push(Reason::new(
            "account_frozen",
            "The account is frozen: nothing leaves it until a recovery review reopens it.",
        ));
    }
    if s.recovery_required {
        refusals.push(Reason::new(
            "recovery_in_progress",
            "The account was just recovered: set a new password and a new second factor first.",
        ));
    }
    if let Some(until) = s.locked_until.filter(|&t| t > s.now) {
        refusals.push(Reason::new(
            "withdrawals_locked",
            format!(
                "Withdrawals are locked until {} after a security change.",
                format_utc(until)
            ),
        ));
    }
    match &s.key {
        None => {}
        Some(KeyCheck::Unusable(why)) => refusals.push(Reason::new(
            "key_unusable",
            format!("The API key cannot withdraw: {why}."),
        )),
        Some(KeyCheck::MissingPermission) => refusals.push(Reason::new(
            "permission_missing",
            "The API key does not have the withdraw permission.",
        )),
        Some(KeyCheck::Usable {
            rules,
            count_24h,
            amount_24h,
        }) => {
            if let Some(ids) = &rules.addresses {
                let listed = s.allowlisted.as_ref().is_some_and(|m| ids.contains(&m.id));
                if !listed {
                    refusals.push(Reason::new(
                        "key_address_not_allowed",
                        "This API key may withdraw only to the allowlist addresses chosen for it.",
                    ));
                }
            }
            if let Some(max) = rules.daily_count.filter(|&max| *count_24h >= max) {
                refusals.push(Reason::new(
                    "key_daily_count",
                    format!(
                        "This API key may make {max} withdrawals in 24 hours; that many were made."
                    ),
                ));
            }
            if let Some(limit) = rules
                .daily_amounts
                .get(&s.asset)
                .and_then(|l| Amount::stored(l, s.precision))
            {
                let total = amount_24h.map_or(Some(s.amount), |a| a.checked_add(s.amount));
                if total.is_none_or(|t| t > limit) {
                    refusals.push(Reason::new(
                        "key_daily_amount",
                        format!("This API key may withdraw {limit} {} in 24 hours; this one would go above it.", s.asset),
                    ));
                }
            }
        }
    }
    if s.allowlist_on {
        match &s.allowlisted {
            None => refusals.push(Reason::new(
                "address_not_allowlisted",
                "The allowlist is on and this address is not on it.",
            )),
            Some(m) if m.usable_at > s.now => refusals.push(Reason::new(
                "address_not_yet_usable",
                format!(
                    "The allowlist address \"{}\" was added less than 24 hours ago; it is usable from {}.",
                    m.label,
                    format_utc(m.usable_at)
                ),
            )),
            Some(_) => {}
        }
    }
    if !refusals.is_empty() {
        return Decision {
            state: WithdrawalState::Refused,
            release_at: None,
            reasons: refusals,
        };
    }
    let mut holds = Vec::new();
    let mut release_at = s.now;
    if s.delay_days > 0 {
        release_at = release_at.max(s.now + s.delay_days * DAY);
        holds.push(Reason::new(
            "withdraw_delay",
            format!(
                "Your withdraw protection holds every withdrawal for {} day{}; you can cancel it until it is released.",
                s.delay_days,
                if s.delay_days == 1 { "" } else { "s" }
            ),
        ));
    }
    if let Some(known) = &s.imitates {
        release_at = release_at.max(s.now + LOOKALIKE_HOLD);
        holds.push(Reason::new(
            "lookalike_address",
            format!(
                "Warning: this address only looks like {known}, an address you used before. It starts and ends the same but differs in between — the sign of address poisoning. Check every character; if you did not mean it, cancel."
            ),
        ));
    }
    if holds.is_empty() {
        Decision {
            state: WithdrawalState::Released,
            release_at: None,
            reasons: Vec::new(),
        }
    } else {
        Decision {
            state: WithdrawalState::Held,
            release_at: Some(release_at),
            reasons: holds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_and_strict() {
        let a = Amount::parse("0.10000000", 8).unwrap();
        assert_eq!(a.to_string(), "0.1");
        assert_eq!(Amount::parse("007", 8).unwrap().to_string(), "7");
        assert_eq!(
            Amount::parse("0.000000000000000001", 18)
                .unwrap()
                .to_string(),
            "0.000000000000000001"
        );
        let sum = Amount::parse("0.1", 8)
            .unwrap()
            .checked_add(Amount::parse("0.2", 8).unwrap());
        assert_eq!(sum, Amount::parse("0.3", 8).ok());
        for (raw, code) in [
            ("-1", "negative_amount"),
            ("0", "amount_not_positive"),
            ("0.000", "amount_not_positive"),
            ("0.123456789", "too_many_decimals"),
            ("1e5", "invalid_amount"),
            ("+1", "invalid_amount"),
            (" 1", "invalid_amount"),
            ("1.", "invalid_amount"),
            (".5", "invalid_amount"),
            ("1,5", "invalid_amount"),
            ("", "invalid_amount"),
            (
                "99999999999999999999999999999999999999999",
                "invalid_amount",
            ),
        ] {
            assert_eq!(Amount::parse(raw, 8).unwrap_err().code, code, "{raw}");
        }
    }

    #[test]
    fn addresses_refuse_spaces_and_homoglyphs() {
        assert!(check_address("0x52908400098527886E0F7030069857D2E4169EE7").is_ok());
        assert_eq!(
            check_address("0x5290840009852788 6E0F7030069857D2E4169EE7")
                .unwrap_err()
                .code,
            "address_has_spaces"
        );
        assert_eq!(
            check_address("0x52908400098527886E0F7030069857D2E4169EE7\n")
                .unwrap_err()
                .code,
            "address_has_spaces"
        );
        // Cyrillic 'Е' in place of the Latin one.
        assert_eq!(
            check_address("0x52908400098527886\u{415}0F7030069857D2E4169EE7")
                .unwrap_err()
                .code,
            "address_not_ascii"
        );
        assert_eq!(check_address("short").unwrap_err().code, "invalid_address");
        assert_eq!(
            check_address("0x<script>alert(1)</script>")
                .unwrap_err()
                .code,
            "invalid_address"
        );
    }

    #[test]
    fn lookalike_keys_match_same_ends_after_common_prefixes() {
        let real = "0x52908400098527886E0F7030069857D2E4169EE7";
        let fake = "0x5290aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa69ee7";
        assert_eq!(lookalike_key(real), lookalike_key(fake));
        assert_ne!(
            lookalike_key(real),
            lookalike_key("0x1111840009852788aE0F7030069857D2E4169EE7")
        );
        assert_eq!(
            lookalike_key("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
            lookalike_key("bc1qar0sxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxf5mdq")
        );
        assert_ne!(
            lookalike_key("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
            lookalike_key("bc1qzzzzrrr7xfkvy5l643lydnw9re59gtzzwf5mdq")
        );
    }

    fn situation() -> Situation {
        Situation {
            now: 1_000 * DAY,
            frozen: false,
            recovery_required: false,
            locked_until: None,
            allowlist_on: false,
            allowlisted: None,
            delay_days: 0,
            imitates: None,
            key: None,
            amount: Amount::parse("1", 8).unwrap(),
            precision: 8,
            asset: "BTC".into(),
        }
    }

    #[test]
    fn decisions() {
        let s = situation();
        assert_eq!(decide(&s).state, WithdrawalState::Released);
        let held = decide(&Situation {
            delay_days: 2,
            ..s.clone()
        });
        assert_eq!(held.state, WithdrawalState::Held);
        assert_eq!(held.release_at, Some(s.now + 2 * DAY));
        let both = decide(&Situation {
            delay_days: 2,
            imitates: Some("0xabc".into()),
            ..s.clone()
        });
        assert_eq!(both.reasons.len(), 2);
        assert_eq!(both.release_at, Some(s.now + 2 * DAY));
        let refused = decide(&Situation {
            frozen: true,
            allowlist_on: true,
            ..s.clone()
        });
        assert_eq!(refused.code(), Some("account_frozen"));
        assert_eq!(refused.reasons.len(), 2);
        let young = decide(&Situation {
            allowlist_on: true,
            allowlisted: Some(AllowlistMatch {
                id: "a".into(),
                label: "cold".into(),
                usable_at: s.now + HOUR,
            }),
            ..s.clone()
        });
        assert_eq!(young.code(), Some("address_not_yet_usable"));
        let over = decide(&Situation {
            key: Some(KeyCheck::Usable {
                rules: KeyWithdrawRules {
                    addresses: None,
                    daily_count: Some(5),
                    daily_amounts: [("BTC".to_owned(), "1.5".to_owned())].into(),
                },
                count_24h: 1,
                amount_24h: Amount::parse("0.6", 8).ok(),
            }),
            ..s.clone()
        });
        assert_eq!(over.code(), Some("key_daily_amount"));
    }
}
