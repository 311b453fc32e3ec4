//! On-disk layout of a gallery: two files in one directory.
//!
//! `vectors.bin`: a 4 KiB header page (`VectorFileHeader`) followed by one
//! fixed-size row per template: the normalised f32 values, little-endian,
//! each row padded to a multiple of 64 bytes so every row starts on a cache line.
//!
//! `records.bin`: a 4 KiB header page holding two `HeaderSlot`s (at byte 0
//! and byte 512, in different disk sectors) followed by one 64-byte
//! `Record` per row. The slot with a valid checksum and the highest commit
//! number is current; it says how many rows are committed and the last
//! sequence of the template log applied to them. Rows at or past that count
//! are ignored, whatever they hold.
//!
//! `erasing.bin` (absent, or empty, when no erasure is under way): the rows an
//! erasure deletes and the commit that deletes them, written and synced
//! before that commit, so that an erasure a crash interrupts after its commit
//! is finished at the next open (`ErasureIntent`).
//!
//! Version 2 added the applied log sequence to the commit slot (in bytes that
//! were reserved and zero in version 1). A version 1 gallery opens with
//! applied sequence 0 and is written as version 2 from its next commit on.
//!
//! All integers are little-endian (the crate only builds for little-endian targets).
//!
//! Public for tools and tests that read or damage gallery files: the file
//! names, the header size, where the second commit slot sits, the size of a
//! record and of a vector row, and the format version. The header and record
//! types themselves stay inside the engine.

use bytemuck::{Pod, Zeroable};

use crate::ids::{PalmSide, RecordIds};
use crate::template::Layout;

#[cfg(not(target_endian = "little"))]
compile_error!("the gallery format is little-endian; big-endian targets are not supported");

/// File name of the vector rows.
pub const VECTORS_FILE: &str = "vectors.bin";
/// File name of the records (ids, state, checksums) and the commit header.
pub const RECORDS_FILE: &str = "records.bin";
/// Size of the header page at the start of both files.
pub const HEADER_BYTES: usize = 4096;
/// Offset of the second header slot in `records.bin`.
pub const SLOT_B_OFFSET: usize = 512;
/// Size of one record.
pub const RECORD_BYTES: usize = std::mem::size_of::<Record>();
/// File name of the pending erasure, if any (see the module docs).
pub const ERASURE_FILE: &str = "erasing.bin";
/// Current format version.
pub const FORMAT_VERSION: u32 = 2;
/// Oldest format version a gallery may have and still be opened (and then
/// upgraded at its next commit).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Magic number of `erasing.bin`.
pub(crate) const ERASURE_MAGIC: [u8; 8] = *b"PLMERAS\0";
/// Magic number of `vectors.bin`.
pub(crate) const VECTORS_MAGIC: [u8; 8] = *b"PLMVECS\0";
/// Magic number of a header slot in `records.bin`.
pub(crate) const RECORDS_MAGIC: [u8; 8] = *b"PLMRECS\0";
/// State word of a live row ("LIVE").
pub(crate) const STATE_LIVE: u32 = u32::from_le_bytes(*b"LIVE");
/// State word of a deleted row ("DEAD").
pub(crate) const STATE_DEAD: u32 = u32::from_le_bytes(*b"DEAD");

/// Bytes per vector row for `layout`: its values rounded up to 64 bytes.
pub fn row_stride(layout: Layout) -> usize {
    layout.byte_len().div_ceil(64) * 64
}

/// Header of `vectors.bin`; written once at creation.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct VectorFileHeader {
    /// [`VECTORS_MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Blocks per template.
    pub blocks: u32,
    /// Values per block.
    pub dim: u32,
    /// Bytes per row.
    pub row_stride: u32,
    /// Reserved, zero.
    pub reserved: [u8; 36],
    /// CRC-32 of the bytes before it.
    pub crc: u32,
}

