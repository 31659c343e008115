//! What each rule measures over one tenant's state in one partition, and whether that fires
//! or clears an alert. Between the two is the hysteresis band: a value that dips just under
//! the threshold neither resolves a firing alert nor fires a resolved one.

use super::{AlertRules, Resolved, Rule, Severity};
use crate::catalog;
use crate::event::IntegrationType;
use crate::store::{
    floor_to, GroupKey, GroupState, IntegrationKey, PartitionState, TenantState, DAY_MS, HOUR_MS,
    MINUTE_MS,
};

/// An alert clears only once its value falls below this share of the threshold.
pub(crate) const HYSTERESIS: f64 = 0.75;
/// The burn rates of the SLO's fast and slow pairs, from the Google SRE workbook: at 14.4
/// over its window (1 h by default) the fast pair has spent 2% of a 30-day budget, and at 6
/// over the slow pair's (6 h) 5%. A pair's short window is a twelfth of its long one.
const BURN_RATES: (f64, f64) = (14.4, 6.0);

/// (long window, short window, burn rate) of the fast and the slow pair.
fn burn_pairs(rules: &AlertRules) -> [(i64, i64, f64); 2] {
    let pair = |minutes: u32, rate: f64| {
        let long = i64::from(minutes) * MINUTE_MS;
        (long, (long / 12).max(MINUTE_MS), rate)
    };
    [
        pair(rules.slo_fast_window_minutes, BURN_RATES.0),
        pair(rules.slo_slow_window_minutes, BURN_RATES.1),
    ]
}

/// One rule's measurement of one subject.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measured {
    pub(crate) rule: Rule,
    pub(crate) integration_type: IntegrationType,
    pub(crate) integration_id: String,
    pub(crate) integration_name: String,
    pub(crate) status_code: u16,
    pub(crate) value: f64,
    pub(crate) threshold: f64,
    pub(crate) measure: String,
    /// At or above the threshold, with enough volume.
    pub(crate) fires: bool,
    /// Below the hysteresis band, in value or in volume.
    pub(crate) clears: bool,
    pub(crate) first_failure_ms: Option<i64>,
    pub(crate) last_failure_ms: Option<i64>,
    pub(crate) sample_message: String,
    pub(crate) guidance: String,
    pub(crate) severity: Severity,
    /// The volume the rule needs before it fires: events in the window (failure rate, SLO
    /// burn), failures in the hour (spike), events in a steady day's hours (silence).
    pub(crate) min_volume: u64,
    /// Where its alert is delivered, should it fire.
    pub(crate) destinations: Vec<String>,
    /// Why this silence was not judged, if it was not (see `Trust`).
    pub(crate) skipped: Option<&'static str>,
    /// Where `describe` finds the failures behind it: the groups it matches, in its window.
    groups: GroupMatch,
    window: (i64, i64),
}

/// The failure groups a measurement is about.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GroupMatch {
    Integration(IntegrationKey),
    Code(IntegrationType, u16),
}

impl GroupMatch {
    fn matches(&self, key: &GroupKey) -> bool {
        match *self {
            GroupMatch::Integration(i) => {
                key.integration_type == i.integration_type && key.integration_id == i.integration_id
            }
            GroupMatch::Code(t, code) => key.integration_type == t && key.status_code == code,
        }
    }
}

