//! [`OperatorStore`] on SQLite. The one writer makes a sign-in gate's count and insert one
//! step.

use rusqlite::{params, Row};
use uuid::Uuid;

use super::audit::append as append_audit;
use super::sql::{execute, fetch_optional, parsed};
use super::SqliteStore;
use crate::{AuditRecord, ConsoleSession, Operator, OperatorStore, SignInGate, StoreResult};

fn operator_row(row: &Row<'_>) -> rusqlite::Result<Operator> {
    Ok(Operator {
        id: parsed(row, "id")?,
        name: row.get("name")?,
        password_hash: row.get("password_hash")?,
        created_at: row.get("created_at")?,
    })
}

fn session_row(row: &Row<'_>) -> rusqlite::Result<ConsoleSession> {
    Ok(ConsoleSession {
        token_hash: row.get("token_hash")?,
        operator_id: parsed(row, "operator_id")?,
        csrf_token: row.get("csrf_token")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
    })
}

#[async_trait::async_trait]
impl OperatorStore for SqliteStore {
    async fn create_operator(&self, op: &Operator, audit: &AuditRecord) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "INSERT INTO operators (id, name, password_hash, created_at) \
                     VALUES ($1, $2, $3, $4)",
                    params![op.id.to_string(), op.name, op.password_hash, op.created_at],
                )?;
                append_audit(c, audit)
            })
            .await?;
        Ok(())
    }

    async fn find_operator(&self, name: &str) -> StoreResult<Option<Operator>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT id, name, password_hash, created_at FROM operators WHERE name = $1",
                [name],
                operator_row,
            )
        })?)
    }

    async fn get_operator(&self, id: Uuid) -> StoreResult<Option<Operator>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT id, name, password_hash, created_at FROM operators WHERE id = $1",
                [id.to_string()],
                operator_row,
            )
        })?)
    }

    async fn gate_sign_in(
        &self,
        name: &str,
        now: i64,
        since: i64,
        limit: u32,
    ) -> StoreResult<SignInGate> {
        Ok(self
            .db
            .write(|c| {
                let (count, oldest): (i64, Option<i64>) = fetch_optional(
                    c,
                    "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM sign_in_attempts \
                     WHERE name = $1 AND at >= $2",
                    params![name, since],
                    |r| Ok((r.get("n")?, r.get("oldest")?)),
                )?
                .unwrap_or((0, None));
                if count >= i64::from(limit) {
                    return Ok(SignInGate::Throttled {
                        oldest: oldest.unwrap_or(now),
                    });
                }
                execute(
                    c,
                    "INSERT INTO sign_in_attempts (name, at) VALUES ($1, $2)",
                    params![name, now],
                )?;
                Ok(SignInGate::Open)
            })
            .await?)
    }

    async fn clear_sign_in_attempts(&self, name: &str) -> StoreResult<()> {
        self.db
            .write(|c| execute(c, "DELETE FROM sign_in_attempts WHERE name = $1", [name]))
            .await?;
        Ok(())
    }

    async fn create_session(&self, s: &ConsoleSession, audit: &AuditRecord) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "INSERT INTO console_sessions (token_hash, operator_id, csrf_token, \
                     created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                    params![
                        s.token_hash,
                        s.operator_id.to_string(),
                        s.csrf_token,
                        s.created_at,
                        s.expires_at
                    ],
                )?;
                append_audit(c, audit)
            })
            .await?;
        Ok(())
    }

    async fn get_session(&self, token_hash: &str, now: i64) -> StoreResult<Option<ConsoleSession>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT token_hash, operator_id, csrf_token, created_at, expires_at \
                 FROM console_sessions WHERE token_hash = $1 AND expires_at > $2",
                params![token_hash, now],
                session_row,
            )
        })?)
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<bool> {
        let done = self
            .db
            .write(|c| {
                execute(
                    c,
                    "DELETE FROM console_sessions WHERE token_hash = $1",
                    [token_hash],
                )
            })
            .await?;
        Ok(done == 1)
    }

    async fn purge_console(&self, now: i64, attempts_before: i64) -> StoreResult<u64> {
        let gone = self
            .db
            .write(|c| {
                let sessions = execute(
                    c,
                    "DELETE FROM console_sessions WHERE expires_at <= $1",
                    [now],
                )?;
                let attempts = execute(
                    c,
                    "DELETE FROM sign_in_attempts WHERE at < $1",
                    [attempts_before],
                )?;
                Ok(sessions + attempts)
            })
            .await?;
        Ok(u64::try_from(gone).unwrap_or(u64::MAX))
    }
}
