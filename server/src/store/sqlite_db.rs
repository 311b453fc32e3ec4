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
//! commits runs whenever it has grown by another [`CATCH_UP_STEP_PERCENT`], and the one with
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
//! the service's store and the webhook store share the writer.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::watch;

/// How long a write waits for another process's write lock (operator commands).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Statements kept prepared per connection.
const STATEMENT_CACHE: usize = 128;
/// The syncer checkpoints the WAL after this many groups, or after [`CHECKPOINT_EVERY`].
const CHECKPOINT_GROUPS: u64 = 256;
/// The WAL's size past which a checkpoint runs with no commit beside it, so that the WAL
/// starts over; also the size it is truncated to when it does.
const WAL_LIMIT_BYTES: u64 = 16 << 20;
/// The share of [`WAL_LIMIT_BYTES`] (in percent) from which checkpoints beside the commits
/// catch up with the WAL, so that the one with the writer held finds little left to copy.
const CATCH_UP_PERCENT: u64 = 75;
/// While catching up, a checkpoint beside the commits is asked for once the WAL has grown by
/// this share of its limit (in percent) since the last one was asked for: each has a few
/// hundred frames to copy, and a cycle of the WAL takes a handful of them, not one per group.
const CATCH_UP_STEP_PERCENT: u64 = 5;
/// A checkpoint with the writer held that takes longer than this is logged as a warning.
const SLOW_RESTART: Duration = Duration::from_millis(100);
/// The longest time between checkpoints while groups are committed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// How long a group stays open for more writes when the previous group held several: under
/// load a sync covers more writes (fewer device flushes, each of which costs CPU time as well
/// as latency); a lone write is committed at once.
const COMMIT_DELAY: Duration = Duration::from_millis(1);
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
}

impl SqliteDb {
    /// The database at `url` (created if missing), shared with every other user of the same
    /// file in this process.
    pub(crate) async fn open(url: &str) -> Result<Arc<SqliteDb>, DbError> {
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
        let limit_frames = limit_frames(u64::try_from(page_size).unwrap_or(4096));
        // Make sure the WAL file exists before it is opened for syncing.
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")?;
        // From now on the writer never waits inside SQLite (see the module docs).
        conn.busy_timeout(Duration::ZERO)?;
        let key = std::fs::canonicalize(&path)?;
        let wal = open_wal(&key)?;
        let checkpointer = connect(&key, Role::Checkpointer)?;
        let db = Arc::new(SqliteDb {
            readers: Mutex::new(Vec::new()),
            writer: Shared::start(conn, checkpointer, wal, wal_frames, limit_frames)?,
            path: key.clone(),
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

/// The frames [`WAL_LIMIT_BYTES`] holds with pages of `page_size` bytes (a frame is a page
/// and its 24-byte header).
fn limit_frames(page_size: u64) -> u64 {
    WAL_LIMIT_BYTES / (page_size + 24)
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
         PRAGMA temp_store = MEMORY;",
    )?;
    match role {
        Role::Reader => conn.execute_batch("PRAGMA query_only = ON;")?,
        Role::Writer => {
            conn.execute_batch(
                "PRAGMA synchronous = NORMAL;
                 PRAGMA wal_autocheckpoint = 0;",
            )?;
            conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES as i64)?;
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

/// Prepares `sql` once per connection (cached). Parameters are written `$1`, `$2`, ... in
/// order of first use, so that positional binding matches their numbers.
fn prepare<'c>(c: &'c Connection, sql: &str) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let st = c.prepare_cached(sql)?;
    debug_assert!(
        (1..=st.parameter_count()).all(|i| st.parameter_name(i) == Some(format!("${i}").as_str())),
        "parameters of `{sql}` are not $1..$n in order"
    );
    Ok(st)
}

/// Every row of `sql`, mapped by `map`.
pub(crate) fn fetch_all<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut st = prepare(c, sql)?;
    let rows = st.query_map(params, map)?;
    rows.collect()
}

/// The first row of `sql`, if any, mapped by `map`.
pub(crate) fn fetch_optional<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    use rusqlite::OptionalExtension as _;
    prepare(c, sql)?.query_row(params, map).optional()
}

/// Runs one statement; returns the rows it changed.
pub(crate) fn execute(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    prepare(c, sql)?.execute(params)
}

/// A text column parsed as `T` (a UUID, say); a value that does not parse is a conversion
/// error naming the column.
pub(crate) fn parsed<T>(row: &rusqlite::Row<'_>, col: &str) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(col)?;
    text.parse().map_err(|err| conversion(row, col, err))
}

/// A nullable JSON text column.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    row: &rusqlite::Row<'_>,
    col: &str,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|err| conversion(row, col, err)))
        .transpose()
}

