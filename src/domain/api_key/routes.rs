//! The gateway's route table: for each route of the exchange's API, its endpoint security
//! type (public, API key only, signed) and the permission a key needs; the exchange's
//! published layout as the default; checks of configured tables; and the canonical-path
//! rule (only paths an upstream cannot reinterpret are authorised).

use super::{Permission, Refusal};

/// The exchange's endpoint security types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// No key (exchange type `NONE`): server time, exchange information, market data.
    Public,
    /// The key in `X-MBX-APIKEY`, no signature (`USER_STREAM`, `MARKET_DATA`).
    ApiKey,
    /// Key and signature over query string and body (`TRADE`, `USER_DATA`, `MARGIN`, …).
    #[default]
    Signed,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::ApiKey => "api_key",
            Self::Signed => "signed",
        }
    }
}

/// A rule of the gateway's route table: which requests it covers (method, and an exact
/// `path` or a `path_prefix`), how they authenticate, and the permission a key needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// `GET`, `POST`, …; absent = any method.
    #[serde(default)]
    pub method: Option<String>,
    /// This path only (one trailing slash ignored).
    #[serde(default)]
    pub path: Option<String>,
    /// Every path that starts with this (plain string prefix).
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub security: Security,
    /// Needed by keys on `api_key` and `signed` routes (default `read`); public routes name
    /// none.
    #[serde(default)]
    pub permission: Option<Permission>,
}

/// What a request to a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub security: Security,
    /// `read` on public routes, where no key is asked for.
    pub permission: Permission,
}

impl RouteRule {
    fn pattern(&self) -> &str {
        self.path
            .as_deref()
            .or(self.path_prefix.as_deref())
            .unwrap_or_default()
    }

    fn route(&self) -> Route {
        Route {
            security: self.security,
            permission: self.permission.unwrap_or(Permission::Read),
        }
    }

    fn matches_path(&self, path: &str) -> bool {
        match (&self.path, &self.path_prefix) {
            (Some(exact), _) => {
                let trimmed = path
                    .strip_suffix('/')
                    .filter(|p| !p.is_empty())
                    .unwrap_or(path);
                trimmed.eq_ignore_ascii_case(
                    exact
                        .strip_suffix('/')
                        .filter(|p| !p.is_empty())
                        .unwrap_or(exact),
                )
            }
            (None, Some(prefix)) => starts_with_ignore_case(path, prefix),
            (None, None) => false,
        }
    }

    fn matches_method(&self, method: &str) -> bool {
        // HEAD runs the GET handler in most frameworks: a GET rule covers it.
        self.method.as_deref().is_none_or(|m| {
            m.eq_ignore_ascii_case(method)
                || (m.eq_ignore_ascii_case("GET") && method.eq_ignore_ascii_case("HEAD"))
        })
    }

    /// `true` when every request this rule covers is covered by `earlier` too.
    fn covered_by(&self, earlier: &RouteRule) -> bool {
        let method = match (&earlier.method, &self.method) {
            (None, _) => true,
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (Some(_), None) => false,
        };
        let path = match (&earlier.path, &earlier.path_prefix) {
            (Some(_), _) => self.path.is_some() && earlier.matches_path(self.pattern()),
            (None, Some(prefix)) => starts_with_ignore_case(self.pattern(), prefix),
            (None, None) => false,
        };
        method && path
    }
}

