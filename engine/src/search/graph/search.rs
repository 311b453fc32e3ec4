//! The graph search: a greedy descent through the upper layers of the flat
//! graph and a best-first walk of its base layer, over contiguous `u32`
//! lists with a visited bit set and the fused i8 kernel; then the gallery
//! search around it, which adds the graph's orphans and the rows past the
//! graph and re-scores the nearest proposals exactly.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::format::{FlatGraph, NONE};
use super::{key_of, GraphIndex};
use crate::kernels::{self, prefetch};
use crate::search::exact::{self, Candidate};
use crate::search::query::{admissible, SearchQuery};
use crate::storage::Snapshot;
use crate::template::Template;

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited::new()) };
}

/// Points seen by the current search: one bit per point (128 KiB for a
/// million points, so the checks stay in the core's own cache), and the
/// points marked, whose words the next search clears instead of clearing
/// the whole set. The builder keeps one per thread too.
pub(super) struct Visited {
    bits: Vec<u64>,
    seen: Vec<u32>,
}

impl Visited {
    /// An empty set.
    pub(super) const fn new() -> Visited {
        Visited {
            bits: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Forgets the previous search's marks and makes room for `points`.
    pub(super) fn start(&mut self, points: usize) {
        for &point in &self.seen {
            self.bits[point as usize / 64] = 0;
        }
        self.seen.clear();
        if self.bits.len() < points.div_ceil(64) {
            self.bits.resize(points.div_ceil(64), 0);
        }
    }

    /// True the first time `point` is seen in this search.
    #[inline]
    pub(super) fn first_visit(&mut self, point: u32) -> bool {
        let word = &mut self.bits[point as usize / 64];
        let bit = 1u64 << (point % 64);
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        self.seen.push(point);
        true
    }
}

/// What a search asks about a gallery row: whether it may be returned, and a
/// hint to start loading what that question reads before it is asked.
pub(crate) trait RowFilter {
    /// Whether `row` may be returned.
    fn keep(&self, row: u64) -> bool;
    /// Starts loading what [`RowFilter::keep`] reads for `row`.
    fn prefetch(&self, _row: u64) {}
}

/// Plain closures as filters, for the tests of the walk; a search's filter
/// is [`Admissible`].
#[cfg(test)]
impl<F: Fn(u64) -> bool> RowFilter for F {
    fn keep(&self, row: u64) -> bool {
        self(row)
    }
}

/// Up to `knn` rows that `filter` keeps, nearest to `key` first, by a
/// greedy descent through the upper layers and a best-first search of
/// the base layer with `max(ef, knn)` candidates. Rows it does not keep
/// are walked through but never returned.
pub(crate) fn propose(
    graph: &FlatGraph,
    key: &[i8],
    knn: usize,
    ef: usize,
    filter: &dyn RowFilter,
) -> Vec<u64> {
    let n = graph.points();
    if n == 0 || knn == 0 || key.len() != graph.dim() {
        return Vec::new();
    }
    let rows = graph.rows_of_points();
    let keys = graph.keys();
    let dim = key.len();
    let distance = |p: u32| -> i64 {
        let at = p as usize * dim;
        -kernels::dot_i8(key, &keys[at..at + dim])
    };
    let mut point = graph.entry();
    let mut best = distance(point);
    let (starts, ups, links, degree) = graph.upper();
    for layer in (1..starts.len()).rev() {
        let (lo, hi) = (starts[layer - 1] as usize, starts[layer] as usize);
        while let Ok(i) = ups[lo..hi].binary_search(&point) {
            let at = (lo + i) * degree;
            let mut moved = false;
            for &next in links[at..at + degree].iter().take_while(|&&p| p != NONE) {
                let d = distance(next);
                if d < best {
                    (best, point, moved) = (d, next, true);
                }
            }
            if !moved {
                break;
            }
        }
    }

    let ef = ef.max(knn);
    let (base, degree0, forward0) = graph.base();
    let row = |p: u32| u64::from(rows[p as usize]);
    VISITED.with_borrow_mut(|visited| {
        visited.start(n);
        let mut frontier: BinaryHeap<Reverse<(i64, u32)>> = BinaryHeap::with_capacity(ef * 4);
        let mut found: BinaryHeap<(i64, u32)> = BinaryHeap::with_capacity(ef + 1);
        // The unvisited points of the list being expanded: their keys are fetched
        // together before any is compared, and keys already compared are not fetched.
        let mut fresh: Vec<u32> = Vec::with_capacity(degree0);
        visited.first_visit(point);
        frontier.push(Reverse((best, point)));
        if filter.keep(row(point)) {
            found.push((best, point));
        }
        while let Some(Reverse((d, p))) = frontier.pop() {
            if found.len() >= ef && found.peek().is_some_and(|&(worst, _)| d > worst) {
                break;
            }
            let at = p as usize * degree0;
            let (own, back) = base[at..at + degree0].split_at(forward0);
            fresh.clear();
            let links = own.iter().take_while(|&&q| q != NONE);
            for &next in links.chain(back.iter().take_while(|&&q| q != NONE)) {
                if visited.first_visit(next) {
                    prefetch(&keys[next as usize * dim..(next as usize + 1) * dim]);
                    prefetch(&rows[next as usize..=next as usize]);
                    fresh.push(next);
                }
            }
            for &next in &fresh {
                filter.prefetch(row(next));
            }
            for &next in &fresh {
                let dn = distance(next);
                let worst = found.peek().map_or(i64::MAX, |&(w, _)| w);
                if found.len() < ef || dn < worst {
                    frontier.push(Reverse((dn, next)));
                    if filter.keep(row(next)) {
                        found.push((dn, next));
                        if found.len() > ef {
                            found.pop();
                        }
                    }
                }
            }
        }
        let mut out = found.into_sorted_vec();
        out.truncate(knn);
        out.into_iter().map(|(_, p)| row(p)).collect()
    })
}

/// The rows a graph search may return: committed in its snapshot, live, within the
/// query's filter and undamaged.
struct Admissible<'a> {
    snap: &'a Snapshot,
    query: &'a SearchQuery,
}

impl RowFilter for Admissible<'_> {
    fn keep(&self, row: u64) -> bool {
        row < self.snap.count && admissible(self.snap, self.query, row)
    }

