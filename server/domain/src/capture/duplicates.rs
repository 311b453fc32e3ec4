//! The duplicate-identity check of enrollments: before a palm is stored, it is searched 1:N
//! in the tenant's gallery under the tenant's thresholds and policy, and every template of
//! another user that passes the decision is a duplicate.
//!
//! The search is exhaustive over passing rows (the passing or quantised scan; a graph search
//! is run again exactly), so an empty list proves no other user's palm matches. Two
//! enrollments of one palm under two names at the same instant may both miss each other:
//! the check sees every enrollment acknowledged before it started.

use std::collections::HashMap;
use std::sync::Arc;

use palmlink_engine::{
    Candidate, Gallery, GalleryError, MatchPolicy, MatchSettings, SearchFilter, SearchMode,
    SearchQuery, Template, MAX_TOP_K,
};
use palmlink_store::{PalmType, Store};
use serde::Serialize;
use uuid::Uuid;

use super::{palm_type, run_blocking, Probe};
use crate::{DomainError, DomainResult};

/// Another user's enrolled palm that the new one matches.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Duplicate {
    /// The other user, as the tenant knows them.
    pub external_user_id: String,
    /// Which of their palms.
    pub palm_type: PalmType,
    /// The mean block similarity.
    pub confidence: f64,
}

/// The templates of users other than `own` in `gallery` that match any of `probes` under
/// `settings`, best first, one entry per template.
pub(crate) async fn find(
    store: &Arc<dyn Store>,
    tenant: Uuid,
    gallery: Arc<Gallery>,
    probes: &[Probe],
    settings: MatchSettings,
    own: Option<Uuid>,
) -> DomainResult<Vec<Duplicate>> {
    let own = own.map(|u| u.as_u128());
    let templates: Vec<_> = probes.iter().map(|p| p.template.clone()).collect();
    let found = run_blocking(move || {
        let mut found: HashMap<u128, Candidate> = HashMap::new();
        // Any palm: a right palm presented as a left one is the same person.
        for template in &templates {
            for cand in matching(&gallery, template, &settings)? {
                if Some(cand.ids.user_key) == own {
                    continue;
                }
                let best = found.entry(cand.ids.feature_id).or_insert(cand.clone());
                if cand.confidence > best.confidence {
                    *best = cand;
                }
            }
        }
        Ok::<_, GalleryError>(found.into_values().collect::<Vec<_>>())
    })
    .await?
    .map_err(DomainError::internal)?;
    let user_ids: Vec<Uuid> = found
        .iter()
        .map(|c| Uuid::from_u128(c.ids.user_key))
        .collect();
    let names: HashMap<Uuid, String> = store
        .get_users_by_ids(tenant, &user_ids)
        .await?
        .into_iter()
        .map(|u| (u.id, u.external_user_id))
        .collect();
    let mut out: Vec<Duplicate> = found
        .iter()
        .filter_map(|c| {
            names
                .get(&Uuid::from_u128(c.ids.user_key))
                .map(|ext| Duplicate {
                    external_user_id: ext.clone(),
                    palm_type: palm_type(c.ids.palm),
                    confidence: f64::from(c.confidence),
                })
        })
        .collect();
    out.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then_with(|| a.external_user_id.cmp(&b.external_user_id))
    });
    Ok(out)
}

/// The first list length tried; it grows eightfold while every row listed matches.
const FIRST_TOP_K: usize = 32;

