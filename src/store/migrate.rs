//! Migrating state written by older versions, on restore.

use super::groups::{failure_id, GroupIdentity, GroupKey, GroupState};
use super::partition::PartitionState;
use super::Rekey;
use crate::catalog;

impl PartitionState {
    /// Migrates state written before descriptions were normalised (snapshot format 4 and
    /// older): a group stored under its code's catalog name is the same failure as the group
    /// stored with an empty description, so it is merged into that one. Returns the ids that
    /// changed, for the issue actions filed under them.
    pub(crate) fn merge_catalog_named_groups(&mut self) -> Vec<Rekey> {
        let mut rekeys = Vec::new();
        let empty = self.interner.intern("");
        for (tenant_sym, tenant) in self.tenants.iter_mut() {
            let named: Vec<GroupKey> = tenant
                .groups
                .keys()
                .filter(|key| {
                    let text = self.interner.resolve(key.description);
                    !text.is_empty() && text == catalog::name_of(key.status_code)
                })
                .copied()
                .collect();
            if named.is_empty() {
                continue;
            }
            let tenant_id = self.interner.resolve(*tenant_sym);
            for key in named {
                let Some(group) = tenant.groups.remove(&key) else {
                    continue;
                };
                let target = GroupKey {
                    description: empty,
                    ..key
                };
                let identity = GroupIdentity {
                    integration_type: key.integration_type,
                    integration_id: self.interner.resolve(key.integration_id),
                    service_id: self.interner.resolve(key.service_id),
                    flow_id: self.interner.resolve(key.flow_id),
                    status_code: key.status_code,
                    description: "",
                };
                let to = failure_id(tenant_id, &identity);
                rekeys.push(Rekey {
                    tenant_id: tenant_id.to_owned(),
                    from: group.failure_id,
                    to,
                });
                match tenant.groups.get_mut(&target) {
                    Some(existing) => existing.absorb(group, self.rolled_until),
                    None => {
                        tenant.groups.insert(
                            target,
                            GroupState {
                                failure_id: to,
                                window: None,
                                ..group
                            },
                        );
                    }
                }
            }
            // The candidates name the keys that just went away; eviction rebuilds them.
            tenant.ranking = None;
        }
        rekeys
    }
}
