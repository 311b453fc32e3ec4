//! `Idempotency-Key` records: the first response of a request, kept for replay.

use uuid::Uuid;

use crate::StoreResult;

/// Outcome of starting a request under an idempotency key.
#[derive(Clone, Debug, PartialEq)]
pub enum IdempotencyStart {
    /// First use of the key: run the request, then record or release it.
    Started,
    /// Same key and request completed before: replay this status and body.
    Replay {
        /// Status of the first response.
        status: u16,
        /// Body of the first response.
        body: String,
    },
    /// Same key, request still running.
    InProgress,
    /// Same key used with a different request.
    Mismatch,
}

/// Storage of idempotency keys, scoped to an OAuth client.
#[async_trait::async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Starts a request under a key: claims the key if it is free or expired.
    ///
    /// Concurrency: two requests with one key at once: exactly one is `Started` (an insert
    /// that does nothing on the primary key), the other sees `InProgress` or `Replay`.
    async fn idempotency_start(
        &self,
        client: Uuid,
        key: &str,
        request_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<IdempotencyStart>;
    /// Records the response of a started request.
    async fn idempotency_finish(
        &self,
        client: Uuid,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()>;
    /// Releases a started key whose request did not succeed (a recorded one stays).
    async fn idempotency_release(&self, client: Uuid, key: &str) -> StoreResult<()>;
    /// Drops expired records; returns how many.
    async fn purge_idempotency(&self, now: i64) -> StoreResult<u64>;
}

/// What a request under a key that is taken meets: the stored record's request hash, status
/// and body against the request's hash.
pub(crate) fn taken_key_outcome(
    stored_hash: &str,
    request_hash: &str,
    status: Option<i64>,
    body: Option<String>,
) -> IdempotencyStart {
    if stored_hash != request_hash {
        return IdempotencyStart::Mismatch;
    }
    match (status, body) {
        (Some(status), Some(body)) => IdempotencyStart::Replay {
            status: u16::try_from(status).unwrap_or(200),
            body,
        },
        _ => IdempotencyStart::InProgress,
    }
}
