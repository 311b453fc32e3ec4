//! [`IdempotencyStore`] on PostgreSQL.

use uuid::Uuid;

use super::sql::{execute, fetch_optional, get, query_opt};
use super::PostgresStore;
use crate::idempotency::taken_key_outcome;
use crate::{IdempotencyStart, IdempotencyStore, StoreResult};

#[async_trait::async_trait]
impl IdempotencyStore for PostgresStore {
    async fn idempotency_start(
        &self,
        client: Uuid,
        key: &str,
        request_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<IdempotencyStart> {
        let client = client.to_string();
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        // One statement claims a free key or takes over an expired one. A request arriving
        // while another holds the key uncommitted waits for it, then finds the key taken;
        // either way the row stays locked until this transaction ends, so the read below
        // sees what the key holds.
        let claimed = query_opt(
            &tx,
            "INSERT INTO idempotency_keys (client_id, idem_key, request_hash, status_code, \
             response_body, created_at, expires_at) VALUES ($1, $2, $3, NULL, NULL, $4, $5) \
             ON CONFLICT (client_id, idem_key) DO UPDATE SET request_hash = EXCLUDED.request_hash, \
             status_code = NULL, response_body = NULL, created_at = EXCLUDED.created_at, \
             expires_at = EXCLUDED.expires_at WHERE idempotency_keys.expires_at <= $4 \
             RETURNING 1",
            &[&client, &key, &request_hash, &now, &expires_at],
        )
        .await?;
        let outcome = if claimed.is_some() {
            IdempotencyStart::Started
        } else {
            let stored = fetch_optional(
                &tx,
                "SELECT request_hash, status_code, response_body FROM idempotency_keys \
                 WHERE client_id = $1 AND idem_key = $2",
                &[&client, &key],
                |row| {
                    Ok((
                        get::<String>(row, "request_hash")?,
                        get(row, "status_code")?,
                        get(row, "response_body")?,
                    ))
                },
            )
            .await?;
            match stored {
                Some((hash, status, body)) => taken_key_outcome(&hash, request_hash, status, body),
                // Not reached: the row is locked since the claim. Read as "in progress".
                None => IdempotencyStart::InProgress,
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn idempotency_finish(
        &self,
        client: Uuid,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()> {
        execute(
            &self.pool.get().await?,
            "UPDATE idempotency_keys SET status_code = $1, response_body = $2 \
             WHERE client_id = $3 AND idem_key = $4",
            &[&i64::from(status), &body, &client.to_string(), &key],
        )
        .await?;
        Ok(())
    }

    async fn idempotency_release(&self, client: Uuid, key: &str) -> StoreResult<()> {
        execute(
            &self.pool.get().await?,
            "DELETE FROM idempotency_keys \
             WHERE client_id = $1 AND idem_key = $2 AND status_code IS NULL",
            &[&client.to_string(), &key],
        )
        .await?;
        Ok(())
    }

    async fn purge_idempotency(&self, now: i64) -> StoreResult<u64> {
        execute(
            &self.pool.get().await?,
            "DELETE FROM idempotency_keys WHERE expires_at <= $1",
            &[&now],
        )
        .await
    }
}
