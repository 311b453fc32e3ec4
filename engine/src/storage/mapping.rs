//! Memory-mapped files: the only place in the engine that touches mapped memory.
//!
//! # Safety
//!
//! A [`Mapping`] is a shared, writable mapping of a whole file (`MmapRaw`, so no
//! Rust reference to the mapped bytes exists unless this module hands one out),
//! with, for the rows' file, a second read-only view of the same file for
//! reads of one row here and there. Slices handed out by [`Mapping::bytes`],
//! [`Mapping::f32s`] and [`Mapping::point_f32s`] are sound under these
//! invariants, which the gallery upholds:
//!
//! 1. Only the gallery's writer (one at a time, under its mutex) writes, and it
//!    writes committed rows in exactly two ways: the 4-byte state word of a
//!    record, always through [`Mapping::state_word`] (an `AtomicU32`, never a
//!    plain slice), and the erasure of a deleted row's vector with volatile
//!    4-byte stores. Readers re-check the state word (atomically) after
//!    scoring a row and discard rows that died meanwhile, so a torn read of an
//!    erased vector never reaches a caller; on the supported targets an aligned
//!    4-byte store is single-copy atomic, so such a read sees old values or zeros.
//! 2. Every other write goes to rows at or beyond the committed count, which no
//!    reader reads until the writer has finished writing, flushed and published
//!    the new count.
//! 3. Files are only ever grown, never shrunk, while mapped: every offset a
//!    mapping hands out stays backed by the file (no SIGBUS). The directory is
//!    held under an exclusive file lock, so no other process of ours shrinks it.
//!
//! All offsets are bounds-checked against the mapping's length before any
//! pointer arithmetic; alignment is checked where a typed view is made.
//!
//! A [`GraphMapping`] is a writable mapping of a file that is complete
//! before it is mapped (the graph index's search file): such files are
//! written under a temporary name, synced and renamed into place, so a newer
//! version is a new inode. Afterwards the file is written only through its
//! one mapping, by its holder through `&mut self` (the erasure of a deleted
//! row's key, in place), so every read of it is a plain shared borrow that
//! no write can overlap.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;

use memmap2::{MmapMut, MmapOptions, MmapRaw};

use crate::error::GalleryError;

/// A shared read-write mapping of a whole file.
pub(crate) struct Mapping {
    map: MmapRaw,
    /// A second read-only view of the same file for reads of one row here and
    /// there, advised `MADV_RANDOM`: a fault through it reads its own page,
    /// where a fault through `map` also reads the device's read-ahead around
    /// it (8 MB on some machines) for the passes over the whole file. Both
    /// views share the file's page cache, so each sees every write.
    points: Option<MmapRaw>,
    path: PathBuf,
}

impl Mapping {
    /// Maps all of `file` (which must be non-empty).
    pub(crate) fn new(file: &File, path: &Path) -> Result<Mapping, GalleryError> {
        let map = MmapOptions::new()
            .map_raw(file)
            .map_err(|e| GalleryError::io(path, e))?;
        Ok(Mapping {
            map,
            points: None,
            path: path.to_path_buf(),
        })
    }

    /// [`Mapping::new`], with the second view [`Mapping::point_f32s`] reads.
    pub(crate) fn with_point_reads(file: &File, path: &Path) -> Result<Mapping, GalleryError> {
        let mut mapping = Mapping::new(file, path)?;
        let points = MmapOptions::new()
            .map_raw_read_only(file)
            .map_err(|e| GalleryError::io(path, e))?;
        // A hint: where it fails, a fault reads around as through `map`.
        let _ = points.advise(memmap2::Advice::Random);
        mapping.points = Some(points);
        Ok(mapping)
    }

    fn check(&self, offset: usize, len: usize) {
        self.check_within(self.map.len(), offset, len);
    }