/// Every rule over every integration and (type, code) of one tenant in one partition.
/// `trust` says whether this partition's state is complete enough to claim a silence.
pub(crate) fn evaluate(
    partition: &PartitionState,
    (tenant_id, tenant): (&str, &TenantState),
    resolve: &dyn Fn(Rule, IntegrationType, Option<&str>) -> Resolved,
    now_ms: i64,
    trust: Trust<'_>,
) -> Vec<Measured> {
    let mut measured = Vec::new();
    for (key, integration) in &tenant.integrations {
        let id = partition.interner.resolve(key.integration_id);
        let watched = Watched {
            partition,
            tenant,
            key,
            outcomes: FinalOutcomes {
                integration,
                retries: partition.retries_of(tenant_id, key),
            },
        };
        for rule in [Rule::FailureRate, Rule::SloBurn, Rule::Silence] {
            let resolved = resolve(rule, key.integration_type, Some(id));
            let rules = &resolved.rules;
            let one = match rule {
                _ if !rules.enabled => None,
                Rule::FailureRate => Some(failure_rate(&watched, rules, now_ms)),
                Rule::SloBurn => Some(slo(&watched, rules, now_ms)),
                _ if rules.silence_after_minutes == 0 => None,
                _ => {
                    let subject = watched.subject(now_ms, now_ms);
                    Some(silence(subject, integration, rules, now_ms, trust))
                }
            };
            if let Some(mut one) = one {
                route(&mut one, &resolved);
                measured.push(one);
            }
        }
    }
    for kind in IntegrationType::ALL {
        let resolved = resolve(Rule::Spike, kind, None);
        if resolved.rules.enabled {
            for mut one in spikes(tenant, kind, &resolved.rules, now_ms) {
                route(&mut one, &resolved);
                measured.push(one);
            }
        }
    }
    measured
}

/// One integration of a tenant, as the failure-rate and SLO rules read it.
struct Watched<'a> {
    partition: &'a PartitionState,
    tenant: &'a TenantState,
    key: &'a IntegrationKey,
    outcomes: FinalOutcomes<'a>,
}

impl Watched<'_> {
    fn subject(&self, start_ms: i64, end_ms: i64) -> Subject {
        Subject::integration(self.partition, self.tenant, self.key, start_ms, end_ms)
    }
}

/// The share of final outcomes that failed over the rule's window.
fn failure_rate(watched: &Watched<'_>, rules: &AlertRules, now_ms: i64) -> Measured {
    let window = i64::from(rules.rate_window_minutes) * MINUTE_MS;
    let (succeeded, failed) = watched.outcomes.within(now_ms - window, now_ms);
    let subject = watched.subject(now_ms - window, now_ms);
    let rate = failed as f64 / (succeeded + failed).max(1) as f64;
    subject.measured(
        Rule::FailureRate,
        rate,
        rules.rate_threshold,
        format!("failure rate over {} min", rules.rate_window_minutes),
        Volume {
            seen: succeeded + failed,
            minimum: rules.rate_min_events,
        },
    )
}

/// Gives a measurement its subject's destinations, and the severity a rule set.
fn route(m: &mut Measured, resolved: &Resolved) {
    m.destinations = resolved.destinations.clone();
    let fast_burn = m.rule == Rule::SloBurn && m.severity == Rule::SloBurn.default_severity(true);
    if let Some(severity) = resolved.severities.of(m.rule, fast_burn) {
        m.severity = severity;
    }
}

/// An integration's outcomes that ended their transactions: what the failure-rate and SLO
/// rules count, so a transaction retried ten times counts once.
struct FinalOutcomes<'a> {
    integration: &'a crate::store::IntegrationState,
    retries: Option<&'a crate::store::Retries>,
}

impl FinalOutcomes<'_> {
    /// (succeeded, failed) in `[start_ms, end_ms)`.
    fn within(&self, start_ms: i64, end_ms: i64) -> (u64, u64) {
        let (succeeded, failed) = self.integration.recent_in(start_ms, end_ms);
        let (s, f) = self
            .retries
            .map_or((0, 0), |r| r.not_final_in(start_ms, end_ms));
        (succeeded.saturating_sub(s), failed.saturating_sub(f))
    }
}

