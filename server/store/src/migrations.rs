//! Schema migrations: one runner for every backend. A backend lists its migrations and says
//! how to read the versions applied and how to apply one (its script and its record in one
//! transaction); the runner applies, in order, those not yet applied.

use crate::StoreResult;

/// One step of a backend's schema.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    /// Position in the sequence (1, 2, ...), recorded once applied.
    pub version: i64,
    /// What it adds, for logs.
    pub name: &'static str,
    /// The script.
    pub sql: &'static str,
}

/// A database migrations can be applied to.
#[async_trait::async_trait]
pub(crate) trait Migrator: Send + Sync {
    /// The versions applied so far (creating the record of them if missing).
    async fn applied(&self) -> StoreResult<Vec<i64>>;
    /// Runs `migration` and records it, in one transaction; nothing when another process
    /// has applied it meanwhile.
    async fn apply(&self, migration: &Migration, now: i64) -> StoreResult<()>;
}

/// Applies the migrations up to version `last` that `target` has not applied, in order.
pub(crate) async fn migrate(
    target: &dyn Migrator,
    migrations: &[Migration],
    last: i64,
) -> StoreResult<()> {
    let applied = target.applied().await?;
    for migration in migrations.iter().filter(|m| m.version <= last) {
        if !applied.contains(&migration.version) {
            tracing::info!(
                version = migration.version,
                name = migration.name,
                "applying a schema migration"
            );
            target.apply(migration, now_micros()).await?;
        }
    }
    Ok(())
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