fn conversion(
    row: &rusqlite::Row<'_>,
    col: &str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    let index = row.as_ref().column_index(col).unwrap_or_default();
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(err))
}

/// Open databases of this process by canonical path.
fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<SqliteDb>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<SqliteDb>>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// The outcome of one group: `None` until it is durable or has failed.
type Outcome = Option<Result<(), String>>;

/// The writer connection and what its callers and the syncer share.
#[derive(Debug)]
struct Shared {
    /// The writer connection. An asynchronous lock, so that a write queued behind another
    /// (or behind a `COMMIT`) suspends its task instead of blocking a runtime thread.
    state: tokio::sync::Mutex<State>,
    /// Set when a group is opened, cleared when the syncer takes it.
    opened: Mutex<bool>,
    /// Signalled (with `opened`) when a group is opened or the database is closed.
    group_open: Condvar,
    /// Set after a failed sync: every later write is refused.
    poisoned: AtomicBool,
    /// Set when the last handle is gone: the open group is committed and synced, then the
    /// syncer stops.
    closed: AtomicBool,
    /// Transactions committed so far (each a group of one or more writes).
    groups_committed: AtomicU64,
    /// What the checkpoints with the writer held had to copy.
    #[cfg(test)]
    restarts: RestartTally,
    /// Makes the next WAL sync fail, as a failing disk would.
    #[cfg(test)]
    fail_next_sync: AtomicBool,
    /// Keeps the syncer from committing while set, so tests can form groups.
    #[cfg(test)]
    hold_commits: AtomicBool,
}

#[derive(Debug)]
struct State {
    conn: Connection,
    /// The open transaction's outcome channel, if a transaction is open.
    group: Option<watch::Sender<Outcome>>,
    /// When the open transaction began.
    opened_at: Instant,
    /// Writes that joined the open transaction.
    writes: u64,
}

impl Shared {
    fn start(
        conn: Connection,
        checkpointer: Connection,
        wal: File,
        wal_frames: Arc<AtomicU64>,
        limit_frames: u64,
    ) -> Result<Arc<Shared>, DbError> {
        let shared = Arc::new(Shared {
            state: tokio::sync::Mutex::new(State {
                conn,
                group: None,
                opened_at: Instant::now(),
                writes: 0,
            }),
            opened: Mutex::new(false),
            group_open: Condvar::new(),
            poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            groups_committed: AtomicU64::new(0),
            #[cfg(test)]
            restarts: RestartTally::default(),
            #[cfg(test)]
            fail_next_sync: AtomicBool::new(false),
            #[cfg(test)]
            hold_commits: AtomicBool::new(false),
        });
        // One pending request at most: a checkpoint asked for while one runs is merged into it.
        let (checkpoint, requests) = std::sync::mpsc::sync_channel::<CheckpointRequest>(1);
        let progress = Arc::new(CheckpointProgress::default());
        let reported = Arc::clone(&progress);
        std::thread::Builder::new()
            .name("palmlink-wal-ckpt".to_owned())
            .spawn(move || {
                // Ends when the syncer (the sender) is gone.
                while let Ok(request) = requests.recv() {
                    let checkpointed = run_checkpoint(&checkpointer);
                    reported.finished(checkpointed);
                    if let Some(done) = request {
                        let _ = done.send(());
                    }
                }
            })?;
        let syncer = Syncer {
            shared: Arc::clone(&shared),
            checkpoint,
            progress,
            wal_frames,
            limit_frames,
            catch_up_frames: limit_frames / 100 * CATCH_UP_PERCENT,
            catch_up_step: limit_frames / 100 * CATCH_UP_STEP_PERCENT,
            wal,
        };
        std::thread::Builder::new()
            .name("palmlink-wal-sync".to_owned())
            .spawn(move || syncer.run())?;
        Ok(shared)
    }

