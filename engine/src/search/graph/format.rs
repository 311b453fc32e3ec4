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
//! | base-layer neighbours | `u32` | `points · degree0` |
//! | start of each upper layer in the two arrays below | `u64` | `levels + 1` |
//! | points present on each upper layer (increasing within a layer) | `u32` | `upper` |
//! | their neighbours on that layer | `u32` | `upper · degree` |
//! | orphans: points no search reaches | `u32` | `orphans` |
//!
//! Neighbour lists are padded with [`NONE`]. A file is only used when both
//! CRCs hold, its digest matches the gallery, and every index in it is in
//! range (checked once at open), so a search never reads out of bounds.

use std::fs;
use std::path::Path;

use bytemuck::{Pod, Zeroable};

use crate::error::GalleryError;
use crate::storage::FrozenMapping;

/// Name of the file in the gallery directory.
pub(crate) const FLAT_FILE: &str = "hnsw.flat";
const MAGIC: [u8; 8] = *b"PLMFLAT\0";
/// Version 2: base lists carry links back (see `build.rs`); a version 1
/// file is refused, and the graph is flattened again from the saved build.
pub(super) const VERSION: u32 = 2;
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
    pub(super) reserved: [u8; 44],
    pub(super) crc: u32,
}

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
    keys: (usize, usize),
    pub(super) base: (usize, usize),
    level_start: (usize, usize),
    upper_points: (usize, usize),
    upper_links: (usize, usize),
    orphans: (usize, usize),
    pub(super) end: usize,
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
pub(super) enum Bytes {
    /// Built in this process (8-byte aligned).
    Owned(Vec<u64>),
    /// Mapped from the saved file (page-aligned).
    Mapped(FrozenMapping),
}

impl Bytes {
    pub(super) fn get(&self) -> &[u8] {
        match self {
            Bytes::Owned(words) => bytemuck::cast_slice(words),
            Bytes::Mapped(map) => map.bytes(),
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
            header.body_crc = crc32fast::hash(&bytes[HEADER_LEN..]);
            header.crc = header.computed_crc();
            bytes[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&header));
        }
        FlatGraph {
            bytes: Bytes::Owned(words),
            header,
            sections,
        }
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

    /// The base-layer lists (padded with [`NONE`]) and their length.
    pub(super) fn base(&self) -> (&[u32], usize) {
        (self.u32s(self.sections.base), self.header.degree0 as usize)
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
