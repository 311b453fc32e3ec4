//! Gallery I/O: opening a 1M gallery, and durable insert throughput, one at a
//! time (one flush and commit each) and in batches of 1,000 (group commit),
//! beside the floor of the batch: the same 1,000 templates' bytes appended to a
//! plain file with one `write` and one `fdatasync`.
//!
//! `cargo bench -p palmlink-benches --bench gallery_io`

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use palmlink_benches::{
    data_dir, ids, synthetic_gallery, synthetic_templates, wait_for_quantised_copy,
};
use palmlink_engine::{Gallery, IndexPolicy, Layout};
use std::hint::black_box;

fn open(c: &mut Criterion) {
    let max_n: usize = std::env::var("PALMLINK_BENCH_MAX_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let n = max_n.min(1_000_000);
    let dir = synthetic_gallery(n).dir().to_path_buf(); // built, then closed
    let mut group = c.benchmark_group("gallery_open");
    group.sample_size(20);
    let policy = IndexPolicy {
        at_open: false,
        ..IndexPolicy::default()
    };
    // Timed: the open itself (maps, headers, state words). Untimed: the
    // quantised copy that open derives in the background, awaited so it does
    // not compete with the next open.
    group.bench_function(format!("open_{n}"), |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let start = std::time::Instant::now();
                let g = Gallery::open_with(&dir, policy).expect("open");
                total += start.elapsed();
                black_box(g.live_count());
                wait_for_quantised_copy(&g);
            }
            total
        })
    });
    group.finish();
}

fn insert(c: &mut Criterion) {
    let templates = synthetic_templates(1000, 5);
    let dir = data_dir().join("insert-scratch");
    let _ = std::fs::remove_dir_all(&dir);
    let gallery = Gallery::create(&dir, Layout::DEFAULT).expect("create");
    let mut next = 0u64;
    let mut group = c.benchmark_group("gallery_insert");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_durable", |b| {
        b.iter(|| {
            next += 1;
            black_box(
                gallery
                    .insert(ids(next), &templates[next as usize % 1000])
                    .expect("insert"),
            )
        })
    });
    group.throughput(Throughput::Elements(1000));
    group.sample_size(20);
    group.bench_function("batch_1000_durable", |b| {
        b.iter_batched(
            || {
                templates
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (ids(i as u64), t))
                    .collect::<Vec<_>>()
            },
            |items| black_box(gallery.insert_batch(&items).expect("batch")),
            BatchSize::SmallInput,
        )
    });
    // The floor: the batch's row bytes appended to a plain file and synced once.
    let bytes: Vec<u8> = templates.iter().flat_map(|t| t.to_le_bytes()).collect();
    let plain = dir.join("plain-write.bin");
    let mut file = std::fs::File::create(&plain).expect("plain file");
    group.bench_function("batch_1000_plain_write", |b| {
        b.iter(|| {
            use std::io::Write as _;
            file.write_all(&bytes).expect("write");
            file.sync_data().expect("sync");
        })
    });
    group.finish();
    drop(gallery);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, open, insert);
criterion_main!(benches);
