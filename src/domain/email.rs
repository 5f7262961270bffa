//! Email addresses, parsed once at the edge.
//!
//! Hand-written on purpose: the accepted set is a *policy*, stricter than RFC 5322. We take
//! plain ASCII addresses only (no quoted local parts, no IP literals, no unicode), because
//! look-alike characters, bidi controls and zero-width joiners in an address are how one
//! account is made to pass for another. The stored form is trimmed and lower-cased.

use std::fmt;

use super::Invalid;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

const LOCAL_SPECIALS: &str = ".!#$%&'*+/=?^_`{|}~-";

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let bad = |why: &str| {
            Invalid::new(
                "invalid_email",
                format!("That email address is not valid: {why}."),
            )
        };
        let s = raw.trim();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if !s.is_ascii() {
            return Err(bad(
                "only plain ASCII letters, digits and punctuation are accepted",
            ));
        }
        if s.len() > 254 {
            return Err(bad("it is longer than 254 characters"));
        }
        let s = s.to_ascii_lowercase();
        let (local, domain) = match s.split_once('@') {
            Some((l, d)) if !d.contains('@') => (l, d),
            _ => return Err(bad("it must contain exactly one @")),
        };
        if local.is_empty() || local.len() > 64 {
            return Err(bad("the part before @ must be 1 to 64 characters"));
        }
        if !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c))
        {
            return Err(bad(
                "the part before @ contains a character that is not allowed",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(bad(
                "dots may not start, end or repeat in the part before @",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(bad("the domain needs a dot, as in example.com"));
        }
        for label in &labels {
            let ok = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                return Err(bad("the domain is not a valid host name"));
            }
        }
        let tld = labels[labels.len() - 1];
        if !(tld.starts_with("xn--")
            || (tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic())))
        {
            return Err(bad(
                "the domain's last part is not a valid top-level domain",
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@`, which a password may not contain.
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_normalises_case() {
        let e = Email::parse("  Alice.Smith+sec@Example.COM ").expect("valid");
        assert_eq!(e.as_str(), "alice.smith+sec@example.com");
        assert_eq!(e.local_part(), "alice.smith+sec");
        assert!(Email::parse("bob@xn--80ak6aa92e.com").is_ok());
    }

    #[test]
    fn refuses_tricks() {
        for raw in [
            "",
            "no-at-sign",
            "a@b@example.com",
            "a@localhost",
            "a@exa_mple.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-example.com",
            "\"quoted\"@example.com",
            "alice@ехample.com",         // Cyrillic 'е'
            "alice\u{200b}@example.com", // zero-width space
            "alice\u{202e}@example.com", // right-to-left override
            "a@example.c0m",
            "x'; DROP TABLE accounts;--@example.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw:?} should be refused");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }
}
