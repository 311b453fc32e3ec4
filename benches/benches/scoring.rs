//! 1:1 scoring of one 10 x 64 probe against one enrolled template: the scalar
//! references beside simsimd per block and the fused AVX-512 kernel.
//!
//! `cargo bench -p palmlink-benches --bench scoring`

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use palmlink_benches::synthetic_templates;
use palmlink_engine::kernels::reference;
use palmlink_engine::kernels::{block_dots_with, Kernel};
use palmlink_engine::{compare, Layout, MatchSettings};
use std::hint::black_box;

/// The plain loop a first implementation would write: f32 sums in order.
fn naive_block_dots(a: &[f32], b: &[f32], dim: usize, out: &mut [f32]) {
    for ((x, y), o) in a.chunks_exact(dim).zip(b.chunks_exact(dim)).zip(out) {
        let mut s = 0.0f32;
        for i in 0..dim {
            s += x[i] * y[i];
        }
        *o = s;
    }
}

fn score_1to1(c: &mut Criterion) {
    let layout = Layout::DEFAULT;
    // 256 pairs cycled so the data sits in cache but the branch predictor
    // and prefetcher do not see one pair over and over.
    const PAIRS: usize = 256; // a power of two: the index wraps with a mask, not a division
    let templates = synthetic_templates(2 * PAIRS, 1);
    let pairs: Vec<_> = templates.chunks(2).map(|p| (&p[0], &p[1])).collect();
    let settings = MatchSettings::default_for(layout);
    let mut group = c.benchmark_group("score_1to1");
    group.throughput(Throughput::Elements(1));
    let mut out = [0.0f32; 10];
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) & (PAIRS - 1);
        pairs[i]
    };
    group.bench_function("scalar_reference_f64", |b| {
        b.iter(|| {
            let (p, e) = next();
            black_box(reference::block_dots(
                p.as_slice(),
                e.as_slice(),
                layout.dim,
            ))
        })
    });
    group.bench_function("scalar_naive_f32", |b| {
        b.iter(|| {
            let (p, e) = next();
            naive_block_dots(black_box(p.as_slice()), e.as_slice(), layout.dim, &mut out);
            black_box(out[0])
        })
    });
    for kernel in [Kernel::Simsimd, Kernel::FusedAvx512] {
        if !kernel.is_supported(layout.dim) {
            continue;
        }
        group.bench_function(BenchmarkId::new("kernel", format!("{kernel:?}")), |b| {
            b.iter(|| {
                let (p, e) = next();
                block_dots_with(
                    kernel,
                    black_box(p.as_slice()),
                    e.as_slice(),
                    layout.dim,
                    &mut out,
                );
                black_box(out[0])
            })
        });
    }
    group.bench_function("compare_with_decision", |b| {
        b.iter(|| {
            let (p, e) = next();
            black_box(compare(black_box(p), e, &settings).matched)
        })
    });
    group.finish();
}

criterion_group!(benches, score_1to1);
criterion_main!(benches);
