//! A WebSocket owner task over tokio-tungstenite.
//!
//! One task owns the socket and does all reads and writes, so there is never a second
//! writer. It sends client pings at an interval and drops the connection if no pong
//! arrives before the deadline (a half-open TCP connection otherwise looks alive for
//! minutes), flushes after every ping so queued pongs go out, rebuilds the connection
//! before a configured maximum age (Genesys channels expire after 24 h), and reconnects
//! with backoff, asking the connector for a fresh URL each time.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use handover_core::{Error, Result};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::retry::RetryPolicy;

/// How a provider obtains the URL of its WebSocket.
#[async_trait]
pub trait WsConnect: Send + Sync + 'static {
    /// The provider name, for errors and logs.
    fn provider(&self) -> &'static str;

    /// The URL for a (re)connect. Called before every connect, so it may create a fresh
    /// channel and subscribe it.
    async fn url(&self) -> Result<String>;
}

/// Settings of the owner task.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WsConfig {
    /// Interval between client pings.
    pub ping_interval: Duration,
    /// A ping not answered within this is a dead connection.
    pub pong_timeout: Duration,
    /// Time to open the connection.
    pub connect_timeout: Duration,
    /// Backoff between reconnects; `max_attempts` bounds consecutive failures.
    pub reconnect: RetryPolicy,
    /// Rebuild the connection (with a fresh URL) after this long.
    pub max_connection_age: Option<Duration>,
    /// Capacity of the event channel (backpressure on the reader when full).
    pub channel_capacity: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            reconnect: RetryPolicy {
                max_attempts: 10,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(30),
                ..RetryPolicy::default()
            },
            max_connection_age: None,
            channel_capacity: 64,
        }
    }
}

impl WsConfig {
    /// Sets ping interval and pong deadline.
    #[must_use]
    pub fn with_ping(mut self, interval: Duration, pong_timeout: Duration) -> Self {
        self.ping_interval = interval;
        self.pong_timeout = pong_timeout;
        self
    }

    /// Sets the reconnect policy.
    #[must_use]
    pub fn with_reconnect(mut self, policy: RetryPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Sets the maximum connection age.
    #[must_use]
    pub fn with_max_connection_age(mut self, age: Option<Duration>) -> Self {
        self.max_connection_age = age;
        self
    }
}

/// What the owner task reports.
#[derive(Debug)]
pub enum WsEvent {
    /// A connection opened; `reconnect` is `false` for the first.
    Connected {
        /// Whether this follows a drop or a rebuild.
        reconnect: bool,
    },
    /// A text frame.
    Text(String),
    /// The connection dropped or was rebuilt; the task reconnects.
    Disconnected {
        /// Why, for logs.
        reason: String,
    },
    /// The task gave up; no more events follow.
    Failed(Error),
}

/// Sends frames through the owner task and stops it.
#[derive(Clone, Debug)]
pub struct WsHandle {
    commands: mpsc::Sender<String>,
    cancel: CancellationToken,
}

impl WsHandle {
    /// Queues a text frame; it is written by the owner task (after a reconnect if the
    /// socket is down).
    pub async fn send_text(&self, text: impl Into<String>) -> bool {
        self.commands.send(text.into()).await.is_ok()
    }

