//! Transparent huge pages: a hint that a large buffer read at random (the graph
//! build's keys and lists) be backed by 2 MB pages, so that its reads miss the
//! TLB far less often than they do over 4 KB pages.

/// Buffers smaller than one huge page gain nothing from the advice.
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back `buffer`'s allocation (its whole capacity, touched
/// or not) with huge pages where it can. Advise before the first write: pages
/// already faulted in stay small until the kernel's background scan merges
/// them. A hint only: it changes no memory, and does nothing where transparent
/// huge pages are off or off Linux.
pub(crate) fn advise_huge_pages<T>(buffer: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        let bytes = buffer.capacity().saturating_mul(std::mem::size_of::<T>());
        if bytes < HUGE_PAGE {
            return;
        }
        // SAFETY: `sysconf` only reads a system constant.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let start = buffer.as_ptr() as usize;
        let (lo, hi) = (start.next_multiple_of(page), (start + bytes) / page * page);
        if hi > lo {
            // SAFETY: `[lo, hi)` lies within `buffer`'s allocation, which stays mapped
            // for the call (`buffer` is borrowed). `MADV_HUGEPAGE` neither changes the
            // memory's contents nor unmaps any of it: it only marks the range as one
            // the kernel may back with huge pages (a failure is ignored, as a hint).
            unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}