    /// Panics unless `offset..offset + len` lies within a view of `mapped` bytes.
    fn check_within(&self, mapped: usize, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= mapped),
            "range {offset}+{len} outside mapping of {mapped} bytes ({})",
            self.path.display()
        );
    }

    /// The bytes at `offset..offset + len`.
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        self.check(offset, len);
        // SAFETY: the range is inside the mapping (checked above), the mapping
        // lives as long as `self`, and per the module invariants no plain
        // write overlaps a range a reader asks for.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset), len) }
    }

    /// `count` f32 values starting at `offset` (which must be 4-byte aligned).
    pub(crate) fn f32s(&self, offset: usize, count: usize) -> &[f32] {
        bytemuck::cast_slice(self.bytes(offset, count * 4))
    }

    /// [`Mapping::f32s`] through the view for reads of one row here and
    /// there, if the mapping has one.
    pub(crate) fn point_f32s(&self, offset: usize, count: usize) -> &[f32] {
        let Some(points) = &self.points else {
            return self.f32s(offset, count);
        };
        let len = count * 4;
        self.check_within(points.len(), offset, len);
        // SAFETY: the range is inside this view (checked above, against its
        // own length), which maps the same file as `map`, lives as long as
        // `self` and is never written through; the file's bytes change only
        // through `map` under the module invariants, so this read is sound
        // exactly where a read through `map` is. The tests
        // `point_reads_see_every_write` and `point_reads_are_bounded` check
        // that the two views show the same bytes and that the bound holds.
        let bytes = unsafe { std::slice::from_raw_parts(points.as_ptr().add(offset), len) };
        bytemuck::cast_slice(bytes)
    }

    /// Asks the kernel to start reading `offset..offset + len` (a hint: a
    /// failure only means the read happens when the bytes are touched).
    pub(crate) fn will_need(&self, offset: usize, len: usize) {
        self.check(offset, len);
        let view = self.points.as_ref().unwrap_or(&self.map);
        let _ = view.advise_range(memmap2::Advice::WillNeed, offset, len);
    }

    /// Copies `data` to `offset`. Only the writer calls this, and only for
    /// uncommitted rows or header slots no reader reads.
    pub(crate) fn write(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len());
        // SAFETY: in bounds (checked above); source and destination cannot
        // overlap (the source is ordinary memory); per invariant 2 no reader
        // reads this range concurrently.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(offset),
                data.len(),
            )
        }
    }

    /// Overwrites `len` bytes at `offset` (4-byte aligned, a multiple of 4)
    /// with zeros using volatile 4-byte stores (erasure of a deleted row).
    pub(crate) fn erase(&self, offset: usize, len: usize) {
        self.check(offset, len);
        assert!(
            offset.is_multiple_of(4) && len.is_multiple_of(4),
            "erase must be word-aligned"
        );
        let base = self.map.as_mut_ptr();
        for word in (offset..offset + len).step_by(4) {
            // SAFETY: in bounds and 4-byte aligned (checked above; the mapping
            // is page-aligned). Readers tolerate this store per invariant 1.
            unsafe { std::ptr::write_volatile(base.add(word).cast::<u32>(), 0) };
        }
    }

    /// The 4-byte word at `offset` (4-byte aligned) as an atomic.
    pub(crate) fn state_word(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4);
        assert!(offset.is_multiple_of(4), "state word must be aligned");
        // SAFETY: in bounds and aligned (checked above; the mapping base is
        // page-aligned); this word is only ever accessed atomically
        // (invariant 1) and lives as long as the mapping borrowed by `self`.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(offset).cast::<u32>()) }
    }

    /// Writes the range `offset..offset + len` back to the file and waits
    /// for the device (msync MS_SYNC).
    pub(crate) fn flush(&self, offset: usize, len: usize) -> Result<(), GalleryError> {
        self.check(offset, len);
        self.map
            .flush_range(offset, len)
            .map_err(|e| GalleryError::io(&self.path, e))
    }
}

/// A writable mapping of a whole file that only its holder writes, through
/// `&mut self` (see the module docs).
pub(crate) struct GraphMapping {
    map: MmapMut,
    path: PathBuf,
}

