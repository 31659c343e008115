//! The snapshot file format: the counters together with the partition's next offset, written
//! atomically, so that restoring a snapshot and consuming from its offset counts every event
//! exactly once.
//!
//! A file is `MAGIC | version u32 | payload length u64 | xxh3-64 of payload u64 | payload
//! (bincode)`, all little-endian.

use std::path::Path;

use super::SnapshotError;
use crate::store::{
    probation, Days, DaysOf, PartitionState, ProbationSection, Retries, StoreLimits,
};

const MAGIC: &[u8; 8] = b"IHSNAP\0\0";
/// Version 6: the state ends with the offsets never read (`PartitionState::losses`); an older
/// payload is read as one with none.
/// Version 5: a message byte-equal to its code's catalog name is stored empty, like an absent
/// one, so both are one failure group. Version 4 has the same layout; it is read and its
/// catalog-named groups are merged (`PartitionState::merge_catalog_named_groups`).
/// Version 7: retried outcomes (`PartitionState::retries`) follow the losses; an older
/// payload is read as one with none.
/// Version 8: the day tier (`store::DaysOf`) follows the state; an older payload is read with
/// no days and nothing rolled, and the owner's first upkeep rolls its hours into days.
/// Version 9: quiet integrations' and tenants' events end the day section; a version 8
/// section is read as one with none.
/// Version 10: same layout; a retry's `recovered` counts transactions (final successes with
/// `attempt > 1`) where 7 to 9 counted their failed attempts, so an older payload's recovered
/// counts are cleared rather than added to counts of another unit.
/// Version 11: the tenants on probation (`store::probation`) follow the days; in an older
/// payload, a tenant with at most `tenant_evict_max_events` events is put back on probation.
pub(crate) const FORMAT_VERSION: u32 = 11;
/// The oldest version this build reads.
const OLDEST_READABLE: u32 = 4;
pub(super) const HEADER_LEN: usize = 8 + 4 + 8 + 8;

/// Encodes a partition's state into a snapshot file image.
pub fn encode(state: &PartitionState) -> Result<Vec<u8>, SnapshotError> {
    let on_probation = probation::section_of(&state.tenants);
    let payload = bincode::serialize(&(state, DaysOf::of(state), on_probation))
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    let mut image = Vec::with_capacity(HEADER_LEN + payload.len());
    image.extend_from_slice(MAGIC);
    image.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    image.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    image.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&payload).to_le_bytes());
    image.extend_from_slice(&payload);
    Ok(image)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut buf = [0u8; 4];
    buf.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(buf)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buf)
}

/// The header fields after the magic: version, payload length and checksum.
pub(super) struct Header {
    pub(crate) version: u32,
    pub(crate) length: u64,
    pub(crate) checksum: u64,
}

/// Checks the header: magic and a version this build reads.
pub(super) fn check_header(path: &Path, image: &[u8]) -> Result<Header, SnapshotError> {
    let corrupt = |problem: &str| SnapshotError::Corrupt {
        path: path.to_owned(),
        problem: problem.to_owned(),
    };
    if image.len() < HEADER_LEN || &image[..8] != MAGIC {
        return Err(corrupt("no snapshot header"));
    }
    let version = read_u32(image, 8);
    if !(OLDEST_READABLE..=FORMAT_VERSION).contains(&version) {
        return Err(SnapshotError::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
        });
    }
    Ok(Header {
        version,
        length: read_u64(image, 12),
        checksum: read_u64(image, 20),
    })
}

/// The state in a payload of `version`, its days and its tenants on probation put back when
/// it has them.
fn decode_payload(
    version: u32,
    payload: &[u8],
    limits: &StoreLimits,
) -> Result<PartitionState, String> {
    let undecodable = |e: bincode::Error| format!("undecodable payload: {e}");
    if version >= 11 {
        let (mut state, days, on_probation): (PartitionState, Days, ProbationSection) =
            bincode::deserialize(payload).map_err(undecodable)?;
        days.restore(&mut state);
        probation::restore(&mut state, Some(on_probation), limits);
        return Ok(state);
    }
    let mut state = decode_before_probation(version, payload).map_err(undecodable)?;
    probation::restore(&mut state, None, limits);
    Ok(state)
}

