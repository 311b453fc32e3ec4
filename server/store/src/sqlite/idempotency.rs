//! [`IdempotencyStore`] on SQLite.

use rusqlite::params;
use uuid::Uuid;

use super::sql::execute;
use super::SqliteStore;
use crate::idempotency::taken_key_outcome;
use crate::{IdempotencyStart, IdempotencyStore, StoreResult};

#[async_trait::async_trait]
impl IdempotencyStore for SqliteStore {
    async fn idempotency_start(
        &self,
        client: Uuid,
        key: &str,
        request_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<IdempotencyStart> {
        let client = client.to_string();
        Ok(self
            .db
            .write(|c| {
                execute(
                    c,
                    "DELETE FROM idempotency_keys \
                     WHERE client_id = $1 AND idem_key = $2 AND expires_at <= $3",
                    params![client, key, now],
                )?;
                let inserted = execute(
                    c,
                    "INSERT INTO idempotency_keys (client_id, idem_key, request_hash, status_code, \
                     response_body, created_at, expires_at) VALUES ($1, $2, $3, NULL, NULL, $4, $5) \
                     ON CONFLICT (client_id, idem_key) DO NOTHING",
                    params![client, key, request_hash, now, expires_at],
                )?;
                if inserted == 1 {
                    return Ok(IdempotencyStart::Started);
                }
                let (hash, status, body) = c
                    .prepare_cached(
                        "SELECT request_hash, status_code, response_body FROM idempotency_keys \
                         WHERE client_id = $1 AND idem_key = $2",
                    )?
                    .query_row(params![client, key], |row| {
                        Ok((
                            row.get::<_, String>("request_hash")?,
                            row.get::<_, Option<i64>>("status_code")?,
                            row.get::<_, Option<String>>("response_body")?,
                        ))
                    })?;
                Ok(taken_key_outcome(&hash, request_hash, status, body))
            })
            .await?)
    }

    async fn idempotency_finish(
        &self,
        client: Uuid,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "UPDATE idempotency_keys SET status_code = $1, response_body = $2 \
                     WHERE client_id = $3 AND idem_key = $4",
                    params![i64::from(status), body, client.to_string(), key],
                )
            })
            .await?;
        Ok(())
    }

    async fn idempotency_release(&self, client: Uuid, key: &str) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "DELETE FROM idempotency_keys \
                     WHERE client_id = $1 AND idem_key = $2 AND status_code IS NULL",
                    params![client.to_string(), key],
                )
            })
            .await?;
        Ok(())
    }

    async fn purge_idempotency(&self, now: i64) -> StoreResult<u64> {
        let done = self
            .db
            .write(|c| {
                execute(
                    c,
                    "DELETE FROM idempotency_keys WHERE expires_at <= $1",
                    [now],
                )
            })
            .await?;
        Ok(done as u64)
    }
}
