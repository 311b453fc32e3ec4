//! The search form of the graph index: a flat, read-only copy of an HNSW
//! graph built by `hnsw_rs`, memory-mapped from one file.
//!
//! `hnsw_rs` builds the graph (see `ann.rs`); its in-memory form keeps every
//! point and neighbour link behind its own `Arc` and lock, searches with a
//! hash set of visited points, and reloads from disk only by rebuilding that
//! structure point by point. The flat copy keeps the same points, keys and
//! edges in a few plain arrays, so a search walks contiguous `u32` lists with
//! a visited bit set and a fused i8 kernel, and an open maps the file
//! and checks it instead of parsing it.
//!
//! Flattening also adds links back: `hnsw_rs` keeps a base-layer list to its
//! nearest `2·M` points as links from later points arrive, so the far links
//! that join one neighbourhood to the next are the first it drops, and a point
//! linked to by few others is hard to reach. Each point gets up to
//! [`REVERSE_LINKS`] more slots for the points that link to it without being
//! linked back (see [`with_links_back`]).
//!
//! # File (`hnsw.flat`)
//!
//! A 128-byte [`Header`] (magic, version, shape, the rows the graph covers, a
//! digest of their records, a CRC of the body, its own CRC), then these
//! sections, each starting on a 64-byte boundary:
//!
//! | section | type | length |
//! |---|---|---|
//! | row of each point (increasing) | `u32` | `points` |
//! | key of each point | `i8` | `points · dim` |
//! | base-layer neighbours | `u32` | `points · degree0` |
//! | start of each upper layer in the two arrays below | `u64` | `levels + 1` |
//! | points present on each upper layer (increasing within a layer) | `u32` | `upper` |
//! | their neighbours on that layer | `u32` | `upper · degree` |
//! | orphans: points no search reaches | `u32` | `orphans` |
//!
//! Neighbour lists are padded with [`NONE`]. A file is only used when both
//! CRCs hold, its digest matches the gallery, and every index in it is in
//! range (checked once at open), so a search never reads out of bounds.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs;
use std::path::Path;

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::int_kernels;
use crate::error::GalleryError;
use crate::prefetch::prefetch;
use crate::storage::mapping::FrozenMapping;

/// Name of the file in the gallery directory.
pub(crate) const FLAT_FILE: &str = "hnsw.flat";
const MAGIC: [u8; 8] = *b"PLMFLAT\0";
/// Version 2: base lists carry links back ([`with_links_back`]); a version 1
/// file is refused, and the graph is flattened again from the saved build.
const VERSION: u32 = 2;
/// Base-layer slots added to each point for links back to the points that
/// link to it.
pub(crate) const REVERSE_LINKS: usize = 16;
/// Padding of a neighbour list.
pub(crate) const NONE: u32 = u32::MAX;
const ALIGN: usize = 64;

/// The file header.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
struct Header {
    magic: [u8; 8],
    version: u32,
    dim: u32,
    points: u64,
    rows: u64,
    upper: u64,
    orphans: u64,
    degree0: u32,
    degree: u32,
    levels: u32,
    entry: u32,
    digest: u32,
    body_crc: u32,
    max_connections: u32,
    ef_construction: u32,
    reserved: [u8; 44],
    crc: u32,
}

const HEADER_LEN: usize = std::mem::size_of::<Header>();
const _: () = assert!(HEADER_LEN == 128);

impl Header {
    fn computed_crc(&self) -> u32 {
        crc32fast::hash(&bytemuck::bytes_of(self)[..HEADER_LEN - 4])
    }
}

/// Byte ranges of the sections, computed from a header with checked
/// arithmetic.
#[derive(Clone, Copy, Debug)]
struct Sections {
    rows: (usize, usize),
    keys: (usize, usize),
    base: (usize, usize),
    level_start: (usize, usize),
    upper_points: (usize, usize),
    upper_links: (usize, usize),
    orphans: (usize, usize),
    end: usize,
}

