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

use palmlink_engine::{Gallery, SearchFilter, SearchMode, SearchQuery, MAX_TOP_K};
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
    settings: palmlink_engine::MatchSettings,
    own: Option<Uuid>,
) -> DomainResult<Vec<Duplicate>> {
    let own = own.map(|u| u.as_u128());
    let templates: Vec<_> = probes.iter().map(|p| p.template.clone()).collect();
    let found = run_blocking(move || -> Result<Vec<_>, palmlink_engine::GalleryError> {
        let mut found: HashMap<u128, palmlink_engine::Candidate> = HashMap::new();
        for template in &templates {
            // Any palm: a right palm presented as a left one is the same person.
            let mut query = SearchQuery {
                top_k: MAX_TOP_K,
                settings: settings.clone(),
                filter: SearchFilter::default(),
                mode: SearchMode::Auto,
            };
            let mut outcome = gallery.search(template, &query)?;
            if outcome.mode != SearchMode::Exact {
                query.mode = SearchMode::Exact;
                outcome = gallery.search(template, &query)?;
            }
            for cand in outcome.candidates {
                if !cand.comparison.matched || Some(cand.ids.user_key) == own {
                    continue;
                }
                let best = found.entry(cand.ids.feature_id).or_insert(cand.clone());
                if cand.confidence > best.confidence {
                    *best = cand;
                }
            }
        }
        Ok(found.into_values().collect())
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
