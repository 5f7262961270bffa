//! Which database a URL names. The store connects by it and the settings name it
//! (`Settings::backend`); it sits here, below both, so that the store needs nothing from
//! the configuration.

use anyhow::bail;

/// The database a `database_url` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            bail!(
                "database URL must start with sqlite:// or postgres:// (got {:?})",
                super::secret::redact_url_password(url)
            )
        }
    }
}