    fn check_writable(&self) -> Result<(), DbError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(DbError::NotDurable(
                "an earlier WAL sync failed; restart the service".to_owned(),
            ));
        }
        Ok(())
    }

    /// Takes the writer with a transaction open, waiting (asynchronously) while another
    /// process holds the write lock.
    async fn lock_open_group(&self) -> Result<tokio::sync::MutexGuard<'_, State>, DbError> {
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            self.check_writable()?;
            {
                let mut state = self.state.lock().await;
                if state.group.is_some() {
                    return Ok(state);
                }
                match control(&state.conn, "BEGIN IMMEDIATE") {
                    Ok(()) => {
                        state.group = Some(watch::Sender::new(None));
                        state.opened_at = Instant::now();
                        state.writes = 0;
                        // The syncer commits the group once this lock is let go.
                        *lock(&self.opened) = true;
                        self.group_open.notify_one();
                        return Ok(state);
                    }
                    Err(err) if is_busy(&err) && Instant::now() < deadline => {}
                    Err(err) if is_busy(&err) => return Err(DbError::Busy),
                    Err(err) => return Err(err.into()),
                }
            }
            tokio::time::sleep(BUSY_RETRY).await;
        }
    }
}

impl State {
    /// Runs `f` inside a savepoint of the open transaction: on failure (or a panic) only
    /// its own statements are undone, unless SQLite rolled the whole transaction back, in
    /// which case the group fails.
    fn run_in_savepoint<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        if let Err(err) = control(&self.conn, "SAVEPOINT caller") {
            self.fail_group(&err.to_string());
            return Err(err.into());
        }
        let mut savepoint = Savepoint {
            state: self,
            released: false,
        };
        let out = f(&savepoint.state.conn);
        let end: &[&str] = if out.is_ok() {
            &["RELEASE caller"]
        } else {
            &["ROLLBACK TO caller", "RELEASE caller"]
        };
        savepoint.released = true;
        let state = &mut *savepoint.state;
        if state.conn.is_autocommit() {
            // SQLite rolled back the whole transaction: the group's earlier writes are gone.
            let reason = match &out {
                Err(err) => format!("the transaction was rolled back: {err}"),
                Ok(_) => "the transaction was rolled back".to_owned(),
            };
            state.fail_group(&reason);
            return Err(out.err().map_or(DbError::NotDurable(reason), DbError::from));
        }
        if let Err(err) = end.iter().try_for_each(|sql| control(&state.conn, sql)) {
            state.fail_group(&err.to_string());
            return Err(err.into());
        }
        Ok(out?)
    }

    /// Rolls back the open transaction and reports `reason` to every caller of the group.
    fn fail_group(&mut self, reason: &str) {
        if !self.conn.is_autocommit() {
            // Fails harmlessly when SQLite has already rolled the transaction back.
            let _ = control(&self.conn, "ROLLBACK");
        }
        if let Some(group) = self.group.take() {
            group.send_replace(Some(Err(reason.to_owned())));
        }
    }
}

/// A caller's savepoint: rolled back if the caller's closure panics.
struct Savepoint<'a> {
    state: &'a mut State,
    released: bool,
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if !self.released
            && ["ROLLBACK TO caller", "RELEASE caller"]
                .iter()
                .try_for_each(|sql| control(&self.state.conn, sql))
                .is_err()
        {
            self.state
                .fail_group("a write panicked and could not be undone");
        }
    }
}

/// Commits each open group and makes it durable, on a thread of its own; asks the
/// checkpointer's thread to checkpoint now and then, so no sync waits for a checkpoint.
struct Syncer {
    shared: Arc<Shared>,
    checkpoint: std::sync::mpsc::SyncSender<CheckpointRequest>,
    /// What the checkpointer's thread has done.
    progress: Arc<CheckpointProgress>,
    /// Frames in the WAL after the last commit (SQLite's WAL hook).
    wal_frames: Arc<AtomicU64>,
    /// The frames [`WAL_LIMIT_BYTES`] holds.
    limit_frames: u64,
    /// The frames from which checkpoints beside the commits catch up with the WAL
    /// ([`CATCH_UP_PERCENT`] of the limit).
    catch_up_frames: u64,
    /// The growth of the WAL between two checkpoints while catching up
    /// ([`CATCH_UP_STEP_PERCENT`] of the limit).
    catch_up_step: u64,
    wal: File,
}

