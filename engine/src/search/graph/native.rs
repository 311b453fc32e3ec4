//! The native graph builder: a parallel HNSW build over the i8 keys the
//! search already uses, written straight into the flat search form
//! (`hnsw.flat`), which is also what a later extension starts from.
//!
//! # Structure
//!
//! Every point has fixed-size lists of `u32` point numbers, padded with
//! [`NONE`]: on the base layer `2·M` slots for the links the build chose and
//! `M` for links back, on each upper layer it is on `M`; the layout of the
//! file itself, so that writing the file is a copy. The slots are atomics: a
//! build thread reads a list without a lock (it may see a list being
//! rewritten, every slot of which names a point) and rewrites a list only
//! under the point's lock (striped, one lock held at a time).
//!
//! # Algorithm
//!
//! HNSW as published (Malkov and Yashunin, 2018): a point's level is drawn
//! from `-ln(u)/ln(M)`, with `u` a hash of its row (so levels, and a
//! single-threaded build, are deterministic); it descends greedily from the
//! entry point to its level, then on each of its layers explores
//! `efConstruction` candidates from the previous layer's and keeps some of
//! them by the neighbour-selection heuristic (a candidate is kept only when
//! it is nearer to the point than to every neighbour kept before it): up to
//! `2·M` on the base layer, `M` above. Each kept neighbour links back. A full
//! base list keeps its `2·M` nearest links (the distance of each is kept
//! beside it while building, so the farthest is found without computing
//! any), as `hnsw_rs` does; a full upper list re-selects by the heuristic,
//! as hnswlib does. The point on the highest layer is inserted first and
//! stays the entry point (an extension whose new point is higher inserts
//! that one first and makes it the entry).
//!
//! After the inserts, each point's slots for links back are filled with
//! the points whose own list links to it while its own does not link back
//! (those with the fewest links in first, then the nearest), the links a
//! full list dropped: what `hnsw_rs`'s flattening adds to its graph
//! (`build.rs`), without which the search needs a larger `ef` for the same
//! mates. Points the base layer then does not reach from the entry point
//! are linked back in; any a few rounds of that leave are listed as orphans
//! and scanned exactly.
//!
//! # Memory
//!
//! Per point: the key (one byte a value), `3·M` base slots, the row and
//! level, about `M·4/(M-1)` bytes of upper lists and an offset, and while
//! points are inserted the `2·M` distances of its own base links: 973 bytes
//! at 640 values and `M = 16`. The distances are dropped before the links
//! back are made, which hold two counters and an offset per point and one
//! `u32` per link without its link back, for as long as that takes. The keys,
//! base lists and distances are read at random, so they are advised onto huge
//! pages before they are written (1.16x faster at 1M, `M` 24).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering::Relaxed};
use std::sync::Mutex;

use rayon::prelude::*;

use super::build::BUILD_BATCH;
use super::format::{FlatGraph, BY_NATIVE, NONE};
use super::search::Visited;
use super::{key_into, AnnParams, Cancelled};
use crate::kernels::{self, prefetch};
use crate::storage::Snapshot;

mod links;
mod save;

/// Highest level a point is drawn on.
const MAX_LEVEL: usize = 16;
/// Locks shared by the points (point `p` takes lock `p % LOCKS`).
const LOCKS: usize = 4096;
/// Seed of the level hash.
const LEVEL_SEED: u64 = 0x5bd1_e995_9e37_79b9;

/// How the points of one call are inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    /// On the rayon pool, in batches of [`BUILD_BATCH`]: the graph depends
    /// on the order the threads happen to run in.
    Parallel,
    /// One after the other on the calling thread: the same rows and
    /// parameters always give the same graph (what the tests compare).
    #[cfg_attr(not(test), allow(dead_code))]
    Sequential,
}

/// A graph being built.
pub(crate) struct NativeGraph {
    /// `M`: links per upper list; base lists hold `2·M` links of the
    /// build's own and `back` links back.
    m: usize,
    /// Slots for links back at the end of each base list (`M`).
    back: usize,
    ef_construction: usize,
    dim: usize,
    /// The row of each point, increasing.
    rows: Vec<u32>,
    keys: Vec<i8>,
    levels: Vec<u8>,
    base: Vec<AtomicU32>,
    /// While points are inserted: the distance of each link of the build's
    /// own in `base` (`2·M` per point), so that a full list drops its
    /// farthest link without computing its distances again.
    dists0: Vec<AtomicI32>,
    /// Per point, its first upper list in `upper` (layer 1), or [`NONE`].
    upper_at: Vec<u32>,
    upper: Vec<AtomicU32>,
    locks: Vec<Mutex<()>>,
    /// The entry point ([`NONE`] while empty) and its level.
    entry: u32,
    top: usize,
    /// Rows `0..covered` were offered to the graph.
    covered: u64,
}

