//! Answering over partitions that other replicas own, without their state.
//!
//! Every query reads a tenant through a few sums over partitions (`Part`): counts in a range,
//! codes, hours, the failure groups matching a filter, one integration's hours, and so on, each
//! with its parameters already resolved (ranges rounded and clamped, filters parsed). Each sum
//! merges by one rule (`Mergeable`), the same whether the two sides are two local partitions or
//! a local partition and another replica's answer.
//!
//! So a tenant spread over partitions of several owners is answered in two passes: the first,
//! over the local partitions, notes the parts it reads (`Remote::Planning`); the asker sends
//! them to each other owner, which computes them over its own partitions (`QueryEngine::part`);
//! the second pass merges those answers into its own (`Remote::Answered`) and finishes exactly
//! as a local query does. DESIGN.md argues why the result is exact.

use std::collections::BTreeMap;

use bincode::Options;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::drivers::Tally;
use super::groups::{GroupDetail, GroupPart};
use super::integrations::{Id, Merged, TotalsPart};
use super::types::{ClassFilter, FailureFilter, PerClass, TenantCounters, TimeRange, TypeFilter};
use super::{QueryEngine, QueryError};
use crate::event::{IntegrationType, PerType};
use crate::store::{SeriesRead, TypeCounts};

/// Bumped whenever `Part` or `Answer` change shape; replicas on different versions do not
/// exchange parts (the asker reports those partitions as not answered).
pub(crate) const PARTS_VERSION: u32 = 4;

/// The most parts one query plans (checked for every query by the property test below); a
/// replica refuses a request for more.
pub(crate) const MAX_PARTS_PER_QUERY: usize = 16;

/// The largest encoded list of parts or answers a replica decodes.
const MAX_ENCODED_BYTES: u64 = 64 * 1024 * 1024;

/// One sum over a tenant's partitions, with its parameters resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Part {
    /// Failed and succeeded per type in a range, from minute or hour buckets.
    Counts { range: TimeRange, by_minute: bool },
    /// Failures per (type, code) in a range.
    Codes { range: TimeRange },
    /// Failures per class of some types in a range, from minute lists or from hour buckets.
    Classes {
        range: TimeRange,
        by_minute: bool,
        types: TypeFilter,
    },
    /// Failures per type in `[first, last)`, bucket by bucket, read as `how`, of the codes of
    /// `classes`.
    Trend {
        first: i64,
        last: i64,
        how: SeriesRead,
        classes: ClassFilter,
    },
    /// Failures per integration and per code in a range, for the change's drivers.
    Tally { range: TimeRange, by_minute: bool },
    /// Every failure group matching a filter, with its numbers in a range and its row.
    Groups {
        types: TypeFilter,
        filter: FailureFilter,
        range: TimeRange,
        /// How long a group must be quiet before its return reopens an issue.
        quiet_ms: Option<i64>,
    },
    /// One failure group's numbers, buckets (read as `how`) and samples.
    Group {
        failure_id: u128,
        range: TimeRange,
        how: SeriesRead,
        quiet_ms: Option<i64>,
    },
    /// Each integration's totals in a range.
    IntegrationTotals { range: TimeRange, types: TypeFilter },
    /// Failures per code of each integration in a range.
    IntegrationCodes { range: TimeRange },
    /// The buckets, read as `how`, of the integrations with this id (of this type, when
    /// given).
    Integration {
        range: TimeRange,
        how: SeriesRead,
        integration_type: Option<IntegrationType>,
        integration_id: String,
    },
    /// Everything counted for the tenant.
    Counters,
}

/// One replica's answer to a `Part`, over its partitions.
// A handful are built per call, one per part, so the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Answer {
    Counts(TypeCounts),
    Codes(BTreeMap<(IntegrationType, u16), u64>),
    Classes(PerClass),
    Trend(Vec<(i64, PerType<u64>)>),
    Tally(Tally),
    Groups(Vec<GroupPart>),
    Group(Option<GroupDetail>),
    IntegrationTotals(BTreeMap<Id, TotalsPart>),
    IntegrationCodes(BTreeMap<Id, BTreeMap<u16, u64>>),
    Integration(BTreeMap<Id, Merged>),
    Counters(TenantCounters),
}

