//! Building the graph index: `hnsw_rs` builds (or loads and extends) the
//! HNSW graph over i8 keys, and [`flatten`] turns it into the flat search
//! form; the builder's own files beside the gallery let a later extension
//! start from it.
//!
//! `hnsw_rs` builds the graph; its in-memory form keeps every
//! point and neighbour link behind its own `Arc` and lock, searches with a
//! hash set of visited points, and reloads from disk only by rebuilding that
//! structure point by point. The flat copy keeps the same points, keys and
//! edges in a few plain arrays, so a search walks contiguous `u32` lists with
//! a visited bit set and a fused i8 kernel, and an open maps the file
//! and checks it instead of parsing it.
//!
//! The builder's files hold every key again (`hnsw.hnsw.data`); erasing a
//! row overwrites its key there in place too ([`erase_in_builder_files`]).
//!
//! Flattening also adds links back: `hnsw_rs` keeps a base-layer list to its
//! nearest `2·M` points as links from later points arrive, so the far links
//! that join one neighbourhood to the next are the first it drops, and a point
//! linked to by few others is hard to reach. Each point gets up to
//! [`REVERSE_LINKS`] more slots for the points that link to it without being
//! linked back (see [`with_links_back`]).
//!

use std::cmp::Reverse;
use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytemuck::{Pod, Zeroable};
use hnsw_rs::prelude::{AnnT, Hnsw, HnswIo};
use rayon::prelude::*;

use super::format::{FlatGraph, FlatLists, NONE};
use super::{key_of, rows_digest, AnnParams, Cancelled, GraphIndex, IndexOrigin, KeyDistance};
use crate::error::GalleryError;
use crate::kernels;
use crate::storage::Snapshot;

/// Basename of the index files in the gallery directory.
const BASENAME: &str = "hnsw";
/// The metadata file.
pub(crate) const META_FILE: &str = "hnsw.meta";
const GRAPH_FILE: &str = "hnsw.hnsw.graph";
const DATA_FILE: &str = "hnsw.hnsw.data";
/// Where the builder's files are written before they are renamed into place.
pub(crate) const TMP_DIR: &str = "hnsw.tmp";
/// Where the metadata is written before it is renamed into place.
pub(crate) const META_TMP: &str = "hnsw.meta.tmp";
/// What `hnsw_rs` writes first in its data file, and before each point's key.
const DATA_MAGIC: u32 = 0xa67f_0000;
const META_MAGIC: [u8; 8] = *b"PLMHNSW\0";
const META_VERSION: u32 = 1;
/// Rows inserted per `parallel_insert` call while building (a cancel point).
pub(super) const BUILD_BATCH: usize = 4096;
/// Base-layer slots added to each point for links back to the points that
/// link to it.
pub(crate) const REVERSE_LINKS: usize = 16;

type Graph = Hnsw<'static, i8, KeyDistance>;

/// The `hnsw_rs` graph that builds the index, and extends it with rows added
/// since, before it is flattened for searching.
pub(crate) struct Builder {
    graph: Graph,
    /// Rows `0..rows` were offered to the graph.
    rows: u64,
    points: usize,
    params: AnnParams,
}

impl Builder {
    /// Builds a graph of the live rows `0..snap.count`, in parallel.
    /// `cancel` is polled between batches.
    pub(crate) fn build(
        snap: &Snapshot,
        params: AnnParams,
        cancel: &dyn Fn() -> bool,
    ) -> Result<Builder, Cancelled> {
        let rows: Vec<u64> = (0..snap.count).filter(|&r| snap.is_live(r)).collect();
        Self::build_rows(snap, rows, params, cancel)
    }

