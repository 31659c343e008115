//! Connect's server-streaming form: the request is one enveloped message; the answer is a
//! stream of enveloped messages closed by an end-of-stream envelope, which carries the error
//! when there is one. An envelope is a flags byte, a big-endian u32 length and the message.

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Status;

use super::{connect_code, Call, Codec, ConnectState, Framing, IntegrationHealthApi};

const COMPRESSED: u8 = 0x01;
const END_STREAM: u8 = 0x02;

fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(flags);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

/// The end-of-stream envelope: `{}`, or `{"error": {...}}`. Always JSON, whatever the codec.
fn end_frame(error: Option<&Status>) -> Bytes {
    let body = match error {
        None => serde_json::json!({}),
        Some(status) => serde_json::json!({
            "error": { "code": connect_code(status.code()).0, "message": status.message() }
        }),
    };
    envelope(END_STREAM, body.to_string().as_bytes())
}

fn streaming_response(codec: Codec, body: Body) -> Response {
    (
        [(header::CONTENT_TYPE, codec.content_type(Framing::Stream))],
        body,
    )
        .into_response()
}

/// A stream that ends at once with `status`: how a streaming call is refused.
pub(super) fn end_with(codec: Codec, status: &Status) -> Response {
    streaming_response(codec, Body::from(end_frame(Some(status))))
}

/// The one message of a streaming request.
fn unwrap_request(body: &[u8]) -> Result<&[u8], Status> {
    let bad = |why: &str| Status::invalid_argument(format!("request envelope: {why}"));
    let (head, payload) = body
        .split_first_chunk::<5>()
        .ok_or_else(|| bad("shorter than its 5-byte prefix"))?;
    if head[0] & COMPRESSED != 0 {
        return Err(bad("compressed messages are not accepted"));
    }
    let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if length != payload.len() {
        return Err(bad("length does not match the message"));
    }
    Ok(payload)
}

pub(super) async fn server_stream<Req, Resp, S, F, Fut>(
    call: Call,
    state: ConnectState,
    handler: F,
) -> Response
where
    Req: Message + Default + DeserializeOwned + Send + 'static,
    Resp: Message + Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
    F: FnOnce(Arc<IntegrationHealthApi>, tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>> + Send + 'static,
{
    let codec = call.codec;
    let message = match unwrap_request(&call.body).and_then(|m| codec.decode::<Req>(m)) {
        Ok(message) => message,
        Err(status) => return end_with(codec, &status),
    };
    let request = call.request(message);
    let started = state
        .runtime
        .spawn(handler(state.api.clone(), request))
        .await;
    let messages = match started {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return end_with(codec, &status),
        Err(_) => return end_with(codec, &Status::internal("the call did not start")),
    };
    // Each message in its envelope, then the end-of-stream envelope (with the error, if the
    // stream failed), then nothing.
    let frames = futures::stream::unfold(Some(Box::pin(messages)), move |state| async move {
        let mut messages = state?;
        let frame = match messages.next().await {
            Some(Ok(message)) => match codec.encode(&message) {
                Ok(payload) => return Some((envelope(0, &payload), Some(messages))),
                Err(status) => end_frame(Some(&status)),
            },
            Some(Err(status)) => end_frame(Some(&status)),
            None => end_frame(None),
        };
        Some((frame, None))
    })
    .map(Ok::<_, std::convert::Infallible>);
    streaming_response(codec, Body::from_stream(frames))
}
