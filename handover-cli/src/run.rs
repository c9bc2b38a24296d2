//! `handover chat` and `handover check`, and the loop shared with the demo.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use handover::config::Config;
use handover::node::{Node, NodeConfig, NodeInput, NodeOutput};
use handover::webhook::ListenerLimits;
use handover::{CancellationToken, HandoverRequest, HandoverStatus, Provider, Registry};
use tokio::sync::mpsc;

use crate::output::Printer;
use crate::{EXIT_USAGE, input};

/// Providers whose agent-side events arrive as webhooks.
pub(crate) const PUSH_PROVIDERS: [&str; 4] = ["liveagent", "genesys", "8x8", "ringcentral"];

pub(crate) async fn chat(registry: &Registry, config: Config, json: bool) -> ExitCode {
    let provider = match config.build_provider(registry) {
        Ok(provider) => provider,
        Err(error) => {
            eprintln!("error: {}", error.message());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let _server = match config.webhook {
        Some(webhook) => match serve_webhooks(webhook.listen, provider.clone(), webhook.listener_limits()).await {
            Ok(server) => Some(server),
            Err(error) => {
                eprintln!("error: cannot listen for webhooks on {}: {error}", webhook.listen);
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => {
            if PUSH_PROVIDERS.contains(&config.provider.as_str()) {
                eprintln!(
                    "warning: {} delivers agent messages by webhook; set [webhook] listen = \"127.0.0.1:8090\" \
                     and point the provider at POST /webhooks/{}",
                    config.provider, config.provider
                );
            }
            None
        }
    };
    let (input_tx, inputs) = mpsc::channel(32);
    input::spawn_stdin(input_tx, json);
    let request = config.request(uuid::Uuid::new_v4().to_string());
    let status = drive(provider, config.node.clone(), request, inputs, Printer::new(json), |_| {}).await;
    exit_code(&status)
}

pub(crate) fn exit_code(status: &HandoverStatus) -> ExitCode {
    match status {
        HandoverStatus::Completed | HandoverStatus::Cancelled => ExitCode::SUCCESS,
        HandoverStatus::Error { .. } => ExitCode::FAILURE,
    }
}

/// Serves `POST /webhooks/<provider>` on `addr` within `limits` until dropped.
pub(crate) async fn serve_webhooks(
    addr: SocketAddr,
    provider: Arc<dyn Provider>,
    limits: ListenerLimits,
) -> std::io::Result<WebhookServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(local = %listener.local_addr()?, "listening for webhooks");
    Ok(WebhookServer::spawn(listener, provider, limits))
}

/// The webhook listener, running in the background until dropped.
pub(crate) struct WebhookServer {
    stop: CancellationToken,
}

impl WebhookServer {
    /// Serves `provider`'s webhooks on an already bound listener.
    pub(crate) fn spawn(
        listener: tokio::net::TcpListener,
        provider: Arc<dyn Provider>,
        limits: ListenerLimits,
    ) -> Self {
        if let Err(error) = handover::webhook::raise_open_file_limit() {
            tracing::warn!(%error, "the open-file limit could not be raised; the listener may run out of sockets");
        }
        let stop = CancellationToken::new();
        let app = handover::webhook::router([provider]);
        tokio::spawn(handover::webhook::serve(listener, app, limits, stop.clone()));
        Self { stop }
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How long the provider has to end the handover after a signal, before the process
/// gives up on it and exits with an error status.
const SIGNAL_GRACE: Duration = Duration::from_secs(15);

/// Runs the node, printing outputs; `observe` sees each output too (the demo's scripted
/// user).
///
/// SIGINT, SIGTERM and SIGHUP end the handover the same way: the provider session is
/// ended at the contact center (bounded by [`SIGNAL_GRACE`]), the final status (`error`)
/// is printed, and the exit code is 1. When stdout is closed (the bot went away) the
/// handover is ended the same way and the exit code is 1.
pub(crate) async fn drive(
    provider: Arc<dyn Provider>,
    node: NodeConfig,
    request: HandoverRequest,
    inputs: mpsc::Receiver<NodeInput>,
    mut printer: Printer,
    mut observe: impl FnMut(&NodeOutput),
) -> HandoverStatus {
    let (outputs, mut output_rx) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    // Listening before the handover starts: a signal at any moment ends it cleanly.
    let mut signals = match crate::signals::Signals::new() {
        Ok(signals) => Some(signals),
        Err(error) => {
            eprintln!("warning: signals cannot be handled ({error}); Ctrl-C will not end the handover cleanly");
            None
        }
    };
    let mut run =
        tokio::spawn(async move { Node::new(node).run(provider.as_ref(), request, inputs, outputs, token).await });
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut stdout_gone = false;
    let mut status: Option<HandoverStatus> = None;
    loop {
        tokio::select! {
            output = output_rx.recv() => match output {
                Some(output) => {
                    printer.print(&output);
                    if let NodeOutput::Status { status: last } = &output {
                        status = Some(last.clone());
                    }
                    observe(&output);
                }
                None => break,
            },
            _ = ticker.tick() => {
                printer.tick();
                if !stdout_gone && printer.is_closed() {
                    stdout_gone = true;
                    eprintln!("stdout was closed (the bot went away): ending the handover");
                    shutdown.cancel();
                    deadline.get_or_insert(tokio::time::Instant::now() + SIGNAL_GRACE);
                }
            },
            name = next_signal(&mut signals), if deadline.is_none() => {
                eprintln!("{name}: ending the handover");
                shutdown.cancel();
                deadline = Some(tokio::time::Instant::now() + SIGNAL_GRACE);
            }
            () = sleep_until(deadline) => {
                eprintln!("the provider did not end the handover within {}s; exiting", SIGNAL_GRACE.as_secs());
                run.abort();
                let status = HandoverStatus::Error {
                    reason: handover::ErrorReason::Error,
                    message: format!(
                        "the handover was interrupted and the provider did not end it within {}s",
                        SIGNAL_GRACE.as_secs()
                    ),
                };
                printer.print(&NodeOutput::Status { status: status.clone() });
                return status;
            }
        }
    }
    let status = match (&mut run).await {
        Ok(outcome) => outcome.status,
        Err(error) => status.unwrap_or_else(|| HandoverStatus::Error {
            reason: handover::ErrorReason::Error,
            message: format!("the handover task failed: {error}"),
        }),
    };
    if stdout_gone {
        // Whatever the status, nobody saw it: the bot went away mid-handover.
        return HandoverStatus::Error {
            reason: handover::ErrorReason::Error,
            message: "stdout was closed before the handover ended".to_owned(),
        };
    }
    status
}

async fn next_signal(signals: &mut Option<crate::signals::Signals>) -> &'static str {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn check(registry: &Registry, config: &Config) -> ExitCode {
    let provider = match config.build_provider(registry) {
        Ok(provider) => provider,
        Err(error) => {
            eprintln!("error: {}", error.message());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match provider.check().await {
        Ok(report) => {
            println!(
                "ok: {} ({}) accepted what could be checked without starting a conversation\n{report}",
                config.provider,
                provider.info().display_name
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
