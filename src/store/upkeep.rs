//! The owner's upkeep of a partition: rolling finished days into the day tier, then dropping
//! what each tier no longer keeps.

use super::integrations::RECENT_MS;
use super::partition::PartitionState;
use super::probation::ProbationQueue;
use super::ranking::Ranking;
use super::tenant::TenantState;
use super::time::{floor_to, HourTier, StoreLimits, DAY_MS, HOUR_MS};

impl PartitionState {
    /// Rolls the hours of every day that has ended into their days, drops buckets that have
    /// left the minute window or their tier's retention, and groups left empty; moves each
    /// group's kept total to the default range's start.
    pub fn evict(&mut self, limits: &StoreLimits, now_ms: i64) {
        self.roll(limits.roll_target(now_ms));
        let minute_floor = limits.minute_floor(now_ms);
        // Only rolled hours may go.
        let hour_floor = limits
            .hour_floor(HourTier::Tenant, now_ms)
            .min(self.rolled_until);
        let detail_floor = limits
            .hour_floor(HourTier::Detail, now_ms)
            .min(self.rolled_until);
        let day_floor = limits.day_floor(now_ms);
        let window_start = limits.window_start(now_ms);
        let upto = floor_to(now_ms, HOUR_MS).max(window_start);
        let rolled = self.rolled_until;
        for tenant in self.tenants.values_mut() {
            tenant.minutes.drop_before(minute_floor);
            tenant.counts.drop_before(hour_floor, day_floor);
            tenant.codes.drop_before(hour_floor, day_floor);
            tenant.minute_failures.drop_before(minute_floor);
            tenant.integrations.retain(|_, integration| {
                integration.advance_window(window_start, upto, detail_floor, rolled);
                integration.buckets.drop_before(detail_floor, day_floor);
                integration.minutes.0.drop_before(now_ms - RECENT_MS);
                !integration.buckets.is_empty()
            });
            tenant.groups.retain(|_, group| {
                group.advance_window(window_start, detail_floor, rolled);
                group.buckets.drop_before(detail_floor, day_floor);
                group.samples.retain(|s| s.occurred_at_ms >= day_floor);
                !group.buckets.is_empty()
            });
        }
        self.tenants.retain(|_, tenant| !tenant.is_empty());
        let (interner, tenants) = (&self.interner, &self.tenants);
        self.retries.retain(|key, retries| {
            retries.drop_before(detail_floor, day_floor, now_ms - RECENT_MS);
            let tenant_kept = interner
                .get(&key.tenant_id)
                .is_some_and(|sym| tenants.contains_key(&sym));
            tenant_kept && !retries.is_empty()
        });
        self.losses.retain(|loss| loss.detected_at_ms >= day_floor);
        self.compact_if_grown();
        self.probation = ProbationQueue::of(&self.tenants);
        for tenant in self.tenants.values_mut() {
            tenant.ranking = Some(Ranking::build(&mut tenant.groups, window_start));
        }
    }

    /// After a restore of a snapshot without days (format 7 and older): rolls the days before
    /// the newest one kept, so a range past the hour tier reads them before the first upkeep.
    pub(crate) fn roll_restored(&mut self) {
        let newest = self
            .tenants
            .values()
            .filter_map(TenantState::newest_bucket)
            .max();
        if let Some(newest) = newest {
            self.roll(floor_to(newest, DAY_MS));
        }
    }

    /// After a restore: a snapshot stores every group as buckets, so the groups whose buckets
    /// name their failures' times keep those times again.
    pub(crate) fn quieten_groups(&mut self) {
        let rolled = self.rolled_until;
        for tenant in self.tenants.values_mut() {
            for group in tenant.groups.values_mut() {
                group.buckets.quieten(rolled);
            }
        }
    }

    /// Counts every hour from `rolled_until` to `target` in its day as well.
    fn roll(&mut self, target: i64) {
        let from = self.rolled_until;
        if target <= from {
            return;
        }
        for tenant in self.tenants.values_mut() {
            tenant.counts.roll(from, target);
            tenant.codes.roll(from, target);
            for integration in tenant.integrations.values_mut() {
                integration.buckets.roll(from, target);
            }
            for group in tenant.groups.values_mut() {
                group.buckets.roll(from, target);
            }
        }
        for retries in self.retries.values_mut() {
            retries.buckets.roll(from, target);
        }
        self.rolled_until = target;
    }
}
