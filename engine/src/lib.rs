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
pub mod error;
mod prefetch;
pub mod scoring;
pub mod search;
pub mod storage;
pub mod template;

pub use error::{GalleryError, SettingsError, TemplateError};
pub use scoring::{block_scores, compare, Comparison, MatchPolicy, MatchSettings};
pub use search::{
    AnnParams, Candidate, IndexInfo, IndexOrigin, IndexPolicy, IndexState, SearchFilter,
    SearchMode, SearchOutcome, SearchQuery, Strategy,
};
pub use storage::{Gallery, PalmSide, RecordIds, RowId, ScrubReport};
pub use template::{Layout, Template};
