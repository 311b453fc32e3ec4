//! The native graph builder: a parallel HNSW build over the i8 keys the
//! search already uses, written straight into the flat search form
//! (`hnsw.flat`), which is also what a later extension starts from.
//!
//! # Structure
//!
//! Every point has fixed-size lists of `u32` point numbers: `2·M` slots on
//! the base layer, `M` on each upper layer it is on, padded with [`NONE`],
//! the layout of the file itself, so that writing the file is a copy. The
//! slots are atomics: a build thread reads a list without a lock (it may see
//! a list being rewritten, every slot of which names a point) and rewrites a
//! list only under the point's lock (striped, one lock held at a time).
//!
//! # Algorithm
//!
//! HNSW as published (Malkov and Yashunin, 2018) and as hnswlib builds it:
//! a point's level is drawn from `-ln(u)/ln(M)`, with `u` a hash of its row
//! (so levels, and a single-threaded build, are deterministic); it descends
//! greedily from the entry point to its level, then on each of its layers
//! explores `efConstruction` candidates from the previous layer's, keeps `M`
//! of them by the neighbour-selection heuristic (a candidate is kept only
//! when it is nearer to the point than to every neighbour kept before it),
//! and links each kept neighbour back; a neighbour whose list is full
//! re-selects its list by the same heuristic among its links and the new
//! point. The point on the highest layer is inserted first and stays the
//! entry point (an extension whose new point is higher inserts that one
//! first and makes it the entry). Points the base layer does not reach from
//! the entry point (a re-selection can drop a point's last link in, more
//! often when its neighbours were inserted at the same time) are linked
//! back in after the inserts; any a few rounds of that leave are listed as
//! orphans and scanned exactly.
//!
//! # Memory
//!
//! The key (one byte a value), `2·M` base slots, the row and level, about
//! `M·4/(M-1)` bytes of upper lists and an offset, per point: 797 bytes at
//! 640 values and `M = 16`, nothing else per point while building or writing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs;
use std::io::BufWriter;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Mutex;

use bytemuck::Zeroable;
use rayon::prelude::*;