    /// Closes the socket and stops the task.
    pub fn close(&self) {
        self.cancel.cancel();
    }
}

/// Starts the owner task. Dropping the receiver, or [`WsHandle::close`], stops it.
pub fn spawn<C: WsConnect>(connect: C, config: WsConfig) -> (WsHandle, mpsc::Receiver<WsEvent>) {
    let (events_tx, events_rx) = mpsc::channel(config.channel_capacity.max(1));
    let (commands_tx, commands_rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let task = Owner { connect, config, events: events_tx, commands: commands_rx, cancel: cancel.clone() };
    tokio::spawn(task.run());
    (WsHandle { commands: commands_tx, cancel }, events_rx)
}

struct Owner<C> {
    connect: C,
    config: WsConfig,
    events: mpsc::Sender<WsEvent>,
    commands: mpsc::Receiver<String>,
    cancel: CancellationToken,
}

enum Ended {
    /// Reconnect after backoff.
    Dropped(String),
    /// Reconnect at once (planned rebuild).
    Rebuild,
    /// Stop the task.
    Stop,
}

async fn deadline(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<C: WsConnect> Owner<C> {
    async fn run(mut self) {
        let provider = self.connect.provider();
        let mut backoff = self.config.reconnect.backoff();
        let mut reconnect = false;
        loop {
            if self.cancel.is_cancelled() || self.events.is_closed() {
                return;
            }
            let socket = match self.open().await {
                Ok(socket) => socket,
                Err(error) if backoff.can_retry() && error.is_retryable() => {
                    let delay = error.retry_after().unwrap_or_else(|| backoff.next_delay());
                    tracing::debug!(provider, %error, ?delay, "websocket connect failed; retrying");
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = backoff.sleep(delay) => continue,
                    }
                }
                Err(error) => {
                    let _ = self.events.send(WsEvent::Failed(error)).await;
                    return;
                }
            };
            backoff.reset();
            if self.events.send(WsEvent::Connected { reconnect }).await.is_err() {
                return;
            }
            reconnect = true;
            let reason = match self.pump(socket).await {
                Ended::Stop => return,
                Ended::Rebuild => "rebuilding before the connection expires".to_owned(),
                Ended::Dropped(reason) => {
                    let delay = backoff.next_delay();
                    tracing::debug!(provider, reason, ?delay, "websocket dropped");
                    if self.events.send(WsEvent::Disconnected { reason }).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = backoff.sleep(delay) => continue,
                    }
                }
            };
            if self.events.send(WsEvent::Disconnected { reason }).await.is_err() {
                return;
            }
        }
    }

    async fn open(
        &self,
    ) -> Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>> {
        let provider = self.connect.provider();
        let url = self.connect.url().await?;
        match tokio::time::timeout(self.config.connect_timeout, tokio_tungstenite::connect_async(url)).await {
            Ok(Ok((socket, _response))) => Ok(socket),
            // The error text of tungstenite does not include the URL.
            Ok(Err(e)) => Err(Error::transport(provider, "open websocket", format!("connect failed: {e}"))),
            Err(_) => Err(Error::transport(provider, "open websocket", "connect timed out")),
        }
    }

    async fn pump(
        &mut self,
        mut socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    ) -> Ended {
        let mut ping = tokio::time::interval_at(Instant::now() + self.config.ping_interval, self.config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pong_deadline: Option<Instant> = None;
        let age_deadline = self.config.max_connection_age.map(|age| Instant::now() + age);
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => {
                    let _ = socket.close(None).await;
                    return Ended::Stop;
                }
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        if self.events.send(WsEvent::Text(text.as_str().to_owned())).await.is_err() {
                            let _ = socket.close(None).await;
                            return Ended::Stop;
                        }
                    }
                    Some(Ok(Message::Ping(_))) => {
                        // tungstenite queued the pong; flushing sends it now.
                        if let Err(e) = socket.flush().await {
                            return Ended::Dropped(format!("write failed: {e}"));
                        }
                    }
                    Some(Ok(Message::Pong(_))) => pong_deadline = None,
                    Some(Ok(Message::Close(frame))) => {
                        return Ended::Dropped(format!("closed by the server: {frame:?}"));
                    }
                    Some(Ok(Message::Binary(_) | Message::Frame(_))) => {
                        tracing::trace!(provider = self.connect.provider(), "ignoring a binary frame");
                    }
                    Some(Err(e)) => return Ended::Dropped(format!("read failed: {e}")),
                    None => return Ended::Dropped("the connection closed".to_owned()),
                },
                command = self.commands.recv() => match command {
                    Some(text) => {
                        if let Err(e) = socket.send(Message::text(text)).await {
                            return Ended::Dropped(format!("write failed: {e}"));
                        }
                    }
                    None => {
                        // Every handle is gone: nobody can close us any more, so stop.
                        let _ = socket.close(None).await;
                        return Ended::Stop;
                    }
                },
                _ = ping.tick(), if pong_deadline.is_none() => {
                    // `send` flushes, so the ping (and any queued pong) goes out now.
                    if let Err(e) = socket.send(Message::Ping(Default::default())).await {
                        return Ended::Dropped(format!("ping failed: {e}"));
                    }
                    pong_deadline = Some(Instant::now() + self.config.pong_timeout);
                }
                () = deadline(pong_deadline) => {
                    return Ended::Dropped("no pong before the deadline".to_owned());
                }
                () = deadline(age_deadline) => {
                    let _ = socket.close(None).await;
                    return Ended::Rebuild;
                }
            }
        }
    }
}
