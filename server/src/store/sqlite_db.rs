//! One SQLite database as the service uses it: a pool for reads and a single writer that
//! commits concurrent writes in groups and makes each group durable with one WAL sync.
//!
//! # Group commit
//!
//! SQLite admits one writer at a time. Writers contending on separate connections would wait
//! in SQLite's busy handler, which sleeps in steps of milliseconds, and every commit would
//! sync the WAL on its own. Instead, every write of the process runs on one connection,
//! behind a fair (FIFO) async mutex:
//!
//! 1. [`SqliteDb::begin`] takes the mutex, opens a transaction (`BEGIN IMMEDIATE`) if none is
//!    open, and a savepoint for this caller, nested in those of the callers before it.
//! 2. The caller runs its statements on the connection (`&mut *tx`).
//! 3. [`WriteTx::commit`] leaves the savepoint in the open transaction, lets the mutex go,
//!    wakes the committer and waits until its group is durable. A `WriteTx` dropped without
//!    `commit` has its savepoint (the innermost) rolled back by whoever takes the mutex
//!    next, before anything else runs. [`SqliteDb::execute`] runs a single statement without
//!    a savepoint: a statement is atomic by itself.
//! 4. The committer queues for the mutex behind every caller already waiting, so they all
//!    join the group; it runs one `COMMIT` and hands the group to the syncer.
//! 5. The syncer calls `fdatasync` on the WAL file once for every group committed since its
//!    last sync, then tells each of their callers the outcome. While it syncs, the next
//!    group is already being written.
//!
//! The writer connection runs with `synchronous=NORMAL`: SQLite writes a transaction's WAL
//! frames before `COMMIT` returns but leaves syncing them to us (it still syncs the WAL
//! before each checkpoint and the database file after it, so frames moved out of the WAL
//! are durable too). A write is acknowledged only after an `fdatasync` of the WAL that began
//! after the `COMMIT` holding it had returned, which is the durability of
//! `synchronous=FULL`, with one sync shared by every write of the groups it covers.
//!
//! Failures: if a statement that manages the group fails (a savepoint cannot be rolled back,
//! `COMMIT` fails) or a single statement fails other than by a constraint (a constraint
//! error undoes only that statement), the whole transaction is rolled back and every caller
//! of the group gets an error. If `fdatasync` fails, the callers of the groups it covered
//! get an error and the writer refuses all further writes: after a failed sync the kernel
//! may have dropped the dirty pages, so nothing later could be promised durable. No caller
//! is told "done" for a change that is not durable.
//!
//! One database file has one `SqliteDb` per process (a registry keyed by the file's path), so
//! the service's store and the webhook store share the writer.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use sqlx::error::ErrorKind;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{Connection as _, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{watch, Notify};

/// Connections of the read pool.
const READ_CONNECTIONS: u32 = 8;
/// How long a statement waits for another process's write lock (operator commands).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A database file opened for the service: reads on [`SqliteDb::pool`], writes through
/// [`SqliteDb::begin`] or [`SqliteDb::execute`].
#[derive(Debug)]
pub(crate) struct SqliteDb {
    pool: SqlitePool,
    writer: Arc<Writer>,
}

