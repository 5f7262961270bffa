//! The gateway's route → permission table: default routes, checks of configured tables,
//! and the canonical-path rule (only paths an upstream cannot reinterpret are authorised).

use super::{Permission, Refusal};

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
}
