//! What can go wrong with the store.

/// A `Result` with [`StoreError`].
pub type StoreResult<T> = Result<T, StoreError>;

/// An error of the store: what happened and what to do about it, never a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The lease's epoch is no longer the handover's: another instance took it over.
    /// Nothing of the write committed; the holder must stop acting on the handover.
    #[error("handover {handover_id}: the lease of epoch {epoch} was taken over; nothing was written")]
    Fenced {
        /// The handover.
        handover_id: String,
        /// The stale epoch.
        epoch: u64,
    },
    /// No handover has this id.
    #[error("no handover {0}")]
    NotFound(String),
    /// The store was written with another encryption key, or in plaintext while a key is
    /// set (or the reverse).
    #[error("{0}")]
    Key(String),
    /// The store was written by a newer version of this crate.
    #[error(
        "the store's schema is newer than this version of handover-store ({0}); upgrade this program, or point it at another store"
    )]
    NewerSchema(String),
    /// The store URL or options are wrong.
    #[error("{0}")]
    Config(String),
    /// Sealed data could not be read (corrupt, or written with another key).
    #[error("sealed data could not be opened: {0}")]
    Sealed(String),
    /// The database failed or could not be reached.
    #[error("the store failed: {0}")]
    Database(String),
}

impl StoreError {
    /// Whether this is [`StoreError::Fenced`].
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced { .. })
    }

    /// Whether retrying later may succeed (the database was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Database(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        // Display of a sqlx error carries no connection string or password.
        StoreError::Database(error.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError::Database(format!("a stored JSON value is unreadable: {error}"))
    }
}