/// The rows of `gallery` whose exact scores against `template` pass `settings`' decision,
/// up to [`MAX_TOP_K`].
///
/// Under `all_thresholds` (and `k_of_n` over every block) the passing scan lists every
/// passing row first, in any gallery; under `mean` the passing rows are the head of the
/// exact scan's list by mean. Either way, a list of `top_k` rows of which fewer than `top_k`
/// pass holds every passing row, so the search starts short and grows only while the whole
/// list passes. Under `k_of_n` over fewer blocks the passing rows are no head of any list:
/// the exact scan's `MAX_TOP_K` best by mean are checked.
pub(crate) fn matching(
    gallery: &Gallery,
    template: &Template,
    settings: &MatchSettings,
) -> Result<Vec<Candidate>, GalleryError> {
    let heads_a_list = match settings.policy() {
        MatchPolicy::AllThresholds | MatchPolicy::Mean => true,
        MatchPolicy::KOfN { k } => k == settings.thresholds().len(),
    };
    let mut top_k = if heads_a_list { FIRST_TOP_K } else { MAX_TOP_K };
    loop {
        // `Ann` runs the passing scan where it serves (an exact outcome); the graph's
        // outcome may miss a row, so that search runs again exactly.
        let mut query = SearchQuery {
            top_k,
            settings: settings.clone(),
            filter: SearchFilter::default(),
            mode: SearchMode::Ann,
        };
        let mut outcome = gallery.search(template, &query)?;
        if outcome.mode != SearchMode::Exact {
            query.mode = SearchMode::Exact;
            outcome = gallery.search(template, &query)?;
        }
        let listed = outcome.candidates.len();
        let passing: Vec<Candidate> = outcome
            .candidates
            .into_iter()
            .filter(|c| c.comparison.matched)
            .collect();
        if passing.len() < top_k || listed < top_k || top_k == MAX_TOP_K {
            return Ok(passing);
        }
        top_k = (top_k * 8).min(MAX_TOP_K);
    }
}

#[cfg(test)]
mod tests {
    use palmlink_engine::{Layout, PalmSide, RecordIds};

    use super::*;

    /// A unit block of 64 values from a seed (xorshift).
    fn block(seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..64)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// A template of 10 blocks; `noise` mixes in a second seed's values.
    fn palm(seed: u64, noise_seed: u64, noise: f32) -> Template {
        let blocks: Vec<Vec<f32>> = (0..10)
            .map(|b| {
                let base = block(seed * 16 + b);
                let extra = block(noise_seed * 16 + b + 7);
                base.iter().zip(extra).map(|(v, e)| v + noise * e).collect()
            })
            .collect();
        Template::from_blocks(Layout::DEFAULT, &blocks).unwrap()
    }

    /// Every row that passes, by scoring each one (the plain reference).
    fn every_passing_row(
        gallery: &Gallery,
        probe: &Template,
        settings: &MatchSettings,
    ) -> Vec<u128> {
        let mut ids: Vec<u128> = gallery
            .live_records()
            .into_iter()
            .filter(|&(row, _)| gallery.compare(probe, row, settings).unwrap().matched)
            .map(|(_, ids)| ids.feature_id)
            .collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn every_passing_row_is_found_however_many_pass_under_each_policy() {
        let dir = tempfile::tempdir().unwrap();
        let gallery = Gallery::open_or_create(dir.path(), Layout::DEFAULT).unwrap();
        // 300 captures of one palm (more than the first list and its first growth hold)
        // and 300 other palms.
        let mut feature = 0u128;
        for n in 0..300u64 {
            for (seed, noise) in [(1, 0.15), (1000 + n, 0.0)] {
                feature += 1;
                let ids = RecordIds {
                    feature_id: feature,
                    user_key: feature,
                    palm: PalmSide::Right,
                };
                gallery.insert(ids, &palm(seed, n + 5, noise)).unwrap();
            }
        }
        let probe = palm(1, 99_999, 0.15);
        let defaults = MatchSettings::default_for(Layout::DEFAULT);
        let policies = [
            defaults.clone(),
            MatchSettings::new(defaults.thresholds().to_vec(), MatchPolicy::Mean).unwrap(),
            MatchSettings::new(defaults.thresholds().to_vec(), MatchPolicy::KOfN { k: 10 })
                .unwrap(),
            MatchSettings::new(defaults.thresholds().to_vec(), MatchPolicy::KOfN { k: 7 }).unwrap(),
        ];
        for settings in &policies {
            let expected = every_passing_row(&gallery, &probe, settings);
            assert!(expected.len() > 8 * FIRST_TOP_K, "{} pass", expected.len());
            let mut found: Vec<u128> = matching(&gallery, &probe, settings)
                .unwrap()
                .iter()
                .map(|c| c.ids.feature_id)
                .collect();
            found.sort_unstable();
            assert_eq!(found, expected, "{:?}", settings.policy());
        }
        // An impostor matches nothing.
        assert!(matching(&gallery, &palm(5_000_000, 1, 0.0), &defaults)
            .unwrap()
            .is_empty());
    }
}
