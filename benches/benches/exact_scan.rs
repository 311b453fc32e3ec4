//! Exact 1:N: one probe against 10k / 100k / 1M templates (top-5), by the f32
//! scan and by the quantised scan (same results), beside a plain parallel read
//! of the f32 bytes: the memory-bandwidth ceiling of the f32 scan.
//!
//! `cargo bench -p palmlink-benches --bench exact_scan`
//! (`PALMLINK_BENCH_MAX_N=100000` skips the 1M gallery, whose first build
//! writes 2.6 GB under target/bench-data; `PALMLINK_PEERBENCH_DIR=<dump>` adds
//! the peer benchmark's data, so faiss and PalmLink scan identical bytes.)

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

use std::fs::File;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use memmap2::Mmap;
use palmlink_benches::{peerbench_gallery, synthetic_gallery, synthetic_templates};
use palmlink_engine::format::{HEADER_BYTES, VECTORS_FILE};
use palmlink_engine::{Gallery, Layout, MatchSettings, SearchQuery, Strategy, Template};
use rayon::prelude::*;
use std::hint::black_box;

/// Reads every byte of the gallery's vector rows on all threads (XOR of u64 words).
fn read_all(words: &[u64]) -> u64 {
    words
        .par_chunks(4096 * 320)
        .map(|c| c.iter().fold(0u64, |a, &w| a ^ w))
        .reduce(|| 0, |a, b| a ^ b)
}

fn bench_gallery(c: &mut Criterion, name: &str, gallery: &Gallery, probes: &[Template]) {
    let n = gallery.row_count() as usize;
    let bytes = n * Layout::DEFAULT.byte_len();
    let file = File::open(gallery.dir().join(VECTORS_FILE)).expect("vectors file");
    // SAFETY: the bench only reads; the gallery handle performs no writes
    // while the map exists, and the file is never truncated.
    let map = unsafe { Mmap::map(&file) }.expect("map vectors");
    let words: &[u64] = bytemuck_words(&map[HEADER_BYTES..HEADER_BYTES + bytes]);

    let query = SearchQuery::new(5, MatchSettings::default_for(Layout::DEFAULT));
    let mut group = c.benchmark_group(format!("exact_scan/{name}"));
    group.throughput(Throughput::Bytes(bytes as u64));
    if n >= 500_000 {
        group.sample_size(10);
    }
    group.bench_function("memory_read_baseline", |b| {
        b.iter(|| black_box(read_all(words)))
    });
    for (label, strategy) in [
        ("f32_scan_top5", Strategy::F32Scan),
        ("quantised_scan_top5", Strategy::QuantisedScan),
    ] {
        let mut i = 0;
        group.bench_function(label, |b| {
            b.iter(|| {
                i = (i + 1) % probes.len();
                black_box(
                    gallery
                        .search_with(&probes[i], &query, strategy)
                        .expect("search"),
                )
            })
        });
    }
    group.finish();
}

fn bytemuck_words(bytes: &[u8]) -> &[u64] {
    let (head, words, _) = {
        // SAFETY: u64 has no invalid bit patterns; align_to returns the aligned
        // middle part only, and the map is page-aligned with HEADER_BYTES = 4096.
        unsafe { bytes.align_to::<u64>() }
    };
    assert!(head.is_empty(), "vector rows start page-aligned");
    words
}

fn exact_scan(c: &mut Criterion) {
    let max_n: usize = std::env::var("PALMLINK_BENCH_MAX_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let probes = synthetic_templates(16, 99);
    for (n, name) in [(10_000, "10k"), (100_000, "100k"), (1_000_000, "1M")] {
        if n > max_n {
            continue;
        }
        let gallery = synthetic_gallery(n);
        bench_gallery(c, name, &gallery, &probes);
    }
    if let Ok(dir) = std::env::var("PALMLINK_PEERBENCH_DIR") {
        let (gallery, probes) = peerbench_gallery(Path::new(&dir)).expect("peer benchmark dump");
        let name = format!("peerbench-{}", gallery.row_count());
        bench_gallery(c, &name, &gallery, &probes[..probes.len().min(64)]);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(2));
    targets = exact_scan
}
criterion_main!(benches);
