//! Template layout, validated block-normalised templates, and
//! [`TemplateError`]: why input is not one.

/// A template that cannot be accepted. Every variant is bad input (a client error).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TemplateError {
    /// The layout itself is out of bounds.
    #[error("invalid layout {blocks} x {dim}")]
    InvalidLayout {
        /// Requested blocks.
        blocks: usize,
        /// Requested dimension.
        dim: usize,
    },
    /// The number of blocks differs from the layout's.
    #[error("expected {expected} blocks, got {actual}")]
    WrongBlockCount {
        /// Blocks in the layout.
        expected: usize,
        /// Blocks received.
        actual: usize,
    },
    /// One block has the wrong number of values.
    #[error("block {block} has {actual} values, expected {expected}")]
    WrongBlockDim {
        /// Index of the block.
        block: usize,
        /// Values per block in the layout.
        expected: usize,
        /// Values received.
        actual: usize,
    },
    /// A flat value or byte buffer has the wrong length.
    #[error("expected {expected} values or bytes, got {actual}")]
    WrongLength {
        /// Expected length.
        expected: usize,
        /// Received length.
        actual: usize,
    },
    /// A value is NaN or infinite.
    #[error("block {block} value {index} is not a finite number")]
    NonFinite {
        /// Index of the block.
        block: usize,
        /// Index of the value within the block.
        index: usize,
    },
    /// A block is all zeros, so it has no direction to compare.
    #[error("block {block} has zero norm")]
    ZeroNormBlock {
        /// Index of the block.
        block: usize,
    },
}

/// Shape of a template: `blocks` feature blocks of `dim` f32 values each.
///
/// A gallery fixes its layout at creation; every template stored in it or
/// compared against it must have the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Number of feature blocks.
    pub blocks: usize,
    /// Values per block.
    pub dim: usize,
}

impl Layout {
    /// The scanner default: 10 blocks of 64 values.
    pub const DEFAULT: Layout = Layout {
        blocks: 10,
        dim: 64,
    };

    /// Largest accepted number of blocks.
    pub const MAX_BLOCKS: usize = 64;
    /// Largest accepted block dimension.
    pub const MAX_DIM: usize = 4096;

    /// A layout of `blocks` x `dim`, both at least 1 and at most the limits above.
    pub fn new(blocks: usize, dim: usize) -> Result<Layout, TemplateError> {
        if blocks == 0 || dim == 0 || blocks > Self::MAX_BLOCKS || dim > Self::MAX_DIM {
            return Err(TemplateError::InvalidLayout { blocks, dim });
        }
        Ok(Layout { blocks, dim })
    }

    /// Total number of f32 values in a template.
    pub fn len(&self) -> usize {
        self.blocks * self.dim
    }

    /// Always false: a valid layout has at least one value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size in bytes of a template's values.
    pub fn byte_len(&self) -> usize {
        self.len() * std::mem::size_of::<f32>()
    }
}

impl Default for Layout {
    fn default() -> Self {
        Layout::DEFAULT
    }
}

/// A validated template: the layout's length, finite values, and every block
/// L2-normalised (so a block dot product is its cosine similarity).
///
/// The values are kept 64-byte aligned, like gallery rows, so the SIMD kernels
/// never load across a cache line.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    layout: Layout,
    lanes: Vec<Lane>,
}

/// Sixteen values on one cache line: the unit of a template's storage.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Lane([f32; 16]);

/// `values` copied into cache-line-aligned storage (the tail padded with zeros).
fn to_lanes(values: &[f32]) -> Vec<Lane> {
    let mut lanes = vec![Lane([0.0; 16]); values.len().div_ceil(16)];
    bytemuck::cast_slice_mut::<Lane, f32>(&mut lanes)[..values.len()].copy_from_slice(values);
    lanes
}

impl Template {
    /// Builds a template from one slice per block.
    pub fn from_blocks<B: AsRef<[f32]>>(
        layout: Layout,
        blocks: &[B],
    ) -> Result<Template, TemplateError> {
        if blocks.len() != layout.blocks {
            return Err(TemplateError::WrongBlockCount {
                expected: layout.blocks,
                actual: blocks.len(),
            });
        }
        let mut values = Vec::with_capacity(layout.len());
        for (block, values_of_block) in blocks.iter().enumerate() {
            let values_of_block = values_of_block.as_ref();
            if values_of_block.len() != layout.dim {
                return Err(TemplateError::WrongBlockDim {
                    block,
                    expected: layout.dim,
                    actual: values_of_block.len(),
                });
            }
            values.extend_from_slice(values_of_block);
        }
        Self::normalised(layout, values)
    }

    /// Builds a template from the blocks' values concatenated.
    pub fn from_f32(layout: Layout, values: &[f32]) -> Result<Template, TemplateError> {
        if values.len() != layout.len() {
            return Err(TemplateError::WrongLength {
                expected: layout.len(),
                actual: values.len(),
            });
        }
        Self::normalised(layout, values.to_vec())
    }

