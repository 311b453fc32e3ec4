//! The syncer and checkpointer threads: commits, WAL syncs and checkpoints.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::watch;

use super::writer::{Outcome, Shared};
use super::{
    control, lock, WalFrames, CHECKPOINT_EVERY, CHECKPOINT_GROUPS, COMMIT_DELAY, SLOW_RESTART,
};

/// Starts the checkpointer's thread and the syncer's thread of a writer.
pub(super) fn spawn(
    shared: &Arc<Shared>,
    checkpointer: Connection,
    wal: File,
    wal_frames: Arc<AtomicU64>,
    limits: WalFrames,
) -> std::io::Result<()> {
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
        shared: Arc::clone(shared),
        checkpoint,
        progress,
        wal_frames,
        limits,
        wal,
    };
    std::thread::Builder::new()
        .name("palmlink-wal-sync".to_owned())
        .spawn(move || syncer.run())?;
    Ok(())
}

/// Commits each open group and makes it durable, on a thread of its own; asks the
/// checkpointer's thread to checkpoint now and then, so no sync waits for a checkpoint.
pub(super) struct Syncer {
    pub(super) shared: Arc<Shared>,
    pub(super) checkpoint: std::sync::mpsc::SyncSender<CheckpointRequest>,
    /// What the checkpointer's thread has done.
    pub(super) progress: Arc<CheckpointProgress>,
    /// Frames in the WAL after the last commit (SQLite's WAL hook).
    pub(super) wal_frames: Arc<AtomicU64>,
    /// The sizes that schedule the checkpoints.
    pub(super) limits: WalFrames,
    pub(super) wal: File,
}

/// A request to checkpoint, with where to say it is done when the caller waits for it.
pub(super) type CheckpointRequest = Option<std::sync::mpsc::SyncSender<()>>;

/// What the checkpointer's thread reports to the syncer.
#[derive(Debug, Default)]
pub(super) struct CheckpointProgress {
    /// Checkpoints finished so far.
    pub(super) finished: AtomicU64,
    /// The frames of the WAL that the last finished checkpoint left checkpointed.
    pub(super) checkpointed: AtomicU64,
}

impl CheckpointProgress {
    pub(super) fn finished(&self, checkpointed: Option<u64>) {
        if let Some(frames) = checkpointed {
            self.checkpointed.store(frames, Ordering::Release);
        }
        self.finished.fetch_add(1, Ordering::Release);
    }
}

/// The syncer's account of the checkpoints it asked for since the WAL last started over.
pub(super) struct Schedule {
    /// Checkpoints asked for so far (the checkpointer is idle once as many have finished).
    pub(super) asked: u64,
    /// The first checkpoint asked for since the WAL reached the catch-up share of its limit.
    pub(super) catching_up_since: Option<u64>,
    /// Groups committed since the last checkpoint was asked for.
    pub(super) groups: u64,
    /// The WAL's frames when the last checkpoint was asked for.
    pub(super) frames_at_last: u64,
    /// When the last checkpoint was asked for.
    pub(super) last: Instant,
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
    pub(super) fn run(self) {
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
    /// by [`WalFrames::catch_up_step`]; at any size, every [`CHECKPOINT_GROUPS`] groups or
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
        let catching_up = frames >= self.limits.catch_up;
        let due = (catching_up
            && (schedule.catching_up_since.is_none()
                || frames.saturating_sub(schedule.frames_at_last) >= self.limits.catch_up_step))
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
                    let restart = frames > self.limits.limit && schedule.caught_up(&self.progress);
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
pub(super) fn run_checkpoint(checkpointer: &Connection) -> Option<u64> {
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
