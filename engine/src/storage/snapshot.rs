//! [`Snapshot`]: what a reader of the row store sees, the mappings and the
//! committed row count at one moment, and how it reads a row from them.
//!
//! A snapshot never changes: a writer that commits, grows or remaps the
//! files publishes a new one, and old mappings stay valid while any reader
//! holds them. Searches and accelerators receive snapshots; they never see
//! the store itself.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::format::{Record, HEADER_BYTES, RECORD_BYTES, STATE_LIVE, STATE_OFFSET};
use super::mapping::Mapping;
use crate::template::Layout;

/// What readers see: the mappings and the committed row count.
pub(crate) struct Snapshot {
    pub(super) vectors: Arc<Mapping>,
    pub(super) records: Arc<Mapping>,
    /// Rows committed: rows `0..count` may be read.
    pub(crate) count: u64,
    /// The last log sequence applied by the committed rows.
    pub(crate) applied: u64,
    /// The layout of every row.
    pub(crate) layout: Layout,
    pub(super) stride: usize,
    /// Rows whose state word was invalid when the store was opened.
    pub(super) damaged: Arc<HashSet<u64>>,
}

impl Snapshot {
    /// Where the vector of `row` starts in `vectors.bin`.
    pub(super) fn vector_offset(&self, row: u64) -> usize {
        HEADER_BYTES + row as usize * self.stride
    }

    /// Where the record of `row` starts in `records.bin`.
    pub(crate) fn record_offset(row: u64) -> usize {
        HEADER_BYTES + row as usize * RECORD_BYTES
    }

    /// The normalised values of `row` (committed rows only), for a read of
    /// one row here and there: a fault reads its own page and no more.
    pub(crate) fn vector(&self, row: u64) -> &[f32] {
        debug_assert!(row < self.count);
        self.vectors
            .point_f32s(self.vector_offset(row), self.layout.len())
    }

    /// The vector of `row`, for a pass over many rows in order: read through
    /// the view whose faults read ahead (see [`Mapping::with_point_reads`]).
    pub(crate) fn scanned_vector(&self, row: u64) -> &[f32] {
        debug_assert!(row < self.count);
        self.vectors
            .f32s(self.vector_offset(row), self.layout.len())
    }

    /// Asks the kernel to start reading the vector of `row` from disk, for a
    /// search about to score it among others (their reads then overlap).
    pub(crate) fn will_need_vector(&self, row: u64) {
        self.vectors
            .will_need(self.vector_offset(row), self.layout.len() * 4);
    }

    /// The state word of `row`, read atomically.
    pub(crate) fn state(&self, row: u64) -> u32 {
        self.records
            .state_word(Self::record_offset(row) + STATE_OFFSET)
            .load(Ordering::Acquire)
    }

    /// Starts loading the record of `row` (its state word, ids and palm), for a
    /// search about to ask whether it may return it. A record is one cache line
    /// (64 bytes at a 64-byte offset), so the bytes before the state word name it
    /// without a plain slice over the word writers store to.
    #[inline]
    pub(crate) fn prefetch_record(&self, row: u64) {
        crate::kernels::prefetch(self.records.bytes(Self::record_offset(row), STATE_OFFSET));
    }

    /// A copy of the record of `row`; the state word is read atomically.
    pub(crate) fn record(&self, row: u64) -> Record {
        let offset = Self::record_offset(row);
        let mut bytes = [0u8; RECORD_BYTES];
        bytes[..STATE_OFFSET].copy_from_slice(self.records.bytes(offset, STATE_OFFSET));
        bytes[STATE_OFFSET + 4..].copy_from_slice(
            self.records
                .bytes(offset + STATE_OFFSET + 4, RECORD_BYTES - STATE_OFFSET - 4),
        );
        let mut record: Record = bytemuck::pod_read_unaligned(&bytes);
        record.state = self.state(row);
        record
    }

    /// The palm code of `row`.
    pub(crate) fn palm_code(&self, row: u64) -> u32 {
        let b = self.records.bytes(Self::record_offset(row) + 44, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The user key of `row`.
    pub(crate) fn user_key(&self, row: u64) -> u128 {
        let b = self.records.bytes(Self::record_offset(row) + 16, 16);
        u128::from_le_bytes(b.try_into().expect("16 bytes"))
    }

    /// Whether the state word of `row` (a committed row) says live.
    #[inline]
    pub(crate) fn is_live(&self, row: u64) -> bool {
        self.state(row) == STATE_LIVE
    }

    /// Whether the state word of `row` (a committed row) says deleted.
    #[inline]
    pub(crate) fn is_dead(&self, row: u64) -> bool {
        self.state(row) == super::format::STATE_DEAD
    }

    /// Whether the state word of `row` was invalid when the store was opened.
    #[inline]
    pub(crate) fn is_damaged(&self, row: u64) -> bool {
        !self.damaged.is_empty() && self.damaged.contains(&row)
    }
}
