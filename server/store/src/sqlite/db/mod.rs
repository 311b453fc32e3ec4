//! One SQLite database as the service uses it: reads on pooled connections, run on the
//! calling thread, and a single writer that commits concurrent writes in groups and makes
//! each group durable with one WAL sync.
//!
//! # Reads
//!
//! A read borrows a connection from a pool (opening one when none is free), runs its
//! statements on the calling thread and gives the connection back. Statements are prepared
//! once per connection and cached. In WAL mode a reader never waits for the writer, and a
//! read takes microseconds, so no read is handed to another thread. Read connections are
//! `query_only`: a write through them fails. No connection maps the database file: SQLite
//! drops a connection's whole mapping whenever another connection has written, so under a
//! steady write load every read would unmap and map the file again.
//!
//! Every connection runs with the query planner stability guarantee (QPSG): without it,
//! SQLite re-prepares a cached statement each time a parameter that it inspected while
//! planning is bound to a new value.
//!
//! # Group commit
//!
//! SQLite admits one writer at a time, and every commit synced on its own would cost one
//! device flush per write. Instead, every write of the process runs on one connection:
//!
//! 1. [`SqliteDb::write`] takes the writer's lock, opens a transaction (`BEGIN IMMEDIATE`)
//!    if none is open, and runs the caller's statements inside a savepoint of that
//!    transaction, on the calling thread. If they fail, the savepoint is rolled back and
//!    only this caller gets the error; the writes before it in the open transaction stay.
//! 2. The caller lets the lock go and waits until its transaction (its *group*) is durable.
//! 3. The syncer thread takes the lock whenever a group is open, commits it (`COMMIT`),
//!    lets the lock go and calls `fdatasync` on the WAL; then it tells every caller of the
//!    group the outcome. Writes that arrive while it syncs join the next group, so under
//!    load one sync covers many writes. When the last group held more than one write, the
//!    syncer keeps the next one open for [`COMMIT_DELAY`] after it began, to gather more; a
//!    write on an idle database is committed and synced at once.
//!
//! The writer connection runs with `synchronous=NORMAL`, so `COMMIT` writes the
//! transaction's WAL frames without syncing them, and with automatic checkpoints off. A
//! write is acknowledged only after an `fdatasync` of the WAL that began after the `COMMIT`
//! holding it returned: the durability of `synchronous=FULL`, with one sync shared by a
//! whole group. A thread of its own checkpoints the WAL into the database file when the
//! syncer asks (every [`CHECKPOINT_GROUPS`] groups or [`CHECKPOINT_EVERY`]), from a
//! connection of its own (`synchronous=FULL`: the WAL is synced before frames are copied and
//! the database file after), beside the commits. SQLite starts the WAL over only when a
//! write begins with every frame checkpointed, which a checkpoint beside steady commits never
//! achieves; so once the WAL passes [`WAL_LIMIT_BYTES`], the syncer runs one checkpoint right
//! after a `COMMIT`, with the writer held, and the WAL starts over. Every write waits while
//! that one runs, so it must have little to copy: once the WAL holds [`CATCH_UP_PERCENT`] of
//! its limit (SQLite reports the frames it holds after every commit), a checkpoint beside the
//! commits runs whenever it has grown by another [`CATCH_UP_STEP_BYTES`], and the one with
//! the writer held is asked for only once the last of them has finished. It then copies only
//! the frames committed since that last one began, not the WAL's backlog.
//!
//! Failures: if a statement fails in a way that makes SQLite roll the whole transaction back
//! (an I/O error, a full disk), or `COMMIT` fails (a deferred foreign key), every caller of
//! the group gets an error. If `fdatasync` fails, the callers of that group get an error and
//! the writer refuses all further writes: after a failed sync the kernel may have dropped
//! the dirty pages, so nothing later could be promised durable. No caller is told "done" for
//! a change that is not durable.
//!
//! Another process (an operator command) may hold SQLite's write lock for a moment. The
//! writer then does not block the calling thread in SQLite's busy handler: it lets its lock
//! go, sleeps asynchronously and tries again, for up to [`BUSY_TIMEOUT`].
//!
//! One database file has one `SqliteDb` per process (a registry keyed by the file's path), so
//! the service's store and the webhook store share the writer, and the signals of the file
//! (one broadcast channel, see [`crate::Signals`]).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::watch;

use crate::signals::SignalHub;

