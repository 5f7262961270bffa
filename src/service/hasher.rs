//! Argon2 work, shared by registration, sign-in, step-up, password change and recovery:
//! at most one hash per core at a time, and the dummy hash that makes an unknown email
//! take as long as a wrong password.

use super::{ServiceError, ServiceResult};

/// The argon2 slots and the dummy hash.
pub struct Hasher {
    /// A real argon2id hash of a random password, verified against when the email is
    /// unknown, so that answer takes as long as a wrong password.
    pub dummy_hash: String,
    /// One argon2 computation per core at a time: each takes 19 MiB, so a burst of sign-ins
    /// queues here instead of exhausting memory, and the cores are not time-sliced between
    /// more hashes than they can run (which thrashes their caches).
    slots: tokio::sync::Semaphore,
}

impl Hasher {
    pub fn new() -> anyhow::Result<Self> {
        let dummy_hash = crate::domain::password::hash(&crate::domain::secret::random_token())?;
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Ok(Self {
            dummy_hash,
            slots: tokio::sync::Semaphore::new(cores),
        })
    }

    /// Runs argon2 work on a blocking thread, at most one per core at a time.
    pub async fn argon2<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> ServiceResult<T> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("argon2 slots closed: {e}")))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ServiceError::Internal(anyhow::anyhow!("blocking task failed: {e}")))
    }
}
