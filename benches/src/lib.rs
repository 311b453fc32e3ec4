//! Shared helpers for the benchmarks: seeded synthetic galleries kept on disk
//! between runs, readers for the peer benchmark's `.npy` dumps, and the accuracy
//! measurement behind the `accuracy` binary ([`accuracy`]), and the in-process
//! service of the load benches ([`service`]).

use std::path::{Path, PathBuf};

use palmlink_engine::{Gallery, IndexPolicy, Layout, PalmSide, RecordIds, Template};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

pub mod accuracy;
pub mod service;

/// Where benchmark galleries live (under the cargo target directory).
pub fn data_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench-data")
}

/// Raw values of `n` seeded random templates of the default layout (uniform
/// differences, so blocks are never zero), generated in parallel.
pub fn synthetic_values(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let len = Layout::DEFAULT.len();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng =
                StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            (0..len)
                .map(|_| rng.random::<f32>() - rng.random::<f32>())
                .collect()
        })
        .collect()
}

/// `n` seeded random templates of the default layout.
pub fn synthetic_templates(n: usize, seed: u64) -> Vec<Template> {
    synthetic_values(n, seed)
        .into_par_iter()
        .map(|v| Template::from_f32(Layout::DEFAULT, &v).expect("valid synthetic template"))
        .collect()
}

/// Ids for row `i`.
pub fn ids(i: u64) -> RecordIds {
    RecordIds {
        feature_id: u128::from(i) + 1,
        user_key: u128::from(i / 2) + 1,
        palm: if i.is_multiple_of(2) {
            PalmSide::Left
        } else {
            PalmSide::Right
        },
    }
}

/// Opens a bench gallery without loading or building its graph index, so
/// no background build competes with the measurements, and waits until its
/// quantised copy is derived.
pub fn open_for_bench(dir: &Path) -> Result<Gallery, palmlink_engine::GalleryError> {
    let policy = IndexPolicy {
        at_open: false,
        ..IndexPolicy::default()
    };
    let g = Gallery::open_with(dir, policy)?;
    wait_for_quantised_copy(&g);
    Ok(g)
}

/// Waits until the gallery's quantised copy covers every row.
pub fn wait_for_quantised_copy(g: &Gallery) {
    while g.quantised_rows() < g.row_count() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A gallery of `n` synthetic templates, built once and reopened on later runs.
pub fn synthetic_gallery(n: usize) -> Gallery {
    let dir = data_dir().join(format!("synthetic-{n}"));
    if let Ok(g) = open_for_bench(&dir) {
        if g.row_count() == n as u64 {
            return g;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let g = Gallery::create(&dir, Layout::DEFAULT).expect("create bench gallery");
    let mut row = 0u64;
    for chunk_start in (0..n).step_by(50_000) {
        let m = 50_000.min(n - chunk_start);
        let templates = synthetic_templates(m, chunk_start as u64);
        let items: Vec<_> = templates
            .iter()
            .map(|t| {
                row += 1;
                (ids(row - 1), t)
            })
            .collect();
        g.insert_batch(&items).expect("fill bench gallery");
    }
    drop(g);
    open_for_bench(&dir).expect("reopen bench gallery")
}

/// The payload of a little-endian f32 `.npy` file written by the peer
/// benchmark (header of 128 bytes), as rows of `cols` values.
pub fn read_npy_f32(path: &Path, cols: usize) -> std::io::Result<Vec<f32>> {
    let bytes = std::fs::read(path)?;
    if bytes.len() < 128 || !bytes.starts_with(b"\x93NUMPY") {
        return Err(std::io::Error::other("not an .npy file"));
    }
    let header = String::from_utf8_lossy(&bytes[10..128]);
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(std::io::Error::other("expected C-ordered <f4 data"));
    }
    let payload = &bytes[128..];
    if payload.len() % (4 * cols) != 0 {
        return Err(std::io::Error::other("payload is not whole rows"));
    }
    Ok(payload
        .chunks_exact(4)
        .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect())
}

/// Reads a one-dimensional little-endian `<i8` (int64) `.npy` file with the
/// peer benchmark's 128-byte header.
pub fn read_npy_i64(path: &Path) -> std::io::Result<Vec<i64>> {
    let bytes = std::fs::read(path)?;
    if bytes.len() < 128 || !bytes.starts_with(b"\x93NUMPY") {
        return Err(std::io::Error::other("not an .npy file"));
    }
    let header = String::from_utf8_lossy(&bytes[10..128]);
    if !header.contains("'<i8'") {
        return Err(std::io::Error::other("expected <i8 data"));
    }
    let payload = &bytes[128..];
    if payload.len() % 8 != 0 {
        return Err(std::io::Error::other("payload is not whole values"));
    }
    Ok(payload
        .chunks_exact(8)
        .map(|w| i64::from_le_bytes(w.try_into().expect("8 bytes")))
        .collect())
}

/// A gallery holding the peer benchmark's `gallery.npy` from `dump_dir`
/// (built once under [`data_dir`]), and its probes as templates.
pub fn peerbench_gallery(dump_dir: &Path) -> std::io::Result<(Gallery, Vec<Template>)> {
    let layout = Layout::DEFAULT;
    let values = read_npy_f32(&dump_dir.join("gallery.npy"), layout.len())?;
    let n = values.len() / layout.len();
    let dir = data_dir().join(format!("peerbench-{n}"));
    let gallery = match open_for_bench(&dir) {
        Ok(g) if g.row_count() == n as u64 => g,
        _ => {
            let _ = std::fs::remove_dir_all(&dir);
            let g = Gallery::create(&dir, layout).map_err(std::io::Error::other)?;
            for (c, chunk) in values.chunks(50_000 * layout.len()).enumerate() {
                let templates: Vec<Template> = chunk
                    .par_chunks(layout.len())
                    .map(|v| Template::from_f32(layout, v).expect("peer data is valid"))
                    .collect();
                let base = (c * 50_000) as u64;
                let items: Vec<_> = templates
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (ids(base + i as u64), t))
                    .collect();
                g.insert_batch(&items).map_err(std::io::Error::other)?;
            }
            drop(g);
            open_for_bench(&dir).map_err(std::io::Error::other)?
        }
    };
    let probes = read_npy_f32(&dump_dir.join("probes.npy"), layout.len())?
        .chunks(layout.len())
        .map(|v| Template::from_f32(layout, v).expect("peer probe is valid"))
        .collect();
    Ok((gallery, probes))
}
