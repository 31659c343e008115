//! Bucket widths, bucket alignment and the retention limits that decide what is kept.

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// The range a query covers when it names none; failure groups keep their total over it.
pub(crate) const DEFAULT_WINDOW_MS: i64 = 30 * DAY_MS;

/// Start of the bucket of width `width_ms` that contains `t_ms`; at the far ends of time,
/// where that start is not an `i64`, `i64::MIN`.
pub fn floor_to(t_ms: i64, width_ms: i64) -> i64 {
    t_ms.div_euclid(width_ms).saturating_mul(width_ms)
}

/// Smallest bucket boundary of width `width_ms` at or after `t_ms`.
pub(crate) fn ceil_to(t_ms: i64, width_ms: i64) -> i64 {
    let floor = floor_to(t_ms, width_ms);
    if floor == t_ms {
        floor
    } else {
        floor.saturating_add(width_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// How long a tenant's hour buckets (counts per type, failures per code) are kept.
    pub(crate) hour_retention_ms: i64,
    /// How long integrations' and failure groups' hour buckets are kept; at most
    /// `hour_retention_ms`.
    pub(crate) detail_hour_retention_ms: i64,
    /// How long day buckets are kept, and how late an event may arrive.
    pub(crate) day_retention_ms: i64,
    /// How far back minute buckets are kept.
    pub(crate) minute_window_ms: i64,
    pub(crate) group_cap_per_tenant: usize,
    /// Integrations one tenant may have; further ones are counted in an overflow integration.
    pub(crate) integration_cap_per_tenant: usize,
    /// Tenants one partition may hold; the first event of one more is refused unless an idle
    /// tenant can make room.
    pub(crate) tenant_cap_per_partition: usize,
    /// A tenant with more events than this is settled, never evicted at the cap (0: every
    /// tenant is settled at its first event, so none is evicted).
    pub(crate) tenant_evict_max_events: u64,
    /// A tenant that has sent events in this many distinct minutes is settled too.
    pub(crate) tenant_settled_minutes: u32,
    /// Distinct (tenant, event_id) keys remembered per partition for dedup.
    pub(crate) dedup_capacity: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            hour_retention_ms: 62 * DAY_MS,
            detail_hour_retention_ms: 62 * DAY_MS,
            day_retention_ms: 400 * DAY_MS,
            minute_window_ms: 48 * HOUR_MS,
            group_cap_per_tenant: 10_000,
            integration_cap_per_tenant: 10_000,
            tenant_cap_per_partition: 50_000,
            tenant_evict_max_events: 10,
            tenant_settled_minutes: 3,
            dedup_capacity: 1_000_000,
        }
    }
}

/// Which hour tier a question reads: the tenant's counts per type and per code, or the finer
/// cubes of integrations and failure groups, which may keep hours for less long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HourTier {
    Tenant,
    Detail,
}

impl StoreLimits {
    /// The same limits with every tier kept for `retention_ms`: for tests and tools.
    pub fn keeping(retention_ms: i64) -> Self {
        StoreLimits {
            hour_retention_ms: retention_ms,
            detail_hour_retention_ms: retention_ms,
            day_retention_ms: retention_ms,
            ..StoreLimits::default()
        }
    }

    /// The same limits with integrations' and groups' hours kept for `retention_ms` (at most
    /// as long as the tenant's hours).
    pub fn with_detail_hours(self, retention_ms: i64) -> Self {
        StoreLimits {
            detail_hour_retention_ms: retention_ms.min(self.hour_retention_ms),
            ..self
        }
    }

    /// Oldest minute bucket that is guaranteed complete at `now_ms`.
    pub(crate) fn minute_floor(&self, now_ms: i64) -> i64 {
        floor_to(now_ms - self.minute_window_ms, MINUTE_MS)
    }

    /// Start of the default range at `now_ms`, as a query without a range would take it.
    pub(crate) fn window_start(&self, now_ms: i64) -> i64 {
        self.align_start(
            floor_to(now_ms - DEFAULT_WINDOW_MS, HOUR_MS),
            HourTier::Detail,
            now_ms,
        )
    }

    /// `start_ms` clamped to the day tier, and floored to its day when it lies before `tier`'s
    /// hours: the finest resolution the range allows.
    pub(crate) fn align_start(&self, start_ms: i64, tier: HourTier, now_ms: i64) -> i64 {
        let start = start_ms.max(self.day_floor(now_ms));
        match start < self.hour_floor(tier, now_ms) {
            true => floor_to(start, DAY_MS),
            false => start,
        }
    }

    /// Oldest hour bucket of `tier` kept at `now_ms`: always the start of a UTC day.
    pub(crate) fn hour_floor(&self, tier: HourTier, now_ms: i64) -> i64 {
        let retention = match tier {
            HourTier::Tenant => self.hour_retention_ms,
            HourTier::Detail => self.detail_hour_retention_ms,
        };
        floor_to(now_ms - retention, DAY_MS)
    }

    /// Oldest day bucket kept at `now_ms`.
    pub(crate) fn day_floor(&self, now_ms: i64) -> i64 {
        floor_to(now_ms - self.day_retention_ms, DAY_MS)
    }

    /// How far hours are rolled into days at `now_ms`: every UTC day that ended at least an
    /// hour ago, so the stragglers of a day that just ended still land in the hour tier alone.
    pub(crate) fn roll_target(&self, now_ms: i64) -> i64 {
        floor_to(now_ms - HOUR_MS, DAY_MS)
    }
}
