//! The PostgreSQL backend: [`PostgresStore`]. One module per aggregate implements its
//! trait; `connect` reads the URL, `signals` listens for `NOTIFY`, `sql` holds the statement
//! helpers.

mod audit;
mod challenges;
mod clients;
mod connect;
mod devices;
mod idempotency;
mod keys;
mod log;
mod operators;
mod outbox;
mod retention;
mod settings;
mod signals;
mod sql;
mod templates;
mod tenants;
mod users;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::migrations::{self, Migration, Migrator};
use crate::signals::Signal;
use crate::{Signals, Store, StoreError, StoreResult};
use audit::Sealer;
use connect::Tls;
use signals::Listener;
use sql::{execute, fetch_value, query, query_opt};

/// The schema, in order: each migration runs once, in the transaction that records it.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "webhooks",
        sql: include_str!("../../migrations/postgres/0002_webhooks.sql"),
    },
    Migration {
        version: 3,
        name: "indexes",
        sql: include_str!("../../migrations/postgres/0003_indexes.sql"),
    },
    Migration {
        version: 4,
        name: "templates",
        sql: include_str!("../../migrations/postgres/0004_templates.sql"),
    },
    Migration {
        version: 5,
        name: "trust",
        sql: include_str!("../../migrations/postgres/0005_trust.sql"),
    },
    Migration {
        version: 6,
        name: "operators",
        sql: include_str!("../../migrations/postgres/0006_operators.sql"),
    },
    Migration {
        version: 7,
        name: "retention",
        sql: include_str!("../../migrations/postgres/0007_retention.sql"),
    },
    Migration {
        version: 8,
        name: "audit_queue",
        sql: include_str!("../../migrations/postgres/0008_audit_queue.sql"),
    },
];

/// Connections a store keeps open at most.
const POOL_SIZE: usize = 16;
/// How long a call waits for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// The first key of the advisory lock migrations take (the second is the schema's hash).
const MIGRATION_LOCK: i32 = 0x706c_6d67;