impl Sections {
    fn of(h: &Header) -> Option<Sections> {
        let n = usize::try_from(h.points).ok()?;
        let upper = usize::try_from(h.upper).ok()?;
        let orphans = usize::try_from(h.orphans).ok()?;
        let mut at = HEADER_LEN;
        let mut next = |len: usize| -> Option<(usize, usize)> {
            let start = at.checked_next_multiple_of(ALIGN)?;
            at = start.checked_add(len)?;
            Some((start, len))
        };
        let rows = next(n.checked_mul(4)?)?;
        let keys = next(n.checked_mul(h.dim as usize)?)?;
        let base = next(n.checked_mul(h.degree0 as usize)?.checked_mul(4)?)?;
        let level_start = next((h.levels as usize).checked_add(1)?.checked_mul(8)?)?;
        let upper_points = next(upper.checked_mul(4)?)?;
        let upper_links = next(upper.checked_mul(h.degree as usize)?.checked_mul(4)?)?;
        let orphans = next(orphans.checked_mul(4)?)?;
        Some(Sections {
            rows,
            keys,
            base,
            level_start,
            upper_points,
            upper_links,
            orphans,
            end: at,
        })
    }
}

/// Where the bytes of a graph live.
enum Bytes {
    /// Built in this process (8-byte aligned).
    Owned(Vec<u64>),
    /// Mapped from the saved file (page-aligned).
    Mapped(FrozenMapping),
}

impl Bytes {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Owned(words) => bytemuck::cast_slice(words),
            Bytes::Mapped(map) => map.bytes(),
        }
    }
}

/// A graph as a node list: what [`FlatGraph::from_parts`] flattens.
pub(crate) struct GraphParts {
    /// Key length.
    pub(crate) dim: usize,
    /// Per point: its row, level, key and neighbour rows per layer
    /// (`links[l]` for layers `0..=level`).
    pub(crate) nodes: Vec<NodeParts>,
    /// `M` and `efConstruction` of the build (recorded, not used to search).
    pub(crate) max_connections: u32,
    /// See `max_connections`.
    pub(crate) ef_construction: u32,
}

/// One point of [`GraphParts`].
pub(crate) struct NodeParts {
    /// The gallery row.
    pub(crate) row: u64,
    /// Highest layer the point is on.
    pub(crate) level: usize,
    /// The i8 key.
    pub(crate) key: Vec<i8>,
    /// Neighbour rows on layers `0..=level` (may be shorter: missing layers
    /// are empty).
    pub(crate) links: Vec<Vec<u64>>,
}

/// Why a graph could not be flattened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FlattenError {
    /// A key of another length than the first.
    #[error("key of row {row} has {len} values, expected {dim}")]
    KeyLength {
        /// The row.
        row: u64,
        /// Its key length.
        len: usize,
        /// The first key's length.
        dim: usize,
    },
    /// A row beyond what a `u32` point list holds.
    #[error("row {0} is beyond the flat graph's range")]
    RowRange(u64),
    /// The same row twice.
    #[error("row {0} is in the graph twice")]
    DuplicateRow(u64),
}

/// The flat graph.
pub(crate) struct FlatGraph {
    bytes: Bytes,
    header: Header,
    sections: Sections,
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { bits: Vec::new(), seen: Vec::new() }) };
}

/// Points seen by the current search: one bit per point (128 KiB for a
/// million points, so the checks stay in the core's own cache), and the
/// points marked, whose words the next search clears instead of clearing
/// the whole set.
struct Visited {
    bits: Vec<u64>,
    seen: Vec<u32>,
}