    fn prefetch(&self, row: u64) {
        if row < self.snap.count {
            self.snap.prefetch_record(row);
        }
    }
}

/// How many of a walk's proposals, nearest by key first, a query for `top_k`
/// results re-scores in f32. The i8 key ranks a row about where its exact
/// score does, so a large `ef` serves the walk (it finds the mate) and only
/// the head of its proposals is worth reading: re-scoring the nearest `top_k`
/// alone missed no mate on the 1M structured dump at any `ef`, and lost 0.2%
/// of recall@10; twice that, at least 16, lost none. The f32 rows of a large
/// gallery lie on disk, so this bounds a query's reads whatever its `ef`.
fn rescored(top_k: usize) -> usize {
    (2 * top_k).max(16)
}

/// The graph search of `index` for `probe`: the graph's proposals (with
/// `ef` candidates explored), the nearest of them by key (see [`rescored`]),
/// its orphans and the rows past the graph, re-scored exactly. The rows to
/// re-score are asked of the kernel together first, so that where they lie
/// on disk their reads overlap instead of following one another.
pub(crate) fn search(
    snap: &Snapshot,
    index: &GraphIndex,
    probe: &Template,
    query: &SearchQuery,
    ef: usize,
) -> Vec<Candidate> {
    let admit = Admissible { snap, query };
    let knn = ef.max(query.top_k);
    let mut rows = propose(&index.flat, &key_of(probe.as_slice()), knn, ef, &admit);
    rows.truncate(rescored(query.top_k));
    if index.read_ahead.wanted() {
        for &row in &rows {
            snap.will_need_vector(row);
        }
    }
    rows.extend(index.orphans.iter().copied().filter(|&r| admit.keep(r)));
    rows.sort_unstable();
    rows.dedup();
    let (count, started) = (rows.len(), Instant::now());
    let top = exact::rescore(snap, probe, query.top_k, rows);
    index.read_ahead.observe(count, started.elapsed());
    exact::finish_past(snap, probe, query, top, index.rows)
}

