//! Bucket widths, bucket alignment and the retention limits that decide what is kept.

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// The range a query covers when it names none; failure groups keep their total over it.
pub const DEFAULT_WINDOW_MS: i64 = 30 * DAY_MS;

/// Start of the bucket of width `width_ms` that contains `t_ms`.
pub fn floor_to(t_ms: i64, width_ms: i64) -> i64 {
    t_ms.div_euclid(width_ms) * width_ms
}

/// Smallest bucket boundary of width `width_ms` at or after `t_ms`.
pub fn ceil_to(t_ms: i64, width_ms: i64) -> i64 {
    let floor = floor_to(t_ms, width_ms);
    if floor == t_ms {
        floor
    } else {
        floor + width_ms
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    pub retention_ms: i64,
    /// How far back minute buckets are kept.
    pub minute_window_ms: i64,
    pub group_cap_per_tenant: usize,
    /// Integrations one tenant may have; further ones are counted in an overflow integration.
    pub integration_cap_per_tenant: usize,
    /// Tenants one partition may hold; the first event of one more is refused unless an idle
    /// tenant can make room.
    pub tenant_cap_per_partition: usize,
    /// At the cap, a tenant with at most this many events and none in the last two hours (of
    /// event time) is evicted to admit a new one; 0 never evicts.
    pub tenant_evict_max_events: u64,
    /// Distinct (tenant, event_id) keys remembered per partition for dedup.
    pub dedup_capacity: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            retention_ms: 62 * DAY_MS,
            minute_window_ms: 48 * HOUR_MS,
            group_cap_per_tenant: 10_000,
            integration_cap_per_tenant: 10_000,
            tenant_cap_per_partition: 50_000,
            tenant_evict_max_events: 3,
            dedup_capacity: 1_000_000,
        }
    }
}

impl StoreLimits {
    /// Oldest minute bucket that is guaranteed complete at `now_ms`.
    pub fn minute_floor(&self, now_ms: i64) -> i64 {
        floor_to(now_ms - self.minute_window_ms, MINUTE_MS)
    }

    /// Start of the default range at `now_ms`, as a query without a range would take it.
    pub fn window_start(&self, now_ms: i64) -> i64 {
        floor_to(now_ms - DEFAULT_WINDOW_MS, HOUR_MS).max(self.retention_floor(now_ms))
    }

    /// Oldest hour bucket kept at `now_ms`.
    pub fn retention_floor(&self, now_ms: i64) -> i64 {
        floor_to(now_ms - self.retention_ms, HOUR_MS)
    }
}
