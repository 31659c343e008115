//! A local HTTP receiver for alert deliveries: it records every request (path, headers, body,
//! the status it answered, when it arrived and was answered) and answers as the test scripts
//! it: a few failures first, a failure for the first attempt of each message, a status for
//! good, or a delay before answering.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub answered: u16,
    pub arrived_at: Instant,
    pub answered_at: Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

#[derive(Default)]
struct Script {
    received: Vec<Received>,
    next: HashMap<String, VecDeque<u16>>,
    always: HashMap<String, u16>,
    delay: HashMap<String, Duration>,
    arrived: HashMap<String, usize>,
    redirects: HashMap<String, String>,
    /// Per path: the status (and `Retry-After`) the first request of each `webhook-id` gets.
    first_of_each: HashMap<String, (u16, Option<String>)>,
    seen: HashSet<(String, String)>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver binds");
        let addr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, script }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next requests to `path` are answered with `statuses`, in turn, then 200.
    pub fn fail_next(&self, path: &str, statuses: &[u16]) {
        self.script
            .lock()
            .next
            .insert(path.to_owned(), statuses.iter().copied().collect());
    }

    /// The first request of each `webhook-id` to `path` is answered `status`, with
    /// `Retry-After: retry_after` when given; the next ones as scripted otherwise.
    pub fn fail_first_of_each(&self, path: &str, status: u16, retry_after: Option<&str>) {
        self.script
            .lock()
            .first_of_each
            .insert(path.to_owned(), (status, retry_after.map(str::to_owned)));
    }

    /// Every request to `path` is answered with `status`.
    pub fn always(&self, path: &str, status: u16) {
        self.script.lock().always.insert(path.to_owned(), status);
    }

    /// Requests to `path` are answered only after `delay`.
    pub fn delay(&self, path: &str, delay: Duration) {
        self.script.lock().delay.insert(path.to_owned(), delay);
    }

    /// Requests to `path` are answered 307 to `location`.
    pub fn redirect(&self, path: &str, location: &str) {
        self.script
            .lock()
            .redirects
            .insert(path.to_owned(), location.to_owned());
    }

    /// Stops delaying requests to `path`.
    pub fn no_delay(&self, path: &str) {
        self.script.lock().delay.remove(path);
    }

    /// Requests to `path` that have arrived, answered or not yet.
    pub fn arrived(&self, path: &str) -> usize {
        self.script.lock().arrived.get(path).copied().unwrap_or(0)
    }

    /// Every request to `path` so far, failed attempts included.
    pub fn received(&self, path: &str) -> Vec<Received> {
        let script = self.script.lock();
        script
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// The requests to `path` answered 2xx, once `want` says there are enough.
    pub async fn wait_for(
        &self,
        path: &str,
        what: &str,
        want: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let taken: Vec<Received> = self
                .received(path)
                .into_iter()
                .filter(|r| (200..300).contains(&r.answered))
                .collect();
            if want(&taken) {
                return taken;
            }
            assert!(Instant::now() < deadline, "{path}: never {what}: {taken:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let arrived_at = Instant::now();
    let delay = {
        let mut script = script.lock();
        *script.arrived.entry(path.clone()).or_default() += 1;
        script.delay.get(&path).copied()
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut script = script.lock();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let first = match script.first_of_each.get(&path).cloned() {
        Some(answer) if script.seen.insert((path.clone(), id)) => Some(answer),
        _ => None,
    };
    let scripted = script.next.get_mut(&path).and_then(VecDeque::pop_front);
    let redirect = script.redirects.get(&path).cloned();
    let status = match (&redirect, &first) {
        (Some(_), _) => 307,
        (None, Some((status, _))) => *status,
        (None, None) => scripted
            .or_else(|| script.always.get(&path).copied())
            .unwrap_or(200),
    };
    script.received.push(Received {
        path,
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
        answered: status,
        arrived_at,
        answered_at: Instant::now(),
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry_after = first.and_then(|(_, after)| after);
    match (redirect, retry_after) {
        (Some(location), _) => (status, [(header::LOCATION, location)]).into_response(),
        (None, Some(after)) => (status, [(header::RETRY_AFTER, after)]).into_response(),
        (None, None) => status.into_response(),
    }
}