/// The scratch space of one inserting thread.
struct Scratch {
    visited: Visited,
    frontier: BinaryHeap<Reverse<(i64, u32)>>,
    found: BinaryHeap<(i64, u32)>,
    fresh: Vec<u32>,
    chosen: Vec<(i64, u32)>,
    /// The links of the point being inserted, per layer, to link back.
    picked: Vec<(usize, i64, u32)>,
    pool: Vec<(i64, u32)>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            visited: Visited::new(),
            frontier: BinaryHeap::new(),
            found: BinaryHeap::new(),
            fresh: Vec::new(),
            chosen: Vec::new(),
            picked: Vec::new(),
            pool: Vec::new(),
        }
    }
}

/// A distance as kept beside a link: `|key·key'|` is at most
/// `dim·127²`, which fits unless keys are longer than 133,000 values
/// (saturated then, which only blurs the order of the farthest links).
fn narrow(d: i64) -> i32 {
    d.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// The level of the point of `row` in a graph of `M = m`.
pub(crate) fn level_of(row: u64, m: usize) -> usize {
    let mut z = row ^ LEVEL_SEED;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let u = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    ((-u.ln() / (m as f64).ln()).floor() as usize).min(MAX_LEVEL)
}

impl NativeGraph {
    fn empty(params: AnnParams, dim: usize, capacity: usize) -> NativeGraph {
        let params = params.checked();
        let m = params.max_connections;
        let back = m;
        let mut base = Vec::new();
        base.reserve_exact(capacity * (2 * m + back));
        let mut keys = Vec::new();
        keys.reserve_exact(capacity * dim);
        // The inserts read keys and lists at random all over both.
        kernels::advise_huge_pages(&base);
        kernels::advise_huge_pages(&keys);
        NativeGraph {
            m,
            back,
            ef_construction: params.ef_construction,
            dim,
            rows: Vec::with_capacity(capacity),
            keys,
            levels: Vec::with_capacity(capacity),
            base,
            dists0: Vec::new(),
            upper_at: Vec::with_capacity(capacity),
            upper: Vec::new(),
            locks: (0..LOCKS).map(|_| Mutex::new(())).collect(),
            entry: NONE,
            top: 0,
            covered: 0,
        }
    }

    /// A graph of `rows` (live rows of `snap`, increasing) covering rows
    /// `0..snap.count`. `cancel` is polled between batches.
    pub(crate) fn build(
        snap: &Snapshot,
        rows: &[u64],
        params: AnnParams,
        threads: Threads,
        cancel: &dyn Fn() -> bool,
    ) -> Result<NativeGraph, Cancelled> {
        let mut g = NativeGraph::empty(params, snap.layout.len(), rows.len());
        g.add(snap, rows, threads, cancel)?;
        Ok(g)
    }

    /// The graph of `flat`, if the native builder wrote it with the `M` of
    /// `params`, with room for `more` points; `None` otherwise.
    pub(crate) fn from_flat(flat: &FlatGraph, params: AnnParams, more: usize) -> Option<Self> {
        let h = &flat.header;
        let m = params.checked().max_connections;
        let params = AnnParams {
            ef_construction: h.ef_construction as usize,
            ..params
        };
        let n = flat.points();
        let mut g = NativeGraph::empty(params, flat.dim(), n + more);
        if h.builder != BY_NATIVE
            || h.max_connections as usize != m
            || h.forward0 as usize != 2 * m
            || h.degree0 as usize != g.width0()
            || h.degree as usize != m
        {
            return None;
        }
        g.rows.extend_from_slice(flat.rows_of_points());
        g.keys.extend_from_slice(flat.keys());
        let (base, _, _) = flat.base();
        g.base.extend(base.iter().map(|&p| AtomicU32::new(p)));
        g.levels.resize(n, 0);
        let (starts, ups, links, _) = flat.upper();
        for layer in 1..starts.len() {
            for &p in &ups[starts[layer - 1] as usize..starts[layer] as usize] {
                g.levels[p as usize] = layer as u8;
            }
        }
        // Points are on every layer up to their level: their lists are kept
        // per point, layer 1 first.
        g.upper_at = vec![NONE; n];
        let mut next = 0u32;
        for p in 0..n {
            if g.levels[p] > 0 {
                g.upper_at[p] = next;
                next += u32::from(g.levels[p]);
            }
        }
        g.upper = (0..next as usize * m)
            .map(|_| AtomicU32::new(NONE))
            .collect();
        for layer in 1..starts.len() {
            let (lo, hi) = (starts[layer - 1] as usize, starts[layer] as usize);
            for (i, &p) in ups[lo..hi].iter().enumerate() {
                let list = g.list(p, layer);
                for (slot, &q) in list.iter().zip(&links[(lo + i) * m..(lo + i + 1) * m]) {
                    slot.store(q, Relaxed);
                }
            }
        }
        g.entry = if n == 0 { NONE } else { flat.entry() };
        g.top = starts.len() - 1;
        g.covered = flat.rows();
        Some(g)
    }

    /// Points in the graph.
    pub(crate) fn points(&self) -> usize {
        self.rows.len()
    }

    /// Adds the live rows of `snap` from `covered()` on, and covers
    /// `0..snap.count`. `cancel` is polled between batches.
    pub(crate) fn extend(
        &mut self,
        snap: &Snapshot,
        threads: Threads,
        cancel: &dyn Fn() -> bool,
    ) -> Result<(), Cancelled> {
        let rows: Vec<u64> = (self.covered..snap.count)
            .filter(|&r| snap.is_live(r))
            .collect();
        self.add(snap, &rows, threads, cancel)
    }

    fn add(
        &mut self,
        snap: &Snapshot,
        rows: &[u64],
        threads: Threads,
        cancel: &dyn Fn() -> bool,
    ) -> Result<(), Cancelled> {
        let first = self.points();
        let (m, dim) = (self.m, self.dim);
        self.rows.extend(rows.iter().map(|&r| r as u32));
        self.keys.resize((first + rows.len()) * dim, 0);
        self.keys[first * dim..]
            .par_chunks_mut(dim)
            .zip(rows.par_iter())
            .for_each(|(key, &r)| key_into(snap.scanned_vector(r), key));
        self.base
            .extend((0..rows.len() * self.width0()).map(|_| AtomicU32::new(NONE)));
        self.dists0 = self.own_distances();
        let mut next = (self.upper.len() / m) as u32;
        for &r in rows {
            let level = level_of(r, m);
            self.levels.push(level as u8);
            if level > 0 {
                self.upper_at.push(next);
                next += level as u32;
            } else {
                self.upper_at.push(NONE);
            }
        }
        let had = self.upper.len();
        self.upper
            .extend((had..next as usize * m).map(|_| AtomicU32::new(NONE)));
        // The highest new point first, and as the entry point if it is
        // higher than the graph's: the entry is then fixed while the rest
        // are inserted in parallel.
        let n = self.points();
        let highest = (first..n).max_by_key(|&p| (self.levels[p], Reverse(p)));
        let mut scratch = Scratch::new();
        if let Some(h) = highest {
            let level = usize::from(self.levels[h]);
            if self.entry == NONE {
                (self.entry, self.top) = (h as u32, level);
            } else {
                self.insert(h as u32, &mut scratch);
                if level > self.top {
                    (self.entry, self.top) = (h as u32, level);
                }
            }
        }
        let rest: Vec<u32> = (first..n)
            .filter(|&p| Some(p) != highest)
            .map(|p| p as u32)
            .collect();
        for batch in rest.chunks(BUILD_BATCH) {
            if cancel() {
                return Err(Cancelled);
            }
            match threads {
                Threads::Parallel => batch
                    .par_iter()
                    .for_each_init(Scratch::new, |s, &p| self.insert(p, s)),
                Threads::Sequential => {
                    for &p in batch {
                        self.insert(p, &mut scratch);
                    }
                }
            }
        }
        self.dists0 = Vec::new();
        self.reconnect(&mut scratch);
        self.covered = self.covered.max(snap.count);
        Ok(())
    }

    fn key(&self, p: u32) -> &[i8] {
        &self.keys[p as usize * self.dim..(p as usize + 1) * self.dim]
    }

    /// The distance the graph is built on: the negated inner product of
    /// the keys (nearer is smaller).
    fn distance(&self, key: &[i8], p: u32) -> i64 {
        -kernels::dot_i8(key, self.key(p))
    }

    /// Slots of a base list: `2·M` for the build's own links, then the
    /// links back.
    fn width0(&self) -> usize {
        2 * self.m + self.back
    }

    /// The slots of `p`'s list of its own links on `layer` (a layer it is
    /// on).
    fn list(&self, p: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            let at = p as usize * self.width0();
            &self.base[at..at + 2 * self.m]
        } else {
            let at = (self.upper_at[p as usize] as usize + layer - 1) * self.m;
            &self.upper[at..at + self.m]
        }
    }

    /// The slots of `p`'s links back on the base layer.
    fn back_list(&self, p: u32) -> &[AtomicU32] {
        let at = p as usize * self.width0();
        &self.base[at + 2 * self.m..at + self.width0()]
    }

    fn links(list: &[AtomicU32]) -> impl Iterator<Item = u32> + '_ {
        list.iter()
            .map(|s| s.load(Relaxed))
            .take_while(|&q| q != NONE)
    }

    /// Every link of `p` on `layer`: its own, then (on the base layer) its
    /// links back.
    fn all_links(&self, p: u32, layer: usize) -> impl Iterator<Item = u32> + '_ {
        let back: &[AtomicU32] = if layer == 0 { self.back_list(p) } else { &[] };
        Self::links(self.list(p, layer)).chain(Self::links(back))
    }

    fn lock(&self, p: u32) -> std::sync::MutexGuard<'_, ()> {
        self.locks[p as usize % LOCKS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The point nearest to `key` found by a greedy descent from the entry
    /// point through the layers above `level`, and its distance.
    fn descend(&self, key: &[i8], level: usize) -> (i64, u32) {
        let mut ep = self.entry;
        let mut best = self.distance(key, ep);
        for layer in (level + 1..=self.top).rev() {
            let mut moved = true;
            while moved {
                moved = false;
                for q in Self::links(self.list(ep, layer)) {
                    let d = self.distance(key, q);
                    if d < best {
                        (best, ep, moved) = (d, q, true);
                    }
                }
            }
        }
        (best, ep)
    }

    /// Inserts `p`: its own lists on every layer first, top down, and only
    /// then the links back to it, so that no search reaches `p` (and starts
    /// a layer from it) before all its lists are there.
    fn insert(&self, p: u32, s: &mut Scratch) {
        let key = self.key(p);
        let level = usize::from(self.levels[p as usize]);
        let mut starts = vec![self.descend(key, level)];
        s.picked.clear();
        for layer in (0..=level.min(self.top)).rev() {
            let mut near = self.search_layer(key, &starts, layer, s);
            near.retain(|&(_, q)| q != p);
            let keep = if layer == 0 { 2 * self.m } else { self.m };
            self.select(&near, keep, &mut s.chosen);
            {
                let _guard = self.lock(p);
                let list = self.list(p, layer);
                for (i, slot) in list.iter().enumerate() {
                    slot.store(s.chosen.get(i).map_or(NONE, |&(_, q)| q), Relaxed);
                }
                if layer == 0 {
                    for (slot, &(d, _)) in self.dists_of(p).iter().zip(&s.chosen) {
                        slot.store(narrow(d), Relaxed);
                    }
                }
            }
            s.picked
                .extend(s.chosen.iter().map(|&(d, q)| (layer, d, q)));
            starts = near;
        }
        for i in 0..s.picked.len() {
            let (layer, d, q) = s.picked[i];
            self.link_back(q, p, d, layer, &mut s.pool);
        }
    }

    /// Adds `p` (at distance `d`) to `q`'s list on `layer`. A full base
    /// list keeps its `2·M` nearest (as `hnsw_rs` does: the links back
    /// added after the build make up for the far links it drops); a full
    /// upper list is re-selected among its links and `p` by the heuristic.
    fn link_back(&self, q: u32, p: u32, d: i64, layer: usize, pool: &mut Vec<(i64, u32)>) {
        let _guard = self.lock(q);
        let list = self.list(q, layer);
        if layer == 0 {
            let dists = self.dists_of(q);
            let (mut len, mut far, mut far_at) = (0, i32::MIN, 0);
            for (i, r) in Self::links(list).enumerate() {
                if r == p {
                    return;
                }
                let dr = dists[i].load(Relaxed);
                if dr > far {
                    (far, far_at) = (dr, i);
                }
                len += 1;
            }
            let at = if len < list.len() {
                len
            } else if narrow(d) < far {
                far_at
            } else {
                return;
            };
            list[at].store(p, Relaxed);
            dists[at].store(narrow(d), Relaxed);
            return;
        }
        let mut len = 0;
        for r in Self::links(list) {
            if r == p {
                return;
            }
            len += 1;
        }
        if len < list.len() {
            list[len].store(p, Relaxed);
            return;
        }
        let key = self.key(q);
        pool.clear();
        pool.extend(Self::links(list).map(|r| (self.distance(key, r), r)));
        pool.push((d, p));
        pool.sort_unstable();
        let mut kept = Vec::with_capacity(list.len());
        self.select(pool, list.len(), &mut kept);
        for (i, slot) in list.iter().enumerate() {
            slot.store(kept.get(i).map_or(NONE, |&(_, r)| r), Relaxed);
        }
    }

    /// The distances of `p`'s own base links, while points are inserted.
    fn dists_of(&self, p: u32) -> &[AtomicI32] {
        let d = 2 * self.m;
        &self.dists0[p as usize * d..(p as usize + 1) * d]
    }

    /// The distance of every own base link of every point (slots for the
    /// points not inserted yet are left at 0).
    fn own_distances(&self) -> Vec<AtomicI32> {
        let d = 2 * self.m;
        let mut dists: Vec<AtomicI32> = Vec::new();
        dists.reserve_exact(self.points() * d);
        kernels::advise_huge_pages(&dists);
        dists.extend((0..self.points() * d).map(|_| AtomicI32::new(0)));
        dists.par_chunks(d).enumerate().for_each(|(p, slots)| {
            let key = self.key(p as u32);
            for (slot, q) in slots.iter().zip(Self::links(self.list(p as u32, 0))) {
                slot.store(narrow(self.distance(key, q)), Relaxed);
            }
        });
        dists
    }

    /// The neighbour-selection heuristic: of `near` (sorted, nearest
    /// first), up to `m`, each kept only if it is nearer to the base point
    /// than to every one kept before it.
    fn select(&self, near: &[(i64, u32)], m: usize, out: &mut Vec<(i64, u32)>) {
        out.clear();
        if near.len() <= m {
            out.extend_from_slice(near);
            return;
        }
        for &(d, c) in near {
            if out.len() >= m {
                break;
            }
            let kc = self.key(c);
            if out.iter().all(|&(_, r)| self.distance(kc, r) >= d) {
                out.push((d, c));
            }
        }
    }

    /// The `efConstruction` points nearest to `key` found on `layer` by a
    /// best-first search from `starts`, nearest first.
    fn search_layer(
        &self,
        key: &[i8],
        starts: &[(i64, u32)],
        layer: usize,
        s: &mut Scratch,
    ) -> Vec<(i64, u32)> {
        let ef = self.ef_construction;
        s.visited.start(self.points());
        s.frontier.clear();
        s.found.clear();
        for &(d, p) in starts {
            if s.visited.first_visit(p) {
                s.frontier.push(Reverse((d, p)));
                s.found.push((d, p));
                if s.found.len() > ef {
                    s.found.pop();
                }
            }
        }
        while let Some(Reverse((d, p))) = s.frontier.pop() {
            if s.found.len() >= ef && s.found.peek().is_some_and(|&(w, _)| d > w) {
                break;
            }
            s.fresh.clear();
            for q in self.all_links(p, layer) {
                if s.visited.first_visit(q) {
                    prefetch(self.key(q));
                    s.fresh.push(q);
                }
            }
            for i in 0..s.fresh.len() {
                let q = s.fresh[i];
                let dq = self.distance(key, q);
                if s.found.len() < ef || s.found.peek().is_some_and(|&(w, _)| dq < w) {
                    s.frontier.push(Reverse((dq, q)));
                    s.found.push((dq, q));
                    if s.found.len() > ef {
                        s.found.pop();
                    }
                }
            }
        }
        std::mem::take(&mut s.found).into_sorted_vec()
    }
}