/// A part's answer merges into another of its kind by one rule, whether the two sides are two
/// local partitions or a local partition and another replica's answer.
pub(super) trait Mergeable: AnswerKind {
    fn merge(&mut self, other: Self);
}

/// Which `Answer` variant carries a kind.
pub(super) trait AnswerKind: Sized {
    fn from_answer(answer: Answer) -> Option<Self>;
}

macro_rules! answer_kind {
    ($variant:ident, $type:ty) => {
        impl AnswerKind for $type {
            fn from_answer(answer: Answer) -> Option<Self> {
                match answer {
                    Answer::$variant(value) => Some(value),
                    _ => None,
                }
            }
        }
    };
}

impl Mergeable for TypeCounts {
    fn merge(&mut self, other: Self) {
        self.add(&other);
    }
}

/// Sums per key: codes per (type, code), and per code.
fn add_counts<K: Ord>(into: &mut BTreeMap<K, u64>, other: BTreeMap<K, u64>) {
    for (key, count) in other {
        *into.entry(key).or_default() += count;
    }
}

impl Mergeable for PerClass {
    fn merge(&mut self, other: Self) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

impl Mergeable for BTreeMap<(IntegrationType, u16), u64> {
    fn merge(&mut self, other: Self) {
        add_counts(self, other);
    }
}

impl Mergeable for Vec<(i64, PerType<u64>)> {
    /// Buckets stay apart; the trend sums them per boundary after one sort.
    fn merge(&mut self, other: Self) {
        self.extend(other);
    }
}

impl Mergeable for Tally {
    fn merge(&mut self, other: Self) {
        Tally::merge(self, other);
    }
}

impl Mergeable for Vec<GroupPart> {
    /// Groups are merged by id where they are ranked, with `GroupSummary`'s rule.
    fn merge(&mut self, other: Self) {
        self.extend(other);
    }
}

impl Mergeable for Option<GroupDetail> {
    fn merge(&mut self, other: Self) {
        match (self.as_mut(), other) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (None, theirs) => *self = theirs,
            (Some(_), None) => {}
        }
    }
}

impl Mergeable for BTreeMap<Id, TotalsPart> {
    fn merge(&mut self, other: Self) {
        for (id, part) in other {
            self.entry(id).or_default().merge(part);
        }
    }
}

impl Mergeable for BTreeMap<Id, BTreeMap<u16, u64>> {
    fn merge(&mut self, other: Self) {
        for (id, codes) in other {
            add_counts(self.entry(id).or_default(), codes);
        }
    }
}

impl Mergeable for BTreeMap<Id, Merged> {
    fn merge(&mut self, other: Self) {
        for (id, merged) in other {
            self.entry(id).or_default().merge(merged);
        }
    }
}

impl Mergeable for TenantCounters {
    fn merge(&mut self, other: Self) {
        self.events += other.events;
        self.failures += other.failures;
    }
}

answer_kind!(Counts, TypeCounts);
answer_kind!(Codes, BTreeMap<(IntegrationType, u16), u64>);
answer_kind!(Classes, PerClass);
answer_kind!(Trend, Vec<(i64, PerType<u64>)>);
answer_kind!(Tally, Tally);
answer_kind!(Groups, Vec<GroupPart>);
answer_kind!(Group, Option<GroupDetail>);
answer_kind!(IntegrationTotals, BTreeMap<Id, TotalsPart>);
answer_kind!(IntegrationCodes, BTreeMap<Id, BTreeMap<u16, u64>>);
answer_kind!(Integration, BTreeMap<Id, Merged>);
answer_kind!(Counters, TenantCounters);

