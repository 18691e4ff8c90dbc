//! SSE framing, keepalives and the raw-byte HTTP response.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::{Stream, StreamExt};

use super::frames::Event;
use super::json::{self, Style};

/// The comment frame sent after [`KEEPALIVE_INTERVAL`] without a frame.
pub const KEEPALIVE: &str = ": keepalive\n\n";

/// The reference's idle interval before a keepalive comment.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// `Content-Type` of every stream (Starlette appends the charset to `text/event-stream`).
pub const CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";

/// Appends one frame, byte-exact: `event: <name>\n`, `data: <json.dumps(payload)>\n`, `\n`.
pub fn encode_into(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Frames hold only strings, integers, floats, bools and string-keyed maps, which always
    // serialise; the escaping keeps the JSON on one ASCII line.
    json::write(out, event, Style::Dumps).expect("SSE payloads always serialise");
    out.extend_from_slice(b"\n\n");
}

/// One frame as the reference writes it (see [`encode_into`]).
pub fn encode(event: &Event) -> String {
    let mut out = Vec::with_capacity(256);
    encode_into(event, &mut out);
    String::from_utf8(out).expect("SSE frames are ASCII")
}

/// The stream's bytes: each event encoded, plus [`KEEPALIVE`] whenever `interval` passes with no
/// event (the timer restarts after every frame and every keepalive, as the reference's
/// `asyncio.wait_for(queue.get(), timeout)` loop does). Ends when `events` ends.
pub fn frame_stream<S>(events: S, interval: Duration) -> impl Stream<Item = Bytes> + Send + 'static
where
    S: Stream<Item = Event> + Send + 'static,
{
    frame_stream_with_timer(events, move || tokio::time::sleep(interval))
}

/// [`frame_stream`] with the idle timer supplied: `idle()` is called for a fresh timer each time
/// the stream starts waiting for an event; if it resolves first, a [`KEEPALIVE`] is sent. A
/// ready event always wins over an expired timer.
pub fn frame_stream_with_timer<S, F, T>(
    events: S,
    idle: F,
) -> impl Stream<Item = Bytes> + Send + 'static
where
    S: Stream<Item = Event> + Send + 'static,
    F: FnMut() -> T + Send + 'static,
    T: Future<Output = ()> + Send,
{
    futures::stream::unfold(
        (Box::pin(events), idle),
        |(mut events, mut idle)| async move {
            let bytes = tokio::select! {
                biased;
                event = events.next() => Bytes::from(encode(&event?)),
                () = idle() => Bytes::from_static(KEEPALIVE.as_bytes()),
            };
            Some((bytes, (events, idle)))
        },
    )
}

/// An HTTP 200 streaming `events` with the reference's headers (`Content-Type:
/// text/event-stream; charset=utf-8`, `Cache-Control: no-cache`, `X-Accel-Buffering: no`) and
/// 15 s keepalives. Make `events` end with `complete` (see [`super::StreamGuard`]).
pub fn sse_response<S>(events: S) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    sse_response_with_keepalive(events, KEEPALIVE_INTERVAL)
}

/// [`sse_response`] with a custom keepalive interval.
pub fn sse_response_with_keepalive<S>(events: S, interval: Duration) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    let body = Body::from_stream(frame_stream(events, interval).map(Ok::<_, Infallible>));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
