//! The catalog of common integration errors and how to fix each, per integration type.
//!
//! Codes, names and applicability follow the product page in `shared/seed/`; the wording is ours.
//! The seed gives only four guidance columns for 413 and 521. For both, custom events (requests
//! into the platform, like inbound webhooks) get the inbound-webhook guidance.

use crate::event::IntegrationType;

/// Guidance per type, indexed by `IntegrationType::index()`. `None` means "not applicable".
pub(crate) type GuidanceByType = [Option<&'static str>; 5];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CatalogEntry {
    pub(crate) status_code: u16,
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) guidance: GuidanceByType,
    /// False for the generic entry given to a code the catalog does not list.
    pub(crate) cataloged: bool,
}

/// What to do about a code for an integration type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Guidance {
    /// False when the catalog does not expect the code for the type.
    pub(crate) applicable: bool,
    pub(crate) resolution: String,
}

impl CatalogEntry {
    pub fn guidance_for(&self, integration_type: IntegrationType) -> Option<&'static str> {
        self.guidance[integration_type.index()]
    }

    /// The one wording of guidance every answer, alert and client shows: the catalog's
    /// resolution, or, where the code is not expected for the type, a sentence saying so.
    pub(crate) fn guidance(&self, integration_type: IntegrationType) -> Guidance {
        match self.guidance_for(integration_type) {
            Some(text) => Guidance {
                applicable: true,
                resolution: text.to_owned(),
            },
            None => Guidance {
                applicable: false,
                resolution: format!(
                    "Not applicable: {} is not expected for {}.",
                    self.status_code,
                    integration_type.label()
                ),
            },
        }
    }
}

const PLATFORM_RETRY: &str = "A server-side fault inside the platform. Retry the request; if it keeps failing, contact the operations team.";
const PROVIDER_RETRY: &str = "The API provider's server failed. Retry the request; if it keeps failing, contact the API provider.";
const PARTNER_RETRY: &str = "The integration provider's server failed. Retry the request; if it keeps failing, contact the partner who offers the integration.";
const OPS_TEAM: &str =
    "This comes from the platform side. Contact your account manager or the operations team.";
const PROVIDER_DEPENDENT: &str =
    "Depends on the API provider: check the provider's documentation and status for this code.";
const EVENT_NOT_PROCESSED: &str = "The platform could not process the incoming event. Check that the event payload matches what the flow expects and retry.";
const PROFILE_MISSING: &str = "The action was skipped because no matching user profile exists. Create or verify the user profile, then resend the event.";
const TPS_RATE: &str = "Requests arrive faster than the transactions per second allotted to your tenant. Slow the sender down, or ask your account manager to raise the TPS limit.";
const TPS_QUOTA: &str = "The tenant has used up its transaction quota. Reduce the number of requests, or ask your account manager to raise the quota.";
const INBOUND_REQUEST_CHECK: &str = "Check the webhook request: its endpoint, headers and body must match what the Inbound Webhook documentation describes.";
const POST_ONLY: &str = "The request used the wrong HTTP method. Send it as an HTTP POST.";
const RAISE_TIMEOUT: &str =
    "The request timed out. Raise the request timeout set in its headers and try again.";
const METHOD_CHECK: &str = "The provider does not allow this HTTP method on the configured endpoint. Check the provider's documentation for the right method (GET, POST, ...) and verify the URL.";
const TENANT_PAYLOAD_LIMIT: &str = "The payload is larger than your tenant allows. Shrink the payload, or contact your account manager or the operations team about the limit.";

const fn entry(
    status_code: u16,
    name: &'static str,
    description: &'static str,
    guidance: GuidanceByType,
) -> CatalogEntry {
    CatalogEntry {
        status_code,
        name,
        description,
        guidance,
        cataloged: true,
    }
}

