//! The webhook listener: an HTTP/1.1 server that idle or slow clients cannot exhaust.
//!
//! Every connection has a deadline for its request headers, for its request body and for
//! staying idle between requests; at most [`ListenerLimits::max_connections`] are open,
//! and when a new one arrives at the cap the connection idle the longest is closed to make
//! room (a new one is refused only when none is idle). The bytes of request bodies held at
//! once, over all connections, are bounded too: a body over its own limit is refused with
//! `413` before it is read (also for `Expect: 100-continue`), and a body that would pass the
//! global bound is refused with `503`. Each limit logs once, at warn, the first time it is
//! hit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use handover_transport::CancellationToken;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceExt;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The limits of the webhook listener (the `[webhook]` table's keys in brackets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerLimits {
    /// How long a client may take to send a request's headers (`header_timeout_ms`).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body (`body_timeout_ms`).
    pub body_timeout: Duration,
    /// How long a kept-alive connection may stay idle between requests (`idle_timeout_ms`).
    pub idle_timeout: Duration,
    /// The most connections open at once (`max_connections`).
    pub max_connections: usize,
    /// The largest request body (`max_body_bytes`).
    pub max_body_bytes: usize,
    /// The most request-body bytes held at once, over all connections
    /// (`max_buffered_bytes`).
    pub max_buffered_bytes: usize,
}

impl Default for ListenerLimits {
    /// Headers within 10 s, bodies within 30 s, 60 s idle, 4,096 connections, 1 MiB per
    /// body and 64 MiB of bodies at once.
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_body_bytes: super::MAX_BODY_BYTES,
            max_buffered_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Which limits have been hit, so each is logged once.
#[derive(Default)]
struct Warned {
    connections: AtomicBool,
    header_timeout: AtomicBool,
    body_timeout: AtomicBool,
    idle: AtomicBool,
    buffered: AtomicBool,
    body_size: AtomicBool,
}

fn warn_once(flag: &AtomicBool, message: &str, key: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        tracing::warn!(key, "webhook listener: {message} (logged once; see [webhook] {key})");
    }
}

/// What the listener knows of one open connection.
struct Tracked {
    /// Requests in flight; idle when zero.
    busy: usize,
    /// Since when the connection is idle (or open without a request).
    idle_since: Instant,
    close: CancellationToken,
}

#[derive(Default)]
struct Connections {
    open: BTreeMap<u64, Tracked>,
}

/// Shared by the accept loop, the connections and the body reader.
pub(crate) struct Shared {
    limits: ListenerLimits,
    buffered: Arc<Semaphore>,
    connections: Mutex<Connections>,
    next_id: AtomicU64,
    warned: Warned,
}

impl Shared {
    fn new(limits: ListenerLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            buffered: Arc::new(Semaphore::new(limits.max_buffered_bytes.min(Semaphore::MAX_PERMITS))),
            connections: Mutex::default(),
            next_id: AtomicU64::new(0),
            warned: Warned::default(),
        })
    }

    /// Makes room for one more connection: `false` when the cap is reached and no
    /// connection is idle to close instead.
    fn admit(&self) -> bool {
        let connections = lock(&self.connections);
        if connections.open.len() < self.limits.max_connections {
            return true;
        }
        warn_once(
            &self.warned.connections,
            "the connection cap was reached; closing the longest idle",
            "max_connections",
        );
        let oldest_idle =
            connections.open.values().filter(|c| c.busy == 0 && !c.close.is_cancelled()).min_by_key(|c| c.idle_since);
        match oldest_idle {
            Some(idle) => {
                idle.close.cancel();
                true
            }
            None => false,
        }
    }

    fn request_started(&self, id: u64) {
        if let Some(c) = lock(&self.connections).open.get_mut(&id) {
            c.busy += 1;
        }
    }

    fn request_finished(&self, id: u64) {
        if let Some(c) = lock(&self.connections).open.get_mut(&id) {
            c.busy = c.busy.saturating_sub(1);
            if c.busy == 0 {
                c.idle_since = Instant::now();
            }
        }
    }

    /// When the connection, idle now, has been idle too long; `None` while busy.
    fn idle_deadline(&self, id: u64) -> Option<Instant> {
        let connections = lock(&self.connections);
        let c = connections.open.get(&id)?;
        (c.busy == 0).then(|| c.idle_since + self.limits.idle_timeout)
    }
}