/// A request to checkpoint, with where to say it is done when the caller waits for it.
type CheckpointRequest = Option<std::sync::mpsc::SyncSender<()>>;

/// What the checkpointer's thread reports to the syncer.
#[derive(Debug, Default)]
struct CheckpointProgress {
    /// Checkpoints finished so far.
    finished: AtomicU64,
    /// The frames of the WAL that the last finished checkpoint left checkpointed.
    checkpointed: AtomicU64,
}

impl CheckpointProgress {
    fn finished(&self, checkpointed: Option<u64>) {
        if let Some(frames) = checkpointed {
            self.checkpointed.store(frames, Ordering::Release);
        }
        self.finished.fetch_add(1, Ordering::Release);
    }
}

/// Checkpoints run with the writer held, and the most frames one of them had to copy.
#[cfg(test)]
#[derive(Debug, Default)]
struct RestartTally {
    count: AtomicU64,
    largest_backlog: AtomicU64,
}

/// The syncer's account of the checkpoints it asked for since the WAL last started over.
struct Schedule {
    /// Checkpoints asked for so far (the checkpointer is idle once as many have finished).
    asked: u64,
    /// The first checkpoint asked for since the WAL reached the catch-up share of its limit.
    catching_up_since: Option<u64>,
    /// Groups committed since the last checkpoint was asked for.
    groups: u64,
    /// The WAL's frames when the last checkpoint was asked for.
    frames_at_last: u64,
    /// When the last checkpoint was asked for.
    last: Instant,
}

impl Schedule {
    /// A schedule for a WAL that has just started over, with `asked` checkpoints asked for.
    fn new(asked: u64) -> Schedule {
        Schedule {
            asked,
            catching_up_since: None,
            groups: 0,
            frames_at_last: 0,
            last: Instant::now(),
        }
    }

    /// Whether the checkpointer has finished every checkpoint asked for.
    fn idle(&self, progress: &CheckpointProgress) -> bool {
        progress.finished.load(Ordering::Acquire) >= self.asked
    }

    /// Whether a checkpoint with the writer held would find little to copy: the checkpoints
    /// beside the commits have caught up with the WAL since it reached the catch-up share,
    /// and none is running.
    fn caught_up(&self, progress: &CheckpointProgress) -> bool {
        let finished = progress.finished.load(Ordering::Acquire);
        self.catching_up_since
            .is_some_and(|first| finished > first && finished >= self.asked)
    }
}

impl Syncer {
    fn run(self) {
        let shared = &*self.shared;
        let mut busy = false;
        let mut schedule = Schedule::new(0);
        loop {
            let Some((group, writes, restarted)) = self.commit_next(busy, &schedule) else {
                return;
            };
            busy = writes >= 2;
            #[cfg(test)]
            let injected = shared.fail_next_sync.swap(false, Ordering::AcqRel);
            #[cfg(not(test))]
            let injected = false;
            let synced = if injected {
                Err("WAL sync failed: injected sync failure".to_owned())
            } else {
                self.wal
                    .sync_data()
                    .map_err(|err| format!("WAL sync failed: {err}"))
            };
            if synced.is_err() {
                shared.poisoned.store(true, Ordering::Release);
                tracing::error!(
                    error = ?synced,
                    "WAL sync failed; refusing further writes until restart"
                );
            }
            group.send_replace(Some(synced));
            self.plan_checkpoints(&mut schedule, restarted);
        }
    }