    /// Builds a graph of `rows` (live rows of `snap`) that covers rows
    /// `0..snap.count`.
    pub(crate) fn build_rows(
        snap: &Snapshot,
        rows: Vec<u64>,
        params: AnnParams,
        cancel: &dyn Fn() -> bool,
    ) -> Result<Builder, Cancelled> {
        let params = params.checked();
        let graph: Graph = Hnsw::new(
            params.max_connections,
            rows.len().max(1),
            16,
            params.ef_construction,
            KeyDistance,
        );
        let mut builder = Builder {
            graph,
            rows: 0,
            points: 0,
            params,
        };
        for batch in rows.chunks(BUILD_BATCH) {
            if cancel() {
                return Err(Cancelled);
            }
            builder.insert(snap, batch);
        }
        builder.rows = snap.count;
        Ok(builder)
    }

    fn insert(&mut self, snap: &Snapshot, rows: &[u64]) {
        let keys: Vec<(Vec<i8>, usize)> = rows
            .par_iter()
            .map(|&r| (key_of(snap.scanned_vector(r)), r as usize))
            .collect();
        if keys.len() > 64 {
            let refs: Vec<(&Vec<i8>, usize)> = keys.iter().map(|(k, r)| (k, *r)).collect();
            self.graph.parallel_insert(&refs);
        } else {
            for (k, r) in &keys {
                self.graph.insert_slice((k, *r));
            }
        }
        self.points += keys.len();
    }

    /// Adds the live rows `self.rows..snap.count`. `cancel` is polled
    /// between batches.
    pub(crate) fn extend(
        &mut self,
        snap: &Snapshot,
        cancel: &dyn Fn() -> bool,
    ) -> Result<(), Cancelled> {
        let rows: Vec<u64> = (self.rows..snap.count)
            .filter(|&r| snap.is_live(r))
            .collect();
        for batch in rows.chunks(BUILD_BATCH) {
            if cancel() {
                return Err(Cancelled);
            }
            self.insert(snap, batch);
        }
        self.rows = self.rows.max(snap.count);
        Ok(())
    }

    /// The graph as a node list.
    fn parts(&self) -> GraphParts {
        let indexation = self.graph.get_point_indexation();
        let mut nodes = Vec::with_capacity(self.points);
        if self.graph.get_nb_point() > 0 {
            // The point iterator of hnsw_rs needs an entry point.
            for point in indexation {
                let links = point
                    .get_neighborhood_id()
                    .into_iter()
                    .map(|layer| layer.into_iter().map(|n| n.d_id as u64).collect())
                    .collect();
                nodes.push(NodeParts {
                    row: point.get_origin_id() as u64,
                    level: usize::from(point.get_point_id().0),
                    key: point.get_v().to_vec(),
                    links,
                });
            }
        }
        GraphParts {
            dim: nodes.first().map_or(0, |n: &NodeParts| n.key.len()),
            nodes,
            max_connections: self.params.max_connections as u32,
            ef_construction: self.params.ef_construction as u32,
        }
    }

    /// The search form of the graph, saved beside the gallery as
    /// `hnsw.flat` and served from its mapping; held in memory only if the
    /// save fails (the next open then rebuilds).
    pub(crate) fn flatten(
        &self,
        dir: &Path,
        snap: &Snapshot,
        origin: IndexOrigin,
    ) -> Result<GraphIndex, GalleryError> {
        let flat = flatten(self.parts(), self.rows, rows_digest(snap, self.rows))
            .map_err(|e| GalleryError::io(dir, std::io::Error::other(e.to_string())))?;
        let mapped = flat
            .save(dir)
            .ok()
            .and_then(|()| GraphIndex::load(dir, snap).ok());
        Ok(match mapped {
            Some(index) => GraphIndex { origin, ..index },
            None => GraphIndex::from_flat(flat, snap, origin),
        })
    }