// Guidance order: inbound webhook, outbound webhook, pre-built integration, custom node, custom event.
pub(crate) static CATALOG: [CatalogEntry; 25] = [
    entry(308, "Permanent Redirect", "The target has moved permanently to another URL.", [
        None,
        Some(OPS_TEAM),
        Some("The integration provider redirected the call permanently. Contact the provider of the API or pre-built integration."),
        Some("The API provider redirected the call permanently. Contact the API provider."),
        None,
    ]),
    entry(400, "Bad Request", "The receiver could not understand the request as sent.", [
        Some(INBOUND_REQUEST_CHECK),
        Some(OPS_TEAM),
        Some("Check the pre-built node's configuration (endpoint, headers, body), or ask the integration provider to look into it."),
        Some("Check the custom node's endpoint, headers and body. The final fix depends on the API provider."),
        Some(INBOUND_REQUEST_CHECK),
    ]),
    entry(401, "Unauthorized", "The request carried missing, wrong or expired credentials.", [
        Some("The service key or JWT is missing from the webhook request or attached in the wrong place. See the Inbound Webhook documentation for how to send it."),
        Some("The authorization chosen for the outbound webhook is wrong or has expired. Open Assets > Integrations > Authorization, pick the right one, check its credentials and re-authorize."),
        Some("The pre-built integration's authorization is wrong or expired; its status shows Auth Pending or asks for re-authorization. Open it under Assets > Integrations, check the credentials and re-authorize."),
        Some("The authorization chosen in the custom node is wrong or expired. Open the node under Assets > Integrations, select the right authorization, check its credentials and re-authorize."),
        Some("The service key or JWT is missing. Add the authentication to the request body."),
    ]),
    entry(403, "Forbidden", "The credentials were accepted but do not grant access to this resource.", [
        None,
        Some(OPS_TEAM),
        Some("Set by the API provider, usually because the request lacks the scope or access it needs. Grant the scope with the provider."),
        Some("Set by the API provider, usually because the request lacks the scope or access it needs. Grant the scope with the provider."),
        None,
    ]),
    entry(404, "Not Found", "The requested resource does not exist at that address.", [
        Some("The inbound webhook has been deleted. Recreate it or point the sender at an existing one."),
        Some("The outbound webhook's endpoint URL no longer exists. Fix or replace the URL."),
        Some("The provider could not find the page: it does not exist, has moved, or the link is broken. What the provider returns varies."),
        Some("The provider could not find the page: it does not exist, has moved, or the link is broken. What the provider returns varies."),
        Some("The custom event has been deleted. Recreate it or stop sending to it."),
    ]),
    entry(405, "Method Not Allowed", "The HTTP method is not supported for this endpoint.", [
        Some(POST_ONLY),
        Some(OPS_TEAM),
        Some(METHOD_CHECK),
        Some(METHOD_CHECK),
        Some(POST_ONLY),
    ]),
    entry(406, "Not Acceptable", "The server cannot produce a response in a form the request accepts.", [
        None,
        None,
        Some("Set by the API provider, whose server could not fulfil the request. If a partner offers the integration, contact the partner."),
        Some("Set by the API provider, whose server could not fulfil the request."),
        None,
    ]),
    entry(408, "Request Timeout", "The server gave up waiting for the request to complete.", [
        Some(RAISE_TIMEOUT),
        Some("The configured endpoint did not answer within the allowed time. Check that it is up and responsive."),
        Some("Set by the API provider, whose server could not fulfil the request in time. If a partner offers the integration, contact the partner."),
        Some(RAISE_TIMEOUT),
        Some(RAISE_TIMEOUT),
    ]),
    entry(409, "Conflict", "The request conflicts with the current state of the resource.", [
        None,
        None,
        Some("Set by the API provider. Retrying the request usually resolves it."),
        Some("Set by the API provider. Retrying the request usually resolves it."),
        None,
    ]),
    entry(413, "Content Too Large", "The request body is larger than the receiver accepts.", [
        Some(TENANT_PAYLOAD_LIMIT),
        Some("The payload is larger than the API provider accepts. Look up the provider's maximum payload size and send less."),
        Some("The payload is larger than your tenant allows. Reduce the payload size."),
        Some("The payload is larger than your tenant allows. Reduce the payload size."),
        Some(TENANT_PAYLOAD_LIMIT),
    ]),
    entry(429, "Too Many Requests", "The sender exceeded a rate limit.", [
        Some(TPS_RATE),
        Some(OPS_TEAM),
        Some("The API provider only accepts a limited number of requests per second and rejected the excess. Check the provider's documented limit and pace the calls."),
        Some("The API provider only accepts a limited number of requests per second and rejected the excess. Check the provider's documented limit and pace the calls."),
        Some(TPS_RATE),
    ]),
    entry(500, "Internal Server Error", "The server hit an unexpected condition.", [
        Some(PLATFORM_RETRY),
        Some(PLATFORM_RETRY),
        Some("Set by the API provider, whose server could not fulfil the request. If a partner offers the integration, contact the partner."),
        Some("The API provider's server could not fulfil the request. Contact the API provider."),
        Some(PLATFORM_RETRY),
    ]),
    entry(502, "Bad Gateway", "A gateway got an invalid response from the server behind it.", [
        Some("The server is not responding. Retry after a while, and contact the operations team if it persists."),
        Some(PLATFORM_RETRY),
        Some("The API endpoint's server could not fulfil the request. Check with the API provider, or the partner who offers the integration."),
        Some("The API endpoint's server could not fulfil the request. Check with the API provider."),
        Some(PLATFORM_RETRY),
    ]),
    entry(503, "Service Unavailable", "The server is temporarily unable to handle requests.", [
        Some(PLATFORM_RETRY),
        Some(PLATFORM_RETRY),
        Some(PARTNER_RETRY),
        Some(PROVIDER_RETRY),
        Some(PLATFORM_RETRY),
    ]),
    entry(504, "Gateway Timeout", "A gateway timed out waiting for the server behind it.", [
        Some(PLATFORM_RETRY),
        Some(PLATFORM_RETRY),
        Some(PARTNER_RETRY),
        Some(PROVIDER_RETRY),
        Some(PLATFORM_RETRY),
    ]),
    entry(521, "Web server is down", "The origin server refused the connection from its proxy (a Cloudflare status).", [
        Some(PLATFORM_RETRY),
        Some(PLATFORM_RETRY),
        Some(PLATFORM_RETRY),
        Some("The provider's origin server refused the connection from Cloudflare, a server-side problem on the provider's end. Not every provider reports this; some just drop the connection. Contact the provider if it persists."),
        Some(PLATFORM_RETRY),
    ]),
    entry(523, "Origin is unreachable", "The proxy could not reach the origin server (a Cloudflare status).", [
        Some(PLATFORM_RETRY),
        Some(PLATFORM_RETRY),
        Some(PLATFORM_RETRY),
        Some(PLATFORM_RETRY),
        Some(PLATFORM_RETRY),
    ]),
    entry(804, "Problem while processing action", "The platform failed while running the action for an event.", [
        Some(EVENT_NOT_PROCESSED),
        None,
        Some(PROVIDER_DEPENDENT),
        Some(PROVIDER_DEPENDENT),
        Some(EVENT_NOT_PROCESSED),
    ]),
    entry(811, "Action submission failed", "The platform could not submit the action for an event.", [
        Some(EVENT_NOT_PROCESSED),
        None,
        Some(PROVIDER_DEPENDENT),
        Some(PROVIDER_DEPENDENT),
        Some(EVENT_NOT_PROCESSED),
    ]),
    entry(816, "User profile not found", "No user profile matches the event.", [
        Some(PROFILE_MISSING),
        None,
        Some(PROVIDER_DEPENDENT),
        Some(PROVIDER_DEPENDENT),
        Some(PROFILE_MISSING),
    ]),
    entry(844, "User has not verified his profile", "The matching user profile is not verified.", [
        Some(PROFILE_MISSING),
        None,
        Some(PROVIDER_DEPENDENT),
        Some(PROVIDER_DEPENDENT),
        Some(PROFILE_MISSING),
    ]),
    entry(852, "Not able to resolve action params to fulfill action", "The action's parameters could not be filled from the event.", [
        Some(EVENT_NOT_PROCESSED),
        None,
        Some(PROVIDER_DEPENDENT),
        Some(PROVIDER_DEPENDENT),
        Some(EVENT_NOT_PROCESSED),
    ]),
    entry(882, "TPS rate exceeded", "The tenant sent more transactions per second than allotted.", [
        Some(TPS_RATE),
        None,
        Some(PROVIDER_DEPENDENT),
        Some(PROVIDER_DEPENDENT),
        Some(TPS_RATE),
    ]),
    entry(883, "TPS quota exceeded", "The tenant used up its transaction quota.", [
        Some(TPS_QUOTA),
        None,
        Some(PROVIDER_DEPENDENT),
        Some(PROVIDER_DEPENDENT),
        Some(TPS_QUOTA),
    ]),
    entry(884, "Contact policy not enabled", "The Contact Policy feature is not enabled for the tenant.", [
        Some("Ask your account manager to enable the Contact Policy feature."),
        None,
        Some(PROVIDER_DEPENDENT),
        Some(PROVIDER_DEPENDENT),
        Some("Ask your account manager to enable the Contact Policy feature."),
    ]),
];