impl Visited {
    /// Forgets the previous search's marks and makes room for `points`.
    fn start(&mut self, points: usize) {
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
    fn first_visit(&mut self, point: u32) -> bool {
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

/// Plain closures as filters, for the tests of the walk; the gallery's filter is
/// `Admissible` in `accel.rs`.
#[cfg(test)]
impl<F: Fn(u64) -> bool> RowFilter for F {
    fn keep(&self, row: u64) -> bool {
        self(row)
    }
}

impl FlatGraph {
    /// Flattens `parts` into a graph covering gallery rows `0..rows`, with
    /// `digest` the records digest of those rows.
    pub(crate) fn from_parts(
        mut parts: GraphParts,
        rows: u64,
        digest: u32,
    ) -> Result<FlatGraph, FlattenError> {
        parts.nodes.sort_unstable_by_key(|n| n.row);
        let dim = parts.dim;
        let nodes = &parts.nodes;
        for pair in nodes.windows(2) {
            if pair[0].row == pair[1].row {
                return Err(FlattenError::DuplicateRow(pair[0].row));
            }
        }
        if let Some(last) = nodes.last() {
            if last.row >= u64::from(NONE) {
                return Err(FlattenError::RowRange(last.row));
            }
        }
        for n in nodes {
            if n.key.len() != dim {
                return Err(FlattenError::KeyLength {
                    row: n.row,
                    len: n.key.len(),
                    dim,
                });
            }
        }
        let point_of = |row: u64| -> Option<u32> {
            nodes
                .binary_search_by_key(&row, |n| n.row)
                .ok()
                .map(|p| p as u32)
        };
        let links_on = |n: &NodeParts, layer: usize| -> Vec<u32> {
            n.links
                .get(layer)
                .map(|l| l.iter().filter_map(|&r| point_of(r)).collect())
                .unwrap_or_default()
        };
        let levels = nodes.iter().map(|n| n.level).max().unwrap_or(0);
        let base: Vec<Vec<u32>> = nodes.iter().map(|n| links_on(n, 0)).collect();
        let base = with_links_back(base, nodes);
        let degree0 = base.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut level_start = vec![0u64];
        let mut upper_points = Vec::new();
        let mut upper_lists: Vec<Vec<u32>> = Vec::new();
        for layer in 1..=levels {
            for (p, n) in nodes.iter().enumerate() {
                if n.level >= layer {
                    upper_points.push(p as u32);
                    upper_lists.push(links_on(n, layer));
                }
            }
            level_start.push(upper_points.len() as u64);
        }
        let degree = upper_lists.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let entry = nodes
            .iter()
            .position(|n| n.level == levels)
            .map_or(0, |p| p as u32);
        let tops: Vec<u32> = (0..nodes.len() as u32)
            .filter(|&p| nodes[p as usize].level == levels)
            .collect();
        let orphans = unreached(&base, &tops);

        let mut header = Header::zeroed();
        header.magic = MAGIC;
        header.version = VERSION;
        header.dim = dim as u32;
        header.points = nodes.len() as u64;
        header.rows = rows;
        header.upper = upper_points.len() as u64;
        header.orphans = orphans.len() as u64;
        header.degree0 = degree0 as u32;
        header.degree = degree as u32;
        header.levels = levels as u32;
        header.entry = entry;
        header.digest = digest;
        header.max_connections = parts.max_connections;
        header.ef_construction = parts.ef_construction;
        let sections = Sections::of(&header).expect("sections of an in-memory graph fit");
        let mut words = vec![0u64; sections.end.div_ceil(8)];
        {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
            let bytes = &mut bytes[..sections.end];
            let put_u32s = |bytes: &mut [u8], (start, _): (usize, usize), i: usize, v: &[u32]| {
                let at = start + i * 4;
                bytes[at..at + v.len() * 4].copy_from_slice(bytemuck::cast_slice(v));
            };
            for (p, n) in nodes.iter().enumerate() {
                put_u32s(bytes, sections.rows, p, &[n.row as u32]);
                let k = sections.keys.0 + p * dim;
                bytes[k..k + dim].copy_from_slice(bytemuck::cast_slice(&n.key));
                let mut list = base[p].clone();
                list.resize(degree0, NONE);
                put_u32s(bytes, sections.base, p * degree0, &list);
            }
            let ls = sections.level_start.0;
            bytes[ls..ls + level_start.len() * 8]
                .copy_from_slice(bytemuck::cast_slice(&level_start));
            put_u32s(bytes, sections.upper_points, 0, &upper_points);
            for (i, list) in upper_lists.iter().enumerate() {
                let mut list = list.clone();
                list.resize(degree, NONE);
                put_u32s(bytes, sections.upper_links, i * degree, &list);
            }
            put_u32s(bytes, sections.orphans, 0, &orphans);
            header.body_crc = crc32fast::hash(&bytes[HEADER_LEN..]);
            header.crc = header.computed_crc();
            bytes[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&header));
        }
        Ok(FlatGraph {
            bytes: Bytes::Owned(words),
            header,
            sections,
        })
    }

    /// Maps and checks the saved file in `dir`: it must be intact, cover at
    /// most `count` rows and carry `digest_of(rows)` for the rows it covers.
    /// The reason it is refused otherwise.
    pub(crate) fn load(
        dir: &Path,
        count: u64,
        digest_of: &dyn Fn(u64) -> u32,
    ) -> Result<FlatGraph, String> {
        let path = dir.join(FLAT_FILE);
        if !path.exists() {
            return Err(format!("{FLAT_FILE} is missing"));
        }
        let map = FrozenMapping::open(&path).map_err(|e| e.to_string())?;
        let bytes = map.bytes();
        if bytes.len() < HEADER_LEN {
            return Err(format!("{FLAT_FILE} is too short"));
        }
        let header: Header = bytemuck::pod_read_unaligned(&bytes[..HEADER_LEN]);
        if header.magic != MAGIC || header.crc != header.computed_crc() {
            return Err(format!("{FLAT_FILE} header is damaged"));
        }
        if header.version != VERSION {
            return Err(format!("{FLAT_FILE} version {}", header.version));
        }
        let sections =
            Sections::of(&header).ok_or_else(|| format!("{FLAT_FILE} header is inconsistent"))?;
        if sections.end != bytes.len() {
            return Err(format!(
                "{FLAT_FILE} holds {} bytes, its header says {}",
                bytes.len(),
                sections.end
            ));
        }
        if crc32fast::hash(&bytes[HEADER_LEN..]) != header.body_crc {
            return Err(format!("{FLAT_FILE} fails its checksum"));
        }
        if header.rows > count {
            return Err(format!(
                "index covers {} rows, the gallery has {count}",
                header.rows
            ));
        }
        if digest_of(header.rows) != header.digest {
            return Err("index was built from other records".into());
        }
        let graph = FlatGraph {
            bytes: Bytes::Mapped(map),
            header,
            sections,
        };
        graph.check_structure()?;
        Ok(graph)
    }

    /// Every point, link and row in range; rows increasing; layer starts
    /// increasing. What the search relies on to index without panicking.
    fn check_structure(&self) -> Result<(), String> {
        let n = self.points();
        let h = &self.header;
        let bad = |what: &str| Err(format!("{FLAT_FILE}: {what} out of range"));
        if n > 0 && h.entry as usize >= n || n == 0 && h.levels != 0 {
            return bad("entry point");
        }
        let rows = self.u32s(self.sections.rows);
        if rows.windows(2).any(|w| w[0] >= w[1])
            || rows.last().is_some_and(|&r| u64::from(r) >= h.rows)
        {
            return bad("rows");
        }
        let in_range = |list: &[u32]| list.iter().all(|&p| p == NONE || (p as usize) < n);
        if !in_range(self.u32s(self.sections.base))
            || !in_range(self.u32s(self.sections.upper_links))
        {
            return bad("links");
        }
        let starts: &[u64] = bytemuck::cast_slice(self.slice(self.sections.level_start));
        if starts.first() != Some(&0)
            || starts.windows(2).any(|w| w[0] > w[1])
            || starts.last() != Some(&h.upper)
        {
            return bad("layer starts");
        }
        let ups = self.u32s(self.sections.upper_points);
        for w in starts.windows(2) {
            let layer = &ups[w[0] as usize..w[1] as usize];
            if layer.windows(2).any(|p| p[0] >= p[1]) || !in_range(layer) || layer.contains(&NONE) {
                return bad("layer points");
            }
        }
        let orphans = self.u32s(self.sections.orphans);
        if !orphans.iter().all(|&p| (p as usize) < n) {
            return bad("orphans");
        }
        Ok(())
    }

    /// Writes the graph to `dir` (a temporary file, synced, renamed into
    /// place, the directory synced).
    pub(crate) fn save(&self, dir: &Path) -> Result<(), GalleryError> {
        use std::io::Write;
        let tmp = dir.join(format!("{FLAT_FILE}.tmp"));
        let bytes = &self.bytes.get()[..self.sections.end];
        let mut f = fs::File::create(&tmp).map_err(|e| GalleryError::io(&tmp, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| GalleryError::io(&tmp, e))?;
        drop(f);
        let to = dir.join(FLAT_FILE);
        fs::rename(&tmp, &to).map_err(|e| GalleryError::io(&to, e))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| GalleryError::io(dir, e))
    }

    fn slice(&self, (start, len): (usize, usize)) -> &[u8] {
        &self.bytes.get()[start..start + len]
    }

    fn u32s(&self, section: (usize, usize)) -> &[u32] {
        bytemuck::cast_slice(self.slice(section))
    }

    /// Points in the graph.
    pub(crate) fn points(&self) -> usize {
        self.header.points as usize
    }

    /// Rows `0..rows` were offered to the graph (dead rows are left out).
    pub(crate) fn rows(&self) -> u64 {
        self.header.rows
    }

    /// Bytes of the file (mapped, or held when built in this process).
    pub(crate) fn byte_len(&self) -> usize {
        self.sections.end
    }

    /// The row of every point, increasing.
    pub(crate) fn point_rows(&self) -> impl Iterator<Item = u64> + '_ {
        self.u32s(self.sections.rows).iter().map(|&r| u64::from(r))
    }

    /// Rows of the points no search can reach from the entry point.
    pub(crate) fn orphan_rows(&self) -> Vec<u64> {
        let rows = self.u32s(self.sections.rows);
        self.u32s(self.sections.orphans)
            .iter()
            .map(|&p| u64::from(rows[p as usize]))
            .collect()
    }

    /// Up to `knn` rows that `filter` keeps, nearest to `key` first, by a
    /// greedy descent through the upper layers and a best-first search of
    /// the base layer with `max(ef, knn)` candidates. Rows it does not keep
    /// are walked through but never returned.
    pub(crate) fn propose(
        &self,
        key: &[i8],
        knn: usize,
        ef: usize,
        filter: &dyn RowFilter,
    ) -> Vec<u64> {
        let n = self.points();
        if n == 0 || knn == 0 || key.len() != self.header.dim as usize {
            return Vec::new();
        }
        let rows = self.u32s(self.sections.rows);
        let keys = self.slice(self.sections.keys);
        let keys: &[i8] = bytemuck::cast_slice(keys);
        let dim = key.len();
        let distance = |p: u32| -> i64 {
            let at = p as usize * dim;
            -int_kernels::dot_i8(key, &keys[at..at + dim])
        };
        let mut point = self.header.entry;
        let mut best = distance(point);
        let starts: &[u64] = bytemuck::cast_slice(self.slice(self.sections.level_start));
        let ups = self.u32s(self.sections.upper_points);
        let links = self.u32s(self.sections.upper_links);
        let degree = self.header.degree as usize;
        for layer in (1..=self.header.levels as usize).rev() {
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
        let base = self.u32s(self.sections.base);
        let degree0 = self.header.degree0 as usize;
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
                fresh.clear();
                for &next in base[at..at + degree0].iter().take_while(|&&q| q != NONE) {
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
}

/// `base` with up to [`REVERSE_LINKS`] links added to each point's list: to
/// the points that link to it and are not linked back, those with the fewest
/// links to them first (then the nearest), so the points hardest to reach gain
/// the most. Every link `p → q` of the build then has `q → p` beside it unless
/// `q` had more than that many links back to add.
fn with_links_back(mut base: Vec<Vec<u32>>, nodes: &[NodeParts]) -> Vec<Vec<u32>> {
    let mut links_to = vec![0u32; base.len()];
    let mut back: Vec<Vec<u32>> = vec![Vec::new(); base.len()];
    for (p, list) in base.iter().enumerate() {
        for &q in list {
            links_to[q as usize] += 1;
            if q as usize != p {
                back[q as usize].push(p as u32);
            }
        }
    }
    base.par_iter_mut()
        .zip(back.into_par_iter())
        .enumerate()
        .for_each(|(q, (list, mut back))| {
            back.retain(|p| !list.contains(p));
            back.sort_unstable();
            back.dedup();
            if back.len() > REVERSE_LINKS {
                let key = &nodes[q].key;
                back.sort_by_cached_key(|&p| {
                    let dot = int_kernels::dot_i8(key, &nodes[p as usize].key);
                    (links_to[p as usize], Reverse(dot))
                });
                back.truncate(REVERSE_LINKS);
            }
            list.extend(back);
        });
    base
}

/// Points not reachable from `starts` over the base-layer lists `links`.
fn unreached(links: &[Vec<u32>], starts: &[u32]) -> Vec<u32> {
    let mut seen = vec![false; links.len()];
    let mut stack: Vec<u32> = starts.to_vec();
    while let Some(p) = stack.pop() {
        if std::mem::replace(&mut seen[p as usize], true) {
            continue;
        }
        stack.extend(links[p as usize].iter().filter(|&&q| !seen[q as usize]));
    }
    (0..links.len() as u32)
        .filter(|&p| !seen[p as usize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made graph of `nodes` with 4-value keys.
    fn small_graph(nodes: Vec<NodeParts>) -> GraphParts {
        GraphParts {
            dim: 4,
            nodes,
            max_connections: 2,
            ef_construction: 8,
        }
    }

    /// A small hand-made graph: rows 10·i, a ring on the base layer, point 0
    /// alone on layer 1 and row 70 unreachable (no links to or from it).
    fn ring(points: usize) -> GraphParts {
        let nodes = (0..points as u64)
            .map(|i| {
                let next = (i + 1) % (points as u64 - 1);
                let prev = (i + points as u64 - 2) % (points as u64 - 1);
                let links = if i == points as u64 - 1 {
                    vec![vec![]]
                } else {
                    vec![vec![next * 10, prev * 10]]
                };
                NodeParts {
                    row: i * 10,
                    level: usize::from(i == 0),
                    key: vec![i as i8, 1, -(i as i8), 2],
                    links: if i == 0 {
                        let mut l = links;
                        l.push(vec![]);
                        l
                    } else {
                        links
                    },
                }
            })
            .collect();
        small_graph(nodes)
    }

    #[test]
    fn unreachable_points_are_orphans() {
        let g = FlatGraph::from_parts(ring(8), 80, 7).unwrap();
        assert_eq!(g.points(), 8);
        assert_eq!(g.orphan_rows(), vec![70]);
    }

    /// Point 0 (row 0, alone on layer 1) links to nobody; points 1..=20 each
    /// link to it, and, when `chained`, points 1..=4 also link to points
    /// 20..=17. The key of point i has inner product i with point 0's
    /// (`[1, 0, 0, 0]`).
    fn star(chained: bool) -> GraphParts {
        let nodes = (0..=20u64)
            .map(|i| {
                let mut base = if i == 0 { vec![] } else { vec![0] };
                if chained && (1..=4).contains(&i) {
                    base.push(21 - i);
                }
                let mut links = vec![base];
                if i == 0 {
                    links.push(vec![]);
                }
                NodeParts {
                    row: i,
                    level: usize::from(i == 0),
                    key: vec![i.max(1) as i8, 0, 0, 0],
                    links,
                }
            })
            .collect();
        small_graph(nodes)
    }

    fn base_list(g: &FlatGraph, point: usize) -> Vec<u32> {
        let degree0 = g.header.degree0 as usize;
        let list = &g.u32s(g.sections.base)[point * degree0..(point + 1) * degree0];
        let mut list: Vec<u32> = list.iter().copied().take_while(|&q| q != NONE).collect();
        list.sort_unstable();
        list
    }

    #[test]
    fn links_back_reach_the_points_that_link_in_nearest_first() {
        let g = FlatGraph::from_parts(star(false), 21, 7).unwrap();
        // Twenty points link to the hub and none has a link to it, so the
        // hub links back to the sixteen nearest; the four farthest stay
        // unreachable.
        assert_eq!(base_list(&g, 0), (5..=20).collect::<Vec<u32>>());
        assert_eq!(g.orphan_rows(), vec![1, 2, 3, 4]);
        assert_eq!(
            g.propose(&[1, 0, 0, 0], 3, 4, &|r: u64| r != 0),
            vec![20, 19, 18]
        );
    }

    #[test]
    fn links_back_go_first_to_the_points_nobody_links_to() {
        let g = FlatGraph::from_parts(star(true), 21, 7).unwrap();
        // Points 17..=20 are the nearest but each has a link to it already:
        // the hub's links back go to the sixteen that had none.
        assert_eq!(base_list(&g, 0), (1..=16).collect::<Vec<u32>>());
        // Point 20 links back to point 1, and so on: everything is reachable.
        assert_eq!(base_list(&g, 20), vec![0, 1]);
        assert_eq!(base_list(&g, 1), vec![0, 20]);
        assert!(g.orphan_rows().is_empty());
    }

    #[test]
    fn search_walks_the_ring_and_honours_keep() {
        let g = FlatGraph::from_parts(ring(8), 80, 7).unwrap();
        // The key of row 50 (i = 5) is nearest to itself by inner product
        // among the reachable points with the largest first value.
        let all = g.propose(&[6, 1, -6, 2], 3, 8, &|_: u64| true);
        assert_eq!(all, vec![60, 50, 40]);
        let odd = g.propose(&[6, 1, -6, 2], 3, 8, &|r: u64| r != 60);
        assert_eq!(odd, vec![50, 40, 30]);
        assert!(
            g.propose(&[1, 1], 3, 8, &|_: u64| true).is_empty(),
            "wrong key length"
        );
    }

    #[test]
    fn a_search_forgets_the_points_an_earlier_one_visited() {
        // A mark left over from an earlier search would hide a point from this one.
        let g = FlatGraph::from_parts(ring(8), 80, 7).unwrap();
        let probe = [6, 1, -6, 2];
        let alone = std::thread::scope(|s| {
            s.spawn(|| g.propose(&probe, 3, 8, &|_: u64| true))
                .join()
                .unwrap()
        });
        for other in [[-6, -1, 6, -2], [0, 6, 0, 6], [6, 1, -6, 2]] {
            let _ = g.propose(&other, 8, 8, &|_: u64| true);
            assert_eq!(g.propose(&probe, 3, 8, &|_: u64| true), alone);
        }
        // A bigger graph (points in two words of the set), then the small one
        // again, on the same thread.
        let big = FlatGraph::from_parts(ring(120), 1200, 7).unwrap();
        let far = big.propose(&probe, 3, 8, &|_: u64| true);
        assert_eq!(far.len(), 3);
        assert_eq!(g.propose(&probe, 3, 8, &|_: u64| true), alone);
    }

    /// Writes `g` to `dir` after `alter` has changed its header or body,
    /// with both checksums made to hold again.
    fn save_altered(dir: &Path, g: &FlatGraph, alter: impl FnOnce(&mut Header, &mut [u8])) {
        let mut bytes = g.bytes.get()[..g.sections.end].to_vec();
        let mut header: Header = bytemuck::pod_read_unaligned(&bytes[..HEADER_LEN]);
        alter(&mut header, &mut bytes[HEADER_LEN..]);
        header.body_crc = crc32fast::hash(&bytes[HEADER_LEN..]);
        header.crc = header.computed_crc();
        bytes[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&header));
        fs::write(dir.join(FLAT_FILE), &bytes).unwrap();
    }

    #[test]
    fn a_file_of_the_previous_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let g = FlatGraph::from_parts(ring(8), 80, 7).unwrap();
        save_altered(dir.path(), &g, |header, _| header.version = VERSION - 1);
        let refused = FlatGraph::load(dir.path(), 80, &|_| 7).err().unwrap();
        assert_eq!(refused, format!("{FLAT_FILE} version {}", VERSION - 1));
    }

    #[test]
    fn saved_graph_loads_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let g = FlatGraph::from_parts(ring(8), 80, 7).unwrap();
        g.save(dir.path()).unwrap();
        let loaded = FlatGraph::load(dir.path(), 80, &|_| 7).unwrap();
        let probe = [3, 0, -3, 1];
        assert_eq!(
            loaded.propose(&probe, 4, 8, &|_: u64| true),
            g.propose(&probe, 4, 8, &|_: u64| true)
        );
        assert!(
            FlatGraph::load(dir.path(), 79, &|_| 7).is_err(),
            "more rows than the gallery"
        );
        assert!(
            FlatGraph::load(dir.path(), 80, &|_| 8).is_err(),
            "other records"
        );
        let path = dir.path().join(FLAT_FILE);
        let good = fs::read(&path).unwrap();
        for at in [3, 60, 130, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            fs::write(&path, &bad).unwrap();
            assert!(
                FlatGraph::load(dir.path(), 80, &|_| 7).is_err(),
                "byte {at}"
            );
        }
        fs::write(&path, &good[..good.len() - 4]).unwrap();
        assert!(FlatGraph::load(dir.path(), 80, &|_| 7).is_err());
    }

    /// A file whose checksums hold but whose links point past the graph is
    /// refused by the structure check, not searched.
    #[test]
    fn out_of_range_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let g = FlatGraph::from_parts(ring(8), 80, 7).unwrap();
        let at = g.sections.base.0 - HEADER_LEN;
        save_altered(dir.path(), &g, |_, body| {
            body[at..at + 4].copy_from_slice(&1000u32.to_le_bytes())
        });
        let err = FlatGraph::load(dir.path(), 80, &|_| 7).err().unwrap();
        assert!(err.contains("links"), "{err}");
    }

    /// The invariant behind the read-only mapping: a save replaces the file
    /// by a rename, so a graph mapped before keeps its bytes and answers.
    #[test]
    fn a_mapped_graph_survives_its_replacement() {
        let dir = tempfile::tempdir().unwrap();
        FlatGraph::from_parts(ring(8), 80, 7)
            .unwrap()
            .save(dir.path())
            .unwrap();
        let old = FlatGraph::load(dir.path(), 80, &|_| 7).unwrap();
        let probe = [5, 1, -5, 2];
        let before = old.propose(&probe, 5, 8, &|_: u64| true);
        let crc = crc32fast::hash(old.bytes.get());
        FlatGraph::from_parts(ring(6), 60, 9)
            .unwrap()
            .save(dir.path())
            .unwrap();
        assert_eq!(crc32fast::hash(old.bytes.get()), crc);
        assert_eq!(old.propose(&probe, 5, 8, &|_: u64| true), before);
        assert_eq!(FlatGraph::load(dir.path(), 80, &|_| 9).unwrap().points(), 6);
    }

    #[test]
    fn duplicate_rows_and_ragged_keys_are_errors() {
        let mut parts = ring(4);
        parts.nodes[1].row = 0;
        assert!(matches!(
            FlatGraph::from_parts(parts, 40, 0),
            Err(FlattenError::DuplicateRow(0))
        ));
        let mut parts = ring(4);
        parts.nodes[2].key.pop();
        assert!(matches!(
            FlatGraph::from_parts(parts, 40, 0),
            Err(FlattenError::KeyLength { .. })
        ));
    }
}