    /// Writes the graph beside the gallery (temporary files, renamed into
    /// place, the metadata last), so a later extension starts from it.
    pub(crate) fn save(&self, dir: &Path, snap: &Snapshot) -> Result<(), GalleryError> {
        let tmp = dir.join(TMP_DIR);
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(|e| GalleryError::io(&tmp, e))?;
        let written = self
            .graph
            .file_dump(&tmp, BASENAME)
            .map_err(|e| GalleryError::io(&tmp, std::io::Error::other(e.to_string())))?;
        if written != BASENAME {
            return Err(GalleryError::io(
                &tmp,
                std::io::Error::other(format!("index written as {written}")),
            ));
        }
        let meta_path = dir.join(META_FILE);
        match fs::remove_file(&meta_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(GalleryError::io(&meta_path, e)),
        }
        let mut meta = IndexMeta::zeroed();
        meta.magic = META_MAGIC;
        meta.version = META_VERSION;
        meta.rows = self.rows;
        meta.digest = rows_digest(snap, self.rows);
        meta.points = self.points as u64;
        meta.max_connections = self.params.max_connections as u32;
        meta.ef_construction = self.params.ef_construction as u32;
        for (name, len, crc) in [
            (GRAPH_FILE, &mut meta.graph_len, &mut meta.graph_crc),
            (DATA_FILE, &mut meta.data_len, &mut meta.data_crc),
        ] {
            let from = tmp.join(name);
            let (l, c) = file_crc(&from)?;
            *len = l;
            *crc = c;
            let to = dir.join(name);
            fs::rename(&from, &to).map_err(|e| GalleryError::io(&to, e))?;
        }
        meta.crc = meta.computed_crc();
        let meta_tmp = tmp.join(META_FILE);
        write_synced(&meta_tmp, bytemuck::bytes_of(&meta))?;
        fs::rename(&meta_tmp, &meta_path).map_err(|e| GalleryError::io(&meta_path, e))?;
        let _ = fs::remove_dir_all(&tmp);
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| GalleryError::io(dir, e))
    }

    /// Loads the graph saved beside the gallery if it is intact and matches
    /// `snap`; the reason it was refused otherwise. Never panics on a
    /// damaged file.
    pub(crate) fn load(dir: &Path, snap: &Snapshot, params: AnnParams) -> Result<Builder, String> {
        let meta_path = dir.join(META_FILE);
        let raw = fs::read(&meta_path).map_err(|e| format!("metadata: {e}"))?;
        if raw.len() != std::mem::size_of::<IndexMeta>() {
            return Err("metadata has the wrong size".into());
        }
        let meta: IndexMeta = bytemuck::pod_read_unaligned(&raw);
        if meta.magic != META_MAGIC || meta.crc != meta.computed_crc() {
            return Err("metadata is damaged".into());
        }
        if meta.version != META_VERSION {
            return Err(format!("metadata version {}", meta.version));
        }
        if meta.rows > snap.count {
            return Err(format!(
                "index covers {} rows, the gallery has {}",
                meta.rows, snap.count
            ));
        }
        if meta.digest != rows_digest(snap, meta.rows) {
            return Err("index was built from other records".into());
        }
        for (name, len, crc) in [
            (GRAPH_FILE, meta.graph_len, meta.graph_crc),
            (DATA_FILE, meta.data_len, meta.data_crc),
        ] {
            let (l, c) = file_crc(&dir.join(name)).map_err(|e| e.to_string())?;
            if (l, c) != (len, crc) {
                return Err(format!("{name} fails its checksum"));
            }
        }
        let dir_owned: PathBuf = dir.to_path_buf();
        let loaded = std::panic::catch_unwind(move || {
            let io = HnswIo::new(&dir_owned, BASENAME);
            io.load_hnsw_with_dist::<i8, KeyDistance>(KeyDistance)
                .map(|graph| {
                    // SAFETY: `HnswIo::load_hnsw_with_dist` ties the graph's
                    // lifetime to the loader only because a memory-mapped
                    // reload would borrow the loader's map. `HnswIo::new` uses
                    // the default options (no mmap), so every point owns its
                    // data (`Point::new` with a `Vec`) and the graph borrows
                    // nothing from `io`, which is dropped at the end of this
                    // closure. The two types differ only in that lifetime.
                    // The tests `a_damaged_flat_graph_is_flattened_again` and
                    // `the_tail_is_folded_into_the_graph` extend, flatten and
                    // search a reloaded graph after its loader is gone.
                    unsafe { std::mem::transmute::<Hnsw<'_, i8, KeyDistance>, Graph>(graph) }
                })
                .map_err(|e| e.to_string())
        })
        .map_err(|_| "the index files could not be parsed".to_string())??;
        let points = loaded.get_nb_point();
        if points as u64 != meta.points {
            return Err(format!(
                "index holds {points} points, expected {}",
                meta.points
            ));
        }
        Ok(Builder {
            graph: loaded,
            rows: meta.rows,
            points,
            params: AnnParams {
                max_connections: meta.max_connections as usize,
                ef_construction: meta.ef_construction as usize,
                ..params
            }
            .checked(),
        })
    }
}