    /// After a group is durable: asks for a checkpoint beside the commits when one is due
    /// and none is running. Past the catch-up share of the limit, whenever the WAL has grown
    /// by [`CATCH_UP_STEP_PERCENT`] of it; at any size, every [`CHECKPOINT_GROUPS`] groups or
    /// [`CHECKPOINT_EVERY`].
    fn plan_checkpoints(&self, schedule: &mut Schedule, restarted: bool) {
        if restarted {
            // The checkpoint with the writer held was one more asked for.
            *schedule = Schedule::new(schedule.asked + 1);
            return;
        }
        schedule.groups += 1;
        if !schedule.idle(&self.progress) {
            return;
        }
        let frames = self.wal_frames.load(Ordering::Acquire);
        let catching_up = frames >= self.catch_up_frames;
        let due = (catching_up
            && (schedule.catching_up_since.is_none()
                || frames.saturating_sub(schedule.frames_at_last) >= self.catch_up_step))
            || schedule.groups >= CHECKPOINT_GROUPS
            || schedule.last.elapsed() >= CHECKPOINT_EVERY;
        // The checkpointer is idle, so the request finds the channel empty.
        if due && self.checkpoint.try_send(None).is_ok() {
            if catching_up && schedule.catching_up_since.is_none() {
                schedule.catching_up_since = Some(schedule.asked);
            }
            schedule.asked += 1;
            schedule.groups = 0;
            schedule.frames_at_last = frames;
            schedule.last = Instant::now();
        }
    }

    /// Waits for an open group and commits it; `None` once the database is closed and no
    /// group is open. Also says whether a checkpoint ran with the writer held after the
    /// `COMMIT`, which it does when the WAL is past its limit and the checkpoints beside
    /// the commits have caught up ([`Schedule::caught_up`], judged right after the `COMMIT`,
    /// so that one finishing meanwhile counts).
    fn commit_next(
        &self,
        busy: bool,
        schedule: &Schedule,
    ) -> Option<(watch::Sender<Outcome>, u64, bool)> {
        let shared = &*self.shared;
        loop {
            {
                let mut opened = lock(&shared.opened);
                while !*opened && !shared.closed.load(Ordering::Acquire) {
                    opened = shared
                        .group_open
                        .wait(opened)
                        .unwrap_or_else(|p| p.into_inner());
                }
                if !*opened {
                    return None;
                }
                *opened = false;
            }
            if busy && !shared.closed.load(Ordering::Acquire) {
                let opened_at = shared.state.blocking_lock().opened_at;
                std::thread::sleep(COMMIT_DELAY.saturating_sub(opened_at.elapsed()));
            }
            #[cfg(test)]
            while shared.hold_commits.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut state = shared.state.blocking_lock();
            if state.group.is_none() {
                // The group failed before it could be committed.
                continue;
            }
            match control(&state.conn, "COMMIT") {
                Ok(()) => {
                    shared.groups_committed.fetch_add(1, Ordering::Relaxed);
                    let frames = self.wal_frames.load(Ordering::Acquire);
                    let restart = frames > self.limit_frames && schedule.caught_up(&self.progress);
                    if restart {
                        self.restart_wal(frames);
                    }
                    return state.group.take().map(|g| (g, state.writes, restart));
                }
                Err(err) => state.fail_group(&err.to_string()),
            }
        }
    }

    /// Checkpoints the WAL's last `frames` with the writer held (the caller holds it), so
    /// that the next write starts the WAL over. SQLite starts the WAL over (truncating it to
    /// the limit) only when a write begins with every frame checkpointed, which no
    /// checkpoint beside steady commits achieves.
    fn restart_wal(&self, frames: u64) {
        let backlog = frames.saturating_sub(self.progress.checkpointed.load(Ordering::Acquire));
        let started = Instant::now();
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.checkpoint.send(Some(done)).is_ok() {
            let _ = wait.recv();
        }
        let held = started.elapsed();
        if held > SLOW_RESTART {
            tracing::warn!(
                ?held,
                frames,
                backlog,
                "slow WAL checkpoint with writes held"
            );
        } else {
            tracing::debug!(?held, frames, backlog, "WAL checkpointed to start over");
        }
        #[cfg(test)]
        {
            let tally = &self.shared.restarts;
            tally.count.fetch_add(1, Ordering::AcqRel);
            tally.largest_backlog.fetch_max(backlog, Ordering::AcqRel);
        }
    }
}

