//! The thread pool of the graph index's background jobs: loading, building,
//! extending and rebuilding it.
//!
//! Searches and inserts run their parallel loops on rayon's global pool. A
//! graph build is one long parallel loop (hnsw_rs's and the native builder's
//! alike): on the global pool its workers would keep finding work of their
//! own and leave a search's or an insert's loop queued until the build ends,
//! minutes at a million rows. On a pool of its own the build shares the cores
//! with them through the operating system's scheduler instead, and every
//! request keeps making progress while it runs. The derivation of the compact
//! copy at open stays on the global pool: searches wait for it.

use std::sync::OnceLock;

/// The background pool (as many threads as cores), created on first use;
/// `None` if the system refused its threads (the work then runs on the
/// global pool, as it would without this module: slower to share, not wrong).
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("palmlink-build-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Runs `work` with its parallel loops on the background pool (on the global
/// pool if the background pool could not be created). Blocks until it ends.
pub(crate) fn run<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use rayon::prelude::*;

    use super::*;
    use crate::search::test_support::{insert_all, store, uniform_templates as templates};
    use crate::{Gallery, IndexPolicy, Layout};

    /// Occupies every thread of the background pool until the returned sender
    /// is dropped or sent to.
    fn occupy_background() -> mpsc::Sender<()> {
        let (release, released) = mpsc::channel::<()>();
        let released = std::sync::Mutex::new(released);
        let threads = pool().expect("background pool").current_num_threads();
        let (started, all_started) = mpsc::channel();
        std::thread::spawn(move || {
            run(|| {
                (0..threads).into_par_iter().for_each(|_| {
                    started.send(()).expect("test alive");
                    // Every worker waits here; the first to get the lock waits for the
                    // release, the others for the lock.
                    let _ = released.lock().map(|r| r.recv());
                });
            })
        });
        for _ in 0..threads {
            all_started
                .recv_timeout(Duration::from_secs(60))
                .expect("every background thread took a blocking task");
        }
        release
    }

    #[test]
    fn searches_and_inserts_run_while_every_background_thread_is_busy() {
        let release = occupy_background();
        let dir = tempfile::tempdir().unwrap();
        let (done, finished) = mpsc::channel();
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let rows = store(&path, Layout::DEFAULT);
            // The batch insert's parallel loop runs on the global pool.
            insert_all(&rows, 0, &templates(64, 7), true);
            // A parallel loop on the global pool, as every scan runs.
            let sum: usize = (0..10_000usize).into_par_iter().map(|i| i % 7).sum();
            done.send((rows.row_count(), sum)).ok();
        });
        let outcome = finished.recv_timeout(Duration::from_secs(60));
        drop(release);
        let (count, sum) = outcome.expect("the global pool waited for the background pool");
        assert_eq!(count, 64);
        assert_eq!(sum, (0..10_000usize).map(|i| i % 7).sum::<usize>());
    }

    #[test]
    fn background_work_runs_on_the_background_pool() {
        let here = run(|| rayon::current_thread_index().is_some());
        assert!(here, "the work ran outside a rayon pool");
        let threads = run(rayon::current_num_threads);
        assert_eq!(threads, pool().unwrap().current_num_threads());
        let names: Vec<String> = run(|| {
            (0..64)
                .into_par_iter()
                .map(|_| std::thread::current().name().unwrap_or_default().to_owned())
                .collect()
        });
        assert!(
            names.iter().all(|n| n.starts_with("palmlink-build-")),
            "{names:?}"
        );
    }

    #[test]
    fn index_builds_run_on_the_background_pool() {
        let dir = tempfile::tempdir().unwrap();
        let policy = IndexPolicy {
            at_open: false,
            ..IndexPolicy::default()
        };
        let gallery = {
            drop(Gallery::create(dir.path(), Layout::DEFAULT).unwrap());
            Gallery::open_with(dir.path(), policy).unwrap()
        };
        let rows = templates(64, 11);
        let items: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let ids = crate::RecordIds {
                    feature_id: i as u128 + 1,
                    user_key: i as u128 + 1,
                    palm: crate::PalmSide::Left,
                };
                (ids, t)
            })
            .collect();
        gallery.insert_batch(&items).unwrap();
        let release = occupy_background();
        gallery.build_index_in_background();
        let built_while_occupied = gallery.wait_for_index(Duration::from_secs(1));
        drop(release);
        assert!(
            !built_while_occupied,
            "the build ran although every background thread was busy"
        );
        assert!(gallery.wait_for_index(Duration::from_secs(120)));
    }
}