/// The exchange's published spot (`/api/v3`), margin (`/sapi/v1/margin`) and wallet
/// (`/sapi/v1/capital`, `/sapi/v1/asset`, `/sapi/v1/account`) endpoints with their
/// security types, and USDⓈ-M futures (`/fapi`); platforms replace it in `rampart.toml`.
/// Public and key-only routes are exact paths, so nothing else becomes public by accident;
/// signed families are prefixes (a signature is required either way). Anything else is
/// refused as an unknown route.
pub fn default_routes() -> Vec<RouteRule> {
    use Permission::{Futures, InternalTransfer, Margin, Read, SpotTrade, Withdraw};
    use Security::{ApiKey, Public, Signed};
    let rule = |method: &str, path: &str, security, permission: Option<Permission>| {
        let (path, path_prefix) = match path.strip_suffix('*') {
            Some(prefix) => (None, Some(prefix.to_owned())),
            None => (Some(path.to_owned()), None),
        };
        RouteRule {
            method: Some(method.to_owned()),
            path,
            path_prefix,
            security,
            permission,
        }
    };
    let public = |path: &str| rule("GET", path, Public, None);
    let key_only = |method: &str, path: &str| rule(method, path, ApiKey, Some(Read));
    let signed = |method: &str, path: &str, p: Permission| rule(method, path, Signed, Some(p));
    let mut rules = Vec::new();
    // Spot market data and general information: no key.
    for path in [
        "/api/v3/ping",
        "/api/v3/time",
        "/api/v3/exchangeInfo",
        "/api/v3/depth",
        "/api/v3/trades",
        "/api/v3/historicalTrades",
        "/api/v3/aggTrades",
        "/api/v3/klines",
        "/api/v3/uiKlines",
        "/api/v3/avgPrice",
        "/api/v3/ticker/24hr",
        "/api/v3/ticker/tradingDay",
        "/api/v3/ticker/price",
        "/api/v3/ticker/bookTicker",
        "/api/v3/ticker",
        "/sapi/v1/system/status",
        "/fapi/v1/ping",
        "/fapi/v1/time",
        "/fapi/v1/exchangeInfo",
        "/fapi/v1/depth",
        "/fapi/v1/trades",
        "/fapi/v1/aggTrades",
        "/fapi/v1/klines",
        "/fapi/v1/premiumIndex",
        "/fapi/v1/fundingRate",
        "/fapi/v1/ticker/24hr",
        "/fapi/v1/ticker/price",
        "/fapi/v1/ticker/bookTicker",
        "/fapi/v1/openInterest",
    ] {
        rules.push(public(path));
    }
    // User data streams: the key, no signature.
    for path in [
        "/api/v3/userDataStream",
        "/sapi/v1/userDataStream",
        "/sapi/v1/userDataStream/isolated",
        "/fapi/v1/listenKey",
    ] {
        for method in ["POST", "PUT", "DELETE"] {
            rules.push(key_only(method, path));
        }
    }
    // Margin market data: the key, no signature.
    for path in [
        "/sapi/v1/margin/allAssets",
        "/sapi/v1/margin/allPairs",
        "/sapi/v1/margin/priceIndex",
        "/sapi/v1/margin/crossMarginCollateralRatio",
    ] {
        rules.push(key_only("GET", path));
    }
    // Spot trading: signed, spot_trade. Orders, order lists (OCO, OTO, OTOCO), cancel-
    // replace, SOR orders and their test endpoints all live under these prefixes.
    for (method, path) in [
        ("POST", "/api/v3/order*"),
        ("DELETE", "/api/v3/order*"),
        ("POST", "/api/v3/orderList*"),
        ("DELETE", "/api/v3/orderList*"),
        ("DELETE", "/api/v3/openOrders"),
        ("POST", "/api/v3/sor/order*"),
        ("PUT", "/api/v3/order/amend*"),
    ] {
        rules.push(signed(method, path, SpotTrade));
    }
    // Spot account and order queries: signed, read.
    for path in [
        "/api/v3/order",
        "/api/v3/openOrders",
        "/api/v3/allOrders",
        "/api/v3/orderList",
        "/api/v3/allOrderList",
        "/api/v3/openOrderList",
        "/api/v3/account",
        "/api/v3/account/commission",
        "/api/v3/myTrades",
        "/api/v3/myPreventedMatches",
        "/api/v3/myAllocations",
        "/api/v3/rateLimit/order",
        "/api/v3/order/amendments",
    ] {
        rules.push(signed("GET", path, Read));
    }
    // Wallet: withdrawals, transfers between the account's wallets and sub-accounts, the
    // rest read-only.
    // Under withdraw/ only the two histories are reads; anything else there needs withdraw
    // whatever the method, so an upstream whose withdraw handler also runs on GET is safe.
    rules.push(signed("GET", "/sapi/v1/capital/withdraw/history", Read));
    rules.push(signed(
        "GET",
        "/sapi/v1/capital/withdraw/address/list",
        Read,
    ));
    for method in ["GET", "POST", "PUT", "DELETE"] {
        rules.push(signed(method, "/sapi/v1/capital/withdraw/*", Withdraw));
    }
    rules.push(signed("GET", "/sapi/v1/capital/*", Read));
    for (method, path) in [
        ("POST", "/sapi/v1/asset/transfer"),
        ("POST", "/sapi/v1/futures/transfer"),
        ("POST", "/sapi/v1/margin/transfer"),
        ("POST", "/sapi/v1/margin/isolated/transfer"),
        ("POST", "/sapi/v1/sub-account/transfer/*"),
        ("POST", "/sapi/v1/sub-account/universalTransfer"),
    ] {
        rules.push(signed(method, path, InternalTransfer));
    }
    rules.push(signed("POST", "/sapi/v1/asset/dust", SpotTrade));
    for path in [
        "/sapi/v1/asset/dust-btc",
        "/sapi/v1/asset/get-funding-asset",
        "/sapi/v3/asset/getUserAsset",
    ] {
        rules.push(signed("POST", path, Read));
    }
    rules.push(signed("GET", "/sapi/v1/asset/*", Read));
    rules.push(signed("GET", "/sapi/v1/account/*", Read));
    rules.push(signed("GET", "/sapi/v1/accountSnapshot", Read));
    rules.push(signed("GET", "/sapi/v1/sub-account/*", Read));
    // Margin: borrowing, repaying and margin orders need margin; queries read.
    for method in ["POST", "PUT", "DELETE"] {
        rules.push(signed(method, "/sapi/v1/margin/*", Margin));
    }
    rules.push(signed("GET", "/sapi/v1/margin/*", Read));
    // USDⓈ-M futures: writes need futures, the rest reads.
    for method in ["POST", "PUT", "DELETE"] {
        rules.push(signed(method, "/fapi/*", Futures));
    }
    rules.push(signed("GET", "/fapi/*", Read));
    rules
}