/// Request-body bytes held by a handler, returned to the listener's budget when dropped.
pub(crate) struct BodyPermit(#[allow(dead_code)] Option<tokio::sync::OwnedSemaphorePermit>);

/// Why a body was not read.
pub(crate) enum BodyRefusal {
    /// Over the per-body limit (`413`).
    TooLarge(usize),
    /// The global budget of buffered bytes is spent (`503`).
    Busy,
    /// The client did not send it in time (`408`).
    TimedOut,
    /// The connection broke (`400`).
    Broken,
}

/// Reads `body` within the limits of the listener serving it (none when served by plain
/// axum: then only the per-body limit applies).
pub(crate) async fn read_body(
    shared: Option<&Shared>,
    max_body_bytes: usize,
    content_length: Option<u64>,
    body: Body,
) -> Result<(Vec<u8>, BodyPermit), BodyRefusal> {
    use http_body_util::BodyExt;
    let max = shared.map_or(max_body_bytes, |s| s.limits.max_body_bytes);
    if content_length.is_some_and(|len| len > max as u64) {
        // Refused before a byte is read: hyper sends no `100 Continue` for an unread body.
        if let Some(shared) = shared {
            warn_once(&shared.warned.body_size, "a body over the size limit was refused", "max_body_bytes");
        }
        return Err(BodyRefusal::TooLarge(max));
    }
    let deadline = shared.map(|s| Instant::now() + s.limits.body_timeout);
    let mut permit: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut bytes = Vec::with_capacity(content_length.map_or(0, |len| (len as usize).min(max)));
    let mut body = body;
    loop {
        let frame = match deadline {
            Some(at) => match tokio::time::timeout_at(at, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => {
                    if let Some(shared) = shared {
                        warn_once(
                            &shared.warned.body_timeout,
                            "a client was too slow sending a body",
                            "body_timeout_ms",
                        );
                    }
                    return Err(BodyRefusal::TimedOut);
                }
            },
            None => body.frame().await,
        };
        let Some(frame) = frame else { break };
        let Ok(frame) = frame else { return Err(BodyRefusal::Broken) };
        let Ok(data) = frame.into_data() else { continue };
        if bytes.len() + data.len() > max {
            return Err(BodyRefusal::TooLarge(max));
        }
        if let Some(shared) = shared {
            let more = u32::try_from(data.len()).map_err(|_| BodyRefusal::TooLarge(max))?;
            match shared.buffered.clone().try_acquire_many_owned(more) {
                Ok(more) => match &mut permit {
                    Some(held) => held.merge(more),
                    None => permit = Some(more),
                },
                Err(_) => {
                    warn_once(
                        &shared.warned.buffered,
                        "the budget of request bytes held at once is spent; refusing with 503",
                        "max_buffered_bytes",
                    );
                    return Err(BodyRefusal::Busy);
                }
            }
        }
        bytes.extend_from_slice(&data);
    }
    Ok((bytes, BodyPermit(permit)))
}

/// Raises this process's soft limit of open files to its hard limit, so the connection
/// cap, not the inherited default of 1,024, bounds the listener. Returns the new soft
/// limit.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    #[cfg(unix)]
    {
        let (soft, hard) = rlimit::Resource::NOFILE.get()?;
        if soft < hard {
            rlimit::Resource::NOFILE.set(hard, hard)?;
            tracing::debug!(from = soft, to = hard, "raised the open-file limit");
        }
        Ok(hard)
    }
    #[cfg(not(unix))]
    {
        Ok(u64::MAX)
    }
}

/// Serves `app` (the [`router`](super::router)) on `listener` within `limits` until
/// `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, app: Router, limits: ListenerLimits, shutdown: CancellationToken) {
    let shared = Shared::new(limits);
    let app = app.layer(axum::Extension(shared.clone()));
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or a reset before accept: wait a little, go on.
                    tracing::debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if !shared.admit() {
            tracing::debug!(%peer, "refused a connection: every connection is busy");
            drop(stream);
            continue;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let close = shutdown.child_token();
        lock(&shared.connections)
            .open
            .insert(id, Tracked { busy: 0, idle_since: Instant::now(), close: close.clone() });
        tokio::spawn(connection(shared.clone(), app.clone(), stream, peer, id, close));
    }
}

async fn connection(
    shared: Arc<Shared>,
    app: Router,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    close: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let service = {
        let shared = shared.clone();
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let app = app.clone();
            let shared = shared.clone();
            async move {
                shared.request_started(id);
                let response: Result<Response, std::convert::Infallible> = app.oneshot(request.map(Body::new)).await;
                shared.request_finished(id);
                response
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    // A request may finish at any time: look again at least this often.
    let recheck = (shared.limits.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let idle_at = shared.idle_deadline(id).map_or(Instant::now() + recheck, |at| at.min(Instant::now() + recheck));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    if error.is_timeout() {
                        warn_once(&shared.warned.header_timeout, "a client was too slow sending headers", "header_timeout_ms");
                    }
                    tracing::trace!(%peer, %error, "webhook connection ended");
                }
                break;
            }
            () = close.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(idle_at), if !closing => {
                if shared.idle_deadline(id).is_some_and(|at| at <= Instant::now()) {
                    warn_once(&shared.warned.idle, "an idle connection was closed", "idle_timeout_ms");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    lock(&shared.connections).open.remove(&id);
}
