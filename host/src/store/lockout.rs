//! Failed-authentication lockout, per client IP, in memory.
//!
//! Failures are counted in a fixed window that opens at the first failure
//! ([`LockoutPolicy::window`], 300 s). The failure that reaches the threshold (5) locks
//! the client for one window from that moment; while locked, requests are refused
//! with `Retry-After` = the seconds left. A lock or window that has run out is
//! forgotten, and a successful authentication clears the client. Time comes from a
//! [`Clock`], so tests can move it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A source of monotonic time.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// The real monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Arc<Mutex<Duration>>,
}

impl ManualClock {
    /// A clock stopped at the current instant.
    pub fn new() -> Self {
        ManualClock {
            start: Instant::now(),
            offset: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Threshold and window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within one window that lock a client (reference default 5).
    pub threshold: u32,
    /// Counting window and lock duration (reference default 300 s).
    pub window: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            threshold: 5,
            window: Duration::from_secs(300),
        }
    }
}

/// Whether a client may try to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockoutStatus {
    /// It may; `remaining_attempts` failures are left before a lock.
    Open {
        /// Failures left.
        remaining_attempts: u32,
    },
    /// It is locked out: answer 429 with `Retry-After: retry_after`.
    Locked {
        /// Whole seconds until the lock ends (at least 1).
        retry_after: u64,
    },
}

/// The state after recording a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Failures counted in the current window.
    pub attempts: u32,
    /// Failures left before a lock (0 once locked).
    pub remaining_attempts: u32,
    /// `Some(seconds)` when the client is now locked.
    pub locked: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    attempts: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

/// Per-IP failure bookkeeping. Bounded: beyond `max_entries` clients, expired entries are
/// dropped first, then the oldest unlocked one.
#[derive(Debug)]
pub struct Lockout<C: Clock = SystemClock> {
    policy: LockoutPolicy,
    clock: C,
    max_entries: usize,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl Lockout<SystemClock> {
    /// Bookkeeping on the system clock.
    pub fn new(policy: LockoutPolicy) -> Self {
        Self::with_clock(policy, SystemClock)
    }
}

impl Default for Lockout<SystemClock> {
    fn default() -> Self {
        Self::new(LockoutPolicy::default())
    }
}

fn seconds_until(until: Instant, now: Instant) -> u64 {
    let left = until.saturating_duration_since(now);
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    secs.max(1)
}

impl<C: Clock> Lockout<C> {
    /// Default cap on tracked clients.
    pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

    /// Bookkeeping on the given clock.
    pub fn with_clock(policy: LockoutPolicy, clock: C) -> Self {
        Lockout {
            policy: LockoutPolicy {
                threshold: policy.threshold.max(1),
                window: policy.window,
            },
            clock,
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> LockoutPolicy {
        self.policy
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        match entry.locked_until {
            Some(until) => now >= until,
            None => now >= entry.window_start + self.policy.window,
        }
    }

    /// Whether `ip` may try now (check before verifying a key).
    pub fn status(&self, ip: IpAddr) -> LockoutStatus {
        let now = self.clock.now();
        let mut entries = self.entries();
        let Some(entry) = entries.get(&ip).copied() else {
            return LockoutStatus::Open {
                remaining_attempts: self.policy.threshold,
            };
        };
        if self.expired(&entry, now) {
            entries.remove(&ip);
            return LockoutStatus::Open {
                remaining_attempts: self.policy.threshold,
            };
        }
        match entry.locked_until {
            Some(until) => LockoutStatus::Locked {
                retry_after: seconds_until(until, now),
            },
            None => LockoutStatus::Open {
                remaining_attempts: self.policy.threshold.saturating_sub(entry.attempts),
            },
        }
    }

    /// Count a failed attempt (missing or wrong key) from `ip`.
    pub fn record_failure(&self, ip: IpAddr) -> Failure {
        let now = self.clock.now();
        let mut entries = self.entries();
        if let Some(entry) = entries.get(&ip)
            && let Some(until) = entry.locked_until
            && now < until
        {
            return Failure {
                attempts: entry.attempts,
                remaining_attempts: 0,
                locked: Some(seconds_until(until, now)),
            };
        }
        let fresh = Entry {
            attempts: 0,
            window_start: now,
            locked_until: None,
        };
        let current = match entries.get(&ip) {
            Some(e) if !self.expired(e, now) => *e,
            _ => {
                if !entries.contains_key(&ip) && entries.len() >= self.max_entries {
                    self.make_room(&mut entries, now);
                }
                fresh
            }
        };
        let attempts = current.attempts.saturating_add(1);
        let locked_until = (attempts >= self.policy.threshold).then(|| now + self.policy.window);
        entries.insert(
            ip,
            Entry {
                attempts,
                window_start: current.window_start,
                locked_until,
            },
        );
        Failure {
            attempts,
            remaining_attempts: self.policy.threshold.saturating_sub(attempts),
            locked: locked_until.map(|until| seconds_until(until, now)),
        }
    }

    /// Forget `ip`'s failures (after a successful authentication).
    pub fn record_success(&self, ip: IpAddr) {
        self.entries().remove(&ip);
    }

    /// Drop every expired entry.
    pub fn prune(&self) {
        let now = self.clock.now();
        self.entries().retain(|_, e| !self.expired(e, now));
    }

    /// How many clients are tracked.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    fn make_room(&self, entries: &mut HashMap<IpAddr, Entry>, now: Instant) {
        entries.retain(|_, e| !self.expired(e, now));
        if entries.len() < self.max_entries {
            return;
        }
        let victim = entries
            .iter()
            .min_by_key(|(_, e)| (e.locked_until.is_some(), e.locked_until, e.window_start))
            .map(|(ip, _)| *ip);
        if let Some(ip) = victim {
            entries.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_resets_without_lock() {
        let clock = ManualClock::new();
        let lockout = Lockout::with_clock(LockoutPolicy::default(), clock.clone());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..4 {
            lockout.record_failure(ip);
        }
        assert_eq!(
            lockout.status(ip),
            LockoutStatus::Open {
                remaining_attempts: 1
            }
        );
        clock.advance(Duration::from_secs(300));
        assert_eq!(lockout.record_failure(ip).attempts, 1);
    }

    #[test]
    fn bounded() {
        let clock = ManualClock::new();
        let mut lockout = Lockout::with_clock(LockoutPolicy::default(), clock);
        lockout.max_entries = 2;
        for i in 0..5u8 {
            lockout.record_failure(IpAddr::from([10, 0, 0, i]));
        }
        assert_eq!(lockout.len(), 2);
    }
}
