//! The search form of the graph index on disk: `hnsw.flat`, a flat,
//! read-only copy of an HNSW graph, memory-mapped from one file; how it is
//! laid out, written, saved, and checked before it is used.
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
//! | CRC-32 of each point's key | `u32` | `points` |
//! | base-layer neighbours | `u32` | `points · degree0` |
//! | start of each upper layer in the two arrays below | `u64` | `levels + 1` |
//! | points present on each upper layer (increasing within a layer) | `u32` | `upper` |
//! | their neighbours on that layer | `u32` | `upper · degree` |
//! | orphans: points no search reaches | `u32` | `orphans` |
//!
//! Neighbour lists are padded with [`NONE`]. A base-layer list has two
//! parts, each padded at its end: its first `forward0` slots hold the links
//! the build chose, the other `degree0 - forward0` the links back it added
//! afterwards (a graph flattened from `hnsw_rs` has one part: its links back
//! are appended to the build's, and `forward0 = degree0`). A file is only
//! used when both CRCs hold, its digest matches the gallery, and every index
//! in it is in range (checked once at open), so a search never reads out of
//! bounds. The keys are checked against their own CRCs after that
//! ([`FlatGraph::check_keys`]), while the graph may already serve: a key
//! only steers the walk (every candidate is scored on its row), so a
//! damaged key can cost a search a candidate until it is found, never give
//! it a wrong score.
//!
//! # Erasure
//!
//! The body CRC covers every section but the keys and their CRCs: each key
//! has its own, so that the key of a deleted row can be erased in place (its
//! bytes and its CRC overwritten with zeros, then flushed) without rewriting
//! anything else. A key of all zeros is an erased key, and only a deleted row
//! may have one; any other key must match its CRC. The search walks an erased
//! point like any other (its links still lead on) and never returns it, since
//! its row is deleted. Loading a file erases the key of every row deleted
//! since the file was written (an erasure the file missed, for instance one
//! that happened while the graph was being built).

use std::fs;
use std::ops::Range;
use std::path::Path;

use bytemuck::{Pod, Zeroable};

use crate::error::GalleryError;
use crate::storage::GraphMapping;

/// Name of the file in the gallery directory.
pub(crate) const FLAT_FILE: &str = "hnsw.flat";
/// Where the file is written before it is renamed into place.
pub(crate) const FLAT_TMP: &str = "hnsw.flat.tmp";
pub(super) const MAGIC: [u8; 8] = *b"PLMFLAT\0";
/// Version 4: base-layer lists have two parts, `forward0` slots of the
/// build's own links and the rest for links back ([`Header::forward0`]);
/// version 3: each key has its own CRC, outside the body CRC, so that keys
/// can be erased in place; version 2: base lists carry links back (see
/// `build.rs`). A file of an earlier version is refused with its version
/// named, and the graph is flattened again from the saved build or built
/// again.
pub(super) const VERSION: u32 = 4;
/// Padding of a neighbour list.
pub(crate) const NONE: u32 = u32::MAX;
const ALIGN: usize = 64;

/// The file header.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub(super) struct Header {
    pub(super) magic: [u8; 8],
    pub(super) version: u32,
    pub(super) dim: u32,
    pub(super) points: u64,
    pub(super) rows: u64,
    pub(super) upper: u64,
    pub(super) orphans: u64,
    pub(super) degree0: u32,
    pub(super) degree: u32,
    pub(super) levels: u32,
    pub(super) entry: u32,
    pub(super) digest: u32,
    pub(super) body_crc: u32,
    pub(super) max_connections: u32,
    pub(super) ef_construction: u32,
    /// Which builder made the graph: [`BY_HNSW_RS`] (0, also in files
    /// written before this field) or [`BY_NATIVE`].
    pub(super) builder: u32,
    /// Slots of each base-layer list that hold the build's own links (at
    /// most `degree0`); the rest hold links back. Each part is padded with
    /// [`NONE`] at its end.
    pub(super) forward0: u32,
    pub(super) reserved: [u8; 36],
    pub(super) crc: u32,
}

/// [`Header::builder`] of a graph flattened from `hnsw_rs`.
pub(super) const BY_HNSW_RS: u32 = 0;
/// [`Header::builder`] of a graph written by the native builder.
pub(super) const BY_NATIVE: u32 = 1;