fn slo(watched: &Watched<'_>, rules: &AlertRules, now_ms: i64) -> Measured {
    let budget = 1.0 - rules.slo_objective;
    let burn = |window: i64| {
        let (succeeded, failed) = watched.outcomes.within(now_ms - window, now_ms);
        let rate = failed as f64 / (succeeded + failed).max(1) as f64;
        (rate / budget, succeeded + failed)
    };
    // Each pair's strength: the smaller of its two burn rates, as a share of its threshold.
    let pairs = burn_pairs(rules);
    let mut best = (0.0, pairs[0]);
    let mut volume = 0;
    let mut fast_burn = false;
    for pair in pairs {
        let (long, long_events) = burn(pair.0);
        let (short, _) = burn(pair.1);
        let strength = long.min(short) / pair.2;
        volume = volume.max(long_events);
        fast_burn |= pair == pairs[0] && strength >= 1.0;
        if strength > best.0 {
            best = (strength, pair);
        }
    }
    let (strength, (long, short, rate)) = best;
    let subject = watched.subject(now_ms - long, now_ms);
    let mut measured = subject.measured(
        Rule::SloBurn,
        strength * rate,
        rate,
        format!(
            "error-budget burn rate over {} and {} (objective {})",
            span(long),
            span(short),
            rules.slo_objective
        ),
        Volume {
            seen: volume,
            minimum: rules.slo_min_events,
        },
    );
    measured.fires = measured.fires && strength >= 1.0;
    // The fast pair pages: at its rate a month's budget is gone in about two days.
    if fast_burn {
        measured.severity = Rule::SloBurn.default_severity(true);
    }
    measured
}

/// Days of the previous 7 on which a steady integration sent `silence_min_events` in the
/// hours the silence covers.
const SILENCE_STEADY_DAYS: u64 = 5;
/// What a silence alert tells people to check.
pub(crate) const SILENCE_GUIDANCE: &str = "The integration has stopped sending events at an hour \
when it usually sends them. Check that it is still enabled and scheduled, that its credentials \
and endpoint have not changed, and that the system that calls it is running; events that \
arrive again resolve the alert.";

/// Silence: minutes since the integration's last event, against `silence_after_minutes`, for
/// a steady integration: one that sent at least `silence_min_events` in the clock hours the
/// silence covers on at least 5 of the previous 7 days. Hour buckets make the baseline whole
/// hours: those that overlap the silence's window, shifted back a day at a time. The count of
/// such days is the volume, so the usual hysteresis applies to it: an integration silent for
/// days drops out of its own baseline, and its alert resolves.
fn silence(
    subject: Subject,
    integration: &crate::store::IntegrationState,
    rules: &AlertRules,
    now_ms: i64,
    trust: Trust<'_>,
) -> Measured {
    let window = i64::from(rules.silence_after_minutes) * MINUTE_MS;
    let steady_days = (1..=7)
        .filter(|day| {
            let end = now_ms - day * DAY_MS;
            let mut events = 0;
            integration
                .buckets
                .for_each_hour_in(floor_to(end - window, HOUR_MS), end, |h| {
                    events += u64::from(h.succeeded) + u64::from(h.failed)
                });
            events >= rules.silence_min_events
        })
        .count();
    let silent_ms = match last_event_ms(integration, now_ms) {
        Some(last) => (now_ms - last).clamp(0, 7 * DAY_MS),
        None => 7 * DAY_MS,
    };
    let silent_minutes = (silent_ms / MINUTE_MS) as f64;
    let mut measured = subject.measured(
        Rule::Silence,
        silent_minutes,
        f64::from(rules.silence_after_minutes),
        format!(
            "no events for {silent_minutes:.0} min; in these hours it sent at least {} events \
             on {steady_days} of the previous 7 days (steady from {SILENCE_STEADY_DAYS})",
            rules.silence_min_events
        ),
        Volume {
            seen: steady_days as u64,
            minimum: SILENCE_STEADY_DAYS,
        },
    );
    measured.min_volume = rules.silence_min_events;
    // A state that cannot be trusted neither claims a silence nor ends one: events may be
    // missing.
    measured.skipped = trust.blocker(2 * window, now_ms);
    if measured.skipped.is_some() {
        measured.fires = false;
        measured.clears = false;
    }
    measured
}

