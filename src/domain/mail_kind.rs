//! Kinds of security mail: `security` always goes out; the optional kinds are the ones an
//! owner may switch off (after 48 hours, as a weakening change). Stored as text in
//! `mail_mutes.kind` and `pending_changes.target`; the strings are the wire format too.

use super::Unknown;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailKind {
    /// Always sent.
    Security,
    /// A mail for every sign-in.
    Signin,
    /// API-key expiry warnings and refused-address alerts.
    ApiKeys,
}

impl MailKind {
    /// The kinds an owner may switch off, in the order the Security Center lists them.
    pub const OPTIONAL: [MailKind; 2] = [MailKind::Signin, MailKind::ApiKeys];

    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Security => "security",
            MailKind::Signin => "signin",
            MailKind::ApiKeys => "api_keys",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Unknown> {
        match s {
            "security" => Ok(MailKind::Security),
            "signin" => Ok(MailKind::Signin),
            "api_keys" => Ok(MailKind::ApiKeys),
            other => Err(Unknown::new("mail kind", other)),
        }
    }

    /// What switching this kind off stops, or `None` for mails that always go out.
    pub fn optional_description(self) -> Option<&'static str> {
        match self {
            MailKind::Security => None,
            MailKind::Signin => {
                Some("a mail for every sign-in (new devices always mail and must be confirmed)")
            }
            MailKind::ApiKeys => Some("API-key expiry warnings and refused-address alerts"),
        }
    }
}

impl TryFrom<String> for MailKind {
    type Error = Unknown;
    fn try_from(s: String) -> Result<Self, Unknown> {
        Self::parse(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_only_optional_ones_have_a_description() {
        for k in [MailKind::Security, MailKind::Signin, MailKind::ApiKeys] {
            assert_eq!(MailKind::parse(k.as_str()), Ok(k));
            assert_eq!(
                k.optional_description().is_some(),
                MailKind::OPTIONAL.contains(&k)
            );
        }
        assert!(MailKind::parse("Signin").is_err());
    }
}
