//! The batch API: many probes at once, as a matrix with one probe per row
//! (an `ndarray` view of f32 values, each row one template's blocks
//! concatenated, normalised on the way in like [`Template::from_f32`]).
//!
//! * [`Gallery::score_matrix`]: the probes x candidates matrix of mean block
//!   similarities, each entry the figure [`Gallery::compare`] reports;
//! * [`Gallery::search_batch`] and [`Gallery::search_batch_with`]: one
//!   search per probe, each outcome the one [`Gallery::search_with`] gives.
//!   The f32 scan runs as one pass over the gallery for every probe (each
//!   row read from memory once per task, not once per probe); the other
//!   strategies run one search per probe on the rayon pool.
//!
//! A matrix of the wrong width is [`GalleryError::ProbeWidth`]; a row that
//! is not a template (a non-finite value, a zero block) is
//! [`GalleryError::InvalidProbe`] naming the row.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::Gallery;
use crate::error::GalleryError;
use crate::ids::RowId;
use crate::kernels;
use crate::scoring::mean_score;
use crate::search::{exact, SearchOutcome, SearchQuery, Strategy};
use crate::template::{Layout, Template};

impl Gallery {
    /// The mean block similarity of every probe (a row of `probes`) against
    /// the template at every row of `rows`: a `probes.nrows() x rows.len()`
    /// matrix, entry `(i, j)` equal to the `mean` of [`Gallery::compare`] of
    /// probe `i` and `rows[j]`, bit for bit. Every row's checksums are
    /// verified first; a deleted row is [`GalleryError::Deleted`], one never
    /// written [`GalleryError::UnknownRow`].
    pub fn score_matrix(
        &self,
        probes: ArrayView2<'_, f32>,
        rows: &[RowId],
    ) -> Result<Array2<f32>, GalleryError> {
        let layout = self.layout();
        let probes = templates(layout, probes)?;
        let snap = self.rows.snapshot();
        let columns = rows
            .par_iter()
            .map(|&row| {
                if self.rows.checked_live_row(&snap, row)?.is_none() {
                    return Err(GalleryError::Deleted(row));
                }
                let vector = snap.vector(row.0);
                let mut scores = [0.0f32; Layout::MAX_BLOCKS];
                let scores = &mut scores[..layout.blocks];
                let column: Vec<f32> = probes
                    .iter()
                    .map(|probe| {
                        kernels::block_dots(probe.as_slice(), vector, layout.dim, scores);
                        mean_score(scores)
                    })
                    .collect();
                if !snap.is_live(row.0) {
                    return Err(GalleryError::Deleted(row));
                }
                Ok(column)
            })
            .collect::<Result<Vec<Vec<f32>>, GalleryError>>()?;
        Ok(Array2::from_shape_fn(
            (probes.len(), rows.len()),
            |(i, j)| columns[j][i],
        ))
    }

    /// One search per probe (a row of `probes`), outcomes in probe order,
    /// each the one [`Gallery::search`] gives; the strategy is chosen once,
    /// for the whole batch.
    pub fn search_batch(
        &self,
        probes: ArrayView2<'_, f32>,
        query: &SearchQuery,
    ) -> Result<Vec<SearchOutcome>, GalleryError> {
        self.search_batch_with(probes, query, self.strategy_for(query))
    }

    /// As [`Gallery::search_batch`] with a chosen [`Strategy`]: each outcome
    /// the one [`Gallery::search_with`] gives for that probe.
    pub fn search_batch_with(
        &self,
        probes: ArrayView2<'_, f32>,
        query: &SearchQuery,
        strategy: Strategy,
    ) -> Result<Vec<SearchOutcome>, GalleryError> {
        let probes = templates(self.layout(), probes)?;
        query.validate(self.layout())?;
        if strategy != Strategy::F32Scan {
            return probes
                .par_iter()
                .map(|probe| self.search_with(probe, query, strategy))
                .collect();
        }
        let snap = self.rows.snapshot();
        let gallery_size = self.live_count();
        Ok(exact::search_batch(&snap, &probes, query)
            .into_iter()
            .map(|candidates| SearchOutcome {
                candidates,
                mode: strategy.mode(),
                strategy,
                gallery_size,
            })
            .collect())
    }
}

/// The rows of `probes` as templates of `layout`.
fn templates(layout: Layout, probes: ArrayView2<'_, f32>) -> Result<Vec<Template>, GalleryError> {
    if probes.ncols() != layout.len() {
        return Err(GalleryError::ProbeWidth {
            expected: layout.len(),
            actual: probes.ncols(),
        });
    }
    probes
        .rows()
        .into_iter()
        .enumerate()
        .map(|(index, row)| {
            let values: Vec<f32> = row.iter().copied().collect();
            Template::from_f32(layout, &values)
                .map_err(|source| GalleryError::InvalidProbe { index, source })
        })
        .collect()
}
