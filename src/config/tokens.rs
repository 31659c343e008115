//! Bearer-token grants: inline in the config, or in a `tokens_file` that a Kubernetes Secret can
//! hold and that is re-read when it changes. A grant names a token by its SHA-256 (preferred)
//! or, with a warning, in plain text; lists the tenants it may read; and may be an operator's.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::secrets::Secret;
use super::{invalid, ConfigError};
use crate::event::{is_tenant_char, MAX_TENANT_ID_CHARS};

#[derive(Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TokenGrant {
    /// What the operator calls this grant ("ui-backend", "sre-oncall"): unique, shown beside
    /// the actor of every issue action made with it. Required; optional here only so that
    /// `config check` can list every entry that lacks one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The token itself. Accepted, with a warning at start-up; prefer `token_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Lowercase hex SHA-256 of the token, e.g. from `printf %s "$TOKEN" | sha256sum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// Tenant ids this token may read; `"*"` means all.
    pub tenants: Vec<String>,
    /// May read what spans tenants: `GetIngestStatus`.
    #[serde(default)]
    pub operator: bool,
    /// May change issues (`UpdateIssue`) of the tenants it may read.
    #[serde(default)]
    pub write: bool,
    /// May set and delete the alert rules (`PutAlertRule`, `DeleteAlertRule`) of the tenants
    /// it may read.
    #[serde(default)]
    pub alerts_admin: bool,
    /// A replica's token (`peer_token`): the only grant whose calls are taken as forwarded by
    /// a replica (`ih-forwarded`, `ih-on-behalf-of`). It carries the operator rights that the
    /// replicas' calls to each other need, and must cover every tenant.
    #[serde(default)]
    pub peer: bool,
}

/// Never shows the token.
impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| super::secrets::MASK))
            .field("token_sha256", &self.token_sha256)
            .field("tenants", &self.tenants)
            .field("operator", &self.operator)
            .field("write", &self.write)
            .field("alerts_admin", &self.alerts_admin)
            .field("peer", &self.peer)
            .finish()
    }
}

/// A grant with its token reduced to a digest: what the API compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedGrant {
    pub(crate) name: String,
    pub(crate) digest: [u8; 32],
    /// `None`: every tenant.
    pub(crate) tenants: Option<HashSet<String>>,
    pub(crate) operator: bool,
    pub(crate) write: bool,
    pub(crate) alerts_admin: bool,
    /// Another replica: its forwarding headers are honoured.
    pub(crate) peer: bool,
}

pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenGrant {
    /// A grant for a plain token, as tests and examples write it.
    /// Its name is made up, and unique within the process.
    pub fn plain(token: &str, tenants: &[&str]) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TokenGrant {
            name: Some(format!("grant-{n}")),
            token: Some(token.to_owned()),
            tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
            ..TokenGrant::default()
        }
    }

    fn digest(&self) -> Result<[u8; 32], ConfigError> {
        match (&self.token, &self.token_sha256) {
            (Some(token), None) if !token.trim().is_empty() => Ok(sha256(token)),
            (None, Some(hex)) => {
                let bytes = hex::decode(hex.trim()).map_err(|_| {
                    invalid("tokens", "token_sha256 must be 64 hexadecimal characters")
                })?;
                bytes.try_into().map_err(|_| {
                    invalid("tokens", "token_sha256 must be 64 hexadecimal characters")
                })
            }
            _ => Err(invalid(
                "tokens",
                "each grant needs exactly one of token and token_sha256, not empty",
            )),
        }
    }

    fn checked(&self) -> Result<CheckedGrant, ConfigError> {
        let digest = self.digest()?;
        let name = self.name.clone().unwrap_or_default();
        if !valid_name(&name) {
            return Err(invalid(
                "tokens",
                format!(
                    "the grant name {:?} must be 1 to 64 letters, digits, '.', '_', '-' or '@'",
                    crate::event::echo(&name)
                ),
            ));
        }
        if self.tenants.is_empty() {
            return Err(invalid(
                "tokens",
                "a grant must list tenants (\"*\" for all)",
            ));
        }
        let all_tenants = self.tenants.iter().any(|t| t == "*");
        // Operator calls span tenants (alerts of all, peer calls, tenant lists, ingest status);
        // a scoped operator grant would read past its tenants there, so it is not accepted.
        if (self.operator || self.peer) && !all_tenants {
            let kind = if self.peer { "a peer" } else { "an operator" };
            return Err(invalid(
                "tokens",
                format!(
                    "{kind} grant must cover every tenant (tenants = [\"*\"]): operator and \
                     replica calls span tenants"
                ),
            ));
        }
        if all_tenants {
            return Ok(CheckedGrant {
                name,
                digest,
                tenants: None,
                operator: self.operator || self.peer,
                write: self.write,
                alerts_admin: self.alerts_admin,
                peer: self.peer,
            });
        }
        if let Some(bad) = self.tenants.iter().find(|t| !valid_tenant(t)) {
            return Err(invalid(
                "tokens",
                format!(
                    "lists {:?}, which is not a tenant id",
                    crate::event::echo(bad)
                ),
            ));
        }
        Ok(CheckedGrant {
            name,
            digest,
            tenants: Some(self.tenants.iter().cloned().collect()),
            operator: self.operator,
            write: self.write,
            alerts_admin: self.alerts_admin,
            peer: false,
        })
    }
}

fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty() && tenant.len() <= MAX_TENANT_ID_CHARS && tenant.chars().all(is_tenant_char)
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Checks every grant: each named, names and tokens unique.
pub fn check_grants(grants: &[TokenGrant]) -> Result<Vec<CheckedGrant>, ConfigError> {
    let unnamed: Vec<String> = grants
        .iter()
        .enumerate()
        .filter(|(_, g)| g.name.is_none())
        .map(|(i, _)| format!("#{}", i + 1))
        .collect();
    if !unnamed.is_empty() {
        return Err(invalid(
            "tokens",
            format!(
                "every grant needs a name = \"…\" (shown beside the actor of each issue \
                 action); these [[tokens]] entries, counted from the first, have none: {}",
                unnamed.join(", ")
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut names = HashSet::new();
    let mut checked = Vec::with_capacity(grants.len());
    for grant in grants {
        let grant = grant.checked()?;
        if !seen.insert(grant.digest) {
            return Err(invalid("tokens", "the same token is granted twice"));
        }
        if !names.insert(grant.name.clone()) {
            return Err(invalid(
                "tokens",
                format!("the grant name {:?} is used twice", grant.name),
            ));
        }
        checked.push(grant);
    }
    Ok(checked)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    /// Absent (an empty or comment-only file) is a failed load; `tokens = []` revokes all.
    tokens: Option<Vec<TokenGrant>>,
}

/// Replicas take calls forwarded by one another only from a `peer = true` grant, so a replica
/// needs a `peer_token` that the grants name so; never an open API.
pub(super) fn check_peer_grant(
    replica: bool,
    peer_token: Option<&Secret>,
    grants: &[CheckedGrant],
) -> Result<(), ConfigError> {
    if !replica {
        return Ok(());
    }
    let Some(token) = peer_token else {
        return Err(invalid(
            "peer_token",
            "replicas (advertise_addr) need a peer_token, and a tokens_file granting it \
             with peer = true: with an open API no call can be told to come from a replica",
        ));
    };
    let digest = sha256(token.expose());
    let granted = grants.iter().find(|g| g.digest == digest);
    if granted.is_some_and(|g| g.peer) {
        return Ok(());
    }
    let found = match granted {
        Some(_) => "its grant lacks peer = true",
        None => "no grant names it",
    };
    Err(invalid(
        "peer_token",
        format!(
            "must be granted as a replica's token, and {found}; add to the tokens file:\n\
             [[tokens]]\ntoken_sha256 = \"{}\"\ntenants = [\"*\"]\npeer = true",
            hex::encode(digest)
        ),
    ))
}

/// The `[[tokens]]` of a tokens file.
pub(crate) fn read_tokens_file(path: &Path) -> Result<Vec<TokenGrant>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: TokensFile = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    // A truncated or half-written Secret must not be read as "revoke everything".
    file.tokens.ok_or_else(|| {
        invalid(
            "tokens_file",
            "grants no token: the file has no `tokens` (empty, or comments only); to revoke \
             every token on purpose, write `tokens = []`",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grant_is_named_once_and_the_unnamed_are_listed() {
        let unnamed = |token: &str| TokenGrant {
            name: None,
            ..TokenGrant::plain(token, &["acme"])
        };
        let err = check_grants(&[
            TokenGrant::plain("a", &["acme"]),
            unnamed("b"),
            unnamed("c"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("#2, #3"), "{err}");
        let twice = |token: &str| TokenGrant {
            name: Some("ui".into()),
            ..TokenGrant::plain(token, &["acme"])
        };
        let err = check_grants(&[twice("a"), twice("b")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("used twice"), "{err}");
        let spaced = TokenGrant {
            name: Some("ui backend".into()),
            ..TokenGrant::plain("a", &["acme"])
        };
        assert!(check_grants(&[spaced]).is_err());
    }

    #[test]
    fn hashed_and_plain_tokens_reduce_to_the_same_digest() {
        let hashed = TokenGrant {
            token_sha256: Some(hex::encode(sha256("s3cret"))),
            tenants: vec!["acme".into()],
            name: Some("hashed".into()),
            ..TokenGrant::default()
        };
        let plain = TokenGrant::plain("s3cret", &["acme"]);
        assert_eq!(hashed.digest().unwrap(), plain.digest().unwrap());
        assert!(check_grants(&[hashed, plain]).is_err(), "a duplicate token");
    }

    #[test]
    fn grants_name_valid_tenants_and_one_token_form() {
        assert!(check_grants(&[TokenGrant::plain("t", &["has space"])]).is_err());
        assert!(check_grants(&[TokenGrant::plain("t", &[])]).is_err());
        assert!(check_grants(&[TokenGrant::plain("  ", &["acme"])]).is_err());
        let both = TokenGrant {
            token_sha256: Some("00".repeat(32)),
            ..TokenGrant::plain("t", &["acme"])
        };
        assert!(check_grants(&[both]).is_err());
        let all = check_grants(&[TokenGrant::plain("t", &["*"])]).unwrap();
        assert_eq!(all[0].tenants, None);
    }

    #[test]
    fn an_operator_grant_scoped_to_some_tenants_is_refused() {
        let scoped = TokenGrant {
            operator: true,
            ..TokenGrant::plain("t", &["acme-retail"])
        };
        let err = check_grants(&[scoped]).unwrap_err().to_string();
        assert!(err.contains("every tenant"), "{err}");
        let all = TokenGrant {
            operator: true,
            ..TokenGrant::plain("t", &["*"])
        };
        assert!(check_grants(&[all]).is_ok());
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let shown = format!("{:?}", TokenGrant::plain("t0ps3cret", &["acme"]));
        assert!(!shown.contains("t0ps3cret"), "{shown}");
    }
}