/// [`Store`] on a PostgreSQL database (13 or later) that any number of nodes share.
///
/// # Driver
///
/// tokio-postgres with a deadpool-postgres pool. tokio-postgres is the maintained
/// asynchronous driver of the rust-postgres project: it speaks the protocol on the tokio
/// runtime the service runs on, caches prepared statements per connection, exposes
/// `NOTIFY` messages for [signals](crate::Signals), and takes TLS as a plug-in, here
/// tokio-postgres-rustls on rustls and aws-lc-rs, the TLS stack the service already has.
/// sqlx would bring much more than this backend uses (compile-time query macros tied to one
/// database, a query builder, the `Any` driver, its own TLS and runtime feature matrix, and
/// many more crates to build) for SQL that is plain text here anyway.
///
/// # Several nodes
///
/// Nothing here relies on a process-local lock: what the SQLite backend gets from its single
/// writer is written out with the database's own means, method by method:
///
/// - conditional updates (`... WHERE status = 'pending'`): a second writer waits for the
///   first's row lock, then finds the condition false (challenges, pairing, revocation);
/// - unique constraints, `ON CONFLICT` and the `Conflict` they raise (pairing codes and
///   hardware ids, users, palms, idempotency keys, deliveries, attempts);
/// - `SELECT ... FOR UPDATE SKIP LOCKED` where work is taken (leasing deliveries, fanning
///   out the outbox), so two nodes never take the same item;
/// - row locks taken first where a change reads before it writes (erasing a user);
/// - audit entries queued by the changes they record and chained afterwards, in batches,
///   under the chain head's row lock (see `audit`), so no change waits for another's
///   commit to draw its place in the tenant's chain.
///
/// Leases are never released wholesale ([`WebhookStore::release_leases`] does nothing
/// here): they belong to live nodes, and a dead node's leases expire.
///
/// [Signals](crate::Signals) travel by `NOTIFY` on the channel `palmlink:SCHEMA`, heard by
/// one listening connection per store (opened by the first subscription, opened again after
/// a drop), so every node on the schema hears them.
///
/// # Schema and migrations
///
/// `migrations/postgres/` holds the same tables as SQLite's, column for column; the shared
/// runner applies them, each in a transaction that first takes an advisory lock of the
/// schema, so two nodes starting at once apply each migration once.
///
/// [`WebhookStore::release_leases`]: crate::WebhookStore::release_leases
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    listener: Arc<Listener>,
    sealer: Arc<Sealer>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Opens the database at `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?PARAMS]` or
    /// `postgresql://...`, as libpq reads it) and applies the migrations it lacks. No error
    /// repeats the URL: it may carry a password.
    ///
    /// Parameters read beyond libpq's own:
    ///
    /// - `schema=NAME`: every table lives in schema `NAME` (lower-case letters, digits and
    ///   `_`, not starting with a digit, at most 63 bytes), created if missing; the
    ///   connections' `search_path` is that schema alone. Several stores (or test runs) share
    ///   one database this way without meeting. `options=-c search_path=NAME` works too, for
    ///   a schema that exists already.
    /// - `sslmode`: `disable` or `prefer` (the default) connect without TLS; `require`,
    ///   `verify-ca` and `verify-full` connect with TLS only, and always verify the server's
    ///   certificate chain and host name against the system's trust store (rustls on
    ///   aws-lc-rs): a certificate that does not verify is refused whichever of the three is
    ///   named. Other TLS parameters (`sslrootcert`, `sslcert`, ...) are refused.
    pub async fn open(url: &str) -> StoreResult<PostgresStore> {
        let target = connect::parse(url)?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &target.tls {
            Tls::Off => Manager::from_config(target.config.clone(), NoTls, manager_config),
            Tls::Verified(tls) => {
                Manager::from_config(target.config.clone(), tls.clone(), manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|err| StoreError::Database(format!("connection pool: {err}")))?;
        if let Some(schema) = &target.schema {
            create_schema(&pool, schema).await?;
        }
        migrations::migrate(&SchemaOf(&pool), MIGRATIONS, i64::MAX).await?;
        let schema: Option<String> =
            fetch_value(&pool.get().await?, "SELECT current_schema()::text", &[]).await?;
        let channel = signals::channel(schema.as_deref().unwrap_or_default());
        Ok(PostgresStore {
            sealer: Arc::new(Sealer::start(pool.clone())),
            pool,
            listener: Arc::new(Listener::new(target.config, target.tls, channel)),
        })
    }
}

/// Creates `schema` unless it exists (two nodes may both try: one creates it).
async fn create_schema(pool: &Pool, schema: &str) -> StoreResult<()> {
    let client = pool.get().await?;
    // The name is checked to be a plain identifier (`connect::schema_name`).
    match client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .await
        .map_err(StoreError::from)
    {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Takes the migrations' advisory lock of the current schema until the transaction ends.
const LOCK_MIGRATIONS: &str =
    "SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))";

/// The schema of the database a pool reaches, to migrate.
struct SchemaOf<'a>(&'a Pool);

#[async_trait::async_trait]
impl Migrator for SchemaOf<'_> {
    async fn applied(&self) -> StoreResult<Vec<i64>> {
        let mut client = self.0.get().await?;
        let tx = client.transaction().await?;
        execute(&tx, LOCK_MIGRATIONS, &[&MIGRATION_LOCK]).await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        let versions = query(&tx, "SELECT version FROM schema_migrations", &[])
            .await?
            .iter()
            .map(|row| sql::get(row, "version"))
            .collect::<StoreResult<Vec<i64>>>()?;
        tx.commit().await?;
        Ok(versions)
    }

    async fn apply(&self, migration: &Migration, now: i64) -> StoreResult<()> {
        let mut client = self.0.get().await?;
        let tx = client.transaction().await?;
        // Another node may have applied it since `applied` was read: the check runs under
        // the lock, in the transaction that applies it.
        execute(&tx, LOCK_MIGRATIONS, &[&MIGRATION_LOCK]).await?;
        let done = query_opt(
            &tx,
            "SELECT version FROM schema_migrations WHERE version = $1",
            &[&migration.version],
        )
        .await?;
        if done.is_some() {
            return Ok(());
        }
        tx.batch_execute(migration.sql).await?;
        execute(
            &tx,
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&migration.version, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        let client = self.pool.get().await?;
        let read_only: String = fetch_value(
            &client,
            "SELECT current_setting('transaction_read_only')",
            &[],
        )
        .await?;
        if read_only == "on" {
            return Err(StoreError::Database(
                "the database accepts no writes (a standby?)".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Signals travel by `NOTIFY` on one channel per schema (see [`Signals`]).
#[async_trait::async_trait]
impl Signals for PostgresStore {
    async fn notify(&self, topic: &str, payload: &str) -> StoreResult<()> {
        crate::signals::check(topic, payload)?;
        let client = self.pool.get().await?;
        execute(
            &client,
            "SELECT pg_notify($1, $2)",
            &[&self.listener.channel(), &signals::encode(topic, payload)],
        )
        .await?;
        Ok(())
    }

    async fn subscribe(&self) -> StoreResult<tokio::sync::broadcast::Receiver<Signal>> {
        self.listener.subscribe().await
    }
}
