//! [`FeatureIndex`]: the live row of each feature id, in memory, built at
//! open and kept up to date by inserts and deletes.

use std::collections::HashMap;

/// The hasher of the index: foldhash, seeded per process. A gallery of 10M
/// builds its index at open, where SipHash (the standard library's) took
/// most of the open's time; the ids are UUIDs the service makes, not input
/// an attacker chooses, and the seed is random anyway.
type Hasher = foldhash::fast::RandomState;

/// Feature id to live row. A feature is normally live in one row (logged
/// inserts never insert a live feature again); plain inserts may insert it
/// again, and then every live row of it is kept, the latest named first.
#[derive(Debug, Default)]
pub(crate) struct FeatureIndex {
    /// The latest live row of each feature.
    rows: HashMap<u128, u64, Hasher>,
    /// Earlier live rows of the features live in several rows (rare).
    earlier: HashMap<u128, Vec<u64>, Hasher>,
}

impl FeatureIndex {
    /// An empty index with room for `n` features.
    pub(crate) fn with_capacity(n: usize) -> FeatureIndex {
        FeatureIndex {
            rows: HashMap::with_capacity_and_hasher(n, Hasher::default()),
            earlier: HashMap::default(),
        }
    }

    /// The latest live row of `feature`.
    pub(crate) fn get(&self, feature: u128) -> Option<u64> {
        self.rows.get(&feature).copied()
    }

    /// Records that `row` holds `feature` (rows are added in increasing order).
    pub(crate) fn insert(&mut self, feature: u128, row: u64) {
        if let Some(previous) = self.rows.insert(feature, row) {
            self.earlier.entry(feature).or_default().push(previous);
        }
    }

    /// Records that `row`, which held `feature`, is no longer live.
    pub(crate) fn remove(&mut self, feature: u128, row: u64) {
        if self.rows.get(&feature) == Some(&row) {
            self.rows.remove(&feature);
            if let Some(earlier) = self.earlier.get_mut(&feature) {
                if let Some(latest) = earlier.pop() {
                    self.rows.insert(feature, latest);
                }
                if earlier.is_empty() {
                    self.earlier.remove(&feature);
                }
            }
        } else if let Some(earlier) = self.earlier.get_mut(&feature) {
            earlier.retain(|&r| r != row);
            if earlier.is_empty() {
                self.earlier.remove(&feature);
            }
        }
    }

    /// Features indexed (each counted once).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feature_in_several_rows_falls_back_to_the_earlier_ones() {
        let mut index = FeatureIndex::with_capacity(4);
        index.insert(7, 1);
        index.insert(8, 2);
        index.insert(7, 3);
        index.insert(7, 5);
        assert_eq!(index.get(7), Some(5));
        index.remove(7, 3);
        assert_eq!(index.get(7), Some(5));
        index.remove(7, 5);
        assert_eq!(index.get(7), Some(1));
        index.remove(7, 1);
        assert_eq!(index.get(7), None);
        assert_eq!(index.get(8), Some(2));
        index.remove(8, 9);
        assert_eq!(index.get(8), Some(2), "another row of the feature");
        assert_eq!(index.len(), 1);
    }
}
