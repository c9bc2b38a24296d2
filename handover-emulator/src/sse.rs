//! Writing an SSE response body that can be aborted mid-stream.

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

/// One chunk of an SSE body.
pub(crate) enum Chunk {
    Frame(String),
    Abort,
}

/// An SSE frame.
pub(crate) fn frame(event: &str, id: &str, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 48);
    out.push_str("event: ");
    out.push_str(event);
    out.push('\n');
    if !id.is_empty() {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// A `200 text/event-stream` response fed by `rx`; `Chunk::Abort` cuts the connection.
pub(crate) fn response(rx: mpsc::Receiver<Chunk>) -> Response {
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await? {
            Chunk::Frame(frame) => Some((Ok::<_, std::io::Error>(Bytes::from(frame)), rx)),
            Chunk::Abort => Some((Err(std::io::Error::other("stream dropped by the emulator")), rx)),
        }
    });
    ([("content-type", "text/event-stream"), ("cache-control", "no-cache")], Body::from_stream(body)).into_response()
}