const CLIENT_ERROR: &str = "The receiver refused the request as sent. Check the endpoint, credentials, headers and body against the receiver's documentation.";
const SERVER_ERROR: &str = "The receiver failed to handle a valid request. Retry; if it keeps failing, contact the receiver's operators.";
const OTHER_ERROR: &str =
    "An unusual status. Check the receiver's documentation for what this code means.";

/// The coarse reason behind a failure, the first thing a person on call asks: a broken
/// credential, a rate limit, a provider that is down, our configuration, or our own request.
/// Derived from the code when read, never stored; docs/events.md lists the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorClass {
    Auth,
    RateLimited,
    ProviderUnavailable,
    Config,
    Client,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 5] = [
        ErrorClass::Auth,
        ErrorClass::RateLimited,
        ErrorClass::ProviderUnavailable,
        ErrorClass::Config,
        ErrorClass::Client,
    ];

    /// Its place in `ALL`.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The class of a code: the catalog's codes by what each means, any other code by its range
/// (5xx the provider's, everything else the request's).
pub fn class_of(status_code: u16) -> ErrorClass {
    match status_code {
        401 | 403 => ErrorClass::Auth,
        429 | 882 | 883 => ErrorClass::RateLimited,
        408 | 521 | 523 => ErrorClass::ProviderUnavailable,
        816 | 844 | 852 | 884 => ErrorClass::Config,
        500..=599 => ErrorClass::ProviderUnavailable,
        _ => ErrorClass::Client,
    }
}

