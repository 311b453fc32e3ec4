//! Reading a gallery's last commit without opening it: no lock is taken, so
//! another process (the running service) may hold the gallery meanwhile.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::erasure::committed_erasure;
use super::format::{Record, RECORDS_FILE, RECORD_BYTES, STATE_LIVE, STATE_OFFSET, VECTORS_FILE};
use super::open::{read_current_slot, read_vector_header};
use super::rows::io;
use super::snapshot::Snapshot;
use crate::error::GalleryError;
use crate::ids::{RecordIds, RowId};
use crate::template::Layout;

/// What [`Gallery::inspect`](crate::Gallery::inspect) reads: a gallery as of
/// its last commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GalleryInspection {
    /// The last sequence of the template log applied (0 if none ever was).
    pub applied_sequence: u64,
    /// The live rows with their ids, in row order (rows whose record fails
    /// its checksum are left out).
    pub live: Vec<(RowId, RecordIds)>,
    /// The layout of the gallery's templates.
    pub layout: Layout,
}

/// Records read per `pread`.
const READ_ROWS: u64 = 16_384;

/// Reads the gallery in `dir` as of its last commit, taking no lock; reads it
/// once more if a commit lands meanwhile, and fails with
/// [`GalleryError::Busy`] if one lands during that read too.
pub(crate) fn inspect(dir: &Path) -> Result<GalleryInspection, GalleryError> {
    for _ in 0..2 {
        if let Some(seen) = read_once(dir)? {
            return Ok(seen);
        }
    }
    Err(GalleryError::Busy {
        path: dir.to_path_buf(),
    })
}

/// One consistent read, or `None` if a commit landed while reading.
///
/// The rows of a commit change only in their state words, and only by an
/// erasure, which records its rows in `erasing.bin` before its commit and
/// tombstones them after it: so the rows of a committed erasure still live
/// in the records read are counted as deleted, and an erasure committed
/// after the first look at the slots shows as a changed slot at the second.
fn read_once(dir: &Path) -> Result<Option<GalleryInspection>, GalleryError> {
    let records_path = dir.join(RECORDS_FILE);
    let records = match File::open(&records_path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(GalleryError::NotFound {
                path: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(GalleryError::io(&records_path, e)),
    };
    let vectors_path = dir.join(VECTORS_FILE);
    let vectors = File::open(&vectors_path).map_err(io(&vectors_path))?;
    let (layout, _) = read_vector_header(&vectors, &vectors_path)?;
    let (_, slot) = read_current_slot(&records, &records_path, layout)?;
    let erasing = committed_erasure(dir, slot.seq)?.unwrap_or_default();
    let mut live = Vec::new();
    let mut buf = vec![0u8; READ_ROWS as usize * RECORD_BYTES];
    for start in (0..slot.count).step_by(READ_ROWS as usize) {
        let n = READ_ROWS.min(slot.count - start) as usize;
        let bytes = &mut buf[..n * RECORD_BYTES];
        records
            .read_exact_at(bytes, Snapshot::record_offset(start) as u64)
            .map_err(io(&records_path))?;
        for (i, raw) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            let row = start + i as u64;
            let record: Record = bytemuck::pod_read_unaligned(raw);
            let state = u32::from_le_bytes(
                raw[STATE_OFFSET..STATE_OFFSET + 4]
                    .try_into()
                    .expect("4 bytes"),
            );
            if state != STATE_LIVE || erasing.binary_search(&row).is_ok() {
                continue;
            }
            if let Some(ids) = record.intact_ids(row) {
                live.push((RowId(row), ids));
            }
        }
    }
    let (_, again) = read_current_slot(&records, &records_path, layout)?;
    if again.seq != slot.seq {
        return Ok(None);
    }
    Ok(Some(GalleryInspection {
        applied_sequence: slot.applied,
        live,
        layout,
    }))
}
