//! Bearer tokens and what each may read. Tokens are compared as SHA-256 digests, in constant
//! time, against every grant. The grants can be swapped while serving (a reloaded tokens file).

use std::sync::Arc;

use parking_lot::RwLock;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::config::{sha256, CheckedGrant};

/// What a call reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access<'a> {
    /// One tenant's numbers.
    Tenant(&'a str),
    /// Changing one tenant's issues. Needs a grant with `write = true` for the tenant.
    Write(&'a str),
    /// Setting one tenant's alert rules. Needs a grant with `alerts_admin = true` for it.
    AlertsAdmin(&'a str),
    /// What any valid token may read: the catalog.
    Any,
    /// What spans tenants: ingest status. Needs an operator token.
    Operator,
}

/// The grants in force, in one of three states: open (no authentication configured, which
/// suits the demo and loopback use; the configuration refuses an open API on any other
/// address unless told otherwise), closed (a tokens file with `tokens = []`: every call is
/// refused), or the grants to check against.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    grants: Vec<CheckedGrant>,
    /// With no grants: refuse every call rather than open the API.
    closed: bool,
}

impl Auth {
    /// Open when `grants` is empty.
    pub fn new(grants: Vec<CheckedGrant>) -> Self {
        Auth {
            grants,
            closed: false,
        }
    }

    /// The grants of a configuration that authenticates: never open, closed when empty.
    pub fn authenticating(grants: Vec<CheckedGrant>) -> Self {
        Auth {
            grants,
            closed: true,
        }
    }

    /// The grant of `token`, found by comparing its digest with every grant's, without
    /// stopping at the first match, so timing says nothing about which grant matched.
    fn grant_of(&self, token: &str) -> Option<&CheckedGrant> {
        let digest = sha256(token);
        let mut found = None;
        for grant in &self.grants {
            if bool::from(grant.digest.ct_eq(&digest)) {
                found = Some(grant);
            }
        }
        found
    }

    /// Checks the caller's token and its right to `access`.
    // Handlers must return `tonic::Status`; boxing it here would only add conversions.
    #[allow(clippy::result_large_err)]
    /// Returns the grant's digest, which identifies the caller for limits; `None` when the
    /// API is open.
    pub(crate) fn check(
        &self,
        metadata: &MetadataMap,
        access: Access<'_>,
    ) -> Result<Option<[u8; 32]>, Status> {
        let Some(grant) = self.caller_grant(metadata)? else {
            return Ok(None);
        };
        match access {
            Access::Tenant(tenant)
                if !grant.tenants.as_ref().is_none_or(|t| t.contains(tenant)) =>
            {
                Err(Status::permission_denied(format!(
                    "this token may not read tenant {tenant:?}"
                )))
            }
            Access::Operator if !grant.operator => Err(Status::permission_denied(
                "this call needs an operator token",
            )),
            Access::Write(tenant)
                if !grant.write || !grant.tenants.as_ref().is_none_or(|t| t.contains(tenant)) =>
            {
                Err(Status::permission_denied(format!(
                    "this token may not change issues of tenant {tenant:?}; it needs write = true"
                )))
            }
            Access::AlertsAdmin(tenant)
                if !grant.alerts_admin
                    || !grant.tenants.as_ref().is_none_or(|t| t.contains(tenant)) =>
            {
                Err(Status::permission_denied(format!(
                    "this token may not set alert rules of tenant {tenant:?}; it needs \
                     alerts_admin = true"
                )))
            }
            _ => Ok(Some(grant.digest)),
        }
    }

    /// The name of the caller's grant; `None` with an open API or an unknown token.
    pub(crate) fn grant_name(&self, metadata: &MetadataMap) -> Option<String> {
        match self.caller_grant(metadata) {
            Ok(Some(grant)) => Some(grant.name.clone()),
            _ => None,
        }
    }

    /// What the caller's token may do: its grant's name and rights, or everything on an open
    /// API.
    #[allow(clippy::result_large_err)]
    pub(crate) fn describe_caller(
        &self,
        metadata: &MetadataMap,
    ) -> Result<crate::proto::GetCallerResponse, Status> {
        let Some(grant) = self.caller_grant(metadata)? else {
            return Ok(crate::proto::GetCallerResponse {
                open: true,
                all_tenants: true,
                may_write: true,
                alerts_admin: true,
                operator: true,
                ..Default::default()
            });
        };
        let mut tenants: Vec<String> = grant.tenants.iter().flatten().cloned().collect();
        tenants.sort();
        Ok(crate::proto::GetCallerResponse {
            grant_name: grant.name.clone(),
            open: false,
            tenants,
            all_tenants: grant.tenants.is_none(),
            may_write: grant.write,
            alerts_admin: grant.alerts_admin,
            operator: grant.operator,
        })
    }

    /// Whether the caller's token is a replica's (`peer = true`); never with an open API.
    pub(crate) fn is_peer(&self, metadata: &MetadataMap) -> bool {
        matches!(self.caller_grant(metadata), Ok(Some(grant)) if grant.peer)
    }

    /// Whether the caller, once authenticated, may read `tenant`: a filter for calls that
    /// list tenants rather than name one.
    #[allow(clippy::result_large_err)]
    pub(crate) fn readable_tenants(
        &self,
        metadata: &MetadataMap,
    ) -> Result<impl Fn(&str) -> bool, Status> {
        let tenants = self
            .caller_grant(metadata)?
            .and_then(|grant| grant.tenants.clone());
        Ok(move |tenant: &str| tenants.as_ref().is_none_or(|t| t.contains(tenant)))
    }

    /// The caller's grant; `None` when the API is open.
    #[allow(clippy::result_large_err)]
    fn caller_grant(&self, metadata: &MetadataMap) -> Result<Option<&CheckedGrant>, Status> {
        match (self.grants.is_empty(), self.closed) {
            (true, false) => return Ok(None),
            (true, true) => {
                return Err(Status::unauthenticated(
                    "every token is revoked (the tokens file grants none)",
                ))
            }
            _ => {}
        }
        let header = metadata
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))?;
        self.grant_of(token.trim())
            .map(Some)
            .ok_or_else(|| Status::unauthenticated("unknown token"))
    }
}

