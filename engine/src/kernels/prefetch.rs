//! Software prefetch: a hint to start loading memory a search is about to read, so that
//! the loads of many random rows overlap instead of waiting one after another.

/// Asks the CPU to start loading every cache line of `items`. A hint only: it changes no
/// memory and never faults; on targets without a prefetch instruction it does nothing.
#[inline]
pub(crate) fn prefetch<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = items.as_ptr().cast::<i8>();
        let len = std::mem::size_of_val(items);
        for offset in (0..len).step_by(64) {
            // SAFETY: SSE is part of the x86-64 baseline, and a prefetch is only a hint:
            // it never faults or changes memory, whatever the address. The address is
            // inside `items` anyway (`offset < len`), so `wrapping_add` stays in bounds.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}
