//! One state change to one destination, retried with backoff and jitter after a 429, a 5xx
//! or a transport error, never after another 4xx; a `Retry-After` is honoured up to the
//! destination's `max_backoff_ms`. A redirect is never followed: it fails the delivery, which
//! goes to the dead letters with the status.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::{redirect, StatusCode};

use super::destinations::{Destination, Secrets};

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

/// What one attempt came to, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    Taken,
    /// Refused or not answered, and tried again after a wait.
    Retried,
    /// Refused or not answered, and not tried again.
    Failed,
}

/// Sends to `destination` until a request is taken, refused for good, or the attempts run
/// out. Each attempt's request is built afresh by `build` from the secrets in force, so it
/// carries a new timestamp and signature, and a rotated secret is used at once. `observe` is
/// told how each attempt went and how long it took.
pub(crate) async fn send(
    client: &reqwest::Client,
    destination: &Destination,
    build: impl Fn(&Secrets) -> Request,
    policy: RetryPolicy,
    mut observe: impl FnMut(Attempt, Duration),
) -> Outcome {
    let mut attempts = 0;
    loop {
        attempts += 1;
        destination.wait_turn().await;
        let secrets = destination.secrets();
        let request = build(&secrets);
        let started = std::time::Instant::now();
        let result = attempt(client, destination, &secrets.url, &request).await;
        let took = started.elapsed();
        let (retry, error, wait) = match result {
            Ok(answer) if answer.status.is_success() => {
                observe(Attempt::Taken, took);
                return Outcome::Sent { attempts };
            }
            Ok(answer) => (
                retryable(answer.status),
                refusal(answer.status),
                answer.retry_after,
            ),
            Err(err) => (true, transport_error(&err), None),
        };
        if !retry || attempts >= policy.attempts {
            observe(Attempt::Failed, took);
            return Outcome::Failed { attempts, error };
        }
        observe(Attempt::Retried, took);
        let wait = match wait {
            Some(asked) => asked.min(policy.max_backoff),
            None => backoff(policy, attempts),
        };
        tokio::time::sleep(wait).await;
    }
}

struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
}

async fn attempt(
    client: &reqwest::Client,
    destination: &Destination,
    url: &url::Url,
    request: &Request,
) -> Result<Answer, reqwest::Error> {
    let mut builder = client
        .post(url.clone())
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
        .and_then(|v| retry_after(v, SystemTime::now()));
    Ok(Answer {
        status: response.status(),
        retry_after,
    })
}

/// A `Retry-After` value: delay-seconds or an HTTP date (a date in the past means now).
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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
    fn retry_after_takes_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        // 2015-10-21 07:28:00 GMT is now; a minute later is 60 s away.
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-3", now), None);
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
