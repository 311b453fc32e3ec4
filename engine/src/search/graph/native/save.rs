//! Writing a native graph as `hnsw.flat`, straight from the builder's
//! arrays.

use std::fs;
use std::io::BufWriter;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use bytemuck::Zeroable;
use rayon::prelude::*;

use super::super::format::{
    put_in_place, FlatGraph, Header, BY_NATIVE, FLAT_FILE, FLAT_TMP, NONE, VERSION,
};
use super::super::write::{FlatWriter, Part};
use super::super::{rows_digest, GraphIndex, IndexOrigin};
use super::NativeGraph;
use crate::error::GalleryError;
use crate::storage::Snapshot;

impl NativeGraph {
    /// The file header of the graph, without its CRCs.
    fn header(&self, orphans: usize, digest: u32) -> Header {
        let mut h = Header::zeroed();
        h.magic = super::super::format::MAGIC;
        h.version = VERSION;
        h.dim = self.dim as u32;
        h.points = self.points() as u64;
        h.rows = self.covered;
        h.upper = (1..=self.top)
            .map(|l| self.levels.iter().filter(|&&v| usize::from(v) >= l).count() as u64)
            .sum();
        h.orphans = orphans as u64;
        h.degree0 = self.width0() as u32;
        h.forward0 = 2 * self.m as u32;
        h.degree = self.m as u32;
        h.levels = self.top as u32;
        h.entry = if self.entry == NONE { 0 } else { self.entry };
        h.digest = digest;
        h.max_connections = self.m as u32;
        h.ef_construction = self.ef_construction as u32;
        h.builder = BY_NATIVE;
        h
    }

    /// Writes every section of the file to `w`.
    fn write<W: std::io::Write>(
        &self,
        w: &mut FlatWriter<W>,
        orphans: &[u32],
    ) -> std::io::Result<()> {
        const CHUNK: usize = 1 << 14;
        w.put(Part::Rows, bytemuck::cast_slice(&self.rows))?;
        w.put(Part::Keys, bytemuck::cast_slice(&self.keys))?;
        for keys in self.keys.chunks(CHUNK * self.dim.max(1)) {
            let crcs: Vec<u32> = keys
                .par_chunks(self.dim.max(1))
                .map(|k| {
                    if k.iter().all(|&v| v == 0) {
                        0
                    } else {
                        crc32fast::hash(bytemuck::cast_slice(k))
                    }
                })
                .collect();
            w.put(Part::KeyCrcs, bytemuck::cast_slice(&crcs))?;
        }
        let mut buf: Vec<u32> = Vec::with_capacity(CHUNK);
        for slots in self.base.chunks(CHUNK) {
            buf.clear();
            buf.extend(slots.iter().map(|s| s.load(Relaxed)));
            w.put(Part::Base, bytemuck::cast_slice(&buf))?;
        }
        let mut starts = vec![0u64];
        let mut on_layer: Vec<Vec<u32>> = Vec::new();
        for layer in 1..=self.top {
            let points: Vec<u32> = (0..self.points() as u32)
                .filter(|&p| usize::from(self.levels[p as usize]) >= layer)
                .collect();
            starts.push(starts[layer - 1] + points.len() as u64);
            on_layer.push(points);
        }
        w.put(Part::LevelStart, bytemuck::cast_slice(&starts))?;
        for points in &on_layer {
            w.put(Part::UpperPoints, bytemuck::cast_slice(points))?;
        }
        for (layer, points) in (1..).zip(&on_layer) {
            for &p in points {
                buf.clear();
                buf.extend(self.list(p, layer).iter().map(|s| s.load(Relaxed)));
                w.put(Part::UpperLinks, bytemuck::cast_slice(&buf))?;
            }
        }
        w.put(Part::Orphans, bytemuck::cast_slice(orphans))
    }

    /// Writes the graph to `dir` as `hnsw.flat` and maps it; held in memory
    /// only if the save fails (the next open then rebuilds).
    pub(crate) fn save(
        &self,
        dir: &Path,
        snap: &Snapshot,
        origin: IndexOrigin,
    ) -> Result<GraphIndex, GalleryError> {
        let orphans = self.orphans();
        let header = self.header(orphans.len(), rows_digest(snap, self.covered));
        let tmp = dir.join(FLAT_TMP);
        let saved = (|| -> std::io::Result<()> {
            let file = fs::File::create(&tmp)?;
            let mut w = FlatWriter::new(BufWriter::with_capacity(1 << 20, file), header)?;
            self.write(&mut w, &orphans)?;
            let (out, header) = w.finish()?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.write_all_at(bytemuck::bytes_of(&header), 0)?;
            file.sync_all()
        })();
        let mapped = saved
            .map_err(|e| GalleryError::io(&tmp, e))
            .and_then(|()| put_in_place(dir))
            .ok()
            .and_then(|()| GraphIndex::load(dir, snap).ok());
        if let Some(index) = mapped {
            return Ok(GraphIndex { origin, ..index });
        }
        let _ = fs::remove_file(&tmp);
        let mut w = FlatWriter::new(Vec::new(), header)
            .map_err(|e| GalleryError::io(dir.join(FLAT_FILE), e))?;
        self.write(&mut w, &orphans)
            .map_err(|e| GalleryError::io(dir.join(FLAT_FILE), e))?;
        let (mut bytes, header) = w
            .finish()
            .map_err(|e| GalleryError::io(dir.join(FLAT_FILE), e))?;
        bytes[..super::super::format::HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&header));
        let flat = FlatGraph::from_bytes(&bytes, header).ok_or_else(|| {
            GalleryError::io(dir, std::io::Error::other("flat graph does not fit"))
        })?;
        Ok(GraphIndex::from_flat(flat, snap, origin))
    }
}
