//! Creating and opening a row store: the headers and commit slots checked,
//! an erasure a crash interrupted finished (or one that never committed
//! forgotten), the state words counted and the feature index built. The
//! header and slot readers are shared with the lock-free inspection
//! (`inspect.rs`).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use rayon::prelude::*;

use super::erasure::{clear_erasure, committed_erasure, erase_rows, erasure_file, sync_dir};
use super::features::FeatureIndex;
use super::format::{
    self, readable_version, HeaderSlot, VectorFileHeader, FORMAT_VERSION, HEADER_BYTES,
    RECORDS_FILE, RECORD_BYTES, STATE_DEAD, STATE_LIVE, VECTORS_FILE, VECTORS_MAGIC,
};
use super::mapping::Mapping;
use super::rows::{io, slot_offset, RowStore, Writer};
use super::snapshot::Snapshot;
use crate::error::GalleryError;
use crate::template::Layout;

/// Rows a new gallery has room for before it first grows.
const INITIAL_CAPACITY: u64 = 1024;

/// Reads and checks the header of `vectors.bin`: its layout and version.
pub(super) fn read_vector_header(file: &File, path: &Path) -> Result<(Layout, u32), GalleryError> {
    let len = file.metadata().map_err(io(path))?.len();
    if len < HEADER_BYTES as u64 {
        return Err(GalleryError::corrupt(path, "truncated header"));
    }
    let mut raw = [0u8; 64];
    file.read_exact_at(&mut raw, 0).map_err(io(path))?;
    let header: VectorFileHeader = bytemuck::pod_read_unaligned(&raw);
    if header.magic != VECTORS_MAGIC {
        return Err(GalleryError::corrupt(path, "bad magic number"));
    }
    if header.crc != header.computed_crc() {
        return Err(GalleryError::corrupt(path, "header checksum mismatch"));
    }
    if !readable_version(header.version) {
        return Err(GalleryError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: header.version,
        });
    }
    let layout = Layout::new(header.blocks as usize, header.dim as usize)
        .map_err(|_| GalleryError::corrupt(path, "invalid layout in header"))?;
    if header.row_stride as usize != format::row_stride(layout) {
        return Err(GalleryError::corrupt(
            path,
            "row stride disagrees with layout",
        ));
    }
    Ok((layout, header.version))
}

/// The current commit slot of `records.bin` (the intact one with the
/// highest commit) and which of the two it is, checked against `layout`.
pub(super) fn read_current_slot(
    file: &File,
    path: &Path,
    layout: Layout,
) -> Result<(usize, HeaderSlot), GalleryError> {
    let len = file.metadata().map_err(io(path))?.len();
    if len < HEADER_BYTES as u64 {
        return Err(GalleryError::corrupt(path, "truncated header"));
    }
    let mut raw = [0u8; 64];
    let mut slots = Vec::with_capacity(2);
    for slot in 0..2 {
        file.read_exact_at(&mut raw, slot_offset(slot) as u64)
            .map_err(io(path))?;
        let s: HeaderSlot = bytemuck::pod_read_unaligned(&raw);
        if s.is_intact() {
            slots.push((slot, s));
        }
    }
    let Some(&(current, slot)) = slots.iter().max_by_key(|(_, s)| s.seq) else {
        return Err(GalleryError::corrupt(path, "no intact header slot"));
    };
    if !readable_version(slot.version) {
        return Err(GalleryError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: slot.version,
        });
    }
    if (slot.blocks as usize, slot.dim as usize) != (layout.blocks, layout.dim) {
        return Err(GalleryError::corrupt(
            path,
            "layout differs from vectors.bin",
        ));
    }
    Ok((current, slot))
}

impl RowStore {
    /// Creates an empty gallery in `dir` (created if missing).
    ///
    /// `records.bin` is written under a temporary name and renamed into place
    /// last, so a crash during creation leaves no half-made gallery behind
    /// (a later `create` simply starts again).
    pub(crate) fn create(dir: &Path, layout: Layout) -> Result<RowStore, GalleryError> {
        let layout = Layout::new(layout.blocks, layout.dim)
            .map_err(|_| GalleryError::InvalidQuery(format!("invalid layout {layout:?}")))?;
        fs::create_dir_all(dir).map_err(io(dir))?;
        let records_path = dir.join(RECORDS_FILE);
        if records_path.exists() {
            return Err(GalleryError::AlreadyExists {
                path: dir.to_path_buf(),
            });
        }
        let stride = format::row_stride(layout) as u64;

        let vectors_path = dir.join(VECTORS_FILE);
        let vectors = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&vectors_path)
            .map_err(io(&vectors_path))?;
        vectors
            .set_len(HEADER_BYTES as u64 + INITIAL_CAPACITY * stride)
            .map_err(io(&vectors_path))?;
        vectors
            .write_all_at(bytemuck::bytes_of(&VectorFileHeader::new(layout)), 0)
            .map_err(io(&vectors_path))?;
        vectors.sync_all().map_err(io(&vectors_path))?;
        drop(erasure_file(dir)?);

