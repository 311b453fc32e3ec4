//! Every fast kernel against its plain version.

use super::*;
use proptest::prelude::*;

/// Pseudo-random words from a seed (xorshift).
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

proptest! {
    #[test]
    fn i8_i16_blocks_match_plain(
        blocks in 1usize..6,
        dim_words in 1usize..4,
        seed in any::<u64>(),
    ) {
        let dim = dim_words * 32;
        let max = probe_max(dim);
        let mut next = xorshift(seed);
        let g: Vec<i8> = (0..blocks * dim).map(|_| (next() % 255) as i32 as i8).collect();
        let g: Vec<i8> = g.into_iter().map(|v| v.max(-127)).collect();
        let p: Vec<i16> = (0..blocks * dim)
            .map(|_| ((next() % (2 * max as u64 + 1)) as i64 - max as i64) as i16)
            .collect();
        let mut fast = vec![0; blocks];
        let mut plain = vec![0; blocks];
        block_dots_i8_i16(&g, &p, dim, &mut fast);
        reference::block_dots_i8_i16(&g, &p, dim, &mut plain);
        prop_assert_eq!(&fast, &plain);
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: AVX2 was detected; dim is a multiple of 32 and both
            // slices hold exactly `blocks * dim` values.
            unsafe { avx2::block_dots_i8_i16(&g, &p, dim, &mut fast) };
            prop_assert_eq!(&fast, &plain);
        }
    }

    #[test]
    fn i8_dot_and_hamming_match_plain(a in proptest::collection::vec(any::<i8>(), 0..700), seed in any::<u64>()) {
        let b: Vec<i8> = a.iter().enumerate().map(|(i, &x)| x.wrapping_mul(3).wrapping_add((seed >> (i % 56)) as i8)).collect();
        prop_assert_eq!(dot_i8(&a, &b), reference::dot_i8(&a, &b));
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: AVX2 was detected; the slices have equal lengths.
            prop_assert_eq!(unsafe { avx2::dot_i8(&a, &b) }, reference::dot_i8(&a, &b));
        }
        let wa: Vec<u64> = a.iter().map(|&x| (x as u64).wrapping_mul(seed | 1)).collect();
        let wb: Vec<u64> = b.iter().map(|&x| (x as u64).wrapping_mul(seed.rotate_left(7) | 1)).collect();
        prop_assert_eq!(hamming(&wa, &wb), reference::hamming(&wa, &wb));
    }
}

proptest! {
    /// The VNNI lead scan (where the CPU has it) reports exactly the masks
    /// of the plain version, on random values, scales and thresholds,
    /// including the extreme values and NaN scales.
    #[test]
    fn lead_scan_matches_plain(
        groups in 1usize..6,
        dim_quads in 1usize..20,
        seed in any::<u64>(),
        thr in -1.0f32..1.0,
    ) {
        let dim = dim_quads * 4 - (seed % 4) as usize;
        let lim = LEAD_CODE_MAX as u64;
        let rmax = LEAD_PROBE_MAX as u64;
        let mut next = xorshift(seed);
        let per = lead_lines(dim);
        let mut lines = vec![Line::ZERO; groups * per];
        for g in 0..groups {
            for lane in 0..GROUP_ROWS {
                let v: Vec<i8> = (0..dim)
                    .map(|_| match next() % 8 {
                        0 => lim as i8,
                        1 => -(lim as i8),
                        _ => ((next() % (2 * lim + 1)) as i64 - lim as i64) as i8,
                    })
                    .collect();
                lead_put(&mut lines[g * per..(g + 1) * per], lane, &v);
            }
        }
        let r: Vec<i32> = (0..dim)
            .map(|_| match next() % 8 {
                0 => LEAD_PROBE_MAX,
                1 => -LEAD_PROBE_MAX,
                _ => ((next() % (2 * rmax + 1)) as i64 - rmax as i64) as i32,
            })
            .collect();
        let probe = LeadProbe::new(&r);
        let scales: Vec<f32> = (0..groups * GROUP_ROWS)
            .map(|i| if i == 5 { f32::NAN } else { (next() % 1000) as f32 * 1e-5 })
            .collect();
        let test = LeadTest { t: 1.0 / 20.0 / 127.0, w: 3.0, eps: 1e-5, thr };
        let (mut fast, mut plain) = (Vec::new(), Vec::new());
        lead_scan(&lines, &scales, &probe, test, 0..groups, &mut fast);
        reference::lead_scan(&lines, &scales, &probe, test, 0..groups, &mut plain);
        prop_assert_eq!(&fast, &plain);
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            let mut second = Vec::new();
            // SAFETY: AVX2 was detected; `lines` holds `groups * per`
            // lines and `scales` 16 per group.
            unsafe { avx2::lead_scan(&lines, &scales, &probe, test, 0..groups, &mut second) };
            prop_assert_eq!(&second, &plain);
        }
        // A threshold nothing reaches: no group reported except for the
        // NaN scale, which always survives.
        let none = LeadTest { thr: 1e9, ..test };
        let (mut fast, mut plain) = (Vec::new(), Vec::new());
        lead_scan(&lines, &scales, &probe, none, 0..groups, &mut fast);
        reference::lead_scan(&lines, &scales, &probe, none, 0..groups, &mut plain);
        prop_assert_eq!(&fast, &plain);
        prop_assert_eq!(fast, vec![(0, 1 << 5)]);
    }
}