/// What a query knows of the partitions other replicas own.
pub(crate) enum Remote {
    /// The first pass: the parts the query reads, noted in order.
    Planning(Mutex<Vec<Part>>),
    /// The second: each part with every other owner's answer to it.
    Answered(Vec<(Part, Vec<Answer>)>),
}

impl Remote {
    pub(crate) fn planning() -> Self {
        Remote::Planning(Mutex::new(Vec::new()))
    }

    /// The parts noted by a planning pass.
    pub(crate) fn planned(&self) -> Vec<Part> {
        match self {
            Remote::Planning(parts) => parts.lock().clone(),
            Remote::Answered(answers) => answers.iter().map(|(part, _)| part.clone()).collect(),
        }
    }
}

impl QueryEngine {
    /// `local`, the part's sum over this store's partitions, merged with the other owners'
    /// answers to `part` when the query is in its second pass.
    pub(super) fn gathered<T: Mergeable>(&self, part: Part, mut local: T) -> Result<T, QueryError> {
        match self.remote.as_deref() {
            None => Ok(local),
            Some(Remote::Planning(noted)) => {
                noted.lock().push(part);
                Ok(local)
            }
            Some(Remote::Answered(answers)) => {
                let (_, theirs) = answers
                    .iter()
                    .find(|(asked, _)| *asked == part)
                    .ok_or(QueryError::UnplannedPart)?;
                for answer in theirs.iter().cloned() {
                    local.merge(T::from_answer(answer).ok_or(QueryError::UnplannedPart)?);
                }
                Ok(local)
            }
        }
    }

