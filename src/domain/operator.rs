//! Operators of the console: the platform's support staff, separate identities from
//! account owners. Roles are hierarchical: each role may do what the one before it may.

use crate::clock::{Millis, HOUR, MINUTE};

/// How long an enrolment link works (single use).
pub const ENROLMENT_TTL: Millis = 24 * HOUR;
/// A console session ends after this long without a request…
pub const SESSION_IDLE: Millis = 15 * MINUTE;
/// …and after this long in any case.
pub const SESSION_ABSOLUTE: Millis = 8 * HOUR;

/// What an operator is allowed to do, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Tickets and account lookup.
    Support,
    /// + recoveries, freeze and unfreeze.
    Reviewer,
    /// + operators and settings.
    Admin,
}

/// One thing the console lets an operator do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Lookup,
    Tickets,
    Recoveries,
    Freeze,
    Operators,
    Settings,
}

impl Power {
    /// The least role that has this power.
    pub const fn least_role(self) -> Role {
        match self {
            Self::Lookup | Self::Tickets => Role::Support,
            Self::Recoveries | Self::Freeze => Role::Reviewer,
            Self::Operators | Self::Settings => Role::Admin,
        }
    }
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Support, Role::Reviewer, Role::Admin];

    /// The stored and typed name; `None` for anything else (the store reports that as
    /// corrupt data, the edge as invalid input).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "support" => Some(Self::Support),
            "reviewer" => Some(Self::Reviewer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Support => "support",
            Self::Reviewer => "reviewer",
            Self::Admin => "admin",
        }
    }

    /// Whether this role has `power` (each role has every power of the roles before it).
    pub fn may(self, power: Power) -> bool {
        self >= power.least_role()
    }
}

impl TryFrom<String> for Role {
    type Error = crate::domain::Unknown;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s).ok_or_else(|| crate::domain::Unknown::new("operator role", s))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signed-in (or listed) operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Operator {
    pub id: String,
    pub email: String,
    pub role: Role,
}

impl Operator {
    /// How the operator appears as the actor of audit events.
    pub fn actor(&self) -> String {
        format!("operator:{}", self.email)
    }

    pub fn may(&self, power: Power) -> bool {
        self.role.may(power)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_hierarchical() {
        use Power::*;
        let support = [Lookup, Tickets];
        let reviewer = [Recoveries, Freeze];
        let admin = [Operators, Settings];
        for p in support {
            assert!(Role::Support.may(p) && Role::Reviewer.may(p) && Role::Admin.may(p));
        }
        for p in reviewer {
            assert!(!Role::Support.may(p) && Role::Reviewer.may(p) && Role::Admin.may(p));
        }
        for p in admin {
            assert!(!Role::Support.may(p) && !Role::Reviewer.may(p) && Role::Admin.may(p));
        }
    }

    #[test]
    fn role_names_round_trip_and_unknown_is_none() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse(""), None);
    }

    #[test]
    fn actor_names_the_email() {
        let o = Operator {
            id: "1".into(),
            email: "ops@example.com".into(),
            role: Role::Support,
        };
        assert_eq!(o.actor(), "operator:ops@example.com");
    }
}
