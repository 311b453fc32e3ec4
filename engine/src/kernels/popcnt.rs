//! The POPCNT version of the Hamming distance (x86-64): the plain loop,
//! compiled with the population-count instruction.

/// # Safety
/// The CPU must support POPCNT.
#[target_feature(enable = "popcnt")]
pub(super) unsafe fn hamming(a: &[u64], b: &[u64]) -> u32 {
    super::reference::hamming(a, b)
}