pub(super) const HEADER_LEN: usize = std::mem::size_of::<Header>();
const _: () = assert!(HEADER_LEN == 128);

impl Header {
    pub(super) fn computed_crc(&self) -> u32 {
        crc32fast::hash(&bytemuck::bytes_of(self)[..HEADER_LEN - 4])
    }
}

/// Byte ranges of the sections, computed from a header with checked
/// arithmetic.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sections {
    pub(super) rows: (usize, usize),
    pub(super) keys: (usize, usize),
    pub(super) key_crcs: (usize, usize),
    pub(super) base: (usize, usize),
    pub(super) level_start: (usize, usize),
    pub(super) upper_points: (usize, usize),
    pub(super) upper_links: (usize, usize),
    pub(super) orphans: (usize, usize),
    pub(super) end: usize,
}

impl Sections {
    /// The sections of the file `h` describes; `None` if they overflow.
    pub(super) fn of(h: &Header) -> Option<Sections> {
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
        let key_crcs = next(n.checked_mul(4)?)?;
        let base = next(n.checked_mul(h.degree0 as usize)?.checked_mul(4)?)?;
        let level_start = next((h.levels as usize).checked_add(1)?.checked_mul(8)?)?;
        let upper_points = next(upper.checked_mul(4)?)?;
        let upper_links = next(upper.checked_mul(h.degree as usize)?.checked_mul(4)?)?;
        let orphans = next(orphans.checked_mul(4)?)?;
        Some(Sections {
            rows,
            keys,
            key_crcs,
            base,
            level_start,
            upper_points,
            upper_links,
            orphans,
            end: at,
        })
    }

    /// The CRC of the body of `bytes` (the whole file): every section but the
    /// keys and their CRCs.
    pub(super) fn body_crc(&self, bytes: &[u8]) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(&bytes[HEADER_LEN..self.keys.0]);
        h.update(&bytes[self.key_crcs.0 + self.key_crcs.1..self.end]);
        h.finalize()
    }
}

/// Where the bytes of a graph live.
pub(super) enum Bytes {
    /// Built in this process (8-byte aligned).
    Owned(Vec<u64>),
    /// Mapped from the saved file (page-aligned).
    Mapped(GraphMapping),
}

impl Bytes {
    pub(super) fn get(&self) -> &[u8] {
        match self {
            Bytes::Owned(words) => bytemuck::cast_slice(words),
            Bytes::Mapped(map) => map.bytes(),
        }
    }

    fn get_mut(&mut self) -> &mut [u8] {
        match self {
            Bytes::Owned(words) => bytemuck::cast_slice_mut(words),
            Bytes::Mapped(map) => map.bytes_mut(),
        }
    }

    /// Makes the bytes at `offset..offset + len` durable (mapped bytes only).
    fn flush(&self, offset: usize, len: usize) -> Result<(), GalleryError> {
        match self {
            Bytes::Owned(_) => Ok(()),
            Bytes::Mapped(map) => map.flush(offset, len),
        }
    }
}

/// A graph as flat lists of points: what [`FlatGraph::from_lists`] lays out.
/// Points are numbered by increasing row; every link names a point.
pub(crate) struct FlatLists {
    /// Key length.
    pub(crate) dim: usize,
    /// The row of each point, increasing.
    pub(crate) rows: Vec<u32>,
    /// The key of each point.
    pub(crate) keys: Vec<Vec<i8>>,
    /// The base-layer neighbours of each point.
    pub(crate) base: Vec<Vec<u32>>,
    /// Start of each upper layer in `upper_points` (`levels + 1` entries).
    pub(crate) level_start: Vec<u64>,
    /// The points on each upper layer, increasing within a layer.
    pub(crate) upper_points: Vec<u32>,
    /// Their neighbours on that layer.
    pub(crate) upper_links: Vec<Vec<u32>>,
    /// Points no search reaches from the entry point.
    pub(crate) orphans: Vec<u32>,
    /// The entry point (on the top layer).
    pub(crate) entry: u32,
    /// `M` and `efConstruction` of the build (recorded, not used to search).
    pub(crate) max_connections: u32,
    /// See `max_connections`.
    pub(crate) ef_construction: u32,
}

