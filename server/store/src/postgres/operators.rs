//! [`OperatorStore`] on PostgreSQL. A sign-in gate takes a transaction-scoped advisory lock
//! on its name, so that its count and insert are one step among every node.

use tokio_postgres::Row;
use uuid::Uuid;

use super::audit::append as append_audit;
use super::sql::{execute, fetch_optional, get, parsed, query_opt};
use super::PostgresStore;
use crate::{AuditRecord, ConsoleSession, Operator, OperatorStore, SignInGate, StoreResult};

fn operator_row(row: &Row) -> StoreResult<Operator> {
    Ok(Operator {
        id: parsed(row, "id")?,
        name: get(row, "name")?,
        password_hash: get(row, "password_hash")?,
        created_at: get(row, "created_at")?,
    })
}

fn session_row(row: &Row) -> StoreResult<ConsoleSession> {
    Ok(ConsoleSession {
        token_hash: get(row, "token_hash")?,
        operator_id: parsed(row, "operator_id")?,
        csrf_token: get(row, "csrf_token")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

#[async_trait::async_trait]
impl OperatorStore for PostgresStore {
    async fn create_operator(&self, op: &Operator, audit: &AuditRecord) -> StoreResult<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        execute(
            &tx,
            "INSERT INTO operators (id, name, password_hash, created_at) VALUES ($1, $2, $3, $4)",
            &[
                &op.id.to_string(),
                &op.name,
                &op.password_hash,
                &op.created_at,
            ],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        self.sealer.poke(audit.tenant_id);
        Ok(())
    }

    async fn find_operator(&self, name: &str) -> StoreResult<Option<Operator>> {
        fetch_optional(
            &self.pool.get().await?,
            "SELECT id, name, password_hash, created_at FROM operators WHERE name = $1",
            &[&name],
            operator_row,
        )
        .await
    }

    async fn get_operator(&self, id: Uuid) -> StoreResult<Option<Operator>> {
        fetch_optional(
            &self.pool.get().await?,
            "SELECT id, name, password_hash, created_at FROM operators WHERE id = $1",
            &[&id.to_string()],
            operator_row,
        )
        .await
    }

    async fn gate_sign_in(
        &self,
        name: &str,
        now: i64,
        since: i64,
        limit: u32,
    ) -> StoreResult<SignInGate> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        query_opt(
            &tx,
            "SELECT pg_advisory_xact_lock(hashtextextended('palmlink.sign_in:' || $1, 0))",
            &[&name],
        )
        .await?;
        let row = query_opt(
            &tx,
            "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM sign_in_attempts \
             WHERE name = $1 AND at >= $2",
            &[&name, &since],
        )
        .await?;
        let (count, oldest): (i64, Option<i64>) = match &row {
            Some(row) => (get(row, "n")?, get(row, "oldest")?),
            None => (0, None),
        };
        if count >= i64::from(limit) {
            return Ok(SignInGate::Throttled {
                oldest: oldest.unwrap_or(now),
            });
        }
        execute(
            &tx,
            "INSERT INTO sign_in_attempts (name, at) VALUES ($1, $2)",
            &[&name, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(SignInGate::Open)
    }

    async fn clear_sign_in_attempts(&self, name: &str) -> StoreResult<()> {
        execute(
            &self.pool.get().await?,
            "DELETE FROM sign_in_attempts WHERE name = $1",
            &[&name],
        )
        .await?;
        Ok(())
    }

    async fn create_session(&self, s: &ConsoleSession, audit: &AuditRecord) -> StoreResult<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        execute(
            &tx,
            "INSERT INTO console_sessions (token_hash, operator_id, csrf_token, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5)",
            &[
                &s.token_hash,
                &s.operator_id.to_string(),
                &s.csrf_token,
                &s.created_at,
                &s.expires_at,
            ],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        self.sealer.poke(audit.tenant_id);
        Ok(())
    }

    async fn get_session(&self, token_hash: &str, now: i64) -> StoreResult<Option<ConsoleSession>> {
        fetch_optional(
            &self.pool.get().await?,
            "SELECT token_hash, operator_id, csrf_token, created_at, expires_at \
             FROM console_sessions WHERE token_hash = $1 AND expires_at > $2",
            &[&token_hash, &now],
            session_row,
        )
        .await
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<bool> {
        let done = execute(
            &self.pool.get().await?,
            "DELETE FROM console_sessions WHERE token_hash = $1",
            &[&token_hash],
        )
        .await?;
        Ok(done == 1)
    }

    async fn purge_console(&self, now: i64, attempts_before: i64) -> StoreResult<u64> {
        let c = self.pool.get().await?;
        let sessions = execute(
            &c,
            "DELETE FROM console_sessions WHERE expires_at <= $1",
            &[&now],
        )
        .await?;
        let attempts = execute(
            &c,
            "DELETE FROM sign_in_attempts WHERE at < $1",
            &[&attempts_before],
        )
        .await?;
        Ok(sessions + attempts)
    }
}
