//! The signals that end a handover: SIGINT (Ctrl-C), SIGTERM (systemd, `docker stop`,
//! Kubernetes) and SIGHUP (the terminal went away), all handled the same way.

#[cfg(unix)]
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Listens for SIGINT, SIGTERM and SIGHUP from creation on.
pub(crate) struct Signals {
    #[cfg(unix)]
    streams: [(Signal, &'static str); 3],
}

impl Signals {
    #[cfg(unix)]
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self {
            streams: [
                (signal(SignalKind::interrupt())?, "SIGINT"),
                (signal(SignalKind::terminate())?, "SIGTERM"),
                (signal(SignalKind::hangup())?, "SIGHUP"),
            ],
        })
    }

    #[cfg(not(unix))]
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// The name of the next signal received.
    #[cfg(unix)]
    pub(crate) async fn recv(&mut self) -> &'static str {
        let [(int, a), (term, b), (hup, c)] = &mut self.streams;
        tokio::select! {
            _ = int.recv() => a,
            _ = term.recv() => b,
            _ = hup.recv() => c,
        }
    }

    #[cfg(not(unix))]
    pub(crate) async fn recv(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