impl SqliteDb {
    /// The database at `url` (created if missing), shared with every other user of the same
    /// file in this process.
    pub(crate) async fn open(url: &str) -> Result<Arc<SqliteDb>, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            // Reads map the file instead of copying pages in with a syscall each.
            .pragma("mmap_size", "1073741824");
        let path = options.get_filename().to_path_buf();
        let mut open = registry().lock().await;
        if let Some(db) = std::fs::canonicalize(&path)
            .ok()
            .and_then(|key| open.get(&key))
            .and_then(Weak::upgrade)
        {
            return Ok(db);
        }
        let mut conn =
            SqliteConnection::connect_with(&options.clone().synchronous(SqliteSynchronous::Normal))
                .await?;
        // Make sure the WAL file exists before it is opened for syncing.
        control(&mut conn, &["BEGIN IMMEDIATE", "COMMIT"]).await?;
        let key = std::fs::canonicalize(&path)?;
        let wal = open_wal(&key)?;
        // A local file needs no liveness ping before each use (sqlx pings by default, one
        // more round trip to the connection's thread per query).
        let pool = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let db = Arc::new(SqliteDb {
            pool,
            writer: Writer::start(conn, wal),
        });
        open.retain(|_, weak| weak.strong_count() > 0);
        open.insert(key, Arc::downgrade(&db));
        Ok(db)
    }

    /// The pool, for reads only: every write goes through the writer.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Fails once a WAL sync has failed (the writer then refuses every write).
    pub(crate) fn writable(&self) -> Result<(), sqlx::Error> {
        self.writer.shared.check_writable()
    }

    /// Starts a write: the returned transaction holds the writer until it is committed or
    /// dropped (dropped means rolled back).
    pub(crate) async fn begin(&self) -> Result<WriteTx<'_>, sqlx::Error> {
        self.writer.begin().await
    }

    /// Transactions the writer has committed (each holding one or more writes).
    #[cfg(test)]
    pub(crate) fn groups_committed(&self) -> u64 {
        self.writer.shared.groups_committed.load(Ordering::Relaxed)
    }

    /// One statement as its own write, durable on return.
    pub(crate) async fn execute<'q>(
        &self,
        query: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
    ) -> Result<SqliteQueryResult, sqlx::Error> {
        let shared = &self.writer.shared;
        let mut state = shared.lock_for_write().await?;
        let outcome = state.join_group(false).await?;
        let done = match query.execute(&mut state.conn).await {
            Ok(done) => done,
            Err(err) => {
                if is_constraint(&err) {
                    // The group stays open with the writes before this one: it must still
                    // be committed, or it would hold SQLite's write lock until the next
                    // write came along.
                    drop(state);
                    shared.wake.notify_one();
                } else {
                    state.fail_group(&err).await;
                }
                return Err(err);
            }
        };
        drop(state);
        shared.wake.notify_one();
        wait_durable(outcome).await?;
        Ok(done)
    }
}

/// A statement error that SQLite undoes by itself, leaving the transaction intact.
fn is_constraint(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if matches!(
        db.kind(),
        ErrorKind::UniqueViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation
    ))
}

/// Opens the database's WAL file for syncing, and syncs its directory once so the file's
/// entry is durable too.
fn open_wal(db_path: &Path) -> std::io::Result<File> {
    let mut name = db_path.as_os_str().to_owned();
    name.push("-wal");
    let wal = File::open(PathBuf::from(name))?;
    if let Some(dir) = db_path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(wal)
}

/// A statement run as its own durable write: `query.write(&db)` where a read would say
/// `query.execute(pool)`.
pub(crate) trait WriteQuery<'q> {
    /// Runs the statement through the group-commit writer.
    fn write(
        self,
        db: &SqliteDb,
    ) -> impl std::future::Future<Output = Result<SqliteQueryResult, sqlx::Error>> + Send;
}

impl<'q> WriteQuery<'q> for sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
    fn write(
        self,
        db: &SqliteDb,
    ) -> impl std::future::Future<Output = Result<SqliteQueryResult, sqlx::Error>> + Send {
        db.execute(self)
    }
}

/// Open databases of this process by canonical path.
fn registry() -> &'static tokio::sync::Mutex<HashMap<PathBuf, Weak<SqliteDb>>> {
    static OPEN: OnceLock<tokio::sync::Mutex<HashMap<PathBuf, Weak<SqliteDb>>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// The outcome of one group: `None` until it is durable or has failed.
type Outcome = Option<Result<(), String>>;

/// The writer connection, the committer and the syncer.
#[derive(Debug)]
struct Writer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: tokio::sync::Mutex<State>,
    /// Wakes the committer: a write joined the open group, or was abandoned.
    wake: Notify,
    /// Groups committed and not yet synced.
    unsynced: Mutex<Vec<watch::Sender<Outcome>>>,
    /// Wakes the syncer.
    sync_wake: Notify,
    /// The WAL file, synced by the syncer.
    wal: Arc<File>,
    /// Set after a failed sync: every later write is refused.
    poisoned: AtomicBool,
    /// Set when the last handle is gone: what is open is committed and synced, then the
    /// tasks stop.
    closed: AtomicBool,
    /// Transactions committed so far (each a group of one or more writes).
    groups_committed: AtomicU64,
    /// Makes the next WAL sync fail, as a failing disk would.
    #[cfg(test)]
    fail_next_sync: AtomicBool,
}