use super::build::{unreached, BUILD_BATCH};
use super::format::{
    put_in_place, FlatGraph, Header, BY_NATIVE, FLAT_FILE, FLAT_TMP, NONE, VERSION,
};
use super::search::Visited;
use super::write::{FlatWriter, Part};
use super::{key_into, rows_digest, AnnParams, Cancelled, GraphIndex, IndexOrigin};
use crate::error::GalleryError;
use crate::kernels::{self, prefetch};
use crate::storage::Snapshot;

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
    /// `M`: links per upper list; base lists hold `2·M`.
    m: usize,
    ef_construction: usize,
    dim: usize,
    /// The row of each point, increasing.
    rows: Vec<u32>,
    keys: Vec<i8>,
    levels: Vec<u8>,
    base: Vec<AtomicU32>,
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
            pool: Vec::new(),
        }
    }
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
        let mut base = Vec::new();
        base.reserve_exact(capacity * 2 * m);
        let mut keys = Vec::new();
        keys.reserve_exact(capacity * dim);
        NativeGraph {
            m,
            ef_construction: params.ef_construction,
            dim,
            rows: Vec::with_capacity(capacity),
            keys,
            levels: Vec::with_capacity(capacity),
            base,
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
        if h.builder != BY_NATIVE
            || h.max_connections as usize != m
            || h.degree0 as usize != 2 * m
            || h.degree as usize != m
        {
            return None;
        }
        let params = AnnParams {
            ef_construction: h.ef_construction as usize,
            ..params
        };
        let n = flat.points();
        let mut g = NativeGraph::empty(params, flat.dim(), n + more);
        g.rows.extend_from_slice(flat.rows_of_points());
        g.keys.extend_from_slice(flat.keys());
        let (base, _) = flat.base();
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
            .for_each(|(key, &r)| key_into(snap.vector(r), key));
        self.base
            .extend((0..rows.len() * 2 * m).map(|_| AtomicU32::new(NONE)));
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

    /// The slots of `p`'s list on `layer` (a layer it is on).
    fn list(&self, p: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            let d = 2 * self.m;
            &self.base[p as usize * d..(p as usize + 1) * d]
        } else {
            let at = (self.upper_at[p as usize] as usize + layer - 1) * self.m;
            &self.upper[at..at + self.m]
        }
    }

    fn links(list: &[AtomicU32]) -> impl Iterator<Item = u32> + '_ {
        list.iter()
            .map(|s| s.load(Relaxed))
            .take_while(|&q| q != NONE)
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

    fn insert(&self, p: u32, s: &mut Scratch) {
        let key = self.key(p);
        let level = usize::from(self.levels[p as usize]);
        let mut starts = vec![self.descend(key, level)];
        for layer in (0..=level.min(self.top)).rev() {
            let mut near = self.search_layer(key, &starts, layer, s);
            near.retain(|&(_, q)| q != p);
            self.select(&near, self.m, &mut s.chosen);
            {
                let _guard = self.lock(p);
                let list = self.list(p, layer);
                for (i, slot) in list.iter().enumerate() {
                    slot.store(s.chosen.get(i).map_or(NONE, |&(_, q)| q), Relaxed);
                }
            }
            for i in 0..s.chosen.len() {
                let (d, q) = s.chosen[i];
                self.link_back(q, p, d, layer, &mut s.pool);
            }
            starts = near;
        }
    }

    /// Links the points the base layer does not reach from the entry point
    /// back in (a full list elsewhere can drop a point's last link to it):
    /// each into the list of the nearest reached point with room, else in
    /// place of the farthest link of the nearest one; in rounds, as a point
    /// displaced may be left unreached in turn. What a few rounds leave is
    /// listed as orphans.
    fn reconnect(&self, s: &mut Scratch) {
        for _ in 0..4 {
            let orphans = self.orphans();
            if orphans.is_empty() {
                return;
            }
            for &o in &orphans {
                let key = self.key(o);
                let near = self.search_layer(key, &[self.descend(key, 0)], 0, s);
                let mut near = near.iter().map(|&(_, q)| q).filter(|&q| q != o);
                let Some(nearest) = near.next() else {
                    continue;
                };
                let full = 2 * self.m;
                let host = std::iter::once(nearest)
                    .chain(near)
                    .find(|&q| Self::links(self.list(q, 0)).count() < full);
                let q = host.unwrap_or(nearest);
                let _guard = self.lock(q);
                let list = self.list(q, 0);
                let links: Vec<u32> = Self::links(list).collect();
                if links.contains(&o) {
                    continue;
                }
                let slot = if links.len() < full {
                    links.len()
                } else {
                    let kq = self.key(q);
                    (0..links.len())
                        .max_by_key(|&i| self.distance(kq, links[i]))
                        .unwrap_or(0)
                };
                list[slot].store(o, Relaxed);
            }
        }
    }

    /// Adds `p` (at distance `d`) to `q`'s list on `layer`; a full list is
    /// re-selected among its links and `p`.
    fn link_back(&self, q: u32, p: u32, d: i64, layer: usize, pool: &mut Vec<(i64, u32)>) {
        let _guard = self.lock(q);
        let list = self.list(q, layer);
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
            for q in Self::links(self.list(p, layer)) {
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

    /// The file header of the graph, without its CRCs.
    fn header(&self, orphans: usize, digest: u32) -> Header {
        let mut h = Header::zeroed();
        h.magic = super::format::MAGIC;
        h.version = VERSION;
        h.dim = self.dim as u32;
        h.points = self.points() as u64;
        h.rows = self.covered;
        h.upper = (1..=self.top)
            .map(|l| self.levels.iter().filter(|&&v| usize::from(v) >= l).count() as u64)
            .sum();
        h.orphans = orphans as u64;
        h.degree0 = 2 * self.m as u32;
        h.degree = self.m as u32;
        h.levels = self.top as u32;
        h.entry = if self.entry == NONE { 0 } else { self.entry };
        h.digest = digest;
        h.max_connections = self.m as u32;
        h.ef_construction = self.ef_construction as u32;
        h.builder = BY_NATIVE;
        h
    }

    /// Writes every section of the file to `w`.
    fn write<W: std::io::Write>(
        &self,
        w: &mut FlatWriter<W>,
        orphans: &[u32],
    ) -> std::io::Result<()> {
        const CHUNK: usize = 1 << 14;
        w.put(Part::Rows, bytemuck::cast_slice(&self.rows))?;
        w.put(Part::Keys, bytemuck::cast_slice(&self.keys))?;
        for keys in self.keys.chunks(CHUNK * self.dim.max(1)) {
            let crcs: Vec<u32> = keys
                .par_chunks(self.dim.max(1))
                .map(|k| {
                    if k.iter().all(|&v| v == 0) {
                        0
                    } else {
                        crc32fast::hash(bytemuck::cast_slice(k))
                    }
                })
                .collect();
            w.put(Part::KeyCrcs, bytemuck::cast_slice(&crcs))?;
        }
        let mut buf: Vec<u32> = Vec::with_capacity(CHUNK);
        for slots in self.base.chunks(CHUNK) {
            buf.clear();
            buf.extend(slots.iter().map(|s| s.load(Relaxed)));
            w.put(Part::Base, bytemuck::cast_slice(&buf))?;
        }
        let mut starts = vec![0u64];
        let mut on_layer: Vec<Vec<u32>> = Vec::new();
        for layer in 1..=self.top {
            let points: Vec<u32> = (0..self.points() as u32)
                .filter(|&p| usize::from(self.levels[p as usize]) >= layer)
                .collect();
            starts.push(starts[layer - 1] + points.len() as u64);
            on_layer.push(points);
        }
        w.put(Part::LevelStart, bytemuck::cast_slice(&starts))?;
        for points in &on_layer {
            w.put(Part::UpperPoints, bytemuck::cast_slice(points))?;
        }
        for (layer, points) in (1..).zip(&on_layer) {
            for &p in points {
                buf.clear();
                buf.extend(self.list(p, layer).iter().map(|s| s.load(Relaxed)));
                w.put(Part::UpperLinks, bytemuck::cast_slice(&buf))?;
            }
        }
        w.put(Part::Orphans, bytemuck::cast_slice(orphans))
    }

    /// Points the base layer does not reach from the entry point.
    fn orphans(&self) -> Vec<u32> {
        if self.entry == NONE {
            return Vec::new();
        }
        unreached(self.points(), &[self.entry], |p, out| {
            out.extend(Self::links(self.list(p, 0)));
        })
    }

    /// Writes the graph to `dir` as `hnsw.flat` and maps it; held in memory
    /// only if the save fails (the next open then rebuilds).
    pub(crate) fn save(
        &self,
        dir: &Path,
        snap: &Snapshot,
        origin: IndexOrigin,
    ) -> Result<GraphIndex, GalleryError> {
        let orphans = self.orphans();
        let header = self.header(orphans.len(), rows_digest(snap, self.covered));
        let tmp = dir.join(FLAT_TMP);
        let saved = (|| -> std::io::Result<()> {
            let file = fs::File::create(&tmp)?;
            let mut w = FlatWriter::new(BufWriter::with_capacity(1 << 20, file), header)?;
            self.write(&mut w, &orphans)?;
            let (out, header) = w.finish()?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.write_all_at(bytemuck::bytes_of(&header), 0)?;
            file.sync_all()
        })();
        let mapped = saved
            .map_err(|e| GalleryError::io(&tmp, e))
            .and_then(|()| put_in_place(dir))
            .ok()
            .and_then(|()| GraphIndex::load(dir, snap).ok());
        if let Some(index) = mapped {
            return Ok(GraphIndex { origin, ..index });
        }
        let _ = fs::remove_file(&tmp);
        let mut w = FlatWriter::new(Vec::new(), header)
            .map_err(|e| GalleryError::io(dir.join(FLAT_FILE), e))?;
        self.write(&mut w, &orphans)
            .map_err(|e| GalleryError::io(dir.join(FLAT_FILE), e))?;
        let (mut bytes, header) = w
            .finish()
            .map_err(|e| GalleryError::io(dir.join(FLAT_FILE), e))?;
        bytes[..super::format::HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&header));
        let flat = FlatGraph::from_bytes(&bytes, header).ok_or_else(|| {
            GalleryError::io(dir, std::io::Error::other("flat graph does not fit"))
        })?;
        Ok(GraphIndex::from_flat(flat, snap, origin))
    }
}
