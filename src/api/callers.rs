//! What one caller may take: calls per second and open watch streams. A caller is its grant
//! (the token's digest), or its address when the API is open, never the raw header: a header
//! that differs only in padding is the same caller, and the number of callers is bounded by the
//! grants.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use parking_lot::Mutex;
use tonic::Status;

/// Who is calling, for limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Caller {
    Grant([u8; 32]),
    Address(std::net::IpAddr),
    /// Another replica (a `peer = true` grant), calling for its own callers, whose limits it
    /// applied: not rate-limited, and its watch streams (one per watched tenant) are capped per
    /// peer address by `WatchLimits::per_peer` instead of `per_caller`.
    Replica(Option<std::net::IpAddr>),
    Unknown,
}

/// Past this many callers remembered, those idle long enough to be full again are dropped.
const PURGE_ABOVE: usize = 4_096;

/// Calls per second per caller.
pub(crate) struct RateLimits {
    limiter: governor::DefaultKeyedRateLimiter<Caller>,
}

impl RateLimits {
    pub(crate) fn new(per_second: NonZeroU32) -> Self {
        RateLimits {
            limiter: governor::RateLimiter::keyed(governor::Quota::per_second(per_second)),
        }
    }

    #[allow(clippy::result_large_err)]
    pub(crate) fn check(&self, caller: &Caller) -> Result<(), Status> {
        let result = self.limiter.check_key(caller);
        if self.limiter.len() > PURGE_ABOVE {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        result.map_err(|_| {
            Status::resource_exhausted("rate limit reached for this caller; retry shortly")
        })
    }

    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.limiter.len()
    }
}

/// How many watch streams may be open, in all and per caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchLimits {
    pub total: usize,
    pub per_caller: usize,
    /// Per replica that watches for its own callers (`max_watch_streams_per_peer`).
    pub per_peer: usize,
}

/// Open watch streams, counted per caller; a permit is given back when its stream ends.
pub(crate) struct Watches {
    limits: WatchLimits,
    open: Mutex<(usize, HashMap<Caller, usize>)>,
}

/// Held by an open stream.
pub(crate) struct WatchPermit {
    watches: Arc<Watches>,
    caller: Caller,
}

impl Watches {
    pub(crate) fn new(limits: WatchLimits) -> Arc<Self> {
        Arc::new(Watches {
            limits,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A permit for one more stream, or `RESOURCE_EXHAUSTED` past either cap.
    #[allow(clippy::result_large_err)]
    pub(crate) fn open(self: &Arc<Self>, caller: Caller) -> Result<WatchPermit, Status> {
        let mut open = self.open.lock();
        let (total, per_caller) = &mut *open;
        if *total >= self.limits.total {
            return Err(Status::resource_exhausted(format!(
                "{} watch streams are open, the most this service holds; retry later",
                self.limits.total
            )));
        }
        let cap = match caller {
            Caller::Replica(_) => self.limits.per_peer,
            _ => self.limits.per_caller,
        };
        let mine = per_caller.entry(caller.clone()).or_insert(0);
        if *mine >= cap {
            return Err(Status::resource_exhausted(format!(
                "this caller has {cap} watch streams open, the most allowed; close one first"
            )));
        }
        *mine += 1;
        *total += 1;
        Ok(WatchPermit {
            watches: self.clone(),
            caller,
        })
    }
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        let mut open = self.watches.open.lock();
        let (total, per_caller) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(mine) = per_caller.get_mut(&self.caller) {
            *mine -= 1;
            if *mine == 0 {
                per_caller.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_capped_per_caller_and_in_all_and_given_back() {
        let watches = Watches::new(WatchLimits {
            total: 3,
            per_caller: 2,
            per_peer: 2,
        });
        let (a, b) = (Caller::Grant([1; 32]), Caller::Grant([2; 32]));
        let first = watches.open(a.clone()).expect("first");
        let _second = watches.open(a.clone()).expect("second");
        assert!(watches.open(a.clone()).is_err(), "per caller");
        let _third = watches.open(b.clone()).expect("another caller");
        assert!(watches.open(b.clone()).is_err(), "in all");
        drop(first);
        assert!(watches.open(a).is_ok(), "given back");
    }

    #[test]
    fn a_replicas_watches_are_capped_per_peer_address() {
        let watches = Watches::new(WatchLimits {
            total: 10,
            per_caller: 1,
            per_peer: 3,
        });
        let peer = |last| Caller::Replica(Some(std::net::IpAddr::from([10, 0, 0, last])));
        let held: Vec<_> = (0..3)
            .map(|_| watches.open(peer(1)).expect("within the peer cap"))
            .collect();
        assert!(watches.open(peer(1)).is_err(), "per peer");
        assert!(watches.open(peer(2)).is_ok(), "another peer");
        drop(held);
        assert!(watches.open(peer(1)).is_ok(), "given back");
    }

    #[test]
    fn one_caller_is_one_key_whatever_its_header_looked_like() {
        let limits = RateLimits::new(NonZeroU32::new(2).expect("non-zero"));
        let caller = Caller::Grant([7; 32]);
        assert!(limits.check(&caller).is_ok());
        assert!(limits.check(&caller).is_ok());
        assert!(limits.check(&caller).is_err());
        assert_eq!(limits.remembered(), 1);
    }
}