/// What keeps a partition's state from claiming a silence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Trust<'a> {
    /// Why the service is behind on the partition, if it is ("lagging", "unassigned").
    pub(crate) behind: Option<&'static str>,
    pub(crate) losses: &'a [crate::store::LostOffsets],
}

impl Trust<'_> {
    /// Why no silence may be judged now: the service is behind on the partition, or lost
    /// offsets of it within the last `within_ms`.
    fn blocker(&self, within_ms: i64, now_ms: i64) -> Option<&'static str> {
        let lost = self
            .losses
            .iter()
            .any(|loss| loss.detected_at_ms >= now_ms - within_ms);
        self.behind.or(lost.then_some("lost_offsets"))
    }
}

/// The end of the last minute (or, past the minute window, hour) with an event at or before
/// `now_ms`.
fn last_event_ms(integration: &crate::store::IntegrationState, now_ms: i64) -> Option<i64> {
    let busy = |s: u32, f: u32| s + f > 0;
    let minute = integration
        .minutes
        .0
        .range(..now_ms)
        .rev()
        .find(|(_, (s, f))| busy(*s, *f))
        .map(|(start, _)| start + MINUTE_MS);
    minute.or_else(|| {
        integration
            .buckets
            .newest_hour_before(now_ms)
            .map(|start| start + HOUR_MS)
    })
}

fn span(ms: i64) -> String {
    match ms % HOUR_MS {
        0 => format!("{} h", ms / HOUR_MS),
        _ => format!("{} min", ms / MINUTE_MS),
    }
}

/// Per code of one type: the last complete hour against the same hour of the previous 7 days.
fn spikes(
    tenant: &TenantState,
    kind: IntegrationType,
    rules: &AlertRules,
    now_ms: i64,
) -> Vec<Measured> {
    let hour = floor_to(now_ms, HOUR_MS) - HOUR_MS;
    let Some(last_hour) = tenant.codes_at(hour) else {
        return Vec::new();
    };
    last_hour
        .iter()
        .filter(|((t, _), _)| *t == kind)
        .map(|((t, code), count)| {
            let before: u64 = (1..=7)
                .filter_map(|day| tenant.codes_at(hour - day * DAY_MS))
                .filter_map(|codes| codes.get(&(*t, *code)).copied())
                .sum();
            let mean = before as f64 / 7.0;
            let subject = Subject::code(*t, *code, hour, hour + HOUR_MS);
            // It fires at spike_factor times the baseline and at the minimum count both, so the
            // threshold shown is the larger: what the count was in fact compared with.
            let minimum = rules.spike_min_failures as f64;
            let threshold = (rules.spike_factor * mean).max(minimum);
            let ratio = match mean > 0.0 {
                true => format!("{:.1}× the baseline", *count as f64 / mean),
                false => "no baseline".to_owned(),
            };
            subject.measured(
                Rule::Spike,
                *count as f64,
                threshold,
                format!(
                    "{count} failures in the hour from {}, against a baseline of {mean:.1} in that hour of the previous 7 days ({ratio}); fires at {}× the baseline and at least {} failures",
                    chrono::DateTime::from_timestamp_millis(hour)
                        .map_or_else(String::new, |t| t.to_rfc3339()),
                    rules.spike_factor,
                    rules.spike_min_failures
                ),
                Volume {
                    seen: *count,
                    minimum: rules.spike_min_failures,
                },
            )
        })
        .collect()
}

/// How much a measurement rests on. The same hysteresis applies to it as to the value, so a
/// volume hovering at the minimum does not fire and resolve in turn.
struct Volume {
    seen: u64,
    minimum: u64,
}

/// Who an alert is about, with the context its event carries.
struct Subject {
    integration_type: IntegrationType,
    integration_id: String,
    integration_name: String,
    /// A spike's own code; for an integration, found by `describe`.
    status_code: u16,
    groups: GroupMatch,
    window: (i64, i64),
}