/// A graph as a node list: what [`flatten`] flattens.
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

pub(crate) fn flatten(
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
    let entry = nodes
        .iter()
        .position(|n| n.level == levels)
        .map_or(0, |p| p as u32);
    let tops: Vec<u32> = (0..nodes.len() as u32)
        .filter(|&p| nodes[p as usize].level == levels)
        .collect();
    let orphans = unreached(base.len(), &tops, |p, out| {
        out.extend(&base[p as usize]);
    });
    let rows_of_points = nodes.iter().map(|n| n.row as u32).collect();
    let lists = FlatLists {
        dim,
        rows: rows_of_points,
        keys: parts.nodes.into_iter().map(|n| n.key).collect(),
        base,
        level_start,
        upper_points,
        upper_links: upper_lists,
        orphans,
        entry,
        max_connections: parts.max_connections,
        ef_construction: parts.ef_construction,
    };
    Ok(FlatGraph::from_lists(lists, rows, digest))
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
                    let dot = kernels::dot_i8(key, &nodes[p as usize].key);
                    (links_to[p as usize], Reverse(dot))
                });
                back.truncate(REVERSE_LINKS);
            }
            list.extend(back);
        });
    base
}

/// Points of a graph of `n` not reachable from `starts` over the
/// base-layer links that `links(p, out)` pushes onto `out`.
pub(super) fn unreached(n: usize, starts: &[u32], links: impl Fn(u32, &mut Vec<u32>)) -> Vec<u32> {
    let mut seen = vec![false; n];
    let mut stack: Vec<u32> = starts.to_vec();
    while let Some(p) = stack.pop() {
        if std::mem::replace(&mut seen[p as usize], true) {
            continue;
        }
        links(p, &mut stack);
    }
    (0..n as u32).filter(|&p| !seen[p as usize]).collect()
}

/// The metadata file of a saved index.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
struct IndexMeta {
    magic: [u8; 8],
    version: u32,
    max_connections: u32,
    rows: u64,
    points: u64,
    graph_len: u64,
    data_len: u64,
    digest: u32,
    graph_crc: u32,
    data_crc: u32,
    ef_construction: u32,
    reserved: [u8; 12],
    crc: u32,
}

const _: () = assert!(std::mem::size_of::<IndexMeta>() == 80);

impl IndexMeta {
    fn computed_crc(&self) -> u32 {
        crc32fast::hash(&bytemuck::bytes_of(self)[..76])
    }
}

fn file_crc(path: &Path) -> Result<(u64, u32), GalleryError> {
    let mut f = fs::File::open(path).map_err(|e| GalleryError::io(path, e))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| GalleryError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, h.finalize()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), GalleryError> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(|e| GalleryError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| GalleryError::io(path, e))
}

/// Removes the builder's files from `dir` (the metadata first, so that a
/// crash in between leaves files no load uses), if there are any.
pub(crate) fn remove_builder_files(dir: &Path) -> Result<(), GalleryError> {
    for name in [META_FILE, GRAPH_FILE, DATA_FILE] {
        match fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(GalleryError::io(dir.join(name), e)),
        }
    }
    Ok(())
}

