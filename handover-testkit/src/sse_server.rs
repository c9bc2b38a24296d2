//! A scripted loopback SSE server.
//!
//! Each incoming connection takes the next [`Reply`] from the script (an empty script
//! holds the connection open with no frames). Frames can be pushed to the connection that
//! is currently held, and it can be closed cleanly or aborted mid-stream. Every
//! connection's request line and headers are recorded, so tests can check the
//! `Last-Event-ID` a client sent on reconnect.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Notify, mpsc};

/// What to do with one connection.
#[derive(Clone, Debug)]
pub enum Reply {
    /// `200 text/event-stream`: write `frames`, then `then`.
    Stream {
        /// Raw frames, written in order.
        frames: Vec<String>,
        /// What happens after the frames.
        then: Then,
    },
    /// A plain response with this status and body.
    Status {
        /// The status code.
        status: u16,
        /// The body.
        body: String,
        /// The content type.
        content_type: &'static str,
    },
}

impl Reply {
    /// A stream with `frames` that then stays open for pushes.
    pub fn hold(frames: impl IntoIterator<Item = String>) -> Self {
        Reply::Stream { frames: frames.into_iter().collect(), then: Then::Hold }
    }

    /// A plain-text response with `status`.
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Reply::Status { status, body: body.into(), content_type: "text/plain" }
    }
}

/// What happens after a stream's scripted frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Stay open; [`SseServer::push`] writes to it.
    Hold,
    /// End the body cleanly.
    Close,
}

/// One recorded connection attempt.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
}

impl Recorded {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

enum Chunk {
    Data(String),
    Abort,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    recorded: Mutex<Vec<Recorded>>,
    live: Mutex<Option<mpsc::UnboundedSender<Chunk>>>,
    changed: Notify,
}

/// The server. It runs until dropped.
pub struct SseServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// An SSE frame: `event`, `id` and `data` (multi-line data becomes several `data:` lines).
pub fn frame(event: &str, id: &str, data: &str) -> String {
    let mut out = String::new();
    if !event.is_empty() {
        out.push_str(&format!("event: {event}\n"));
    }
    if !id.is_empty() {
        out.push_str(&format!("id: {id}\n"));
    }
    for line in data.split('\n') {
        out.push_str(&format!("data: {line}\n"));
    }
    out.push('\n');
    out
}

impl SseServer {
    /// Starts on `127.0.0.1:0`, serving any path.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a reply to the script.
    pub fn enqueue(&self, reply: Reply) {
        self.shared.script.lock().unwrap().push_back(reply);
    }

    /// Writes a raw frame to the connection being held; `false` if none is.
    pub fn push(&self, frame: impl Into<String>) -> bool {
        match &*self.shared.live.lock().unwrap() {
            Some(tx) => tx.send(Chunk::Data(frame.into())).is_ok(),
            None => false,
        }
    }

    /// Ends the held connection: cut mid-body with `abort` (after what was pushed before
    /// is written), else closed cleanly.
    pub fn drop_current(&self, abort: bool) -> bool {
        match self.shared.live.lock().unwrap().take() {
            Some(tx) => {
                if abort {
                    let _ = tx.send(Chunk::Abort);
                }
                true
            }
            None => false,
        }
    }

    /// Every connection attempt so far.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// Waits until at least `n` connection attempts were made.
    pub async fn wait_connections(&self, n: usize) -> Vec<Recorded> {
        loop {
            let notified = self.shared.changed.notified();
            {
                let recorded = self.shared.recorded.lock().unwrap();
                if recorded.len() >= n {
                    return recorded.clone();
                }
            }
            notified.await;
        }
    }
}

impl Drop for SseServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let recorded = Recorded {
        method: method.to_string(),
        uri: uri.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
    };
    let reply = shared.script.lock().unwrap().pop_front().unwrap_or_else(|| Reply::hold(Vec::new()));
    let response = match reply {
        Reply::Status { status, body, content_type } => {
            (StatusCode::from_u16(status).unwrap(), [("content-type", content_type)], body).into_response()
        }
        Reply::Stream { frames, then } => {
            let (tx, rx) = mpsc::unbounded_channel();
            for frame in frames {
                let _ = tx.send(Chunk::Data(frame));
            }
            match then {
                Then::Hold => {
                    // A newer connection replaces the held one, as a server would.
                    *shared.live.lock().unwrap() = Some(tx);
                }
                Then::Close => drop(tx),
            }
            let body = futures_util::stream::unfold(rx, |mut rx| async move {
                match rx.recv().await? {
                    Chunk::Data(data) => Some((Ok::<_, std::io::Error>(Bytes::from(data)), rx)),
                    Chunk::Abort => Some((Err(std::io::Error::other("aborted by the script")), rx)),
                }
            });
            ([("content-type", "text/event-stream"), ("cache-control", "no-cache")], Body::from_stream(body))
                .into_response()
        }
    };
    shared.recorded.lock().unwrap().push(recorded);
    shared.changed.notify_waiters();
    response
}