#[derive(Debug)]
struct State {
    conn: SqliteConnection,
    /// The open transaction's outcome channel, if a transaction is open.
    group: Option<watch::Sender<Outcome>>,
    /// A caller's savepoint was abandoned and must be rolled back first.
    abandoned: bool,
}

/// Runs statements that manage the group, in order.
async fn control(conn: &mut SqliteConnection, sql: &[&'static str]) -> Result<(), sqlx::Error> {
    for statement in sql {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

impl Shared {
    fn check_writable(&self) -> Result<(), sqlx::Error> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(group_error(
                "an earlier WAL sync failed; restart the service".to_owned(),
            ));
        }
        Ok(())
    }

    /// Takes the writer, refusing when a sync has failed.
    async fn lock_for_write(&self) -> Result<tokio::sync::MutexGuard<'_, State>, sqlx::Error> {
        self.check_writable()?;
        Ok(self.state.lock().await)
    }
}

impl State {
    /// Rolls back an abandoned savepoint; on failure the whole group fails.
    async fn settle(&mut self) {
        if !self.abandoned {
            return;
        }
        self.abandoned = false;
        if let Err(err) = control(&mut self.conn, &["ROLLBACK TO caller", "RELEASE caller"]).await {
            self.fail_group(&err).await;
        }
    }

    /// Joins the open group (opening one if none is open), with a savepoint when asked;
    /// returns the group's outcome channel.
    async fn join_group(
        &mut self,
        savepoint: bool,
    ) -> Result<watch::Receiver<Outcome>, sqlx::Error> {
        self.settle().await;
        let opened = match (&self.group, savepoint) {
            (Some(_), false) => Ok(()),
            (Some(_), true) => control(&mut self.conn, &["SAVEPOINT caller"]).await,
            (None, false) => control(&mut self.conn, &["BEGIN IMMEDIATE"]).await,
            (None, true) => control(&mut self.conn, &["BEGIN IMMEDIATE", "SAVEPOINT caller"]).await,
        };
        if let Err(err) = opened {
            self.fail_group(&err).await;
            return Err(err);
        }
        Ok(self
            .group
            .get_or_insert_with(|| watch::Sender::new(None))
            .subscribe())
    }

    /// Rolls back the open transaction and reports `err` to every caller of the group.
    async fn fail_group(&mut self, err: &sqlx::Error) {
        // Fails harmlessly when SQLite has already rolled the transaction back.
        let _ = control(&mut self.conn, &["ROLLBACK"]).await;
        if let Some(group) = self.group.take() {
            group.send_replace(Some(Err(err.to_string())));
        }
    }

    /// Commits the open transaction, if any; returns its group, to be synced.
    async fn commit_group(&mut self) -> Option<watch::Sender<Outcome>> {
        self.settle().await;
        self.group.as_ref()?;
        match control(&mut self.conn, &["COMMIT"]).await {
            Ok(()) => self.group.take(),
            Err(err) => {
                self.fail_group(&err).await;
                None
            }
        }
    }
}

impl Writer {
    fn start(conn: SqliteConnection, wal: File) -> Arc<Writer> {
        let shared = Arc::new(Shared {
            state: tokio::sync::Mutex::new(State {
                conn,
                group: None,
                abandoned: false,
            }),
            wake: Notify::new(),
            unsynced: Mutex::new(Vec::new()),
            sync_wake: Notify::new(),
            wal: Arc::new(wal),
            poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            groups_committed: AtomicU64::new(0),
            #[cfg(test)]
            fail_next_sync: AtomicBool::new(false),
        });
        tokio::spawn(commit_loop(Arc::clone(&shared)));
        tokio::spawn(sync_loop(Arc::clone(&shared)));
        Arc::new(Writer { shared })
    }

