//! The embedded SQLite backend: one database file in WAL mode, reads on the calling
//! thread and a single group-committing writer ([`db`]), so operator commands can run
//! beside a live server. One module per aggregate implements its trait.

mod audit;
mod challenges;
mod clients;
mod db;
mod devices;
mod idempotency;
mod keys;
mod log;
mod operators;
mod outbox;
mod retention;
mod settings;
mod sql;
mod templates;
mod tenants;
mod users;
mod webhooks;

use std::sync::Arc;

use rusqlite::params;

use crate::migrations::{self, Migration, Migrator};
use crate::signals::{self, Signal, Signals};
use crate::{Store, StoreError, StoreResult};
use db::{DbError, SqliteDb};
use sql::{execute, fetch_all, fetch_optional};

/// The schema, in order: each migration runs once, in the transaction that records it.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "webhooks",
        sql: include_str!("../../migrations/sqlite/0002_webhooks.sql"),
    },
    Migration {
        version: 3,
        name: "indexes",
        sql: include_str!("../../migrations/sqlite/0003_indexes.sql"),
    },
    Migration {
        version: 4,
        name: "templates",
        sql: include_str!("../../migrations/sqlite/0004_templates.sql"),
    },
    Migration {
        version: 5,
        name: "trust",
        sql: include_str!("../../migrations/sqlite/0005_trust.sql"),
    },
    Migration {
        version: 6,
        name: "operators",
        sql: include_str!("../../migrations/sqlite/0006_operators.sql"),
    },
    Migration {
        version: 7,
        name: "retention",
        sql: include_str!("../../migrations/sqlite/0007_retention.sql"),
    },
];

/// [`Store`] on an SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    db: Arc<SqliteDb>,
}

impl From<DbError> for StoreError {
    fn from(err: DbError) -> StoreError {
        if err.is_unique_violation() {
            return StoreError::Conflict(err.to_string());
        }
        StoreError::Database(err.to_string())
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://PATH` or `sqlite:PATH`)
    /// and applies the migrations it lacks.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let store = SqliteStore {
            db: SqliteDb::open(url).await?,
        };
        migrations::migrate(&store, MIGRATIONS, i64::MAX).await?;
        Ok(store)
    }
}

#[async_trait::async_trait]
impl Migrator for SqliteStore {
    async fn applied(&self) -> StoreResult<Vec<i64>> {
        self.db
            .write(|c| {
                c.execute_batch(
                    "CREATE TABLE IF NOT EXISTS schema_migrations \
                     (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
                )
            })
            .await?;
        Ok(self
            .db
            .read(|c| fetch_all(c, "SELECT version FROM schema_migrations", [], |r| r.get(0)))?)
    }

    async fn apply(&self, migration: &Migration, now: i64) -> StoreResult<()> {
        self.db
            .write(|c| {
                // Another process may have applied it since `applied` was read: the check
                // and the script share the writer's transaction.
                let done = fetch_optional(
                    c,
                    "SELECT version FROM schema_migrations WHERE version = $1",
                    [migration.version],
                    |_| Ok(()),
                )?;
                if done.is_some() {
                    return Ok(0);
                }
                c.execute_batch(migration.sql)?;
                execute(
                    c,
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    params![migration.version, now],
                )
            })
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.db.writable()?;
        self.db.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))?;
        Ok(())
    }
}

/// Signals on SQLite reach the stores of this process on the same file (see [`Signals`]).
#[async_trait::async_trait]
impl Signals for SqliteStore {
    async fn notify(&self, topic: &str, payload: &str) -> StoreResult<()> {
        signals::check(topic, payload)?;
        self.db.signals().deliver(Signal {
            topic: topic.to_owned(),
            payload: payload.to_owned(),
        });
        Ok(())
    }

    async fn subscribe(&self) -> StoreResult<tokio::sync::broadcast::Receiver<Signal>> {
        Ok(self.db.signals().subscribe())
    }
}

#[cfg(test)]
mod tests;