/// The grants in force, shared by the API and whatever reloads them.
#[derive(Debug, Clone, Default)]
pub struct SharedAuth(Arc<RwLock<Arc<Auth>>>);

impl SharedAuth {
    pub fn new(auth: Auth) -> Self {
        SharedAuth(Arc::new(RwLock::new(Arc::new(auth))))
    }

    pub(crate) fn current(&self) -> Arc<Auth> {
        self.0.read().clone()
    }

    pub(crate) fn replace(&self, auth: Auth) {
        *self.0.write() = Arc::new(auth);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{check_grants, TokenGrant};

    fn auth() -> Auth {
        let operator = TokenGrant {
            operator: true,
            ..TokenGrant::plain("ops", &["*"])
        };
        Auth::new(check_grants(&[TokenGrant::plain("s3cret", &["acme"]), operator]).unwrap())
    }

    fn bearer(token: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
        metadata
    }

    #[test]
    fn unknown_callers_are_unauthenticated_and_other_tenants_forbidden() {
        let auth = auth();
        let code = |m: &MetadataMap, a| auth.check(m, a).map_err(|s| s.code());
        assert_eq!(
            code(&MetadataMap::new(), Access::Tenant("acme")),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(&bearer("s3cret"), Access::Tenant("acme")),
            Ok(Some(sha256("s3cret"))),
            "the grant identifies the caller, however the header was padded"
        );
        assert_eq!(
            code(&bearer("s3cret   "), Access::Tenant("acme")),
            Ok(Some(sha256("s3cret")))
        );
        assert_eq!(
            code(&bearer("s3cret"), Access::Tenant("globex")),
            Err(tonic::Code::PermissionDenied)
        );
        assert_eq!(
            code(&bearer("nope"), Access::Any),
            Err(tonic::Code::Unauthenticated)
        );
    }

    #[test]
    fn only_an_operator_token_reads_ingest_status() {
        let auth = auth();
        assert_eq!(
            auth.check(&bearer("s3cret"), Access::Operator)
                .map_err(|s| s.code()),
            Err(tonic::Code::PermissionDenied)
        );
        assert!(auth.check(&bearer("ops"), Access::Operator).is_ok());
    }

    #[test]
    fn a_tenant_token_lists_only_its_tenants() {
        let auth = auth();
        let readable = auth.readable_tenants(&bearer("s3cret")).unwrap();
        assert!(readable("acme") && !readable("globex"));
        let everything = auth.readable_tenants(&bearer("ops")).unwrap();
        assert!(everything("acme") && everything("globex"));
        assert!(auth.readable_tenants(&MetadataMap::new()).is_err());
        assert!(Auth::default()
            .check(&MetadataMap::new(), Access::Operator)
            .is_ok());
    }

    #[test]
    fn a_closed_auth_refuses_everyone_and_is_never_open() {
        let closed = Auth::authenticating(Vec::new());
        for metadata in [MetadataMap::new(), bearer("s3cret"), bearer("ops")] {
            let refused = closed.check(&metadata, Access::Any).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
        assert!(!closed.is_peer(&bearer("ops")));
        assert!(closed.readable_tenants(&MetadataMap::new()).is_err());
    }
}
