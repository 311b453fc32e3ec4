//! The group-commit writer under concurrent, failing and panicking writes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::{DbError, SqliteDb};

async fn db(dir: &tempfile::TempDir) -> Arc<SqliteDb> {
    db_with_wal_limit(dir, super::WAL_LIMIT_BYTES).await
}

/// [`db`] with a WAL that starts over past `wal_limit_bytes`.
async fn db_with_wal_limit(dir: &tempfile::TempDir, wal_limit_bytes: u64) -> Arc<SqliteDb> {
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let db = SqliteDb::open_with_wal_limit(&url, wal_limit_bytes)
        .await
        .unwrap();
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
    // A limit smaller than the service's, so that a few of its cycles take little writing.
    const LIMIT: u64 = 16 << 20;
    let dir = tempfile::tempdir().unwrap();
    let db = db_with_wal_limit(&dir, LIMIT).await;
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
                    db.write(|c| c.execute("INSERT INTO blob (b) VALUES (zeroblob(65536))", []))
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
        largest < LIMIT + (8 << 20),
        "the WAL grew to {largest} bytes"
    );
    // Every write waits while a checkpoint runs with the writer held, so the checkpoints
    // beside the commits catch up first: that one never has the WAL's backlog to copy
    // (at least the limit's worth of frames), only what was committed since the last of
    // them began.
    let (restarts, largest_backlog) = db.restarts();
    let limit_frames = super::frames_in(LIMIT, 4096);
    assert!(
        restarts >= 1,
        "40 MiB written and the WAL never started over"
    );
    // Without the catch-up the backlog is the whole WAL (the limit or more); with it, a
    // few catch-up steps at most, even when other work starves the checkpointer's thread.
    assert!(
        largest_backlog < limit_frames * 3 / 4,
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