impl GraphMapping {
    /// Maps all of the file at `path` for reading and writing (it must be
    /// non-empty).
    pub(crate) fn open(path: &Path) -> Result<GraphMapping, GalleryError> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| GalleryError::io(path, e))?;
        // SAFETY: the files mapped here are written once under a temporary
        // name, synced and renamed into place (see the module docs); after
        // that only this mapping writes them, through `&mut self`, and the
        // gallery directory is held under an exclusive lock, so no other
        // handle of ours writes or truncates this inode while it is mapped
        // (`Gallery::inspect`, which takes no lock, never reads it). Every
        // borrow of the bytes is therefore either the only one (`&mut`) or
        // shared with reads alone. The tests
        // `search::graph::tests::a_mapped_graph_survives_its_replacement` and
        // `search::graph::tests::erasure_reaches_the_mapped_file` replace a
        // mapped file, and write through a mapping and read the file.
        let map =
            unsafe { MmapOptions::new().map_mut(&file) }.map_err(|e| GalleryError::io(path, e))?;
        Ok(GraphMapping {
            map,
            path: path.to_path_buf(),
        })
    }

    /// The mapped bytes (page-aligned).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The mapped bytes, to write.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// Writes the range `offset..offset + len` back to the file and waits for
    /// the device (msync MS_SYNC). Panics if the range is outside the file.
    pub(crate) fn flush(&self, offset: usize, len: usize) -> Result<(), GalleryError> {
        assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= self.map.len()),
            "flush of {offset}+{len} outside mapping of {} bytes",
            self.map.len()
        );
        self.map
            .flush_range(offset, len)
            .map_err(|e| GalleryError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// A fresh file of `len` zero bytes.
    fn file(len: u64) -> (tempfile::TempDir, File, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.bin");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(len).unwrap();
        (dir, file, path)
    }

    fn mapping(len: u64) -> (tempfile::TempDir, Mapping) {
        let (dir, file, path) = file(len);
        (dir, Mapping::new(&file, &path).unwrap())
    }

    #[test]
    fn writes_are_visible_and_bounded() {
        let (_d, m) = mapping(4096);
        m.write(100, &[1, 2, 3]);
        assert_eq!(m.bytes(99, 5), &[0, 1, 2, 3, 0]);
        m.state_word(200).store(7, Ordering::SeqCst);
        assert_eq!(m.bytes(200, 4), &7u32.to_le_bytes());
        m.write(64, &1.5f32.to_le_bytes());
        assert_eq!(m.f32s(64, 1), &[1.5]);
        m.erase(64, 4);
        assert_eq!(m.f32s(64, 1), &[0.0]);
        m.flush(0, 4096).unwrap();
    }

    #[test]
    fn point_reads_see_every_write() {
        let (_d, file, path) = file(3 * 4096);
        let m = Mapping::with_point_reads(&file, &path).unwrap();
        let values: Vec<f32> = (0..1024).map(|i| i as f32 * 0.5).collect();
        m.write(4096, bytemuck::cast_slice(&values));
        assert_eq!(m.point_f32s(4096, 1024), &values[..]);
        assert_eq!(m.point_f32s(4096, 1024), m.f32s(4096, 1024));
        m.erase(4096 + 8, 8);
        assert_eq!(m.point_f32s(4096, 4), &[0.0, 0.5, 0.0, 0.0]);
        m.will_need(4096, 4096);
        // A mapping without the second view reads through the first.
        let plain = Mapping::new(&file, &path).unwrap();
        assert_eq!(plain.point_f32s(4096 + 16, 2), &[2.0, 2.5]);
    }

    #[test]
    #[should_panic(expected = "outside mapping")]
    fn point_reads_are_bounded() {
        let (_d, file, path) = file(4096);
        let m = Mapping::with_point_reads(&file, &path).unwrap();
        let _ = m.point_f32s(4092, 2);
    }

    #[test]
    #[should_panic(expected = "outside mapping")]
    fn out_of_bounds_read_panics_before_touching_memory() {
        let (_d, m) = mapping(4096);
        let _ = m.bytes(4090, 7);
    }

    #[test]
    #[should_panic(expected = "outside mapping")]
    fn overflowing_range_panics() {
        let (_d, m) = mapping(4096);
        let _ = m.bytes(usize::MAX, 2);
    }

    #[test]
    #[should_panic(expected = "aligned")]
    fn misaligned_state_word_panics() {
        let (_d, m) = mapping(4096);
        let _ = m.state_word(3);
    }
}