    /// This store's answer to `part` about `tenant_id`: what another replica asked for.
    pub(crate) fn part(&self, tenant_id: &str, part: &Part) -> Answer {
        match part.clone() {
            Part::Counts { range, by_minute } => {
                Answer::Counts(self.local_counts(tenant_id, range, by_minute))
            }
            Part::Codes { range } => Answer::Codes(self.local_codes(tenant_id, range)),
            Part::Classes {
                range,
                by_minute,
                types,
            } => Answer::Classes(self.local_classes(tenant_id, range, by_minute, types)),
            Part::Trend {
                first,
                last,
                how,
                classes,
            } => Answer::Trend(self.local_trend(tenant_id, first, last, how, classes)),
            Part::Tally { range, by_minute } => {
                Answer::Tally(self.local_tally(tenant_id, range, by_minute))
            }
            Part::Groups {
                types,
                filter,
                range,
                quiet_ms,
            } => Answer::Groups(self.group_parts(tenant_id, types, &filter, range, quiet_ms)),
            Part::Group {
                failure_id,
                range,
                how,
                quiet_ms,
            } => Answer::Group(self.local_group(tenant_id, failure_id, range, how, quiet_ms)),
            Part::IntegrationTotals { range, types } => Answer::IntegrationTotals(
                self.local_integration_totals(tenant_id, range, |t| types.includes(t)),
            ),
            Part::IntegrationCodes { range } => {
                Answer::IntegrationCodes(self.local_codes_by_integration(tenant_id, range))
            }
            Part::Integration {
                range,
                how,
                integration_type,
                integration_id,
            } => Answer::Integration(self.local_integration(
                tenant_id,
                range,
                how,
                integration_type,
                &integration_id,
            )),
            Part::Counters => Answer::Counters(self.local_tenant_counters(tenant_id)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PartsError {
    #[error("parts do not encode: {0}")]
    Encode(bincode::Error),
    #[error("parts do not decode: {0}")]
    Decode(bincode::Error),
}

fn wire() -> impl Options {
    bincode::DefaultOptions::new().with_limit(MAX_ENCODED_BYTES)
}

/// Parts and answers travel between replicas in bincode, with a size limit on decoding.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PartsError> {
    wire().serialize(value).map_err(PartsError::Encode)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PartsError> {
    wire().deserialize(bytes).map_err(PartsError::Decode)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::catalog::ErrorClass;
    use crate::clock::ManualClock;
    use crate::event::{Event, Outcome};
    use crate::query::{
        FailureOrder, Granularity, IntegrationOrder, ListFailuresRequest, ListIntegrationsRequest,
    };
    use crate::store::{PartitionKey, Store, StoreLimits, DAY_MS, HOUR_MS, MINUTE_MS};

    const NOW: i64 = 1_767_225_600_000;
    const PARTITIONS: i32 = 4;

    /// (partition, integration, type, failed?, code, name version, flow, minutes ago, latency)
    type Spec = (i32, u8, u8, bool, u8, u8, u8, i64, u16);

    fn event(n: usize, spec: &Spec) -> Event<'static> {
        let (_, integration, kind, failed, code, name, flow, ago, latency) = *spec;
        let at = NOW - ago * MINUTE_MS;
        Event {
            event_id: Cow::Owned(format!("e{n}")),
            tenant_id: Cow::Borrowed("acme"),
            occurred_at_ms: at,
            integration_type: IntegrationType::ALL[usize::from(kind) % IntegrationType::COUNT],
            integration_id: Cow::Owned(format!("int-{integration}")),
            integration_name: Cow::Owned(format!("Integration {integration} v{name}")),
            outcome: if failed {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            status_code: failed.then_some([400, 401, 429, 500, 503][usize::from(code) % 5]),
            error_message: (failed && code % 2 == 0).then(|| Cow::Owned(format!("broke {code}"))),
            flow_id: (flow > 0).then(|| Cow::Owned(format!("flow-{flow}"))),
            flow_name: (flow > 0).then(|| Cow::Owned(format!("Flow {flow} v{name}"))),
            service_id: None,
            service_name: None,
            latency_ms: (latency > 0).then_some(f64::from(latency)),
            attempt: None,
            final_attempt: None,
        }
    }

    /// The same partitions in one store, and split between two stores (two owners).
    fn stores(specs: &[Spec]) -> (Arc<Store>, Arc<Store>, Arc<Store>) {
        let limits = StoreLimits::default();
        let whole = Arc::new(Store::new(limits));
        let (mine, theirs) = (Arc::new(Store::new(limits)), Arc::new(Store::new(limits)));
        for partition in 0..PARTITIONS {
            let key = PartitionKey::new("t", partition);
            let shared = whole.get_or_create(&key);
            let owner = if partition % 2 == 0 { &mine } else { &theirs };
            owner.attach(key, shared);
        }
        for (n, spec) in specs.iter().enumerate() {
            let shared = whole.get_or_create(&PartitionKey::new("t", spec.0));
            let _ = shared.write().apply(&event(n, spec), &limits, NOW);
        }
        (whole, mine, theirs)
    }

    /// `work` over `mine` with `theirs` asked for the parts it reads, as replicas do it.
    fn two_pass<T>(
        mine: &QueryEngine,
        theirs: &QueryEngine,
        work: impl Fn(&QueryEngine) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        let planning = Arc::new(Remote::planning());
        let _ = work(&mine.with_remote(planning.clone()));
        let planned = planning.planned();
        assert!(
            planned.len() <= MAX_PARTS_PER_QUERY,
            "a query planned {} parts: {planned:?}",
            planned.len()
        );
        let answered = planned
            .into_iter()
            .map(|part| {
                // Through the wire format, as between replicas.
                let sent: Part = decode(&encode(&part).unwrap()).unwrap();
                let answer = theirs.part("acme", &sent);
                (part, vec![decode(&encode(&answer).unwrap()).unwrap()])
            })
            .collect();
        work(&mine.with_remote(Arc::new(Remote::Answered(answered))))
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            0..PARTITIONS,
            0_u8..6,
            0_u8..2,
            any::<bool>(),
            0_u8..5,
            0_u8..3,
            0_u8..3,
            prop_oneof![0_i64..120, 0_i64..(40 * 24 * 60)],
            prop_oneof![Just(0_u16), 1_u16..5_000],
        )
    }

    fn same<T: PartialEq + std::fmt::Debug>(
        whole: &QueryEngine,
        mine: &QueryEngine,
        theirs: &QueryEngine,
        work: impl Fn(&QueryEngine) -> Result<T, QueryError>,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(work(whole), two_pass(mine, theirs, &work));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Every query over partitions split between two owners, merged from parts, answers
        /// exactly what it answers over one store that holds them all.
        #[test]
        fn parts_merged_across_owners_answer_as_one_store(
            specs in proptest::collection::vec(spec(), 1..400),
        ) {
            let (whole, mine, theirs) = stores(&specs);
            let clock = Arc::new(ManualClock::new(NOW));
            let engine = |store: &Arc<Store>| QueryEngine::new(store.clone(), clock.clone());
            let (whole, mine, theirs) = (engine(&whole), engine(&mine), engine(&theirs));
            let all = crate::query::TypeFilter::all();
            same(&whole, &mine, &theirs, |e| e.overview("acme", None, all))?;
            same(&whole, &mine, &theirs, |e| e.percentage_change("acme", None, None, all, true))?;
            same(&whole, &mine, &theirs, |e| {
                e.percentage_change("acme", Some(7 * DAY_MS), None, all, true)
            })?;
            same(&whole, &mine, &theirs, |e| e.error_breakdown("acme", None, all))?;
            let provider = ClassFilter::from_classes(&[ErrorClass::ProviderUnavailable]);
            for granularity in [Granularity::Hour, Granularity::Day] {
                for classes in [ClassFilter::all(), provider] {
                    same(&whole, &mine, &theirs, |e| {
                        e.trends("acme", None, all, classes, granularity, "Asia/Kolkata")
                    })?;
                }
            }
            same(&whole, &mine, &theirs, |e| e.tenant_counters("acme"))?;
            for order in [FailureOrder::TotalErrorsDesc, FailureOrder::LastSeenDesc] {
                let mut request = ListFailuresRequest {
                    order,
                    ..ListFailuresRequest::first_page("acme", 7)
                };
                loop {
                    let page = whole.list_failures(&request).unwrap();
                    same(&whole, &mine, &theirs, |e| e.list_failures(&request))?;
                    for row in &page.failures {
                        same(&whole, &mine, &theirs, |e| {
                            e.failure_details("acme", &row.failure_id, None)
                        })?;
                    }
                    match page.next_page_token {
                        Some(token) => request.page_token = Some(token),
                        None => break,
                    }
                }
            }
            let mut filtered = ListFailuresRequest::first_page("acme", 1000);
            filtered.filter.integration_id = Some("int-1".into());
            filtered.filter.status_code = Some(500);
            same(&whole, &mine, &theirs, |e| e.list_failures(&filtered))?;
            let mut by_class = ListFailuresRequest::first_page("acme", 1000);
            by_class.filter.classes = ClassFilter::from_classes(&[ErrorClass::Auth]);
            same(&whole, &mine, &theirs, |e| e.list_failures(&by_class))?;
            for order in [
                IntegrationOrder::FailuresDesc,
                IntegrationOrder::FailureRateDesc,
                IntegrationOrder::P99Desc,
                IntegrationOrder::NameAsc,
            ] {
                let request = ListIntegrationsRequest {
                    tenant_id: "acme".into(),
                    classes: Default::default(),
                    range: None,
                    types: all,
                    order,
                    page_size: 4,
                    page_token: None,
                };
                same(&whole, &mine, &theirs, |e| e.list_integrations(&request))?;
                let by_class = ListIntegrationsRequest {
                    classes: ClassFilter::from_classes(&[ErrorClass::RateLimited]),
                    ..request
                };
                same(&whole, &mine, &theirs, |e| e.list_integrations(&by_class))?;
            }
            for integration in 0..6 {
                let id = format!("int-{integration}");
                for granularity in [Granularity::Hour, Granularity::Day] {
                    same(&whole, &mine, &theirs, |e| {
                        e.integration_health("acme", None, &id, None, granularity, "UTC")
                    })?;
                }
            }
            let _ = HOUR_MS;
        }
    }
}