impl Subject {
    fn integration(
        partition: &PartitionState,
        tenant: &TenantState,
        key: &IntegrationKey,
        start_ms: i64,
        end_ms: i64,
    ) -> Subject {
        let name = tenant
            .integrations
            .get(key)
            .map_or("", |i| partition.interner.resolve(i.name));
        Subject {
            integration_type: key.integration_type,
            integration_id: partition.interner.resolve(key.integration_id).to_owned(),
            integration_name: name.to_owned(),
            status_code: 0,
            groups: GroupMatch::Integration(*key),
            window: (start_ms, end_ms),
        }
    }

    fn code(integration_type: IntegrationType, code: u16, start_ms: i64, end_ms: i64) -> Subject {
        Subject {
            integration_type,
            integration_id: String::new(),
            integration_name: String::new(),
            status_code: code,
            groups: GroupMatch::Code(integration_type, code),
            window: (start_ms, end_ms),
        }
    }

    fn measured(
        self,
        rule: Rule,
        value: f64,
        threshold: f64,
        measure: String,
        volume: Volume,
    ) -> Measured {
        Measured {
            rule,
            integration_type: self.integration_type,
            integration_id: self.integration_id,
            integration_name: self.integration_name,
            status_code: self.status_code,
            value,
            threshold,
            measure,
            fires: volume.seen >= volume.minimum && value >= threshold,
            // The margin keeps a value exactly at the band's edge (0.15 for 0.2) from falling
            // under it by a rounding of the product.
            clears: (volume.seen as f64) < volume.minimum as f64 * HYSTERESIS - 1e-9
                || value < threshold * HYSTERESIS - 1e-9,
            first_failure_ms: None,
            last_failure_ms: None,
            sample_message: String::new(),
            guidance: String::new(),
            severity: rule.default_severity(false),
            min_volume: volume.minimum,
            destinations: Vec::new(),
            skipped: None,
            groups: self.groups,
            window: self.window,
        }
    }
}

impl Measured {
    /// Fills in what an alert event says beside the numbers: the first and last failure in the
    /// window, the newest sample, the guidance, and (for an integration) the code with the most
    /// failures. It reads the tenant's failure groups, so it is done only for the measurements
    /// that change an alert.
    pub(crate) fn describe(&mut self, partition: &PartitionState, tenant: &TenantState) {
        let (start_ms, end_ms) = self.window;
        let mut codes: std::collections::BTreeMap<u16, u64> = Default::default();
        let mut newest: Option<(&GroupKey, &GroupState)> = None;
        for (key, group) in tenant.groups.iter().filter(|(k, _)| self.groups.matches(k)) {
            group
                .buckets
                .for_each_hour_in(floor_to(start_ms, HOUR_MS), end_ms, |stat| {
                    if stat.last_ms < start_ms || stat.first_ms >= end_ms {
                        return;
                    }
                    *codes.entry(key.status_code).or_default() += stat.count;
                    self.first_failure_ms = Some(
                        self.first_failure_ms
                            .map_or(stat.first_ms, |f| f.min(stat.first_ms)),
                    );
                    self.last_failure_ms = self.last_failure_ms.max(Some(stat.last_ms));
                    if newest.is_none_or(|(_, g)| g.last_seen_ms() < group.last_seen_ms()) {
                        newest = Some((key, group));
                    }
                });
        }
        if let GroupMatch::Integration(_) = self.groups {
            let top = codes.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
            if let Some((code, _)) = top {
                self.status_code = *code;
            }
        }
        if let Some((key, group)) = newest {
            // A sample's message is its group's description.
            let sample =
                (!group.samples.is_empty()).then(|| partition.interner.resolve(key.description));
            self.sample_message =
                catalog::visible_description(sample.unwrap_or(""), key.status_code).to_owned();
        }
        self.guidance = match self.rule {
            Rule::Silence => SILENCE_GUIDANCE.to_owned(),
            _ => {
                catalog::lookup(self.status_code)
                    .guidance(self.integration_type)
                    .resolution
            }
        };
    }
}