/// Whether a search asks the kernel for its rows before it re-scores them:
/// worth a system call per row where the rows come from disk (their reads
/// then overlap, where a fault reads one row at a time, and with it as much
/// around it as the device's read-ahead asks), a loss where they are in
/// memory. Each search times its re-score: one that took longer than rows in
/// memory take waited for the device. Searches ask from the start (after an
/// open the rows are on disk) and stop once [`QUIET_SEARCHES`] re-scores in a
/// row found every row in memory; a slow one starts them again.
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    /// Re-scores in a row, up to [`QUIET_SEARCHES`], that did not wait.
    quiet: AtomicU32,
}

/// Re-scores in a row that find their rows in memory before searches stop
/// asking. Where a share `c` of the rows is cached, 64 re-scores of 20 rows
/// all find theirs with odds `c^1280`: none while any real share is on disk.
const QUIET_SEARCHES: u32 = 64;
/// A re-score of rows in memory takes less than this...
const IN_MEMORY_FLOOR: Duration = Duration::from_micros(50);
/// ... plus this per row (the row's page mapped at its first touch included).
const IN_MEMORY_PER_ROW: Duration = Duration::from_micros(2);

impl ReadAhead {
    fn wanted(&self) -> bool {
        self.quiet.load(Ordering::Relaxed) < QUIET_SEARCHES
    }

    fn observe(&self, rows: usize, took: Duration) {
        if from_disk(rows, took) {
            self.quiet.store(0, Ordering::Relaxed);
        } else if self.wanted() {
            self.quiet.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether re-scoring `rows` rows in `took` must have waited for the device.
fn from_disk(rows: usize, took: Duration) -> bool {
    let rows = u32::try_from(rows).unwrap_or(u32::MAX);
    took > IN_MEMORY_FLOOR.saturating_add(IN_MEMORY_PER_ROW.saturating_mul(rows))
}

#[cfg(test)]
mod read_ahead_tests {
    use super::*;

    const FAST: Duration = Duration::from_micros(30);
    /// One read from disk (about 100 µs) among 20 rows.
    const SLOW: Duration = Duration::from_micros(130);

    #[test]
    fn searches_ask_until_their_rows_stay_in_memory() {
        let ahead = ReadAhead::default();
        assert!(ahead.wanted(), "after an open the rows are on disk");
        for _ in 0..QUIET_SEARCHES - 1 {
            ahead.observe(20, FAST);
        }
        assert!(ahead.wanted(), "one quiet search short");
        ahead.observe(20, FAST);
        assert!(!ahead.wanted());
        ahead.observe(20, FAST);
        assert!(!ahead.wanted());
        ahead.observe(20, SLOW);
        assert!(ahead.wanted(), "a read from disk starts them again");
        // A slow one among quiet ones starts the count over.
        for _ in 0..QUIET_SEARCHES - 1 {
            ahead.observe(20, FAST);
        }
        ahead.observe(20, SLOW);
        for _ in 0..QUIET_SEARCHES - 1 {
            ahead.observe(20, FAST);
        }
        assert!(ahead.wanted());
    }

    #[test]
    fn many_rows_in_memory_are_not_mistaken_for_a_read() {
        assert!(!from_disk(20, FAST));
        assert!(from_disk(20, SLOW));
        assert!(!from_disk(200, Duration::from_micros(300)));
        assert!(from_disk(200, Duration::from_micros(900)));
        assert!(!from_disk(usize::MAX, Duration::from_secs(1)));
    }
}