/// Copies committed frames from the WAL into the database file, without waiting for readers
/// or the writer. Returns how many frames of the WAL are checkpointed.
fn run_checkpoint(checkpointer: &Connection) -> Option<u64> {
    let done = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(2)
    });
    match done {
        Ok(frames) => u64::try_from(frames).ok(),
        Err(err) => {
            tracing::warn!(error = %err, "WAL checkpoint failed; it will be retried");
            None
        }
    }
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

/// Waits until a group is durable or has failed.
async fn wait_durable(outcome: &mut watch::Receiver<Outcome>) -> Result<(), DbError> {
    let result = match outcome.wait_for(Option::is_some).await {
        Ok(done) => done.clone().unwrap_or(Ok(())),
        Err(_) => Err("the writer stopped before committing".to_owned()),
    };
    result.map_err(DbError::NotDurable)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use rusqlite::Connection;

    use super::{DbError, SqliteDb};

    async fn db(dir: &tempfile::TempDir) -> Arc<SqliteDb> {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = SqliteDb::open(&url).await.unwrap();
        db.write(|c| {
            c.execute_batch(
                "CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
                 CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL
                     REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
            )
        })
        .await
        .unwrap();
        db
    }

    fn insert(c: &Connection, name: &str) -> rusqlite::Result<usize> {
        c.execute("INSERT INTO item (name) VALUES ($1)", [name])
    }

    /// Inserts `name` as a durable write on a task of its own.
    fn spawn_insert(
        db: &Arc<SqliteDb>,
        name: &'static str,
    ) -> tokio::task::JoinHandle<Result<usize, DbError>> {
        let db = Arc::clone(db);
        tokio::spawn(async move { db.write(|c| insert(c, name)).await })
    }

    fn names(db: &SqliteDb) -> Vec<String> {
        db.read(|c| {
            let mut st = c.prepare("SELECT name FROM item ORDER BY name")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
        .unwrap()
    }

    /// Holds the syncer before its next `COMMIT` until the returned guard is dropped, so the
    /// writes made meanwhile join one group.
    fn hold_commits(db: &SqliteDb) -> impl Drop + '_ {
        struct Held<'a>(&'a SqliteDb);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.writer.hold_commits.store(false, Ordering::Release);
            }
        }
        db.writer.hold_commits.store(true, Ordering::Release);
        Held(db)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        let before = db.groups_committed();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let db = Arc::clone(&db);
                tokio::spawn(async move { db.write(|c| insert(c, &format!("n{i:03}"))).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(names(&db).len(), 200);
        let groups = db.groups_committed() - before;
        assert!(
            groups < 200,
            "200 concurrent writes took {groups} commits: nothing was grouped"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_or_panicking_write_leaves_its_group_intact() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        db.write(|c| insert(c, "existing")).await.unwrap();
        // The following writes form one group.
        let release = hold_commits(&db);
        let single_duplicate = spawn_insert(&db, "existing");
        let ok = spawn_insert(&db, "kept");
        let duplicate = {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                db.write(|c| {
                    insert(c, "twice")?;
                    insert(c, "twice")
                })
                .await
            })
        };
        let panicking = {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                db.write(|c| -> rusqlite::Result<()> {
                    insert(c, "dropped")?;
                    panic!("a write that panics halfway")
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(release);
        ok.await.unwrap().unwrap();
        let err = duplicate.await.unwrap().unwrap_err();
        assert!(err.is_unique_violation(), "{err}");
        assert!(panicking.await.is_err(), "the panic reaches its task");
        let err = single_duplicate.await.unwrap().unwrap_err();
        assert!(err.is_unique_violation(), "{err}");
        assert_eq!(names(&db), vec!["existing".to_owned(), "kept".to_owned()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_commit_fails_every_write_of_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        let release = hold_commits(&db);
        let innocent = spawn_insert(&db, "innocent");
        // A deferred foreign key: the statement succeeds, the COMMIT fails.
        let violating = {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                db.write(|c| c.execute("INSERT INTO child (id, parent) VALUES (1, 99)", []))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(release);
        let violating = violating.await.unwrap();
        let innocent = innocent.await.unwrap();
        assert!(violating.is_err(), "a commit that failed was acknowledged");
        assert!(
            innocent.is_err(),
            "a write was acknowledged although its group's COMMIT failed"
        );
        assert!(names(&db).is_empty());
        // The writer recovers: the next write commits on its own.
        db.write(|c| insert(c, "after")).await.unwrap();
        assert_eq!(names(&db), vec!["after".to_owned()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_fails_its_writes_and_refuses_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        db.writer
            .fail_next_sync
            .store(true, std::sync::atomic::Ordering::Release);
        let err = db.write(|c| insert(c, "unsynced")).await.unwrap_err();
        assert!(err.to_string().contains("sync"), "{err}");
        // The kernel may have dropped the pages of a failed sync: nothing later is promised.
        let err = db.write(|c| insert(c, "later")).await.unwrap_err();
        assert!(err.to_string().contains("restart"), "{err}");
        assert!(db.writable().is_err(), "readiness must report the refusal");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_constraint_error_does_not_leave_the_write_lock_held() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        db.write(|c| insert(c, "one")).await.unwrap();
        let err = db.write(|c| insert(c, "one")).await.unwrap_err();
        assert!(err.is_unique_violation(), "{err}");
        // Another process (an operator command) must get the write lock: the group the
        // failed write joined has been committed, not left open.
        let other = Connection::open(dir.path().join("t.db")).unwrap();
        other.busy_timeout(Duration::from_secs(2)).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .expect("the writer still holds the write lock");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_write_waits_for_another_process_without_blocking_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        let other = Connection::open(dir.path().join("t.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let write = spawn_insert(&db, "after the other process");
        // The runtime has one thread: this task only runs if the write does not block it.
        let mut ticks = 0;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            ticks += 1;
        }
        assert_eq!(ticks, 20);
        assert!(!write.is_finished(), "the write ignored the other writer");
        other.execute_batch("COMMIT").unwrap();
        write.await.unwrap().unwrap();
        assert_eq!(names(&db), vec!["after the other process".to_owned()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_near_its_limit_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        db.write(|c| c.execute_batch("CREATE TABLE blob (id INTEGER PRIMARY KEY, b BLOB)"))
            .await
            .unwrap();
        let wal = dir.path().join("t.db-wal");
        let mut largest = 0;
        // 2.5 times the limit, written by writers that never pause, so that a checkpoint
        // beside them would never see the last frame.
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let db = Arc::clone(&db);
                tokio::spawn(async move {
                    for _ in 0..160 {
                        db.write(|c| {
                            c.execute("INSERT INTO blob (b) VALUES (zeroblob(65536))", [])
                        })
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        while writers.iter().any(|w| !w.is_finished()) {
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let rows: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM blob", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(rows, 640);
        assert!(
            largest < super::WAL_LIMIT_BYTES + (8 << 20),
            "the WAL grew to {largest} bytes"
        );
        // Every write waits while a checkpoint runs with the writer held, so the checkpoints
        // beside the commits catch up first: that one never has the WAL's backlog to copy
        // (at least the limit's worth of frames), only what was committed since the last of
        // them began.
        let (restarts, largest_backlog) = db.restarts();
        let limit_frames = super::limit_frames(4096);
        assert!(
            restarts >= 1,
            "40 MiB written and the WAL never started over"
        );
        assert!(
            largest_backlog < limit_frames / 2,
            "a checkpoint with the writer held had {largest_backlog} frames to copy \
             (the limit holds {limit_frames})"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir).await;
        let err = db.read(|c| insert(c, "through a reader")).unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        assert!(names(&db).is_empty());
    }

    #[tokio::test]
    async fn one_database_file_has_one_writer_per_process() {
        let dir = tempfile::tempdir().unwrap();
        let a = db(&dir).await;
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let b = SqliteDb::open(&url).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn urls_name_a_file() {
        assert_eq!(
            super::path_of_url("sqlite:///data/p.db?mode=rwc").unwrap(),
            std::path::PathBuf::from("/data/p.db")
        );
        assert_eq!(
            super::path_of_url("sqlite:rel.db").unwrap(),
            std::path::PathBuf::from("rel.db")
        );
        for bad in ["postgres://x/y", "sqlite://", "sqlite::memory:"] {
            assert!(super::path_of_url(bad).is_err(), "{bad}");
        }
    }
}