    /// Builds a template from little-endian f32 bytes, blocks concatenated.
    pub fn from_le_bytes(layout: Layout, bytes: &[u8]) -> Result<Template, TemplateError> {
        if bytes.len() != layout.byte_len() {
            return Err(TemplateError::WrongLength {
                expected: layout.byte_len(),
                actual: bytes.len(),
            });
        }
        let values = bytes
            .chunks_exact(4)
            .map(|word| f32::from_le_bytes([word[0], word[1], word[2], word[3]]))
            .collect();
        Self::normalised(layout, values)
    }

    /// Wraps values that are already validated and normalised (read back from a
    /// checksummed gallery row).
    pub(crate) fn from_normalised_unchecked(layout: Layout, values: &[f32]) -> Template {
        debug_assert_eq!(values.len(), layout.len());
        Template {
            layout,
            lanes: to_lanes(values),
        }
    }

    fn normalised(layout: Layout, mut values: Vec<f32>) -> Result<Template, TemplateError> {
        for (block, chunk) in values.chunks_exact_mut(layout.dim).enumerate() {
            if let Some(index) = chunk.iter().position(|v| !v.is_finite()) {
                return Err(TemplateError::NonFinite { block, index });
            }
            // f64 so that neither large values overflow nor tiny ones underflow.
            let norm = chunk
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt();
            if norm == 0.0 || !norm.is_finite() {
                return Err(TemplateError::ZeroNormBlock { block });
            }
            for v in chunk.iter_mut() {
                *v = (f64::from(*v) / norm) as f32;
            }
        }
        Ok(Template {
            layout,
            lanes: to_lanes(&values),
        })
    }

    /// The template's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The normalised values, blocks concatenated.
    pub fn as_slice(&self) -> &[f32] {
        &bytemuck::cast_slice(&self.lanes)[..self.layout.len()]
    }

    /// The normalised values of block `index` (panics if out of range).
    pub fn block(&self, index: usize) -> &[f32] {
        &self.as_slice()[index * self.layout.dim..(index + 1) * self.layout.dim]
    }

    /// The values as little-endian bytes (the `f32le_base64` wire form).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.as_slice()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(layout: Layout, value: f32) -> Vec<Vec<f32>> {
        vec![vec![value; layout.dim]; layout.blocks]
    }

    #[test]
    fn every_block_is_normalised() {
        let layout = Layout::new(3, 4).unwrap();
        let t = Template::from_blocks(layout, &blocks(layout, 2.5)).unwrap();
        for b in 0..3 {
            let norm: f32 = t.block(b).iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn wrong_shapes_are_typed_errors() {
        let layout = Layout::DEFAULT;
        let mut b = blocks(layout, 1.0);
        b.pop();
        assert_eq!(
            Template::from_blocks(layout, &b),
            Err(TemplateError::WrongBlockCount {
                expected: 10,
                actual: 9
            })
        );
        let mut b = blocks(layout, 1.0);
        b[4].push(1.0);
        assert_eq!(
            Template::from_blocks(layout, &b),
            Err(TemplateError::WrongBlockDim {
                block: 4,
                expected: 64,
                actual: 65
            })
        );
        assert_eq!(
            Template::from_f32(layout, &[1.0; 639]),
            Err(TemplateError::WrongLength {
                expected: 640,
                actual: 639
            })
        );
        assert_eq!(
            Template::from_le_bytes(layout, &[0u8; 2559]),
            Err(TemplateError::WrongLength {
                expected: 2560,
                actual: 2559
            })
        );
    }

    #[test]
    fn non_finite_and_zero_blocks_are_rejected() {
        let layout = Layout::DEFAULT;
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut b = blocks(layout, 1.0);
            b[2][7] = bad;
            assert_eq!(
                Template::from_blocks(layout, &b),
                Err(TemplateError::NonFinite { block: 2, index: 7 })
            );
        }
        let mut b = blocks(layout, 1.0);
        b[9] = vec![0.0; 64];
        assert_eq!(
            Template::from_blocks(layout, &b),
            Err(TemplateError::ZeroNormBlock { block: 9 })
        );
    }

    #[test]
    fn extreme_magnitudes_normalise() {
        let layout = Layout::new(2, 2).unwrap();
        let t = Template::from_f32(layout, &[f32::MAX, f32::MAX, 1e-40, 0.0]).unwrap();
        assert!(t.as_slice().iter().all(|v| v.is_finite()));
        assert!((t.block(1)[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn values_are_cache_line_aligned() {
        let layout = Layout::new(3, 5).unwrap();
        let t = Template::from_f32(layout, &[1.0; 15]).unwrap();
        assert_eq!(t.as_slice().as_ptr() as usize % 64, 0);
        assert_eq!(t.as_slice().len(), 15);
        assert_eq!(t.clone(), t);
    }

    #[test]
    fn le_bytes_round_trip() {
        let layout = Layout::new(2, 3).unwrap();
        let t = Template::from_f32(layout, &[1.0, 2.0, 3.0, -1.0, 0.5, 0.25]).unwrap();
        let again = Template::from_le_bytes(layout, &t.to_le_bytes()).unwrap();
        assert_eq!(t, again);
    }

    #[test]
    fn invalid_layouts_are_rejected() {
        assert!(Layout::new(0, 64).is_err());
        assert!(Layout::new(10, 0).is_err());
        assert!(Layout::new(65, 64).is_err());
        assert_eq!(Layout::new(10, 64).unwrap(), Layout::DEFAULT);
    }
}
