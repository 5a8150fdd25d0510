//! Errors of the storage layer. The server maps them to `AppError`; nothing
//! here ever carries a secret or a row's personal data in its message.

use crate::crypto::CryptoError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; the string names which (stable, snake_case).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    /// A lock another transaction holds, asked for in a transaction that
    /// must not wait for it (see `TenantTx::wait_for_locks`).
    #[error("lock busy: {0}")]
    LockBusy(String),
}

impl StoreError {
    /// Whether a database error is a unique-constraint violation.
    pub fn is_unique_violation(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
    }

    /// The rule a write broke, when it broke one: a [`StoreError::Conflict`]
    /// or a constraint violation the database reported (unique, foreign key,
    /// check, not null). Retrying the same write breaks it again, so callers
    /// treat it as permanent, never as an outage. The text names the
    /// constraint (PostgreSQL) or the columns (SQLite), never the values.
    pub fn conflict(&self) -> Option<String> {
        match self {
            StoreError::Conflict(rule) => Some((*rule).to_owned()),
            StoreError::Database(sqlx::Error::Database(db))
                if !matches!(db.kind(), sqlx::error::ErrorKind::Other) =>
            {
                Some(match db.constraint() {
                    Some(name) => format!("constraint `{name}` violated"),
                    None => db.message().to_owned(),
                })
            }
            _ => None,
        }
    }
}

/// Decodes a stored name into its core type; a name the code does not know
/// is a decoding error, not a value to guess at.
pub(crate) fn typed<T>(s: String) -> Result<T, StoreError>
where
    T: TryFrom<String, Error = String>,
{
    T::try_from(s).map_err(|e| StoreError::Database(sqlx::Error::Decode(e.into())))
}
