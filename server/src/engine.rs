//! In-memory stand-in for the engine API, used until the engine crate exports it.
#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    pub blocks: usize,
    pub dim: usize,
}
impl Layout {
    pub const DEFAULT: Layout = Layout { blocks: 10, dim: 64 };
    pub fn len(&self) -> usize {
        self.blocks * self.dim
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    layout: Layout,
    values: Vec<f32>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TemplateError {
    #[error("invalid layout")]
    InvalidLayout { blocks: usize, dim: usize },
    #[error("wrong block count")]
    WrongBlockCount { expected: usize, actual: usize },
    #[error("wrong block dim")]
    WrongBlockDim { block: usize, expected: usize, actual: usize },
    #[error("wrong length")]
    WrongLength { expected: usize, actual: usize },
    #[error("non finite")]
    NonFinite { block: usize, index: usize },
    #[error("zero norm")]
    ZeroNormBlock { block: usize },
}

impl Template {
    pub fn from_blocks(layout: Layout, blocks: &[Vec<f32>]) -> Result<Template, TemplateError> {
        if blocks.len() != layout.blocks {
            return Err(TemplateError::WrongBlockCount { expected: layout.blocks, actual: blocks.len() });
        }
        for (b, block) in blocks.iter().enumerate() {
            if block.len() != layout.dim {
                return Err(TemplateError::WrongBlockDim { block: b, expected: layout.dim, actual: block.len() });
            }
        }
        let flat: Vec<f32> = blocks.iter().flatten().copied().collect();
        Self::from_f32(layout, &flat)
    }
    pub fn from_f32(layout: Layout, values: &[f32]) -> Result<Template, TemplateError> {
        if values.len() != layout.len() {
            return Err(TemplateError::WrongLength { expected: layout.len(), actual: values.len() });
        }
        let mut out = values.to_vec();
        for b in 0..layout.blocks {
            let block = &mut out[b * layout.dim..(b + 1) * layout.dim];
            for (i, v) in block.iter().enumerate() {
                if !v.is_finite() {
                    return Err(TemplateError::NonFinite { block: b, index: i });
                }
            }
            let norm = block.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>().sqrt();
            if norm == 0.0 || !norm.is_finite() {
                return Err(TemplateError::ZeroNormBlock { block: b });
            }
            for v in block.iter_mut() {
                *v = (f64::from(*v) / norm) as f32;
            }
        }
        Ok(Template { layout, values: out })
    }
    pub fn from_le_bytes(layout: Layout, bytes: &[u8]) -> Result<Template, TemplateError> {
        if bytes.len() != layout.len() * 4 {
            return Err(TemplateError::WrongLength { expected: layout.len() * 4, actual: bytes.len() });
        }
        let values: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Self::from_f32(layout, &values)
    }
    pub fn layout(&self) -> Layout {
        self.layout
    }
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }
    pub fn block(&self, i: usize) -> &[f32] {
        &self.values[i * self.layout.dim..(i + 1) * self.layout.dim]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchPolicy {
    AllThresholds,
    Mean,
    KOfN { k: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct MatchSettings {
    thresholds: Vec<f32>,
    policy: MatchPolicy,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SettingsError {
    #[error("expected {expected} thresholds, got {actual}")]
    WrongThresholdCount { expected: usize, actual: usize },
    #[error("threshold {block} out of range: {value}")]
    ThresholdOutOfRange { block: usize, value: f32 },
    #[error("invalid k {k} for {blocks} blocks")]
    InvalidK { k: usize, blocks: usize },
}

impl MatchSettings {
    pub const DEFAULT_THRESHOLDS: [f32; 10] =
        [0.7072, 0.7253, 0.7018, 0.7211, 0.7426, 0.6929, 0.6850, 0.7100, 0.7526, 0.7004];
    pub fn new(thresholds: Vec<f32>, policy: MatchPolicy) -> Result<MatchSettings, SettingsError> {
        for (b, t) in thresholds.iter().enumerate() {
            if !t.is_finite() || *t < -1.0 || *t > 1.0 {
                return Err(SettingsError::ThresholdOutOfRange { block: b, value: *t });
            }
        }
        if let MatchPolicy::KOfN { k } = policy {
            if k == 0 || k > thresholds.len() {
                return Err(SettingsError::InvalidK { k, blocks: thresholds.len() });
            }
        }
        Ok(MatchSettings { thresholds, policy })
    }
    pub fn default_for(_layout: Layout) -> MatchSettings {
        MatchSettings { thresholds: Self::DEFAULT_THRESHOLDS.to_vec(), policy: MatchPolicy::AllThresholds }
    }
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }
    pub fn policy(&self) -> MatchPolicy {
        self.policy
    }
    pub fn decide(&self, s: &[f32]) -> bool {
        match self.policy {
            MatchPolicy::AllThresholds => s.iter().zip(&self.thresholds).all(|(a, t)| a >= t),
            MatchPolicy::Mean => {
                let n = s.len().max(1) as f32;
                s.iter().sum::<f32>() / n >= self.thresholds.iter().sum::<f32>() / n
            }
            MatchPolicy::KOfN { k } => s.iter().zip(&self.thresholds).filter(|(a, t)| a >= t).count() >= k,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub scores: Vec<f32>,
    pub mean: f32,
    pub matched: bool,
}

pub fn block_scores(probe: &Template, enrolled: &Template) -> Vec<f32> {
    (0..probe.layout.blocks)
        .map(|b| probe.block(b).iter().zip(enrolled.block(b)).map(|(a, c)| a * c).sum())
        .collect()
}

pub fn compare(probe: &Template, enrolled: &Template, settings: &MatchSettings) -> Comparison {
    let scores = block_scores(probe, enrolled);
    let mean = scores.iter().sum::<f32>() / scores.len().max(1) as f32;
    let matched = settings.decide(&scores);
    Comparison { scores, mean, matched }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PalmSide {
    Left,
    Right,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordIds {
    pub feature_id: u128,
    pub user_key: u128,
    pub palm: PalmSide,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowId(pub u64);

pub struct Gallery {
    layout: Layout,
    rows: Mutex<Vec<Option<(RecordIds, Template)>>>,
}

#[derive(Clone, Debug, Default)]
pub struct SearchFilter {
    pub palm: Option<PalmSide>,
    pub user_key: Option<u128>,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SearchMode {
    #[default]
    Auto,
    Exact,
    Ann,
}
#[derive(Clone, Debug)]
pub struct SearchQuery {
    pub top_k: usize,
    pub settings: MatchSettings,
    pub filter: SearchFilter,
    pub mode: SearchMode,
}
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub row: RowId,
    pub ids: RecordIds,
    pub confidence: f32,
    pub comparison: Comparison,
}
#[derive(Clone, Debug)]
pub struct SearchOutcome {
    pub candidates: Vec<Candidate>,
    pub mode: SearchMode,
    pub gallery_size: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("io error at {path:?}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("unknown row {0:?}")]
    UnknownRow(RowId),
    #[error("deleted row {0:?}")]
    Deleted(RowId),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
}

impl Gallery {
    pub fn open_or_create(dir: &Path, layout: Layout) -> Result<Gallery, GalleryError> {
        std::fs::create_dir_all(dir).map_err(|source| GalleryError::Io { path: dir.to_path_buf(), source })?;
        Ok(Gallery { layout, rows: Mutex::new(Vec::new()) })
    }
    pub fn layout(&self) -> Layout {
        self.layout
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<(RecordIds, Template)>>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn insert(&self, ids: RecordIds, template: &Template) -> Result<RowId, GalleryError> {
        let mut rows = self.lock();
        rows.push(Some((ids, template.clone())));
        Ok(RowId(rows.len() as u64 - 1))
    }
    pub fn insert_batch(&self, items: &[(RecordIds, &Template)]) -> Result<Vec<RowId>, GalleryError> {
        let mut rows = self.lock();
        let mut out = Vec::new();
        for (ids, t) in items {
            rows.push(Some((*ids, (*t).clone())));
            out.push(RowId(rows.len() as u64 - 1));
        }
        Ok(out)
    }
    pub fn delete(&self, row: RowId) -> Result<bool, GalleryError> {
        let mut rows = self.lock();
        match rows.get_mut(row.0 as usize) {
            None => Err(GalleryError::UnknownRow(row)),
            Some(slot) => Ok(slot.take().is_some()),
        }
    }
    pub fn compare(&self, probe: &Template, row: RowId, settings: &MatchSettings) -> Result<Comparison, GalleryError> {
        let rows = self.lock();
        match rows.get(row.0 as usize) {
            None => Err(GalleryError::UnknownRow(row)),
            Some(None) => Err(GalleryError::Deleted(row)),
            Some(Some((_, t))) => Ok(compare(probe, t, settings)),
        }
    }
    pub fn live_records(&self) -> Vec<(RowId, RecordIds)> {
        self.lock()
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|(ids, _)| (RowId(i as u64), *ids)))
            .collect()
    }
    pub fn live_count(&self) -> usize {
        self.lock().iter().filter(|r| r.is_some()).count()
    }
    pub fn search(&self, probe: &Template, query: &SearchQuery) -> Result<SearchOutcome, GalleryError> {
        let rows = self.lock();
        let mut cands: Vec<Candidate> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|(ids, t)| (i, ids, t)))
            .filter(|(_, ids, _)| query.filter.palm.is_none_or(|p| p == ids.palm))
            .map(|(i, ids, t)| {
                let c = compare(probe, t, &query.settings);
                Candidate { row: RowId(i as u64), ids: *ids, confidence: c.mean, comparison: c }
            })
            .collect();
        cands.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        cands.truncate(query.top_k);
        Ok(SearchOutcome { candidates: cands, mode: SearchMode::Exact, gallery_size: rows.iter().filter(|r| r.is_some()).count() })
    }
}
