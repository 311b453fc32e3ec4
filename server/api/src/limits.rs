//! Keyed rate limits that forget their keys: a GCRA limiter per client id or client address
//! whose memory stays bounded by the keys seen within the refill window, however many
//! distinct keys pass by.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Checks between two sweeps of the keys whose limit has refilled completely.
const SWEEP_EVERY: u64 = 4096;

/// A keyed GCRA limiter, `per_second` sustained and `burst` at once, that drops the state of
/// every key whose allowance has fully refilled (so it is indistinguishable from a new key)
/// every [`SWEEP_EVERY`] checks, and gives the freed memory back.
pub(crate) struct KeyedLimiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter on the system clock.
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        Self::with_clock(per_second, burst, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedLimiter<K, C> {
    /// A limiter on `clock`.
    pub(crate) fn with_clock(per_second: u32, burst: u32, clock: C) -> Self {
        let per_second = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        KeyedLimiter {
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// `Ok` when `key` may go on; otherwise how long until it may.
    pub(crate) fn check(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets every key whose allowance has refilled and releases the memory.
    pub(crate) fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys remembered now.
    pub(crate) fn keys(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_million_distinct_keys_leave_a_bounded_number_of_keys() {
        let clock = FakeRelativeClock::default();
        // 10 per second, burst 20: a key used once has refilled after 100 ms.
        let limiter = KeyedLimiter::<u64, _>::with_clock(10, 20, clock.clone());
        let mut most = 0;
        for key in 0..1_000_000u64 {
            // Ten thousand new keys a second, each used once.
            clock.advance(Duration::from_micros(100));
            assert!(limiter.check(&key).is_ok());
            most = most.max(limiter.keys());
        }
        // At most one sweep interval of new keys plus those still refilling (a key is
        // forgotten within two 100 ms emission intervals: 2,000 keys at this rate), however
        // many keys have passed: a million here, against 20,000 kept by governor alone below.
        assert!(
            most <= SWEEP_EVERY as usize + 2_000,
            "{most} keys remembered"
        );
        assert!(limiter.keys() <= SWEEP_EVERY as usize + 2_000);
    }

    #[test]
    fn a_sweep_keeps_the_limit_of_keys_still_refilling() {
        let clock = FakeRelativeClock::default();
        let limiter = KeyedLimiter::<u64, _>::with_clock(1, 2, clock.clone());
        assert!(limiter.check(&7).is_ok());
        assert!(limiter.check(&7).is_ok());
        let wait = limiter.check(&7).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        limiter.sweep();
        assert_eq!(limiter.keys(), 1);
        assert!(
            limiter.check(&7).is_err(),
            "a sweep must not reset a limited key"
        );
        clock.advance(Duration::from_secs(3));
        limiter.sweep();
        assert_eq!(limiter.keys(), 0);
        assert!(limiter.check(&7).is_ok());
    }

    #[test]
    fn without_sweeps_the_keys_would_grow() {
        // The reference the bound is measured against: governor alone keeps every key.
        let clock = FakeRelativeClock::default();
        let plain: RateLimiter<u64, DefaultKeyedStateStore<u64>, _, NoOpMiddleware<_>> =
            RateLimiter::new(
                Quota::per_second(NonZeroU32::new(10).unwrap()),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            );
        for key in 0..20_000u64 {
            clock.advance(Duration::from_micros(100));
            assert!(plain.check_key(&key).is_ok());
        }
        assert_eq!(plain.len(), 20_000);
    }
}
