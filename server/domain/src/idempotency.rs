//! `Idempotency-Key` on requests that create something: the same key and request within
//! 24 hours replay the first successful response; the same key with another request is 422
//! `idempotency_key_reused`; while the first request still runs, 409
//! `idempotency_in_progress`. Only successful responses are recorded, so a failed request
//! can be tried again with its key.

use std::sync::Arc;

use palmlink_store::{IdempotencyStart, Store};
use uuid::Uuid;

use crate::clock::{Clock, SECOND};
use crate::secrets::sha256_hex;
use crate::{DomainError, DomainResult};

/// How long a key is remembered: 24 hours.
pub const KEY_TTL_SECS: i64 = 24 * 3600;

/// What to do with a request that carries a key.
#[derive(Clone, Debug, PartialEq)]
pub enum Begun {
    /// First use of the key: run the request, then [`Idempotency::finish`] or
    /// [`Idempotency::release`].
    Run,
    /// The same request completed before: answer with its response again.
    Replay {
        /// Status of the first response.
        status: u16,
        /// Body of the first response.
        body: String,
    },
}

/// Idempotency keys, scoped to the OAuth client that sends them.
pub struct Idempotency {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Idempotency {
    /// Keys on `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Idempotency {
        Idempotency { store, clock }
    }

    /// Starts a request of `client` under `key`; `request` is what makes two requests the
    /// same (method, target and body).
    pub async fn begin(&self, client: Uuid, key: &str, request: &[u8]) -> DomainResult<Begun> {
        if key.is_empty()
            || key.len() > 255
            || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(DomainError::field(
                "Idempotency-Key",
                "must be 1-255 visible ASCII characters",
            ));
        }
        let now = self.clock.now();
        let start = self
            .store
            .idempotency_start(
                client,
                key,
                &sha256_hex(request),
                now,
                now + KEY_TTL_SECS * SECOND,
            )
            .await?;
        match start {
            IdempotencyStart::Started => Ok(Begun::Run),
            IdempotencyStart::Replay { status, body } => Ok(Begun::Replay { status, body }),
            IdempotencyStart::InProgress => Err(DomainError::conflict(
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still being processed",
            )),
            IdempotencyStart::Mismatch => Err(DomainError::Unprocessable {
                code: "idempotency_key_reused",
                message: "this Idempotency-Key was used with a different request".to_owned(),
            }),
        }
    }

    /// Records the successful response of a request begun with [`Begun::Run`].
    pub async fn finish(
        &self,
        client: Uuid,
        key: &str,
        status: u16,
        body: &str,
    ) -> DomainResult<()> {
        Ok(self
            .store
            .idempotency_finish(client, key, status, body)
            .await?)
    }

    /// Frees the key of a request that did not succeed.
    pub async fn release(&self, client: Uuid, key: &str) -> DomainResult<()> {
        Ok(self.store.idempotency_release(client, key).await?)
    }
}
