//! One request to one destination, retried with backoff and jitter after a 429, a 5xx or a
//! transport error, never after another 4xx. A redirect is never followed: it fails the
//! delivery, which is recorded as undelivered with the status.

use std::time::Duration;

use rand::Rng;
use reqwest::{redirect, StatusCode};

use super::destinations::Destination;

/// How often and how patiently a request is retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) attempts: u32,
    pub(crate) first_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

/// A request ready to send: its JSON body and the headers besides the content type.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) body: Vec<u8>,
    pub(crate) headers: Vec<(&'static str, String)>,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Sent { attempts: u32 },
    Failed { attempts: u32, error: String },
}

/// The client every destination shares: it follows no redirect (a signed alert goes only to
/// the URL configured for it, never where an answer points) and takes no proxy from the
/// environment. There is no fallback client: one with the defaults would follow redirects
/// anywhere.
pub(crate) fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("integration-health/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends `request` to `destination` until it is taken, refused for good, or the attempts run
/// out. `observe` is told each attempt's duration.
pub(crate) async fn send(
    client: &reqwest::Client,
    destination: &Destination,
    request: &Request,
    policy: RetryPolicy,
    mut observe: impl FnMut(Duration),
) -> Outcome {
    let mut attempts = 0;
    loop {
        attempts += 1;
        destination.wait_turn().await;
        let started = std::time::Instant::now();
        let result = attempt(client, destination, request).await;
        observe(started.elapsed());
        let (retry, error, wait) = match result {
            Ok(status) if status.is_success() => return Outcome::Sent { attempts },
            Ok(status) => (
                retryable(status.status),
                refusal(status.status),
                status.retry_after,
            ),
            Err(err) => (true, transport_error(&err), None),
        };
        if !retry || attempts >= policy.attempts {
            return Outcome::Failed { attempts, error };
        }
        tokio::time::sleep(wait.unwrap_or_else(|| backoff(policy, attempts))).await;
    }
}

struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
}

impl Answer {
    fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

async fn attempt(
    client: &reqwest::Client,
    destination: &Destination,
    request: &Request,
) -> Result<Answer, reqwest::Error> {
    let mut builder = client
        .post(destination.url.clone())
        .timeout(destination.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let response = builder.send().await?;
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs.min(60)));
    Ok(Answer {
        status: response.status(),
        retry_after,
    })
}

/// What a refusal is recorded as; a redirect says that it was not followed.
fn refusal(status: StatusCode) -> String {
    match status.is_redirection() {
        true => format!("HTTP {status}, not followed: configure the final URL"),
        false => format!("HTTP {status}"),
    }
}

/// A 429 or a 5xx may pass; any other refusal will not.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The error without the URL, which for Slack is a secret.
fn transport_error(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    match std::error::Error::source(err) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}

/// Exponential backoff with full jitter: a random wait up to `first × 2^(n-1)`, capped.
fn backoff(policy: RetryPolicy, attempts: u32) -> Duration {
    let ceiling = policy
        .first_backoff
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(policy.max_backoff);
    let half = ceiling / 2;
    half + ceiling.mul_f64(rand::thread_rng().gen_range(0.0..0.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_and_server_errors_are_retried() {
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!retryable(StatusCode::BAD_REQUEST));
        assert!(!retryable(StatusCode::NOT_FOUND));
        assert!(!retryable(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn backoff_grows_within_its_cap() {
        let policy = RetryPolicy {
            attempts: 8,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        for n in 1..8 {
            let ceiling = (Duration::from_millis(100) * (1 << (n - 1))).min(Duration::from_secs(1));
            let wait = backoff(policy, n);
            assert!(wait >= ceiling / 2 && wait <= ceiling, "{n}: {wait:?}");
        }
    }
}
