//! Unique-constraint violations, recognised by the constraint's name. PostgreSQL reports
//! the name (`DatabaseError::constraint`); SQLite reports only its text, "UNIQUE constraint
//! failed: table.column", which the one table below maps to the same names.

/// The unique constraints a caller handles (the others are database errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    AccountEmail,
    AccountUid,
    PasskeyCredential,
    OperatorEmail,
    WithdrawalRequest,
    TransferRequest,
    DepositRequest,
    PlatformTokenName,
}

/// Each handled constraint: its PostgreSQL name and SQLite's `table.column`.
const UNIQUE: [(Constraint, &str, &str); 8] = [
    (
        Constraint::AccountEmail,
        "accounts_email_key",
        "accounts.email",
    ),
    (Constraint::AccountUid, "accounts_uid_key", "accounts.uid"),
    (
        Constraint::PasskeyCredential,
        "passkeys_credential_id_key",
        "passkeys.credential_id",
    ),
    (
        Constraint::OperatorEmail,
        "operators_email_key",
        "operators.email",
    ),
    (
        Constraint::WithdrawalRequest,
        "withdrawals_request_id_key",
        "withdrawals.request_id",
    ),
    (
        Constraint::TransferRequest,
        "transfers_request_id_key",
        "transfers.request_id",
    ),
    (
        Constraint::DepositRequest,
        "deposits_request_id_key",
        "deposits.request_id",
    ),
    (
        Constraint::PlatformTokenName,
        "platform_tokens_name_key",
        "platform_tokens.name",
    ),
];

/// The handled unique constraint a database error violates, if it is one.
pub fn violated(e: &sqlx::Error) -> Option<Constraint> {
    let sqlx::Error::Database(d) = e else {
        return None;
    };
    if !d.is_unique_violation() {
        return None;
    }
    let named = |(c, pg, lite): &(Constraint, &str, &str)| {
        let by_name = d.constraint() == Some(*pg);
        let by_text = d.message().strip_prefix("UNIQUE constraint failed: ") == Some(*lite);
        (by_name || by_text).then_some(*c)
    };
    UNIQUE.iter().find_map(named)
}
