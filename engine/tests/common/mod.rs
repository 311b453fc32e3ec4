//! Shared helpers for the engine's integration tests.

#![allow(dead_code)]

use std::path::Path;

use palmlink_engine::{Gallery, IndexPolicy, Layout, PalmSide, RecordIds, RowId, Template};
use proptest::sample::Index;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A random template of `layout` from `rng` (Gaussian-ish values).
pub fn random_template(rng: &mut StdRng, layout: Layout) -> Template {
    let values: Vec<f32> = (0..layout.len())
        .map(|_| rng.random::<f32>() - rng.random::<f32>())
        .collect();
    Template::from_f32(layout, &values).expect("random template")
}

/// `template` with noise of amplitude `noise` added (a genuine probe).
pub fn noisy(rng: &mut StdRng, template: &Template, noise: f32) -> Template {
    let values: Vec<f32> = template
        .as_slice()
        .iter()
        .map(|v| v + noise * (rng.random::<f32>() - rng.random::<f32>()))
        .collect();
    Template::from_f32(template.layout(), &values).expect("noisy template")
}

/// Ids derived from an index.
pub fn ids(i: u64) -> RecordIds {
    RecordIds {
        feature_id: 0x1000_0000_0000 + u128::from(i),
        user_key: u128::from(i / 2),
        palm: if i.is_multiple_of(2) {
            PalmSide::Left
        } else {
            PalmSide::Right
        },
    }
}

/// A standard normal draw (Box-Muller).
pub fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// An identity: isotropic Gaussian values, blocks normalised.
pub fn identity(rng: &mut StdRng, layout: Layout) -> Template {
    let v: Vec<f32> = (0..layout.len()).map(|_| normal(rng)).collect();
    Template::from_f32(layout, &v).expect("identity template")
}

/// A genuine capture of `mate`: Gaussian noise with sigma in 0.041..0.0775,
/// blocks renormalised (per-block cosine about 0.9 to the mate).
pub fn genuine(rng: &mut StdRng, mate: &Template) -> Template {
    let sigma = rng.random_range(0.041f32..0.0775);
    let v: Vec<f32> = mate
        .as_slice()
        .iter()
        .map(|x| x + sigma * normal(rng))
        .collect();
    Template::from_f32(mate.layout(), &v).expect("genuine capture")
}

/// A seeded rng.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The index policy of galleries whose graph a test builds itself (none at open).
pub fn manual() -> IndexPolicy {
    IndexPolicy {
        at_open: false,
        ..IndexPolicy::default()
    }
}

/// Inserts `templates` as rows `first..`, with [`ids`] of their row numbers.
pub fn insert(g: &Gallery, templates: &[Template], first: usize) {
    for (c, chunk) in templates.chunks(2048).enumerate() {
        let items: Vec<(RecordIds, &Template)> = chunk
            .iter()
            .enumerate()
            .map(|(i, t)| (ids((first + c * 2048 + i) as u64), t))
            .collect();
        g.insert_batch(&items).unwrap();
    }
}

/// A gallery of `n` seeded identities opened with `policy`; returns it with
/// its templates.
pub fn gallery(
    dir: &Path,
    n: usize,
    seed: u64,
    layout: Layout,
    policy: IndexPolicy,
) -> (Gallery, Vec<Template>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let templates: Vec<Template> = (0..n).map(|_| identity(&mut rng, layout)).collect();
    Gallery::create(dir, layout).unwrap();
    let g = Gallery::open_with(dir, policy).unwrap();
    insert(&g, &templates, 0);
    (g, templates)
}

/// Appends `dupes` exact copies of random rows of `templates` (ties), then
/// deletes the rows `deletes` picks among the first `templates.len()`;
/// returns the deleted rows.
pub fn duplicate_and_delete(
    g: &Gallery,
    templates: &[Template],
    dupes: usize,
    deletes: &[Index],
    rng: &mut StdRng,
) -> Vec<u64> {
    let n = templates.len();
    let extra: Vec<Template> = (0..dupes)
        .map(|_| templates[rng.random_range(0..n)].clone())
        .collect();
    insert(g, &extra, n);
    let mut deleted = Vec::new();
    for d in deletes {
        let row = d.index(n) as u64;
        g.delete(RowId(row)).unwrap();
        deleted.push(row);
    }
    deleted
}