/// The methods a route rule may name.
const METHODS: [&str; 7] = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"];

/// Checks a configured route table: each rule names exactly one of `path` and
/// `path_prefix`, canonical and absolute; every method known; public rules name no
/// permission; and no rule shadowed by an earlier one that decides differently (it would
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
        let pattern = match (&rule.path, &rule.path_prefix) {
            (Some(p), None) | (None, Some(p)) => p,
            _ => {
                return Err(format!(
                    "gateway_routes rule {n}: give exactly one of path (this path only) and path_prefix"
                ))
            }
        };
        if !pattern.starts_with('/')
            || pattern.contains(['?', '#'])
            || canonical_path(pattern).is_err()
        {
            return Err(format!(
                "gateway_routes rule {n}: {pattern:?} must start with / and be a canonical path \
                 (no . or .. or empty segments, no backslashes, no %-encoded letters, digits or slashes, \
                 no ? or #: the query string is not part of the route)"
            ));
        }
        if rule.security == Security::Public && rule.permission.is_some() {
            return Err(format!(
                "gateway_routes rule {n}: a public route needs no key, so it names no permission"
            ));
        }
        for (j, earlier) in rules[..i].iter().enumerate() {
            if earlier.route() != rule.route() && rule.covered_by(earlier) {
                return Err(format!(
                    "gateway_routes rule {n} ({} {}) is never used: rule {} ({} {}) matches every request it would",
                    rule.method.as_deref().unwrap_or("any method"),
                    rule.pattern(),
                    j + 1,
                    earlier.method.as_deref().unwrap_or("any method"),
                    earlier.pattern()
                ));
            }
        }
    }
    Ok(())
}