/// The lead-scan dot products are exact: with a threshold just above or
/// at a row's known value, the row is pruned or kept accordingly.
#[test]
fn lead_scan_dots_are_exact() {
    let dim = 64;
    let per = lead_lines(dim);
    let mut lines = vec![Line::ZERO; per];
    let v = vec![-LEAD_CODE_MAX as i8; dim];
    lead_put(&mut lines, 3, &v);
    // Another lane with the opposite sign, so no lane's sum is the other's.
    lead_put(&mut lines, 4, &vec![LEAD_CODE_MAX as i8; dim]);
    let probe = LeadProbe::new(&vec![-LEAD_PROBE_MAX; dim]);
    let mut scales = vec![0.0f32; GROUP_ROWS];
    scales[3] = 1.0;
    scales[4] = 1.0;
    let dot = (LEAD_CODE_MAX * LEAD_PROBE_MAX) as f32 * 64.0;
    for (thr, kept) in [(dot, true), (dot + 1.0, false)] {
        let test = LeadTest {
            t: 1.0,
            w: 0.0,
            eps: 0.0,
            thr,
        };
        let mut out = Vec::new();
        lead_scan(&lines, &scales, &probe, test, 0..1, &mut out);
        let mut plain = Vec::new();
        reference::lead_scan(&lines, &scales, &probe, test, 0..1, &mut plain);
        assert_eq!(out, plain);
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            let mut second = Vec::new();
            // SAFETY: AVX2 was detected; one group of `per` lines and 16
            // scales.
            unsafe { avx2::lead_scan(&lines, &scales, &probe, test, 0..1, &mut second) };
            assert_eq!(second, plain);
        }
        assert_eq!(out == vec![(0, 1 << 3)], kept, "thr {thr}: {out:?}");
    }
}

#[test]
fn extreme_values_do_not_overflow() {
    let dim = 64;
    let max = probe_max(dim) as i16;
    let g = vec![-127i8; dim * 2];
    let p = vec![max; dim * 2];
    let mut out = [0; 2];
    block_dots_i8_i16(&g, &p, dim, &mut out);
    assert_eq!(out[0], -127 * i32::from(max) * 64);
    let a = vec![-128i8; 640];
    assert_eq!(dot_i8(&a, &a), 640 * 128 * 128);
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 was detected; equal lengths, whole blocks of 64.
        unsafe {
            assert_eq!(avx2::dot_i8(&a, &a), 640 * 128 * 128);
            avx2::block_dots_i8_i16(&g, &p, dim, &mut out);
        }
        assert_eq!(out[1], -127 * i32::from(max) * 64);
    }
}

#[test]
fn prefetching_changes_nothing_and_accepts_any_slice() {
    let rows: Vec<u32> = (0..1000).collect();
    prefetch(&rows);
    prefetch(&rows[999..]);
    prefetch::<u32>(&[]);
    let keys = vec![-3i8; 640];
    prefetch(&keys[1..]);
    assert_eq!(rows, (0..1000).collect::<Vec<u32>>());
    assert!(keys.iter().all(|&k| k == -3));
}

#[test]
fn huge_page_advice_changes_no_memory_and_marks_the_buffer() {
    let len = 3 << 20;
    let mut before = vec![7u8; 1 << 20];
    let mut buffer: Vec<u32> = Vec::with_capacity(len);
    buffer.extend(0..1000);
    let after = vec![9u8; 1 << 20];
    advise_huge_pages(&buffer);
    advise_huge_pages(&Vec::<u64>::new());
    advise_huge_pages(&before);
    assert_eq!(buffer, (0..1000).collect::<Vec<u32>>());
    buffer.extend(1000..len as u32);
    assert!(buffer.iter().enumerate().all(|(i, &v)| v == i as u32));
    before[0] = 8;
    assert!(before[1..].iter().all(|&b| b == 7) && after.iter().all(|&b| b == 9));
    #[cfg(target_os = "linux")]
    {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        if mode.is_ok_and(|m| !m.contains("[never]")) {
            let at = buffer.as_ptr() as usize + len * 2;
            assert_eq!(
                thp_eligible(at),
                Some(true),
                "the advised buffer may take huge pages"
            );
        }
    }
}

/// Whether the mapping holding `address` may be backed by huge pages, from
/// `/proc/self/smaps`.
#[cfg(target_os = "linux")]
fn thp_eligible(address: usize) -> Option<bool> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let head = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = head.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&address);
                continue;
            }
        }
        if inside {
            if let Some(flag) = line.strip_prefix("THPeligible:") {
                return Some(flag.trim() == "1");
            }
        }
    }
    None
}
