//! Bearer tokens and the tenants each may read.

use std::collections::{HashMap, HashSet};

use tonic::metadata::MetadataMap;
use tonic::Status;

/// Which tenants each bearer token may read. With no tokens configured the API is open,
/// which suits the demo and a private network; production configs should set tokens.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    grants: HashMap<String, TenantGrant>,
}

#[derive(Debug, Clone)]
enum TenantGrant {
    All,
    Only(HashSet<String>),
}

impl Auth {
    pub fn open() -> Self {
        Auth::default()
    }

    /// `tenants` containing `"*"` grants every tenant.
    pub fn with_tokens<'a>(grants: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Self {
        let grants = grants
            .into_iter()
            .map(|(token, tenants)| {
                let grant = if tenants.iter().any(|t| t == "*") {
                    TenantGrant::All
                } else {
                    TenantGrant::Only(tenants.iter().cloned().collect())
                };
                (token.to_owned(), grant)
            })
            .collect();
        Auth { grants }
    }

    /// Checks the caller's token, and its right to `tenant_id` when the call names one.
    // Handlers must return `tonic::Status`; boxing it here would only add conversions.
    #[allow(clippy::result_large_err)]
    pub fn check(&self, metadata: &MetadataMap, tenant_id: Option<&str>) -> Result<(), Status> {
        if self.grants.is_empty() {
            return Ok(());
        }
        let header = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))?;
        let grant = self
            .grants
            .get(token.trim())
            .ok_or_else(|| Status::unauthenticated("unknown token"))?;
        match (grant, tenant_id) {
            (TenantGrant::Only(allowed), Some(tenant)) if !allowed.contains(tenant) => Err(
                Status::permission_denied(format!("this token may not read tenant {tenant:?}")),
            ),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_distinguishes_unknown_callers_from_forbidden_tenants() {
        let tenants = vec!["acme".to_owned()];
        let auth = Auth::with_tokens([("s3cret", tenants.as_slice())]);
        let mut metadata = MetadataMap::new();
        assert_eq!(
            auth.check(&metadata, Some("acme")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        metadata.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(auth.check(&metadata, Some("acme")).is_ok());
        assert_eq!(
            auth.check(&metadata, Some("globex")).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        metadata.insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(
            auth.check(&metadata, None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