/// The route a request is for: the first rule that matches (paths match
/// case-insensitively, as many upstreams route). `None`: no rule covers it, and the
/// request is refused. `path` must have passed [`canonical_path`].
pub fn route_for(rules: &[RouteRule], method: &str, path: &str) -> Option<Route> {
    rules
        .iter()
        .find(|r| r.matches_method(method) && r.matches_path(path))
        .map(RouteRule::route)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(permission: Permission) -> Option<Route> {
        Some(Route {
            security: Security::Signed,
            permission,
        })
    }

    #[test]
    fn the_default_table_knows_the_exchange_s_security_types() {
        let rules = default_routes();
        let public = Some(Route {
            security: Security::Public,
            permission: Permission::Read,
        });
        let key_only = Some(Route {
            security: Security::ApiKey,
            permission: Permission::Read,
        });
        for path in [
            "/api/v3/ping",
            "/api/v3/time",
            "/api/v3/exchangeInfo",
            "/api/v3/depth",
            "/api/v3/klines",
            "/api/v3/ticker/price",
            "/api/v3/ticker",
            "/api/v3/ping/",
        ] {
            assert_eq!(route_for(&rules, "GET", path), public, "{path}");
        }
        assert_eq!(
            route_for(&rules, "HEAD", "/api/v3/time"),
            public,
            "HEAD runs the GET handler"
        );
        for method in ["POST", "PUT", "DELETE"] {
            assert_eq!(
                route_for(&rules, method, "/api/v3/userDataStream"),
                key_only,
                "{method}"
            );
        }
        assert_eq!(
            route_for(&rules, "GET", "/api/v3/account"),
            signed(Permission::Read)
        );
        assert_eq!(
            route_for(&rules, "GET", "/api/v3/order"),
            signed(Permission::Read)
        );
        assert_eq!(
            route_for(&rules, "POST", "/api/v3/order"),
            signed(Permission::SpotTrade)
        );
        assert_eq!(
            route_for(&rules, "POST", "/api/v3/order/test"),
            signed(Permission::SpotTrade)
        );
        assert_eq!(
            route_for(&rules, "DELETE", "/api/v3/order"),
            signed(Permission::SpotTrade)
        );
        assert_eq!(
            route_for(&rules, "POST", "/api/v3/orderList/oco"),
            signed(Permission::SpotTrade)
        );
        assert_eq!(
            route_for(&rules, "POST", "/sapi/v1/capital/withdraw/apply"),
            signed(Permission::Withdraw)
        );
        assert_eq!(
            route_for(&rules, "GET", "/sapi/v1/capital/config/getall"),
            signed(Permission::Read)
        );
        assert_eq!(
            route_for(&rules, "POST", "/sapi/v1/asset/transfer"),
            signed(Permission::InternalTransfer)
        );
        assert_eq!(
            route_for(&rules, "POST", "/sapi/v1/margin/order"),
            signed(Permission::Margin)
        );
        assert_eq!(
            route_for(&rules, "POST", "/sapi/v1/margin/transfer"),
            signed(Permission::InternalTransfer)
        );
        assert_eq!(
            route_for(&rules, "GET", "/sapi/v1/margin/allPairs"),
            key_only
        );
        assert_eq!(
            route_for(&rules, "GET", "/sapi/v1/margin/account"),
            signed(Permission::Read)
        );
        assert_eq!(
            route_for(&rules, "POST", "/SAPI/v1/Asset/Transfer"),
            signed(Permission::InternalTransfer),
            "paths match whatever the case"
        );
        // Unknown routes, and known paths with a method the exchange does not define.
        for (method, path) in [
            ("POST", "/unknown"),
            ("GET", "/"),
            ("GET", "/api/v3/pingx"),
            ("POST", "/api/v3/ping"),
            ("GET", "/api/v3/userDataStream"),
            ("OPTIONS", "/api/v3/order"),
            ("POST", "/sapi/v1/capital/deposit/credit-apply"),
        ] {
            assert_eq!(route_for(&rules, method, path), None, "{method} {path}");
        }
    }

    #[test]
    fn a_table_from_rampart_toml_reads_as_written() {
        #[derive(serde::Deserialize)]
        struct T {
            gateway_routes: Vec<RouteRule>,
        }
        let t: T = toml::from_str(
            "[[gateway_routes]]\nmethod = \"GET\"\npath = \"/api/v3/time\"\nsecurity = \"public\"\n\
             [[gateway_routes]]\nmethod = \"POST\"\npath = \"/api/v3/userDataStream\"\nsecurity = \"api_key\"\n\
             [[gateway_routes]]\npath_prefix = \"/sapi/v1/capital/withdraw\"\npermission = \"withdraw\"\n",
        )
        .expect("valid");
        assert_eq!(validate_routes(&t.gateway_routes), Ok(()));
        let rules = t.gateway_routes;
        assert_eq!(
            route_for(&rules, "GET", "/api/v3/time").map(|r| r.security),
            Some(Security::Public)
        );
        assert_eq!(
            route_for(&rules, "POST", "/api/v3/userDataStream"),
            Some(Route {
                security: Security::ApiKey,
                permission: Permission::Read
            })
        );
        assert_eq!(
            route_for(&rules, "GET", "/sapi/v1/capital/withdraw/history"),
            signed(Permission::Withdraw),
            "signed is the default"
        );
        assert_eq!(route_for(&rules, "GET", "/api/v3/account"), None);
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
            path: None,
            path_prefix: Some(prefix.to_owned()),
            security: Security::Signed,
            permission: Some(permission),
        };
        let err = |rules: &[RouteRule]| validate_routes(rules).expect_err("refused");
        assert!(err(&[rule(Some("FETCH"), "/x", Read)]).contains("method"));
        assert!(err(&[rule(None, "sapi/v1", Read)]).contains("must start with /"));
        assert!(err(&[rule(None, "/sapi/../x", Read)]).contains("canonical"));
        assert!(err(&[rule(None, "/sapi/v1/capital/withdraw?x", Read)]).contains("query string"));
        let both = RouteRule {
            path: Some("/x".into()),
            ..rule(None, "/x", Read)
        };
        assert!(err(&[both]).contains("exactly one of path"));
        let public_with_permission = RouteRule {
            security: Security::Public,
            ..rule(None, "/x", Read)
        };
        assert!(err(&[public_with_permission]).contains("names no permission"));
        let shadowed = err(&[
            rule(None, "/sapi/v1/capital", Read),
            rule(Some("GET"), "/SAPI/v1/capital/withdraw", Withdraw),
        ]);
        assert!(
            shadowed.contains("rule 2") && shadowed.contains("never used"),
            "{shadowed}"
        );
        // A public rule after a signed one for the same paths would never apply either.
        let shadowed_public = err(&[
            rule(Some("GET"), "/api/v3/", Read),
            RouteRule {
                path: Some("/api/v3/time".into()),
                path_prefix: None,
                security: Security::Public,
                permission: None,
                ..rule(Some("GET"), "/", Read)
            },
        ]);
        assert!(shadowed_public.contains("never used"), "{shadowed_public}");
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
}