/// Looks a code up; unknown codes get a generic entry for their class.
pub fn lookup(status_code: u16) -> CatalogEntry {
    if let Ok(i) = CATALOG.binary_search_by_key(&status_code, |e| e.status_code) {
        return CATALOG[i];
    }
    let (name, description, guidance) = match status_code {
        400..=499 => (
            "Client error",
            "A 4xx status: the request was refused.",
            CLIENT_ERROR,
        ),
        500..=599 => (
            "Server error",
            "A 5xx status: the receiver failed.",
            SERVER_ERROR,
        ),
        _ => (
            "Other error",
            "A status outside the 4xx and 5xx classes.",
            OTHER_ERROR,
        ),
    };
    CatalogEntry {
        status_code,
        name,
        description,
        guidance: [Some(guidance); 5],
        cataloged: false,
    }
}

/// The catalog name of a code, the default failure description when an event has none.
pub fn name_of(status_code: u16) -> &'static str {
    lookup(status_code).name
}

/// The failure description a person sees: the event's message, or the catalog name of its code
/// when the message is absent or empty. This is the one rule; everything that names a failure
/// calls it.
pub(crate) fn visible_description(message: &str, status_code: u16) -> &str {
    match message {
        "" => name_of(status_code),
        text => text,
    }
}

/// The description a failure group is stored and identified by: empty for every message that
/// `visible_description` shows as the catalog name (absent, empty, or byte-equal to that name),
/// the message itself otherwise. Two events that look the same are thus one group, and since
/// the stored form never holds catalog text, rewording the catalog changes no group's identity.
pub(crate) fn stored_description(message: Option<&str>, status_code: u16) -> &str {
    match message {
        Some(text) if text != name_of(status_code) => text,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_sorted_and_complete() {
        let codes: Vec<u16> = CATALOG.iter().map(|e| e.status_code).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted, "binary search needs sorted, unique codes");
        assert_eq!(
            codes,
            [
                308, 400, 401, 403, 404, 405, 406, 408, 409, 413, 429, 500, 502, 503, 504, 521,
                523, 804, 811, 816, 844, 852, 882, 883, 884
            ]
        );
    }

    #[test]
    fn not_applicable_cells_follow_the_seed() {
        use IntegrationType::*;
        let na = |code: u16| -> Vec<IntegrationType> {
            let e = lookup(code);
            IntegrationType::ALL
                .into_iter()
                .filter(|t| e.guidance_for(*t).is_none())
                .collect()
        };
        assert_eq!(na(308), vec![InboundWebhook, CustomEvent]);
        assert_eq!(na(403), vec![InboundWebhook, CustomEvent]);
        assert_eq!(na(406), vec![InboundWebhook, OutboundWebhook, CustomEvent]);
        assert_eq!(na(409), vec![InboundWebhook, OutboundWebhook, CustomEvent]);
        for code in [804, 811, 816, 844, 852, 882, 883, 884] {
            assert_eq!(na(code), vec![OutboundWebhook], "{code}");
        }
        for code in [
            400, 401, 404, 405, 408, 413, 429, 500, 502, 503, 504, 521, 523,
        ] {
            assert!(na(code).is_empty(), "{code}");
        }
    }

    #[test]
    fn every_catalogued_code_has_the_class_docs_events_gives_it() {
        use ErrorClass::*;
        let classes: Vec<(u16, ErrorClass)> = CATALOG
            .iter()
            .map(|e| (e.status_code, class_of(e.status_code)))
            .collect();
        let unavailable = ProviderUnavailable;
        let expected = [
            (308, Client),
            (400, Client),
            (401, Auth),
            (403, Auth),
            (404, Client),
            (405, Client),
            (406, Client),
            (408, unavailable),
            (409, Client),
            (413, Client),
            (429, RateLimited),
            (500, unavailable),
            (502, unavailable),
            (503, unavailable),
            (504, unavailable),
            (521, unavailable),
            (523, unavailable),
            (804, Client),
            (811, Client),
            (816, Config),
            (844, Config),
            (852, Config),
            (882, RateLimited),
            (883, RateLimited),
            (884, Config),
        ];
        assert_eq!(classes, expected);
        // Codes outside the catalog by their range.
        assert_eq!(class_of(418), Client);
        assert_eq!(class_of(599), unavailable);
        assert_eq!(class_of(302), Client);
        assert_eq!(class_of(777), Client);
    }

    #[test]
    fn names_match_the_seed() {
        assert_eq!(name_of(404), "Not Found");
        assert_eq!(name_of(882), "TPS rate exceeded");
        assert_eq!(name_of(521), "Web server is down");
    }

    #[test]
    fn unknown_codes_get_a_class_entry() {
        assert_eq!(lookup(418).name, "Client error");
        assert_eq!(lookup(599).name, "Server error");
        assert_eq!(lookup(302).name, "Other error");
        assert_eq!(lookup(777).name, "Other error");
        assert!(!lookup(418).cataloged);
        assert!(lookup(418).guidance.iter().all(Option::is_some));
    }
}
