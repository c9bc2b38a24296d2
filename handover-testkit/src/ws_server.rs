//! A scripted loopback WebSocket server.
//!
//! Records every connection's path and the text frames it received, pushes text frames
//! to the newest connection, drops it without a close frame, and can stop answering pings
//! (by no longer reading the socket) to test pong deadlines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::Uri;
use axum::response::Response;
use tokio::sync::{Notify, mpsc};

enum Command {
    Text(String),
    Drop,
}

#[derive(Default)]
struct Shared {
    connections: Mutex<Vec<Connection>>,
    current: Mutex<Option<mpsc::UnboundedSender<Command>>>,
    deaf: AtomicBool,
    changed: Notify,
}

/// One recorded connection.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// Path and query of the upgrade request.
    pub uri: String,
    /// Text frames received, in order.
    pub received: Vec<String>,
    /// Pings received.
    pub pings: usize,
}

/// The server. It runs until dropped.
pub struct WsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl WsServer {
    /// Starts on `127.0.0.1:0`, accepting upgrades on any path.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(upgrade).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Sends a text frame to the newest connection.
    pub fn send_text(&self, text: impl Into<String>) -> bool {
        match &*self.shared.current.lock().unwrap() {
            Some(tx) => tx.send(Command::Text(text.into())).is_ok(),
            None => false,
        }
    }

    /// Drops the newest connection without a close frame.
    pub fn drop_current(&self) -> bool {
        match self.shared.current.lock().unwrap().take() {
            Some(tx) => tx.send(Command::Drop).is_ok(),
            None => false,
        }
    }

    /// Stops (`true`) or resumes (`false`) reading new connections, so pings go unanswered.
    pub fn set_deaf(&self, deaf: bool) {
        self.shared.deaf.store(deaf, Ordering::SeqCst);
    }

    /// Every connection so far.
    pub fn connections(&self) -> Vec<Connection> {
        self.shared.connections.lock().unwrap().clone()
    }

    /// Waits until `predicate` holds for the recorded connections.
    pub async fn wait_until(&self, predicate: impl Fn(&[Connection]) -> bool) -> Vec<Connection> {
        loop {
            let notified = self.shared.changed.notified();
            {
                let connections = self.shared.connections.lock().unwrap();
                if predicate(&connections) {
                    return connections.clone();
                }
            }
            notified.await;
        }
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upgrade(State(shared): State<Arc<Shared>>, uri: Uri, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| serve(shared, uri.to_string(), socket))
}

async fn serve(shared: Arc<Shared>, uri: String, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let index = {
        let mut connections = shared.connections.lock().unwrap();
        connections.push(Connection { uri, ..Connection::default() });
        *shared.current.lock().unwrap() = Some(tx);
        connections.len() - 1
    };
    shared.changed.notify_waiters();
    let deaf = shared.deaf.load(Ordering::SeqCst);
    loop {
        let reading = async { if deaf { std::future::pending().await } else { socket.recv().await } };
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Some(Command::Drop) | None => return,
            },
            frame = reading => {
                let mut connections = shared.connections.lock().unwrap();
                match frame {
                    Some(Ok(Message::Text(text))) => connections[index].received.push(text.as_str().to_owned()),
                    Some(Ok(Message::Ping(_))) => connections[index].pings += 1,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
                drop(connections);
                shared.changed.notify_waiters();
            }
        }
    }
}