    async fn begin(&self) -> Result<WriteTx<'_>, sqlx::Error> {
        let mut state = self.shared.lock_for_write().await?;
        let outcome = state.join_group(true).await?;
        Ok(WriteTx {
            state: Some(state),
            outcome,
            shared: &self.shared,
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// Commits each group once the callers already queued for the writer have joined it.
async fn commit_loop(shared: Arc<Shared>) {
    loop {
        shared.wake.notified().await;
        let committed = shared.state.lock().await.commit_group().await;
        if let Some(group) = committed {
            shared.groups_committed.fetch_add(1, Ordering::Relaxed);
            lock(&shared.unsynced).push(group);
        }
        shared.sync_wake.notify_one();
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
    }
}

/// Makes committed groups durable, one `fdatasync` for all committed since the last.
async fn sync_loop(shared: Arc<Shared>) {
    loop {
        shared.sync_wake.notified().await;
        let groups = std::mem::take(&mut *lock(&shared.unsynced));
        if !groups.is_empty() {
            let wal = Arc::clone(&shared.wal);
            #[cfg(test)]
            let injected = shared.fail_next_sync.swap(false, Ordering::AcqRel);
            #[cfg(not(test))]
            let injected = false;
            let sync = move || {
                if injected {
                    return Err(std::io::Error::other("injected sync failure"));
                }
                wal.sync_data()
            };
            let synced = match tokio::task::spawn_blocking(sync).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(format!("WAL sync failed: {err}")),
                Err(err) => Err(format!("WAL sync did not finish: {err}")),
            };
            if synced.is_err() {
                shared.poisoned.store(true, Ordering::Release);
                tracing::error!(
                    error = ?synced,
                    "WAL sync failed; refusing further writes until restart"
                );
            }
            for group in groups {
                group.send_replace(Some(synced.clone()));
            }
        }
        if shared.closed.load(Ordering::Acquire) && lock(&shared.unsynced).is_empty() {
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits until a group is durable or has failed.
async fn wait_durable(mut outcome: watch::Receiver<Outcome>) -> Result<(), sqlx::Error> {
    let result = match outcome.wait_for(Option::is_some).await {
        Ok(done) => done.clone().unwrap_or(Ok(())),
        Err(_) => Err("the writer stopped before committing".to_owned()),
    };
    result.map_err(group_error)
}

/// One caller's write: statements run on the writer connection (`&mut *tx`), inside a
/// savepoint of the group's transaction.
#[derive(Debug)]
pub(crate) struct WriteTx<'a> {
    state: Option<tokio::sync::MutexGuard<'a, State>>,
    outcome: watch::Receiver<Outcome>,
    shared: &'a Shared,
}

impl WriteTx<'_> {
    /// Adds this write to its group and waits until the group is durable or has failed.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        drop(self.state.take());
        self.shared.wake.notify_one();
        wait_durable(self.outcome.clone()).await
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        match &self.state {
            Some(state) => &state.conn,
            None => unreachable!("a finished WriteTx is consumed by commit"),
        }
    }
}

impl std::ops::DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match &mut self.state {
            Some(state) => &mut state.conn,
            None => unreachable!("a finished WriteTx is consumed by commit"),
        }
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if let Some(mut state) = self.state.take() {
            state.abandoned = true;
            drop(state);
            self.shared.wake.notify_one();
        }
    }
}