impl VectorFileHeader {
    /// A header for `layout`, with its checksum.
    pub fn new(layout: Layout) -> Self {
        let mut h = VectorFileHeader {
            magic: VECTORS_MAGIC,
            version: FORMAT_VERSION,
            blocks: layout.blocks as u32,
            dim: layout.dim as u32,
            row_stride: row_stride(layout) as u32,
            reserved: [0; 36],
            crc: 0,
        };
        h.crc = h.computed_crc();
        h
    }

    /// The checksum the header should carry.
    pub fn computed_crc(&self) -> u32 {
        crc32fast::hash(&bytemuck::bytes_of(self)[..60])
    }
}

/// One of the two commit slots of `records.bin`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct HeaderSlot {
    /// [`RECORDS_MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Blocks per template (must equal `vectors.bin`'s).
    pub blocks: u32,
    /// Values per block.
    pub dim: u32,
    /// Reserved, zero.
    pub pad: u32,
    /// Incremented by every commit; the higher valid slot wins.
    pub seq: u64,
    /// Committed rows.
    pub count: u64,
    /// The last sequence of the template log applied by the rows this slot
    /// commits (zero in version 1, where these bytes were reserved).
    pub applied: u64,
    /// Reserved, zero.
    pub reserved: [u8; 8],
    /// CRC-32 of the bytes before it.
    pub crc: u32,
    /// Reserved, zero.
    pub pad2: u32,
}

impl HeaderSlot {
    /// A slot committing `count` rows as commit `seq`, with `applied` the
    /// last log sequence they apply, and its checksum.
    pub fn new(layout: Layout, seq: u64, count: u64, applied: u64) -> Self {
        let mut s = HeaderSlot {
            magic: RECORDS_MAGIC,
            version: FORMAT_VERSION,
            blocks: layout.blocks as u32,
            dim: layout.dim as u32,
            pad: 0,
            seq,
            count,
            applied,
            reserved: [0; 8],
            crc: 0,
            pad2: 0,
        };
        s.crc = s.computed_crc();
        s
    }

    /// The checksum the slot should carry.
    pub fn computed_crc(&self) -> u32 {
        crc32fast::hash(&bytemuck::bytes_of(self)[..56])
    }

    /// Whether the magic and checksum are right (the version is checked apart).
    pub fn is_intact(&self) -> bool {
        self.magic == RECORDS_MAGIC && self.crc == self.computed_crc()
    }
}

/// The record of one row: its ids, state and checksums.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct Record {
    /// Feature id (UUID bits).
    pub feature_id: [u8; 16],
    /// User key (UUID bits).
    pub user_key: [u8; 16],
    /// The row's own index: catches a record written to the wrong place.
    pub row: u64,
    /// [`STATE_LIVE`] or [`STATE_DEAD`]; the only field that changes after
    /// commit, so it is outside the record checksum.
    pub state: u32,
    /// 1 = left, 2 = right.
    pub palm: u32,
    /// CRC-32 of the row's vector bytes as written.
    pub vector_crc: u32,
    /// CRC-32 of the fields before it except `state`.
    pub record_crc: u32,
    /// Reserved, zero.
    pub reserved: [u8; 8],
}

/// Whether a file of format `version` can be opened.
pub(crate) fn readable_version(version: u32) -> bool {
    (OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version)
}

/// The head of `erasing.bin`, followed by `count` little-endian `u64` rows.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct ErasureIntent {
    /// [`ERASURE_MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Reserved, zero.
    pub pad: u32,
    /// The commit (`HeaderSlot::seq`) that deletes the rows: the erasure
    /// happened if and only if the current slot's commit is at least this.
    pub commit: u64,
    /// Rows listed after the head.
    pub count: u64,
    /// CRC-32 of the head before this field and of the rows.
    pub crc: u32,
    /// Reserved, zero.
    pub pad2: u32,
}

const _: () = assert!(std::mem::size_of::<ErasureIntent>() == 40);

