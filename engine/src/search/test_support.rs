//! Helpers shared by the unit tests of the searches: seeded values, and row
//! stores to search.

use std::path::Path;

use crate::ids::{PalmSide, RecordIds};
use crate::storage::RowStore;
use crate::template::{Layout, Template};

/// Uniform values in `[-0.5, 0.5)` from a seed (xorshift).
pub(crate) fn uniform(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    }
}

/// `n` templates of the default layout with uniform values from `seed`.
pub(crate) fn uniform_templates(n: usize, seed: u64) -> Vec<Template> {
    let mut next = uniform(seed);
    (0..n)
        .map(|_| {
            let v: Vec<f32> = (0..Layout::DEFAULT.len()).map(|_| next()).collect();
            Template::from_f32(Layout::DEFAULT, &v).unwrap()
        })
        .collect()
}

/// An empty row store of `layout` in `dir`.
pub(crate) fn store(dir: &Path, layout: Layout) -> RowStore {
    RowStore::create(dir, layout).unwrap()
}

/// Inserts `templates` as one batch; template `i` gets feature id
/// `first + i + 1` and, with `distinct_users`, user key `first + i + 1`.
pub(crate) fn insert_all(
    rows: &RowStore,
    first: usize,
    templates: &[Template],
    distinct_users: bool,
) {
    let items: Vec<(RecordIds, &Template)> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let id = (first + i) as u128 + 1;
            let ids = RecordIds {
                feature_id: id,
                user_key: if distinct_users { id } else { 1 },
                palm: PalmSide::Left,
            };
            (ids, t)
        })
        .collect();
    rows.insert_batch(&items, None).unwrap();
}
