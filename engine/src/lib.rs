//! PalmLink's matching engine: palm templates in memory-mapped galleries,
//! 1:1 scoring with SIMD against per-block thresholds, and 1:N identification.
//!
//! A template is `blocks x dim` f32 values (default 10 x 64), each block
//! L2-normalised on ingest, so a block's dot product is its cosine similarity.
//! A comparison scores every block and decides under a tenant's per-block
//! thresholds and policy; 1:N ranks a gallery by the mean block score and
//! applies the same decision to each candidate.
//!
//! You open a [`Gallery`]: one tenant's templates in one directory. It owns
//! two things and routes every call between them:
//!
//! * the row store (`storage/`): the vectors and records in two memory-mapped
//!   files, checksummed and committed through two alternating header slots,
//!   so an insert is durable when it returns and a crash leaves exactly the
//!   acknowledged rows ([`format`] names the files). Readers never wait for
//!   writers: they score from a snapshot of the mappings and the committed
//!   count;
//! * the accelerators (`search/`): a compact quantised copy of the rows with
//!   a 4-bit copy of one block, derived in the background after open, and a
//!   graph index built with `hnsw_rs` and searched in a flat, memory-mapped
//!   form. A query's [`SearchMode`] picks a [`Strategy`]: the quantised scan
//!   (the exact top-k), the passing scan (every row that passes the
//!   decision, in exact order, reading one block per row), or the graph.
//!   Every strategy re-scores its candidates in f32 with the kernel 1:1
//!   scoring uses, so a candidate's figures are always those of
//!   [`Gallery::compare`].
//!
//! A gallery can be a replica of an ordered template log: a logged insert or
//! erasure commits the log sequence it applies with its rows
//! ([`Gallery::insert_batch_logged`], [`Gallery::delete_logged`],
//! [`Gallery::advance_sequence`], [`Gallery::applied_sequence`]), and
//! [`Gallery::inspect`] reads a gallery's last commit without its lock. An
//! erasure leaves no copy of the template in any file of the gallery or in
//! its memory.
//!
//! Underneath, [`kernels`] holds every SIMD and integer kernel with its
//! plain reference, and [`calibration`] the accuracy measures (FMR, FNMR,
//! DET, EER) and threshold calibration over score samples.
//!
//! For many probes at once, [`Gallery::score_matrix`] and
//! [`Gallery::search_batch`] take an `ndarray` matrix with one probe per row.
//!
//! ```
//! use palmlink_engine::{Gallery, Layout, MatchSettings, PalmSide, RecordIds, SearchQuery, Template};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let gallery = Gallery::create(dir.path(), Layout::DEFAULT).unwrap();
//! let values: Vec<f32> = (0..640).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
//! let enrolled = Template::from_f32(Layout::DEFAULT, &values).unwrap();
//! let ids = RecordIds { feature_id: 1, user_key: 42, palm: PalmSide::Right };
//! let row = gallery.insert(ids, &enrolled).unwrap(); // durable on return
//!
//! let settings = MatchSettings::default_for(Layout::DEFAULT);
//! let one_to_one = gallery.compare(&enrolled, row, &settings).unwrap();
//! assert!(one_to_one.matched);
//!
//! let found = gallery.search(&enrolled, &SearchQuery::new(5, settings)).unwrap();
//! assert_eq!(found.candidates[0].ids, ids);
//! ```

/// Accuracy measures and threshold calibration (used by the fixtures and the
/// accuracy benches).
pub mod calibration;
mod error;
mod gallery;
mod ids;
/// The SIMD and integer kernels, with runtime dispatch and their plain
/// references (the 1:1 kernels and the reference are public for the scoring
/// benches).
pub mod kernels;
mod scoring;
mod search;
mod storage;
mod template;

pub use error::GalleryError;
pub use gallery::Gallery;
pub use ids::{PalmSide, RecordIds, RowId};
pub use scoring::{block_scores, compare, Comparison, MatchPolicy, MatchSettings, SettingsError};
pub use search::graph::{AnnParams, GraphBuilder, IndexOrigin};
pub use search::lifecycle::{IndexInfo, IndexPolicy, IndexState, FOLD_ROWS};
pub use search::strategy::{Strategy, AUTO_ANN_MIN_ROWS};
pub use search::{Candidate, SearchFilter, SearchMode, SearchOutcome, SearchQuery, MAX_TOP_K};
/// The on-disk layout of a gallery: file names and sizes, for tools and
/// tests that read gallery files.
pub use storage::format;
pub use storage::{GalleryInspection, ScrubReport};
pub use template::{Layout, Template, TemplateError};