fn group_error(message: String) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(format!(
        "write not durable: {message}"
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sqlx::Row as _;

    use super::{SqliteDb, WriteQuery as _};

    async fn db(dir: &tempfile::TempDir) -> Arc<SqliteDb> {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = SqliteDb::open(&url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
             CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL
                 REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .execute(db.pool())
        .await
        .unwrap();
        db
    }

    /// Runs `sql` as a single durable write on a task of its own.
    fn spawn_write(
        db: &Arc<SqliteDb>,
        sql: &'static str,
    ) -> tokio::task::JoinHandle<Result<sqlx::sqlite::SqliteQueryResult, sqlx::Error>> {
        let db = Arc::clone(db);
        tokio::spawn(async move { sqlx::query(sql).write(&db).await })
    }

    async fn names(db: &SqliteDb) -> Vec<String> {
        sqlx::query("SELECT name FROM item ORDER BY name")
            .fetch_all(db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let db = Arc::clone(&db);
                tokio::spawn(async move {
                    sqlx::query("INSERT INTO item (name) VALUES ($1)")
                        .bind(format!("n{i:03}"))
                        .write(&db)
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(names(&db).await.len(), 200);
        let groups = db.groups_committed();
        assert!(
            groups < 200,
            "200 concurrent writes took {groups} commits: nothing was grouped"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_or_abandoned_write_leaves_its_group_intact() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        sqlx::query("INSERT INTO item (name) VALUES ('existing')")
            .write(&db)
            .await
            .unwrap();
        // Hold the writer so the following writes queue and form one group.
        let first = db.begin().await.unwrap();
        let single_duplicate = spawn_write(&db, "INSERT INTO item (name) VALUES ('existing')");
        let ok = spawn_write(&db, "INSERT INTO item (name) VALUES ('kept')");
        let duplicate = {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                let mut tx = db.begin().await?;
                sqlx::query("INSERT INTO item (name) VALUES ('twice')")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO item (name) VALUES ('twice')")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            })
        };
        let abandoned = {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                let mut tx = db.begin().await.unwrap();
                sqlx::query("INSERT INTO item (name) VALUES ('dropped')")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                drop(tx);
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(first);
        ok.await.unwrap().unwrap();
        let err = duplicate.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        abandoned.await.unwrap();
        let err = single_duplicate.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        assert_eq!(
            names(&db).await,
            vec!["existing".to_owned(), "kept".to_owned()]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_commit_fails_every_write_of_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        let first = db.begin().await.unwrap();
        let innocent = spawn_write(&db, "INSERT INTO item (name) VALUES ('innocent')");
        // A deferred foreign key: the statement succeeds, the COMMIT fails.
        let violating = spawn_write(&db, "INSERT INTO child (id, parent) VALUES (1, 99)");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        drop(first);
        let violating = violating.await.unwrap();
        let innocent = innocent.await.unwrap();
        assert!(violating.is_err(), "a commit that failed was acknowledged");
        assert!(
            innocent.is_err(),
            "a write was acknowledged although its group's COMMIT failed"
        );
        assert!(names(&db).await.is_empty());
        // The writer recovers: the next write commits on its own.
        sqlx::query("INSERT INTO item (name) VALUES ('after')")
            .write(&db)
            .await
            .unwrap();
        assert_eq!(names(&db).await, vec!["after".to_owned()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_fails_its_writes_and_refuses_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        db.writer
            .shared
            .fail_next_sync
            .store(true, std::sync::atomic::Ordering::Release);
        let err = sqlx::query("INSERT INTO item (name) VALUES ('unsynced')")
            .write(&db)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sync"), "{err}");
        // The kernel may have dropped the pages of a failed sync: nothing later is promised.
        let err = sqlx::query("INSERT INTO item (name) VALUES ('later')")
            .write(&db)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("restart"), "{err}");
        let err = db.begin().await.unwrap_err();
        assert!(err.to_string().contains("restart"), "{err}");
        assert!(db.writable().is_err(), "readiness must report the refusal");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_constraint_error_does_not_leave_the_write_lock_held() {
        use sqlx::Connection as _;
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        sqlx::query("INSERT INTO item (name) VALUES ('one')")
            .write(&db)
            .await
            .unwrap();
        let err = sqlx::query("INSERT INTO item (name) VALUES ('one')")
            .write(&db)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        // Another process (an operator command) must get the write lock: the group the
        // failed statement joined has been committed, not left open.
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .busy_timeout(std::time::Duration::from_secs(2));
        let mut other = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("the writer still holds the write lock");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    }

    #[tokio::test]
    async fn one_database_file_has_one_writer_per_process() {
        let dir = tempfile::tempdir().unwrap();
        let a = db(&dir).await;
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let b = SqliteDb::open(&url).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