/// How long a write waits for another process's write lock (operator commands).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Statements kept prepared per connection.
const STATEMENT_CACHE: usize = 128;
/// The syncer checkpoints the WAL after this many groups, or after [`CHECKPOINT_EVERY`].
const CHECKPOINT_GROUPS: u64 = 256;
/// The WAL's size past which a checkpoint runs with no commit beside it, so that the WAL
/// starts over; also the size it is truncated to when it does. One transaction of an
/// import writes about 4.5 MB of frames (1,000 templates), so a WAL of a few of them would
/// start over, and hold every write, every few transactions.
const WAL_LIMIT_BYTES: u64 = 128 << 20;
/// The share of [`WAL_LIMIT_BYTES`] (in percent) from which checkpoints beside the commits
/// catch up with the WAL, so that the one with the writer held finds little left to copy.
/// Under a steady bulk load the checkpointer then works beside the commits for most of a
/// cycle, rather than idle until the WAL is nearly full.
const CATCH_UP_PERCENT: u64 = 25;
/// While catching up, a checkpoint beside the commits is asked for once the WAL has grown by
/// this many bytes since the last one was asked for: the one with the writer held then has
/// about this much to copy, whatever the limit, which keeps the pause it makes in the writes
/// short.
const CATCH_UP_STEP_BYTES: u64 = 1 << 20;
/// A checkpoint with the writer held that takes longer than this is logged as a warning.
const SLOW_RESTART: Duration = Duration::from_millis(100);
/// The longest time between checkpoints while groups are committed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// How long a group stays open for more writes when the previous group held several: under
/// load a sync covers more writes (fewer device flushes, each of which costs CPU time as well
/// as latency); a lone write is committed at once.
const COMMIT_DELAY: Duration = Duration::from_millis(1);
/// The writer's page cache, in KiB: a transaction's dirty pages stay in it until `COMMIT`
/// instead of being spilled into the WAL while its statements run (SQLite's default is
/// 2 MB, less than one import batch of templates).
const WRITER_CACHE_KIB: i64 = 64 << 10;
/// How long the writer sleeps before it asks again for a write lock held by another process.
const BUSY_RETRY: Duration = Duration::from_millis(2);

/// Failures of the database layer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    /// A statement failed.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    /// The write was not made durable (its group failed to commit or sync, or the writer
    /// refuses writes after a failed sync).
    #[error("write not durable: {0}")]
    NotDurable(String),
    /// Another process held the write lock for longer than [`BUSY_TIMEOUT`].
    #[error("database is locked by another process")]
    Busy,
    /// The database file or its WAL could not be opened.
    #[error("database file: {0}")]
    Io(#[from] std::io::Error),
    /// The database URL is not an SQLite file URL.
    #[error("unsupported database URL `{0}` (expected sqlite://PATH)")]
    Url(String),
}

impl DbError {
    /// Whether a uniqueness rule (UNIQUE or PRIMARY KEY) was violated.
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, DbError::Sql(err) if is_unique_violation(err))
    }
}

/// Whether `err` is a UNIQUE or PRIMARY KEY violation.
pub(crate) fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Runs a statement that manages the writer's transaction (prepared once, cached).
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn is_busy(err: &rusqlite::Error) -> bool {
    err.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
}

/// The file path of an `sqlite://PATH[?options]` (or `sqlite:PATH`) URL.
pub(crate) fn path_of_url(url: &str) -> Result<PathBuf, DbError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| DbError::Url(url.to_owned()))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return Err(DbError::Url(url.to_owned()));
    }
    Ok(PathBuf::from(path))
}

/// A database file opened for the service: reads through [`SqliteDb::read`], writes through
/// [`SqliteDb::write`].
#[derive(Debug)]
pub(crate) struct SqliteDb {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Arc<Shared>,
    signals: SignalHub,
}

impl SqliteDb {
    /// The database at `url` (created if missing), shared with every other user of the same
    /// file in this process.
    pub(crate) async fn open(url: &str) -> Result<Arc<SqliteDb>, DbError> {
        Self::open_with_wal_limit(url, WAL_LIMIT_BYTES).await
    }

