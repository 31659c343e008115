//! The Integrations dashboard: one page, its script and its styles, embedded in the binary and
//! served at `/` beside the Connect/JSON API it reads. Nothing is fetched from elsewhere.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Every asset with its path and content type, for the router and for size reports.
pub(crate) const ASSETS: [(&str, &str, &str); 3] = [
    ("/", "text/html; charset=utf-8", INDEX_HTML),
    ("/assets/app.js", "text/javascript; charset=utf-8", APP_JS),
    ("/assets/app.css", "text/css; charset=utf-8", APP_CSS),
];

/// A strict policy: the page may load only its own files and talk only to its own origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

pub fn router() -> Router {
    ASSETS
        .iter()
        .fold(Router::new(), |router, (path, content_type, body)| {
            router.route(
                path,
                get(move |headers: HeaderMap| async move { asset(&headers, content_type, body) }),
            )
        })
}

fn asset(headers: &HeaderMap, content_type: &'static str, body: &'static str) -> Response {
    let etag = etag(body);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|seen| seen.as_bytes() == etag.as_bytes());
    let common = [
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::ETAG, etag),
        (
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY.to_owned(),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (common, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// A validator that changes whenever the embedded file does, so a new build is never served
/// from a browser's cache.
fn etag(body: &str) -> String {
    format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(body.as_bytes()))
}
