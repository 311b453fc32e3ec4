//! The erasure intent (`erasing.bin`) and the row store's part of an erasure:
//! the rows an interrupted erasure committed, the intent made durable and
//! cleared, the rows tombstoned and zeroed. Shared by opening (which finishes
//! an interrupted erasure), the writer and the lock-free inspection.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::format::{
    ErasureIntent, ERASURE_FILE, HEADER_BYTES, RECORD_BYTES, STATE_DEAD, STATE_OFFSET,
};
use super::mapping::Mapping;
use super::snapshot::Snapshot;
use crate::error::GalleryError;

/// The rows of the erasure recorded in `erasing.bin` if its commit happened
/// (it is at most `committed`): `Ok(None)` for no file, an empty or torn one,
/// or an erasure whose commit never happened.
pub(super) fn committed_erasure(
    dir: &Path,
    committed: u64,
) -> Result<Option<Vec<u64>>, GalleryError> {
    let path = dir.join(ERASURE_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(GalleryError::io(&path, e)),
    };
    Ok(ErasureIntent::decode(&bytes)
        .filter(|&(commit, _)| commit <= committed)
        .map(|(_, rows)| rows))
}

/// Empties `erasing.bin` (creating it if missing) and makes that durable.
pub(super) fn clear_erasure(dir: &Path, file: &File) -> Result<(), GalleryError> {
    let path = dir.join(ERASURE_FILE);
    file.set_len(0)
        .and_then(|()| file.sync_all())
        .map_err(|e| GalleryError::io(&path, e))
}

/// Opens `erasing.bin` for writing, creating it (and syncing the directory,
/// so that it still exists after a crash) if it is missing.
pub(super) fn erasure_file(dir: &Path) -> Result<File, GalleryError> {
    let path = dir.join(ERASURE_FILE);
    let existed = path.exists();
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| GalleryError::io(&path, e))?;
    if !existed {
        file.sync_all().map_err(|e| GalleryError::io(&path, e))?;
        sync_dir(dir)?;
    }
    Ok(file)
}

/// Syncs the directory `dir`, so that a file made or renamed in it is still there after a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), GalleryError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| GalleryError::io(dir, e))
}

/// Tombstones `rows` (state word `DEAD`) and overwrites their vectors with
/// zeros, each step flushed: the part of an erasure the row store does.
/// Idempotent, so an interrupted erasure is finished by running it again.
pub(super) fn erase_rows(
    records: &Mapping,
    vectors: &Mapping,
    stride: usize,
    rows: &[u64],
) -> Result<(), GalleryError> {
    let (Some(&first), Some(&last)) = (rows.iter().min(), rows.iter().max()) else {
        return Ok(());
    };
    for &row in rows {
        records
            .state_word(Snapshot::record_offset(row) + STATE_OFFSET)
            .store(STATE_DEAD, Ordering::Release);
    }
    let span = |start: usize, each: usize| (start, (last - first) as usize * each + each);
    let (at, len) = span(Snapshot::record_offset(first), RECORD_BYTES);
    records.flush(at, len)?;
    for &row in rows {
        vectors.erase(HEADER_BYTES + row as usize * stride, stride);
    }
    let (at, len) = span(HEADER_BYTES + first as usize * stride, stride);
    vectors.flush(at, len)
}
