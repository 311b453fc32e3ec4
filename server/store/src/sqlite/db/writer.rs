//! The writer connection: one transaction open at a time, each caller in a savepoint of it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::watch;

use super::{control, is_busy, lock, DbError, BUSY_RETRY, BUSY_TIMEOUT};

/// The outcome of one group: `None` until it is durable or has failed.
pub(super) type Outcome = Option<Result<(), String>>;

/// The writer connection and what its callers and the syncer share.
#[derive(Debug)]
pub(super) struct Shared {
    /// The writer connection. An asynchronous lock, so that a write queued behind another
    /// (or behind a `COMMIT`) suspends its task instead of blocking a runtime thread.
    pub(super) state: tokio::sync::Mutex<State>,
    /// Set when a group is opened, cleared when the syncer takes it.
    pub(super) opened: Mutex<bool>,
    /// Signalled (with `opened`) when a group is opened or the database is closed.
    pub(super) group_open: Condvar,
    /// Set after a failed sync: every later write is refused.
    pub(super) poisoned: AtomicBool,
    /// Set when the last handle is gone: the open group is committed and synced, then the
    /// syncer stops.
    pub(super) closed: AtomicBool,
    /// Transactions committed so far (each a group of one or more writes).
    pub(super) groups_committed: AtomicU64,
    /// What the checkpoints with the writer held had to copy.
    #[cfg(test)]
    pub(super) restarts: RestartTally,
    /// Makes the next WAL sync fail, as a failing disk would.
    #[cfg(test)]
    pub(super) fail_next_sync: AtomicBool,
    /// Keeps the syncer from committing while set, so tests can form groups.
    #[cfg(test)]
    pub(super) hold_commits: AtomicBool,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) conn: Connection,
    /// The open transaction's outcome channel, if a transaction is open.
    pub(super) group: Option<watch::Sender<Outcome>>,
    /// When the open transaction began.
    pub(super) opened_at: Instant,
    /// Writes that joined the open transaction.
    pub(super) writes: u64,
}

impl Shared {
    /// A writer on `conn` with no transaction open.
    pub(super) fn new(conn: Connection) -> Arc<Shared> {
        Arc::new(Shared {
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
        })
    }

    pub(super) fn check_writable(&self) -> Result<(), DbError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(DbError::NotDurable(
                "an earlier WAL sync failed; restart the service".to_owned(),
            ));
        }
        Ok(())
    }

    /// Takes the writer with a transaction open, waiting (asynchronously) while another
    /// process holds the write lock.
    pub(super) async fn lock_open_group(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, State>, DbError> {
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
    pub(super) fn run_in_savepoint<T>(
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
    pub(super) fn fail_group(&mut self, reason: &str) {
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
pub(super) struct Savepoint<'a> {
    pub(super) state: &'a mut State,
    pub(super) released: bool,
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

/// Waits until a group is durable or has failed.
pub(super) async fn wait_durable(outcome: &mut watch::Receiver<Outcome>) -> Result<(), DbError> {
    let result = match outcome.wait_for(Option::is_some).await {
        Ok(done) => done.clone().unwrap_or(Ok(())),
        Err(_) => Err("the writer stopped before committing".to_owned()),
    };
    result.map_err(DbError::NotDurable)
}

/// Checkpoints run with the writer held, and the most frames one of them had to copy.
#[cfg(test)]
#[derive(Debug, Default)]
pub(super) struct RestartTally {
    pub(super) count: AtomicU64,
    pub(super) largest_backlog: AtomicU64,
}