impl ErasureIntent {
    /// The bytes of an intent to delete `rows` in commit `commit`.
    pub fn encode(commit: u64, rows: &[u64]) -> Vec<u8> {
        let mut head = ErasureIntent {
            magic: ERASURE_MAGIC,
            version: FORMAT_VERSION,
            pad: 0,
            commit,
            count: rows.len() as u64,
            crc: 0,
            pad2: 0,
        };
        let body: &[u8] = bytemuck::cast_slice(rows);
        head.crc = Self::crc_of(&head, body);
        let mut out = bytemuck::bytes_of(&head).to_vec();
        out.extend_from_slice(body);
        out
    }

    fn crc_of(head: &ErasureIntent, body: &[u8]) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(&bytemuck::bytes_of(head)[..32]);
        h.update(body);
        h.finalize()
    }

    /// The commit and rows of an intact intent; `None` for an empty, torn or
    /// foreign file (an intent whose commit never happened, or none at all).
    pub fn decode(bytes: &[u8]) -> Option<(u64, Vec<u64>)> {
        let head_len = std::mem::size_of::<ErasureIntent>();
        let head: ErasureIntent = bytemuck::pod_read_unaligned(bytes.get(..head_len)?);
        let len = usize::try_from(head.count).ok()?.checked_mul(8)?;
        let body = bytes.get(head_len..head_len.checked_add(len)?)?;
        if head.magic != ERASURE_MAGIC || head.crc != Self::crc_of(&head, body) {
            return None;
        }
        let rows = body
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .collect();
        Some((head.commit, rows))
    }
}

/// Offset of `Record::state` within a record.
pub(crate) const STATE_OFFSET: usize = 40;
const _: () = assert!(RECORD_BYTES == 64);
const _: () = assert!(std::mem::size_of::<HeaderSlot>() == 64);
const _: () = assert!(std::mem::size_of::<VectorFileHeader>() == 64);
const _: () = assert!(std::mem::offset_of!(Record, state) == STATE_OFFSET);

impl Record {
    /// A live record for `row`, checksummed.
    pub fn new(row: u64, ids: RecordIds, vector_crc: u32) -> Self {
        let mut r = Record {
            feature_id: ids.feature_id.to_le_bytes(),
            user_key: ids.user_key.to_le_bytes(),
            row,
            state: STATE_LIVE,
            palm: palm_code(ids.palm),
            vector_crc,
            record_crc: 0,
            reserved: [0; 8],
        };
        r.record_crc = r.computed_crc();
        r
    }

    /// The checksum the record should carry.
    pub fn computed_crc(&self) -> u32 {
        let bytes = bytemuck::bytes_of(self);
        let mut h = crc32fast::Hasher::new();
        h.update(&bytes[..STATE_OFFSET]);
        h.update(&bytes[STATE_OFFSET + 4..52]);
        h.finalize()
    }

    /// The ids, if the record's checksum holds, it is the record of `row`,
    /// and its palm code is valid.
    pub fn intact_ids(&self, row: u64) -> Option<RecordIds> {
        if self.record_crc != self.computed_crc() || self.row != row {
            return None;
        }
        self.ids()
    }

    /// The ids, if the palm code is valid.
    pub fn ids(&self) -> Option<RecordIds> {
        Some(RecordIds {
            feature_id: u128::from_le_bytes(self.feature_id),
            user_key: u128::from_le_bytes(self.user_key),
            palm: palm_from_code(self.palm)?,
        })
    }
}

/// On-disk code of a palm side.
pub(crate) fn palm_code(palm: PalmSide) -> u32 {
    match palm {
        PalmSide::Left => 1,
        PalmSide::Right => 2,
    }
}

/// Palm side of an on-disk code.
pub(crate) fn palm_from_code(code: u32) -> Option<PalmSide> {
    match code {
        1 => Some(PalmSide::Left),
        2 => Some(PalmSide::Right),
        _ => None,
    }
}
