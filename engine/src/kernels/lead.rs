//! The interleaved 4-bit lead-block array that the lead scan reads, and the
//! probe and pruning test it is scanned with: the data the lead-scan kernels
//! of every instruction set share.

/// Rows per group of the interleaved lead-block array.
pub(crate) const GROUP_ROWS: usize = 16;

/// Largest magnitude of a quantised probe value in the lead-block scan (a
/// signed byte, multiplied by the unsigned 4-bit gallery codes).
pub(crate) const LEAD_PROBE_MAX: i32 = 127;

/// Largest magnitude of a quantised gallery value in the lead-block array.
pub(crate) const LEAD_CODE_MAX: i32 = 7;

/// The stored nibble of a gallery value `q` in `-7..=7` (offset binary).
pub(super) const NIBBLE_OFFSET: i32 = 8;

/// 64 bytes, 64-byte aligned: the unit of the interleaved lead-block array.
///
/// A group of [`GROUP_ROWS`] rows takes `lead_lines(dim)` lines. Line `j`
/// holds values `8j..8j + 8` of the lead block of each of the 16 rows, four
/// bytes per row (row `l` of the group at bytes `4l..4l + 4`): byte `k` holds
/// value `8j + k` in its low nibble and value `8j + 4 + k` in its high
/// nibble, each as `q + 8` for a code `q` in `-7..=7`. Masking the low (or
/// shifted high) nibbles gives 64 unsigned bytes, and one VNNI instruction
/// then adds four products to each of the 16 rows' sums, with no horizontal
/// sum. Values past `dim` are code 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [u8; 64]);

impl Line {
    /// A line whose every value is code 0.
    pub(crate) const ZERO: Line = Line([0x88; 64]);
}

/// Lines per group for blocks of `dim` values.
pub(crate) fn lead_lines(dim: usize) -> usize {
    dim.div_ceil(8)
}

/// Writes the `dim` codes (each in `-7..=7`) of one row's lead block into
/// lane `lane` of a group.
pub(crate) fn lead_put(group: &mut [Line], lane: usize, codes: &[i8]) {
    assert!(lane < GROUP_ROWS && group.len() == lead_lines(codes.len()));
    for (j, eight) in codes.chunks(8).enumerate() {
        for k in 0..4 {
            let nibble = |i: usize| {
                let q = eight.get(i).map_or(0, |&q| i32::from(q));
                assert!(q.abs() <= LEAD_CODE_MAX, "lead code {q} out of range");
                (q + NIBBLE_OFFSET) as u8
            };
            group[j].0[4 * lane + k] = nibble(k) | nibble(k + 4) << 4;
        }
    }
}

/// The probe's lead block prepared for [`lead_scan`](super::lead_scan): `r_i` in
/// `-LEAD_PROBE_MAX..=LEAD_PROBE_MAX` as signed bytes, four per broadcast
/// word, in the order of the gallery's low and high nibbles.
pub(crate) struct LeadProbe {
    /// Per line: values `8j..8j + 4` (the low nibbles' partners), little-endian.
    pub(super) low: Vec<u32>,
    /// Per line: values `8j + 4..8j + 8` (the high nibbles' partners).
    pub(super) high: Vec<u32>,
    /// `8 · Σ r_i`: the nibbles' offset times the probe, subtracted from the sum.
    pub(super) bias: i32,
    /// The signed values, for the plain version.
    pub(super) signed: Vec<i32>,
}

impl LeadProbe {
    /// From the quantised probe values (each in `-LEAD_PROBE_MAX..=LEAD_PROBE_MAX`).
    pub(crate) fn new(r: &[i32]) -> LeadProbe {
        let lines = lead_lines(r.len());
        let mut signed = vec![0i32; lines * 8];
        signed[..r.len()].copy_from_slice(r);
        let word = |four: &[i32]| {
            four.iter().enumerate().fold(0u32, |w, (k, &v)| {
                assert!(v.abs() <= LEAD_PROBE_MAX, "lead probe value out of range");
                w | u32::from(v as i8 as u8) << (8 * k)
            })
        };
        let low = signed.chunks_exact(8).map(|e| word(&e[..4])).collect();
        let high = signed.chunks_exact(8).map(|e| word(&e[4..])).collect();
        let bias = NIBBLE_OFFSET * signed.iter().sum::<i32>();
        LeadProbe {
            low,
            high,
            bias,
            signed,
        }
    }
}

/// The pruning test of one row: it survives when
/// `((dot · t + w) · s + eps) >= thr`, or when that is NaN (see the passing
/// scan's bound in `search/passing.rs`).
/// Evaluated with the same f32 operations, in the same order, in both versions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeadTest {
    /// The probe scale.
    pub(crate) t: f32,
    /// The bound's weight `w`.
    pub(crate) w: f32,
    /// The rounding allowance.
    pub(crate) eps: f32,
    /// The lead block's threshold.
    pub(crate) thr: f32,
}