/// The flat graph.
pub(crate) struct FlatGraph {
    pub(super) bytes: Bytes,
    pub(super) header: Header,
    pub(super) sections: Sections,
    /// Rows whose keys the load found and erased (deleted since the file was
    /// written): their copies in the builder's files remain to be erased.
    pub(super) erased_at_load: Vec<u64>,
}

impl FlatGraph {
    /// Lays `lists` out as a graph covering gallery rows `0..rows`, with
    /// `digest` the records digest of those rows.
    pub(crate) fn from_lists(lists: FlatLists, rows: u64, digest: u32) -> FlatGraph {
        let n = lists.rows.len();
        let dim = lists.dim;
        let levels = lists.level_start.len() - 1;
        let degree0 = lists.base.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let degree = lists
            .upper_links
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut header = Header::zeroed();
        header.magic = MAGIC;
        header.version = VERSION;
        header.dim = dim as u32;
        header.points = n as u64;
        header.rows = rows;
        header.upper = lists.upper_points.len() as u64;
        header.orphans = lists.orphans.len() as u64;
        header.degree0 = degree0 as u32;
        header.degree = degree as u32;
        header.levels = levels as u32;
        header.entry = lists.entry;
        header.digest = digest;
        header.max_connections = lists.max_connections;
        header.ef_construction = lists.ef_construction;
        header.builder = BY_HNSW_RS;
        header.forward0 = degree0 as u32;
        let sections = Sections::of(&header).expect("sections of an in-memory graph fit");
        let mut words = vec![0u64; sections.end.div_ceil(8)];
        {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
            let bytes = &mut bytes[..sections.end];
            let put_u32s = |bytes: &mut [u8], (start, _): (usize, usize), i: usize, v: &[u32]| {
                let at = start + i * 4;
                bytes[at..at + v.len() * 4].copy_from_slice(bytemuck::cast_slice(v));
            };
            put_u32s(bytes, sections.rows, 0, &lists.rows);
            for (p, key) in lists.keys.iter().enumerate() {
                let k = sections.keys.0 + p * dim;
                bytes[k..k + dim].copy_from_slice(bytemuck::cast_slice(key));
                let crc = crc32fast::hash(bytemuck::cast_slice(key));
                let c = sections.key_crcs.0 + p * 4;
                bytes[c..c + 4].copy_from_slice(&crc.to_le_bytes());
            }
            for (p, list) in lists.base.iter().enumerate() {
                let mut list = list.clone();
                list.resize(degree0, NONE);
                put_u32s(bytes, sections.base, p * degree0, &list);
            }
            let ls = sections.level_start.0;
            bytes[ls..ls + lists.level_start.len() * 8]
                .copy_from_slice(bytemuck::cast_slice(&lists.level_start));
            put_u32s(bytes, sections.upper_points, 0, &lists.upper_points);
            for (i, list) in lists.upper_links.iter().enumerate() {
                let mut list = list.clone();
                list.resize(degree, NONE);
                put_u32s(bytes, sections.upper_links, i * degree, &list);
            }
            put_u32s(bytes, sections.orphans, 0, &lists.orphans);
            header.body_crc = sections.body_crc(bytes);
            header.crc = header.computed_crc();
            bytes[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&header));
        }
        FlatGraph {
            bytes: Bytes::Owned(words),
            header,
            sections,
            erased_at_load: Vec::new(),
        }
    }

    /// Maps and checks the saved file in `dir`: it must be intact, cover at
    /// most `count` rows and carry `digest_of(rows)` for the rows it covers.
    /// The keys of the rows `is_dead` calls deleted are erased in the file if
    /// they are not already. The other keys are not read here:
    /// [`FlatGraph::check_keys`] checks them, so that a large graph can serve
    /// while they are read. The reason it is refused otherwise; a refused
    /// file is overwritten with zeros (it is about to be replaced, and may
    /// hold keys of deleted rows).
    #[cfg(test)]
    pub(crate) fn load(
        dir: &Path,
        count: u64,
        digest_of: &dyn Fn(u64) -> u32,
        is_dead: &dyn Fn(u64) -> bool,
    ) -> Result<FlatGraph, String> {
        FlatGraph::matched(FlatGraph::map_intact(dir)?, count, digest_of, is_dead)
    }

    /// The first half of [`FlatGraph::load`], which needs nothing of the
    /// gallery, so that it can run while the gallery opens: maps the saved
    /// file in `dir` and checks its header, the checksum of all but its keys
    /// and its structure. A refused file is overwritten with zeros.
    pub(crate) fn map_intact(dir: &Path) -> Result<FlatGraph, String> {
        let path = dir.join(FLAT_FILE);
        if !path.exists() {
            return Err(format!("{FLAT_FILE} is missing"));
        }
        let map = GraphMapping::open(&path).map_err(|e| e.to_string())?;
        FlatGraph::check(map, u64::MAX, None).map_err(|(map, why)| {
            zero_fill(map);
            why
        })
    }

    /// The second half of [`FlatGraph::load`]: the `intact` graph if it
    /// covers at most `count` rows and carries `digest_of(rows)`, with the
    /// keys of the rows `is_dead` calls deleted erased. A refused file is
    /// overwritten with zeros.
    pub(crate) fn matched(
        intact: FlatGraph,
        count: u64,
        digest_of: &dyn Fn(u64) -> u32,
        is_dead: &dyn Fn(u64) -> bool,
    ) -> Result<FlatGraph, String> {
        let rows = intact.header.rows;
        let refused = if rows > count {
            Some(format!("index covers {rows} rows, the gallery has {count}"))
        } else if digest_of(rows) != intact.header.digest {
            Some("index was built from other records".to_owned())
        } else {
            None
        };
        if let Some(why) = refused {
            intact.discard();
            return Err(why);
        }
        let mut graph = intact;
        if let Err(e) = graph.erase_dead(is_dead) {
            graph.discard();
            return Err(e.to_string());
        }
        Ok(graph)
    }

    /// The graph in `map` if its header, body and structure are intact and
    /// it matches the gallery (at most `count` rows, and `digest_of` its
    /// rows' digest, if given); the mapping back and the reason otherwise.
    #[allow(clippy::result_large_err)]
    fn check(
        map: GraphMapping,
        count: u64,
        digest_of: Option<&dyn Fn(u64) -> u32>,
    ) -> Result<FlatGraph, (GraphMapping, String)> {
        let bytes = map.bytes();
        if bytes.len() < HEADER_LEN {
            return Err((map, format!("{FLAT_FILE} is too short")));
        }
        let header: Header = bytemuck::pod_read_unaligned(&bytes[..HEADER_LEN]);
        if header.magic != MAGIC || header.crc != header.computed_crc() {
            return Err((map, format!("{FLAT_FILE} header is damaged")));
        }
        if header.version != VERSION {
            let why = format!(
                "{FLAT_FILE} version {}, this build reads version {VERSION}",
                header.version
            );
            return Err((map, why));
        }
        let Some(sections) = Sections::of(&header) else {
            return Err((map, format!("{FLAT_FILE} header is inconsistent")));
        };
        if sections.end != bytes.len() {
            let why = format!(
                "{FLAT_FILE} holds {} bytes, its header says {}",
                bytes.len(),
                sections.end
            );
            return Err((map, why));
        }
        if sections.body_crc(bytes) != header.body_crc {
            return Err((map, format!("{FLAT_FILE} fails its checksum")));
        }
        if header.rows > count {
            let why = format!("index covers {} rows, the gallery has {count}", header.rows);
            return Err((map, why));
        }
        if digest_of.is_some_and(|digest_of| digest_of(header.rows) != header.digest) {
            return Err((map, "index was built from other records".into()));
        }
        let graph = FlatGraph {
            bytes: Bytes::Mapped(map),
            header,
            sections,
            erased_at_load: Vec::new(),
        };
        if let Err(why) = graph.check_structure() {
            let Bytes::Mapped(map) = graph.bytes else {
                unreachable!("mapped above")
            };
            return Err((map, why));
        }
        Ok(graph)
    }

    /// Erases the keys of the points whose rows `is_dead` calls deleted and
    /// that are not erased yet, and keeps their rows in `erased_at_load`.
    /// Reads only those points' keys.
    fn erase_dead(&mut self, is_dead: &dyn Fn(u64) -> bool) -> Result<(), GalleryError> {
        let dim = self.dim();
        let keys = self.keys();
        let missed: Vec<u64> = self
            .rows_of_points()
            .iter()
            .enumerate()
            .filter(|&(_, &row)| is_dead(u64::from(row)))
            .filter(|&(p, _)| keys[p * dim..(p + 1) * dim].iter().any(|&v| v != 0))
            .map(|(_, &row)| u64::from(row))
            .collect();
        self.erase_rows(&missed)?;
        self.erased_at_load = missed;
        Ok(())
    }

    /// Checks the keys of `points` (clamped to the graph's) against their
    /// CRCs, in parallel. An erased key is damage unless `is_dead` calls its
    /// row deleted; a key that fails its CRC is damage. The first damage
    /// found, as a reason, if any.
    pub(crate) fn check_keys(
        &self,
        points: Range<usize>,
        is_dead: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<(), String> {
        use rayon::prelude::*;
        const CHUNK: usize = 8192;
        let end = points.end.min(self.points());
        let start = points.start.min(end);
        let dim = self.dim();
        let rows = self.rows_of_points();
        let keys = self.keys();
        let crcs = self.u32s(self.sections.key_crcs);
        (start..end)
            .step_by(CHUNK)
            .collect::<Vec<usize>>()
            .into_par_iter()
            .try_for_each(|from| {
                for p in from..(from + CHUNK).min(end) {
                    let key = &keys[p * dim..(p + 1) * dim];
                    let row = u64::from(rows[p]);
                    if key.iter().all(|&v| v == 0) {
                        if !is_dead(row) {
                            return Err(format!(
                                "{FLAT_FILE}: the key of live row {row} is erased"
                            ));
                        }
                    } else if crc32fast::hash(bytemuck::cast_slice(key)) != crcs[p] {
                        return Err(format!("{FLAT_FILE}: the key of row {row} is damaged"));
                    }
                }
                Ok(())
            })
    }

    /// Drops the graph; a graph mapped from its file, found damaged, has
    /// the file overwritten with zeros first (it is about to be replaced,
    /// and may hold keys of deleted rows).
    pub(crate) fn discard(self) {
        if let Bytes::Mapped(map) = self.bytes {
            zero_fill(map);
        }
    }

    /// Erases the keys of those of `rows` that are points of the graph and
    /// not erased yet (bytes and CRC overwritten with zeros), and makes that
    /// durable when the graph is mapped from its file. Returns how many keys
    /// it erased.
    pub(crate) fn erase_rows(&mut self, rows: &[u64]) -> Result<usize, GalleryError> {
        let dim = self.dim();
        let (keys_at, crcs_at) = (self.sections.keys.0, self.sections.key_crcs.0);
        let points: Vec<usize> = {
            let of = self.rows_of_points();
            let keys = self.keys();
            rows.iter()
                .filter_map(|&row| u32::try_from(row).ok())
                .filter_map(|row| of.binary_search(&row).ok())
                .filter(|&p| keys[p * dim..(p + 1) * dim].iter().any(|&v| v != 0))
                .collect()
        };
        let bytes = self.bytes.get_mut();
        for &p in &points {
            bytes[keys_at + p * dim..keys_at + (p + 1) * dim].fill(0);
            bytes[crcs_at + p * 4..crcs_at + (p + 1) * 4].fill(0);
        }
        if let (Some(&first), Some(&last)) = (points.iter().min(), points.iter().max()) {
            let keys = (keys_at + first * dim, (last - first + 1) * dim);
            let crcs = (crcs_at + first * 4, (last - first + 1) * 4);
            self.bytes.flush(keys.0, keys.1)?;
            self.bytes.flush(crcs.0, crcs.1)?;
        }
        Ok(points.len())
    }

    /// Erases the keys of `rows` in the file saved in `dir`, if there is one
    /// (used at open, to finish an erasure a crash interrupted, before the
    /// file is loaded). A file that cannot be read as a graph of this version
    /// is overwritten with zeros: it would be refused at load anyway.
    pub(crate) fn erase_in_file(dir: &Path, rows: &[u64]) -> Result<(), GalleryError> {
        let path = dir.join(FLAT_FILE);
        if !path.is_file() || std::fs::metadata(&path).map_or(0, |m| m.len()) == 0 {
            return Ok(());
        }
        let map = GraphMapping::open(&path)?;
        match FlatGraph::check(map, u64::MAX, None) {
            Ok(mut graph) => graph.erase_rows(rows).map(|_| ()),
            Err((map, _)) => {
                zero_fill(map);
                Ok(())
            }
        }
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
        if h.forward0 > h.degree0 {
            return bad("forward part of the base lists");
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
        let tmp = dir.join(FLAT_TMP);
        let bytes = &self.bytes.get()[..self.sections.end];
        let mut f = fs::File::create(&tmp).map_err(|e| GalleryError::io(&tmp, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| GalleryError::io(&tmp, e))?;
        drop(f);
        put_in_place(dir)
    }

    /// A graph held in memory from the bytes of a whole file whose header
    /// is `header` (as [`FlatWriter`](super::write::FlatWriter) writes it).
    pub(super) fn from_bytes(bytes: &[u8], header: Header) -> Option<FlatGraph> {
        let sections = Sections::of(&header)?;
        if sections.end != bytes.len() {
            return None;
        }
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Some(FlatGraph {
            bytes: Bytes::Owned(words),
            header,
            sections,
            erased_at_load: Vec::new(),
        })
    }

    pub(super) fn slice(&self, (start, len): (usize, usize)) -> &[u8] {
        &self.bytes.get()[start..start + len]
    }

    pub(super) fn u32s(&self, section: (usize, usize)) -> &[u32] {
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

    /// The key of the point of `row`, if `row` is a point (for the tests of
    /// erasure).
    #[cfg(test)]
    pub(crate) fn key_of_row(&self, row: u64) -> Option<&[i8]> {
        let p = self
            .rows_of_points()
            .binary_search(&u32::try_from(row).ok()?)
            .ok()?;
        Some(&self.keys()[p * self.dim()..(p + 1) * self.dim()])
    }

    /// Whether `row` is a point whose key is not erased.
    pub(crate) fn key_is_set(&self, row: u64) -> bool {
        let Ok(row) = u32::try_from(row) else {
            return false;
        };
        let dim = self.dim();
        self.rows_of_points()
            .binary_search(&row)
            .is_ok_and(|p| self.keys()[p * dim..(p + 1) * dim].iter().any(|&v| v != 0))
    }

    /// Key length.
    pub(super) fn dim(&self) -> usize {
        self.header.dim as usize
    }

    /// The entry point of a search (on the top layer).
    pub(super) fn entry(&self) -> u32 {
        self.header.entry
    }

    /// The row of each point, increasing.
    pub(super) fn rows_of_points(&self) -> &[u32] {
        self.u32s(self.sections.rows)
    }

    /// The keys of all points, `dim()` values each.
    pub(super) fn keys(&self) -> &[i8] {
        bytemuck::cast_slice(self.slice(self.sections.keys))
    }

    /// The base-layer lists, their length, and the length of their first
    /// part (the build's own links; the rest are links back). Each part is
    /// padded with [`NONE`] at its end.
    pub(super) fn base(&self) -> (&[u32], usize, usize) {
        (
            self.u32s(self.sections.base),
            self.header.degree0 as usize,
            self.header.forward0 as usize,
        )
    }

    /// The upper layers, top first excluded: the start of each layer in the
    /// two arrays, the points on each layer (increasing within a layer),
    /// their lists (padded with [`NONE`]), and the lists' length.
    pub(super) fn upper(&self) -> (&[u64], &[u32], &[u32], usize) {
        (
            bytemuck::cast_slice(self.slice(self.sections.level_start)),
            self.u32s(self.sections.upper_points),
            self.u32s(self.sections.upper_links),
            self.header.degree as usize,
        )
    }
}

/// Renames the written and synced [`FLAT_TMP`] in `dir` to [`FLAT_FILE`]
/// and syncs the directory.
pub(super) fn put_in_place(dir: &Path) -> Result<(), GalleryError> {
    let (tmp, to) = (dir.join(FLAT_TMP), dir.join(FLAT_FILE));
    fs::rename(&tmp, &to).map_err(|e| GalleryError::io(&to, e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| GalleryError::io(dir, e))
}

/// Overwrites the whole of a refused file with zeros and makes that durable
/// (best effort: the file is about to be replaced).
fn zero_fill(mut map: GraphMapping) {
    let len = map.bytes().len();
    map.bytes_mut().fill(0);
    let _ = map.flush(0, len);
}