        let tmp_path = dir.join(format!("{RECORDS_FILE}.tmp"));
        let records = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(io(&tmp_path))?;
        records
            .set_len(HEADER_BYTES as u64 + INITIAL_CAPACITY * RECORD_BYTES as u64)
            .map_err(io(&tmp_path))?;
        records
            .write_all_at(bytemuck::bytes_of(&HeaderSlot::new(layout, 1, 0, 0)), 0)
            .map_err(io(&tmp_path))?;
        records.sync_all().map_err(io(&tmp_path))?;
        drop(records);
        fs::rename(&tmp_path, &records_path).map_err(io(&records_path))?;
        sync_dir(dir)?;
        RowStore::open(dir)
    }

    /// Opens an existing store: maps its files, checks both headers, finishes
    /// an erasure whose commit happened before a crash (or forgets one whose
    /// commit did not), reads each row's 4-byte state word and builds the
    /// feature index from the live records; vectors are not read.
    ///
    /// A damaged row does not fail the open: it is never returned by a search,
    /// reading it is a [`GalleryError::Corrupt`] error, and
    /// [`RowStore::scrub`] lists it (rows with an invalid state word are known
    /// at once, from [`RowStore::damaged_rows`]).
    pub(crate) fn open(dir: &Path) -> Result<RowStore, GalleryError> {
        let locked = RowStore::lock(dir)?;
        locked.open()
    }

    /// Takes the lock of the store in `dir`, before anything of it is read:
    /// [`LockedStore::open`] then opens it. What else reads the directory's
    /// files may start once the lock is held.
    pub(crate) fn lock(dir: &Path) -> Result<LockedStore, GalleryError> {
        let records_path = dir.join(RECORDS_FILE);
        let records_file = match File::options().read(true).write(true).open(&records_path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(GalleryError::NotFound {
                    path: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(GalleryError::io(&records_path, e)),
        };
        match records_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(GalleryError::Locked {
                    path: dir.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(GalleryError::io(&records_path, e)),
        }
        Ok(LockedStore {
            dir: dir.to_path_buf(),
            records_file,
        })
    }
}

/// A row store's directory under its lock, not opened yet
/// ([`RowStore::lock`]).
pub(crate) struct LockedStore {
    dir: PathBuf,
    /// The records file, whose lock is the directory's.
    records_file: File,
}

impl LockedStore {
    /// Opens the store (see [`RowStore::open`]). The store holds a duplicate
    /// of the records file (the same open file, so the same lock): the lock
    /// lasts while either this or the store is alive, and a caller that
    /// keeps this until it has finished with the directory's files keeps it
    /// through an open that fails.
    pub(crate) fn open(&self) -> Result<RowStore, GalleryError> {
        let dir = self.dir.as_path();
        let records_path = dir.join(RECORDS_FILE);
        let records_file = self.records_file.try_clone().map_err(io(&records_path))?;
        let vectors_path = dir.join(VECTORS_FILE);
        let vectors_file = match File::options().read(true).write(true).open(&vectors_path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(GalleryError::corrupt(&vectors_path, "file is missing"))
            }
            Err(e) => return Err(GalleryError::io(&vectors_path, e)),
        };
        let (layout, vectors_version) = read_vector_header(&vectors_file, &vectors_path)?;
        let stride = format::row_stride(layout);
        let (current, slot) = read_current_slot(&records_file, &records_path, layout)?;

        let vectors_len = vectors_file.metadata().map_err(io(&vectors_path))?.len();
        let records_len = records_file.metadata().map_err(io(&records_path))?.len();
        let vector_rows = (vectors_len - HEADER_BYTES as u64) / stride as u64;
        let record_rows = (records_len - HEADER_BYTES as u64) / RECORD_BYTES as u64;
        if slot.count > vector_rows {
            return Err(GalleryError::corrupt(
                &vectors_path,
                format!(
                    "truncated: {} rows committed, room for {vector_rows}",
                    slot.count
                ),
            ));
        }
        if slot.count > record_rows {
            return Err(GalleryError::corrupt(
                &records_path,
                format!(
                    "truncated: {} rows committed, room for {record_rows}",
                    slot.count
                ),
            ));
        }

        let vectors = Arc::new(Mapping::with_point_reads(&vectors_file, &vectors_path)?);
        let records = Arc::new(Mapping::new(&records_file, &records_path)?);
        let erasing = erasure_file(dir)?;
        // An erasure whose commit happened is finished before anything reads
        // the rows; one whose commit did not never happened.
        let interrupted = committed_erasure(dir, slot.seq)?.unwrap_or_default();
        let interrupted: Vec<u64> = interrupted
            .into_iter()
            .filter(|&row| row < slot.count)
            .collect();
        if interrupted.is_empty() {
            clear_erasure(dir, &erasing)?;
        } else {
            erase_rows(&records, &vectors, stride, &interrupted)?;
        }

        let mut snapshot = Snapshot {
            vectors: vectors.clone(),
            records: records.clone(),
            count: slot.count,
            applied: slot.applied,
            layout,
            stride,
            damaged: Arc::default(),
        };
        let (live, damaged) = check_records(&snapshot);
        let damaged = Arc::new(damaged);
        snapshot.damaged = damaged.clone();
        let features = feature_index(&snapshot, live);
        let writer = Writer {
            vectors_file,
            records_file,
            erasing,
            vectors,
            records,
            capacity: vector_rows.min(record_rows),
            count: slot.count,
            seq: slot.seq,
            applied: slot.applied,
            next_slot: 1 - current,
            poisoned: false,
            upgrade: vectors_version != FORMAT_VERSION,
        };
        Ok(RowStore {
            dir: dir.to_path_buf(),
            layout,
            stride,
            snapshot: ArcSwap::new(Arc::new(snapshot)),
            writer: Mutex::new(writer),
            live: AtomicUsize::new(live),
            damaged,
            features: RwLock::new(features),
            interrupted: Mutex::new(interrupted),
        })
    }
}

/// Counts live rows and finds rows whose state word is neither live nor dead,
/// reading only the state words (in parallel for large galleries). Record and
/// vector checksums are verified where a row is read (`get`, `compare`, search
/// candidates, `live_records`) and by [`RowStore::scrub`], so opening stays
/// proportional to a few bytes per row.
fn check_records(snap: &Snapshot) -> (usize, HashSet<u64>) {
    let check = |(mut live, mut damaged): (usize, Vec<u64>), row: u64| {
        match snap.state(row) {
            STATE_LIVE => live += 1,
            STATE_DEAD => {}
            _ => damaged.push(row),
        }
        (live, damaged)
    };
    let merge = |(a, mut da): (usize, Vec<u64>), (b, db): (usize, Vec<u64>)| {
        da.extend(db);
        (a + b, da)
    };
    let (live, damaged) = if snap.count < 262_144 {
        (0..snap.count).fold((0, Vec::new()), check)
    } else {
        const CHUNK: u64 = 65_536;
        (0..snap.count.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| (c * CHUNK..((c + 1) * CHUNK).min(snap.count)).fold((0, Vec::new()), check))
            .reduce(|| (0, Vec::new()), merge)
    };
    (live, damaged.into_iter().collect())
}

/// The feature index of the live, undamaged rows whose records are intact.
fn feature_index(snap: &Snapshot, live: usize) -> FeatureIndex {
    const CHUNK: u64 = 65_536;
    let chunks: Vec<Vec<(u128, u64)>> = (0..snap.count.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            (c * CHUNK..((c + 1) * CHUNK).min(snap.count))
                .filter(|&row| snap.is_live(row) && !snap.is_damaged(row))
                .filter_map(|row| {
                    snap.record(row)
                        .intact_ids(row)
                        .map(|ids| (ids.feature_id, row))
                })
                .collect()
        })
        .collect();
    let mut index = FeatureIndex::with_capacity(live);
    for (feature, row) in chunks.into_iter().flatten() {
        index.insert(feature, row);
    }
    index
}