    /// [`SqliteDb::open`] with a WAL that starts over past `wal_limit_bytes`.
    async fn open_with_wal_limit(
        url: &str,
        wal_limit_bytes: u64,
    ) -> Result<Arc<SqliteDb>, DbError> {
        let path = path_of_url(url)?;
        let mut open = lock(registry());
        if let Some(db) = std::fs::canonicalize(&path)
            .ok()
            .and_then(|key| open.get(&key))
            .and_then(Weak::upgrade)
        {
            return Ok(db);
        }
        let mut conn = connect(&path, Role::Writer)?;
        // Frames in the WAL after each commit, as SQLite reports them.
        let wal_frames = Arc::new(AtomicU64::new(0));
        let reported = Arc::clone(&wal_frames);
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames: i32| {
            reported.store(u64::try_from(frames).unwrap_or(0), Ordering::Release);
            Ok(())
        }))?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let page_size = u64::try_from(page_size).unwrap_or(4096);
        let limits = WalFrames {
            limit: frames_in(wal_limit_bytes, page_size),
            catch_up: frames_in(wal_limit_bytes / 100 * CATCH_UP_PERCENT, page_size),
            catch_up_step: frames_in(CATCH_UP_STEP_BYTES, page_size),
        };
        conn.pragma_update(None, "journal_size_limit", wal_limit_bytes as i64)?;
        // Make sure the WAL file exists before it is opened for syncing.
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")?;
        // From now on the writer never waits inside SQLite (see the module docs).
        conn.busy_timeout(Duration::ZERO)?;
        let key = std::fs::canonicalize(&path)?;
        let wal = open_wal(&key)?;
        let checkpointer = connect(&key, Role::Checkpointer)?;
        let db = Arc::new(SqliteDb {
            readers: Mutex::new(Vec::new()),
            writer: {
                let shared = Shared::new(conn);
                syncer::spawn(&shared, checkpointer, wal, wal_frames, limits)?;
                shared
            },
            path: key.clone(),
            signals: SignalHub::new(),
        });
        open.retain(|_, weak| weak.strong_count() > 0);
        open.insert(key, Arc::downgrade(&db));
        Ok(db)
    }

    /// Runs `f` on a read connection, on the calling thread. `f` sees every write that was
    /// acknowledged before the call.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.path, Role::Reader)?,
        };
        let out = f(&conn);
        lock(&self.readers).push(conn);
        Ok(out?)
    }

    /// The signals of this database file in this process.
    pub(crate) fn signals(&self) -> &SignalHub {
        &self.signals
    }

    /// Fails once a WAL sync has failed (the writer then refuses every write).
    pub(crate) fn writable(&self) -> Result<(), DbError> {
        self.writer.check_writable()
    }

    /// Runs `f` as one write: its statements take effect together or not at all, and the
    /// call returns once they are durable. `f` runs on the calling thread with the writer
    /// held, so it must only run statements.
    pub(crate) async fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        let shared = &self.writer;
        let (out, mut outcome) = {
            let mut state = shared.lock_open_group().await?;
            let out = state.run_in_savepoint(f);
            state.writes += u64::from(out.is_ok());
            let outcome = state.group.as_ref().map(watch::Sender::subscribe);
            (out, outcome)
        };
        let out = out?;
        match &mut outcome {
            Some(outcome) => wait_durable(outcome).await?,
            None => {
                return Err(DbError::NotDurable(
                    "the transaction was rolled back".to_owned(),
                ))
            }
        }
        Ok(out)
    }

    /// Transactions the writer has committed (each holding one or more writes).
    #[cfg(test)]
    pub(crate) fn groups_committed(&self) -> u64 {
        self.writer.groups_committed.load(Ordering::Relaxed)
    }

    /// Checkpoints run with the writer held, and the most frames that one of them found not
    /// yet checkpointed.
    #[cfg(test)]
    fn restarts(&self) -> (u64, u64) {
        let restarts = &self.writer.restarts;
        (
            restarts.count.load(Ordering::Acquire),
            restarts.largest_backlog.load(Ordering::Acquire),
        )
    }
}

/// The frames `bytes` of WAL hold with pages of `page_size` bytes (a frame is a page and its
/// 24-byte header).
fn frames_in(bytes: u64, page_size: u64) -> u64 {
    bytes / (page_size + 24)
}

/// The sizes, in frames, by which the syncer schedules checkpoints.
#[derive(Clone, Copy, Debug)]
struct WalFrames {
    /// The WAL's limit ([`WAL_LIMIT_BYTES`] in the service).
    limit: u64,
    /// From where checkpoints beside the commits catch up ([`CATCH_UP_PERCENT`] of the
    /// limit).
    catch_up: u64,
    /// The growth between two of them while catching up ([`CATCH_UP_STEP_BYTES`]).
    catch_up_step: u64,
}

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Reader,
    Writer,
    Checkpointer,
}

/// Opens a connection to the database file with the settings of its role.
fn connect(path: &Path, role: Role) -> Result<Connection, DbError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans that do not depend on bound values: without this, SQLite re-prepares a cached
    // statement whenever a parameter it looked at while planning is bound anew (with
    // partial indexes, propagated constants, STAT4), which is most of our statements.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Setting up may wait for another connection (one closing, say, or recovering the WAL).
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA secure_delete = ON;",
    )?;
    match role {
        Role::Reader => conn.execute_batch("PRAGMA query_only = ON;")?,
        Role::Writer => {
            conn.execute_batch(
                "PRAGMA synchronous = NORMAL;
                 PRAGMA wal_autocheckpoint = 0;",
            )?;
            conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        }
        Role::Checkpointer => conn.execute_batch("PRAGMA synchronous = FULL;")?,
    }
    Ok(conn)
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

/// Open databases of this process by canonical path.
fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<SqliteDb>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<SqliteDb>>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        let shared = &self.writer;
        shared.closed.store(true, Ordering::Release);
        let _opened = lock(&shared.opened);
        shared.group_open.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

mod syncer;
mod writer;

use writer::{wait_durable, Shared};
#[cfg(test)]
mod tests;