/// A payload of format 10 or older.
fn decode_before_probation(version: u32, payload: &[u8]) -> Result<PartitionState, bincode::Error> {
    if version >= 8 {
        // The three empty lists of quiet series are their lengths: zero u64s.
        let padded;
        let payload = match version {
            8 => {
                padded = [payload, &[0u8; 24][..]].concat();
                &padded[..]
            }
            _ => payload,
        };
        let (mut state, days): (PartitionState, Days) = bincode::deserialize(payload)?;
        days.restore(&mut state);
        return Ok(state);
    }
    // An empty list of losses, or map of retries, is its length: a zero u64.
    let missing_lengths: usize = match version {
        7 => 0,
        6 => 1,
        _ => 2,
    };
    let mut state: PartitionState = match missing_lengths {
        0 => bincode::deserialize(payload),
        n => bincode::deserialize(&[payload, &vec![0u8; 8 * n][..]].concat()),
    }?;
    state.roll_restored();
    Ok(state)
}

/// Decodes a snapshot file image, refusing anything truncated or altered.
pub fn decode(
    path: &Path,
    image: &[u8],
    limits: &StoreLimits,
) -> Result<PartitionState, SnapshotError> {
    let Header {
        version,
        length,
        checksum,
    } = check_header(path, image)?;
    let corrupt = |problem: String| SnapshotError::Corrupt {
        path: path.to_owned(),
        problem,
    };
    let payload = &image[HEADER_LEN..];
    if payload.len() as u64 != length {
        return Err(corrupt(format!(
            "payload is {} bytes, header says {length}",
            payload.len()
        )));
    }
    if xxhash_rust::xxh3::xxh3_64(payload) != checksum {
        return Err(corrupt("checksum mismatch".into()));
    }
    let mut state = decode_payload(version, payload, limits).map_err(corrupt)?;
    if version < 10 {
        state
            .retries
            .values_mut()
            .for_each(Retries::forget_recovered);
    }
    state.dedup.set_capacity(limits.dedup_capacity);
    if version < 5 {
        state.rekeys = state.merge_catalog_named_groups();
    }
    state.quieten_groups();
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::description_tests::{legacy_failures, legacy_state};
    use crate::store::probation::Probation;
    use crate::store::HOUR_MS;

    /// A version 4 image of `state`: the layout without the trailing losses and retries, under
    /// the older version number, with its own length and checksum.
    fn version_4_image(state: &mut PartitionState) -> Vec<u8> {
        assert!(state.losses.is_empty(), "version 4 had no losses");
        older_image(state, 4, 16)
    }

    /// `state`'s image under `version`, without the last `cut` bytes of payload. Before format
    /// 9 every integration was stored as buckets, so `state`'s are made buckets first.
    fn older_image(state: &mut PartitionState, version: u32, cut: usize) -> Vec<u8> {
        assert!(state.retries.is_empty(), "no retries before version 7");
        as_buckets(state);
        let full = bincode::serialize(&*state).expect("encodes");
        image_of(version, &full[..full.len() - cut])
    }

    /// Quiet tenants and integrations as buckets, as before format 9.
    fn as_buckets(state: &mut PartitionState) {
        let rolled = state.rolled_until;
        for tenant in state.tenants.values_mut() {
            tenant.counts.tiered_mut(rolled);
            tenant.codes.tiered_mut(rolled);
            for integration in tenant.integrations.values_mut() {
                integration.buckets.tiered_mut(rolled);
            }
        }
    }

    fn image_of(version: u32, payload: &[u8]) -> Vec<u8> {
        let mut old = Vec::new();
        old.extend_from_slice(MAGIC);
        old.extend_from_slice(&version.to_le_bytes());
        old.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        old.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(payload).to_le_bytes());
        old.extend_from_slice(payload);
        old
    }

    #[test]
    fn a_version_9_snapshot_keeps_its_retries_and_clears_recovered_attempts() {
        use crate::event::IntegrationType;
        use crate::store::retries_tests::attempt;
        use crate::store::{RetryKey, HOUR_MS};
        let mut state = legacy_state(&legacy_failures());
        let mut retries = Retries::default();
        let at = 10 * HOUR_MS;
        retries.record_now(&attempt(1, Some(false), true, at), 0);
        retries.record_now(&attempt(2, None, false, at + 1), 0);
        let key = RetryKey {
            tenant_id: "t".into(),
            integration_type: IntegrationType::OutboundWebhook,
            integration_id: "hook".into(),
        };
        state.retries.insert(key.clone(), retries);
        let full = bincode::serialize(&(&state, DaysOf::of(&state))).expect("encodes");
        let limits = StoreLimits::default();
        let sums = |s: &PartitionState| {
            let sum = s.retries[&key].sum_in(at, at + HOUR_MS, i64::MIN);
            (sum.retried, sum.recovered)
        };
        assert_eq!(sums(&state), (1, 1));
        let read = decode(Path::new("v9"), &image_of(9, &full), &limits).expect("version 9");
        assert_eq!(
            sums(&read),
            (1, 0),
            "retried kept, recovered of another unit cleared"
        );
        let read = decode(Path::new("v10"), &image_of(10, &full), &limits).expect("version 10");
        assert_eq!(sums(&read), (1, 1));
    }

    #[test]
    fn a_version_6_snapshot_is_read_with_no_retries() {
        let mut state = legacy_state(&legacy_failures());
        let image = older_image(&mut state, 6, 8);
        let limits = StoreLimits::default();
        let read = decode(Path::new("v6"), &image, &limits).expect("version 6 is read");
        assert!(read.retries.is_empty());
        state.roll_restored();
        // Before format 11 the small tenants go back on probation with no history.
        probation::restore(&mut state, None, &limits);
        assert_eq!(encode(&read).unwrap(), encode(&state).unwrap());
    }

    #[test]
    fn quiet_integrations_keep_their_events_and_a_version_8_snapshot_is_read_in_buckets() {
        let mut state = legacy_state(&legacy_failures());
        let limits = StoreLimits::default();
        let quiet = |s: &PartitionState| -> Vec<String> {
            let tenants = s.tenants.values();
            let integrations = tenants.flat_map(|t| t.integrations.values());
            integrations
                .filter_map(|i| i.buckets.events().map(|e| format!("{e:?}")))
                .collect()
        };
        assert!(
            !quiet(&state).is_empty(),
            "the legacy state's integrations are quiet"
        );
        let read = decode(Path::new("v9"), &encode(&state).unwrap(), &limits).expect("reads");
        assert_eq!(quiet(&read), quiet(&state));
        assert_eq!(encode(&read).unwrap(), encode(&state).unwrap());

        as_buckets(&mut state);
        let full = bincode::serialize(&(&state, DaysOf::of(&state))).expect("encodes");
        // Format 8 ends where the empty lists of quiet series begin.
        let image = image_of(8, &full[..full.len() - 24]);
        let read = decode(Path::new("v8"), &image, &limits).expect("version 8 is read");
        assert!(quiet(&read).is_empty());
        probation::restore(&mut state, None, &limits);
        assert_eq!(encode(&read).unwrap(), encode(&state).unwrap());
    }

    #[test]
    fn a_version_4_snapshot_is_read_with_its_catalog_named_groups_merged() {
        let mut legacy = legacy_state(&legacy_failures());
        let groups_before = legacy.group_count();
        let image = version_4_image(&mut legacy);
        let limits = StoreLimits::default();
        let state = decode(Path::new("v4"), &image, &limits).expect("version 4 is read");
        assert_eq!(
            state.group_count(),
            groups_before - 1,
            "the catalog-named 404 group joined the one without a message"
        );
        assert_eq!(state.rekeys.len(), 1);
        let tenant = state.tenant("t1").expect("tenant");
        let total: u64 = tenant
            .groups
            .values()
            .map(|g| g.total_in(i64::MIN, i64::MAX, state.rolled_until))
            .sum();
        assert_eq!(total, 3, "nothing is lost in the merge");
        assert!(tenant
            .groups
            .values()
            .any(|g| g.failure_id == state.rekeys[0].to));
    }

    #[test]
    fn losses_survive_a_round_trip() {
        let mut state = legacy_state(&legacy_failures());
        state.losses.push(crate::store::LostOffsets {
            topic: "events".into(),
            partition: 2,
            from: 10,
            to: 250,
            detected_at_ms: 1_767_225_600_000,
            upstream: false,
        });
        let image = encode(&state).expect("encodes");
        let back = decode(Path::new("v6"), &image, &StoreLimits::default()).expect("reads");
        assert_eq!(back.losses, state.losses);
        assert_eq!(back.lost_here(), 240);
    }

    #[test]
    fn tenants_on_probation_stay_on_it_and_older_snapshots_put_the_small_ones_back() {
        use crate::event::{Event, IntegrationType, Outcome};
        use crate::store::{Applied, MINUTE_MS};
        let limits = StoreLimits {
            tenant_cap_per_partition: 3,
            ..StoreLimits::default()
        };
        let now = 1_800_000_000_000;
        let mut state = PartitionState::new(&limits);
        let send = |state: &mut PartitionState, tenant: &'static str, n: i64, arrives: i64| {
            let id = format!("{tenant}-{n}");
            let kind = IntegrationType::CustomNode;
            let event = Event::bare(id, tenant, kind, "crm".into(), Outcome::Success, now);
            assert_eq!(state.apply(&event, &limits, arrives), Ok(Applied::Accepted));
        };
        // Settled in three minutes with three events; on probation with four in one minute.
        for m in 0..3 {
            send(&mut state, "settled", m, now + m * MINUTE_MS);
        }
        for n in 0..4 {
            send(&mut state, "probation", n, now + 5 * MINUTE_MS);
        }
        let probation = |s: &PartitionState, t: &str| s.tenant(t).expect("kept").probation.clone();
        assert!(probation(&state, "settled").is_none());
        let kept = probation(&state, "probation");
        assert!(kept.is_some());

        let read =
            decode(Path::new("v11"), &encode(&state).expect("encodes"), &limits).expect("reads");
        assert_eq!(probation(&read, "settled"), None);
        assert_eq!(probation(&read, "probation"), kept);

        // Format 10 had no section: three events are at most tenant_evict_max_events (10), so
        // "settled" goes back on probation with "probation", idle since before any other.
        let full = bincode::serialize(&(&state, DaysOf::of(&state))).expect("encodes");
        let read = decode(Path::new("v10"), &image_of(10, &full), &limits).expect("version 10");
        for tenant in ["settled", "probation"] {
            assert_eq!(probation(&read, tenant), Some(Box::new(Probation::new())));
        }
        // Restored queues evict: a newcomer at the cap takes one of their places.
        let mut read = read;
        send(&mut read, "a", 0, now + HOUR_MS);
        send(&mut read, "b", 0, now + HOUR_MS);
        assert_eq!(read.evicted.len(), 1);
    }

    #[test]
    fn a_current_snapshot_needs_no_migration() {
        let legacy = legacy_state(&legacy_failures());
        let image = encode(&legacy).expect("encodes");
        let state = decode(Path::new("v5"), &image, &StoreLimits::default()).expect("reads");
        assert!(state.rekeys.is_empty());
        assert_eq!(state.group_count(), legacy.group_count());
    }
}