/// Overwrites with zeros the keys of `rows` in the builder's data file
/// (`hnsw_rs` writes each point there as its magic number, its row, the
/// key's length and the key), syncs it, and records the file's new length and
/// CRC in the metadata, so the builder's files stay usable. The file is read
/// whole. A data file that cannot be parsed is overwritten with zeros and the
/// metadata removed (the next extension then rebuilds). A crash between the
/// two writes leaves a data file that fails its metadata's checksum: the
/// next extension rebuilds.
pub(crate) fn erase_in_builder_files(dir: &Path, rows: &[u64]) -> Result<(), GalleryError> {
    if rows.is_empty() {
        return Ok(());
    }
    let path = dir.join(DATA_FILE);
    let file = match fs::File::options().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(GalleryError::io(&path, e)),
    };
    let io = |e| GalleryError::io(&path, e);
    let len = file.metadata().map_err(io)?.len();
    let wanted: HashSet<u64> = rows.iter().copied().collect();
    let mut head = [0u8; 12];
    let dim = match file.read_exact_at(&mut head, 0) {
        Ok(()) if u32::from_ne_bytes(head[..4].try_into().expect("4")) == DATA_MAGIC => {
            u64::from_ne_bytes(head[4..].try_into().expect("8"))
        }
        _ => return zero_builder_files(dir, &file, len),
    };
    let record = 20 + dim;
    if dim == 0 || dim > 1 << 20 || (len - 12) % record != 0 {
        return zero_builder_files(dir, &file, len);
    }
    let per_read = (4 << 20) / record;
    let mut buf = vec![0u8; (per_read * record) as usize];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    let mut changed = false;
    let mut at = 12u64;
    while at < len {
        let n = (per_read * record).min(len - at) as usize;
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, at).map_err(io)?;
        let mut dirty = false;
        for point in chunk.chunks_exact_mut(record as usize) {
            let magic = u32::from_ne_bytes(point[..4].try_into().expect("4"));
            let row = u64::from_ne_bytes(point[4..12].try_into().expect("8"));
            let key_len = u64::from_ne_bytes(point[12..20].try_into().expect("8"));
            if magic != DATA_MAGIC || key_len != dim {
                return zero_builder_files(dir, &file, len);
            }
            let key = &mut point[20..];
            if wanted.contains(&row) && key.iter().any(|&b| b != 0) {
                key.fill(0);
                dirty = true;
            }
        }
        if dirty {
            file.write_all_at(chunk, at).map_err(io)?;
            changed = true;
        }
        crc.update(chunk);
        at += n as u64;
    }
    if !changed {
        return Ok(());
    }
    file.sync_all().map_err(io)?;
    let meta_path = dir.join(META_FILE);
    let Ok(raw) = fs::read(&meta_path) else {
        return Ok(());
    };
    if raw.len() != std::mem::size_of::<IndexMeta>() {
        return Ok(());
    }
    let mut meta: IndexMeta = bytemuck::pod_read_unaligned(&raw);
    if meta.magic != META_MAGIC || meta.crc != meta.computed_crc() {
        return Ok(());
    }
    meta.data_len = len;
    meta.data_crc = crc.finalize();
    meta.crc = meta.computed_crc();
    let tmp = dir.join(META_TMP);
    write_synced(&tmp, bytemuck::bytes_of(&meta))?;
    fs::rename(&tmp, &meta_path).map_err(|e| GalleryError::io(&meta_path, e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| GalleryError::io(dir, e))
}

/// Overwrites a data file that cannot be parsed with zeros and removes the
/// builder's metadata, so that nothing reads the builder's files again.
fn zero_builder_files(dir: &Path, file: &fs::File, len: u64) -> Result<(), GalleryError> {
    let path = dir.join(DATA_FILE);
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = (zeros.len() as u64).min(len - at) as usize;
        file.write_all_at(&zeros[..n], at)
            .map_err(|e| GalleryError::io(&path, e))?;
        at += n as u64;
    }
    file.sync_all().map_err(|e| GalleryError::io(&path, e))?;
    match fs::remove_file(dir.join(META_FILE)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(GalleryError::io(dir.join(META_FILE), e)),
    }
}
