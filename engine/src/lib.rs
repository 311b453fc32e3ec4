//! PalmLink's matching engine: palm templates in memory-mapped galleries,
//! 1:1 scoring with SIMD against per-block thresholds, and 1:N identification.
//!
//! A template is `blocks x dim` f32 values (default 10 x 64), each block
//! L2-normalised on ingest, so a block's dot product is its cosine similarity.
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

pub mod calibration;
mod error;
mod gallery;
mod ids;
pub mod kernels;
mod scoring;
mod search;
mod storage;
mod template;

pub use error::GalleryError;
pub use gallery::Gallery;
pub use ids::{PalmSide, RecordIds, RowId};
pub use scoring::{block_scores, compare, Comparison, MatchPolicy, MatchSettings, SettingsError};
pub use search::graph::{AnnParams, IndexOrigin};
pub use search::lifecycle::{IndexInfo, IndexPolicy, IndexState, FOLD_ROWS};
pub use search::strategy::{Strategy, AUTO_ANN_MIN_ROWS};
pub use search::{Candidate, SearchFilter, SearchMode, SearchOutcome, SearchQuery, MAX_TOP_K};
pub use storage::{format, ScrubReport};
pub use template::{Layout, Template, TemplateError};
