//! Printing node outputs: JSON lines, or a human view with a queue spinner.

use std::io::{IsTerminal, Write};

use handover::node::{FlowEvent, NodeOutput};
use handover::{ErrorReason, HandoverStatus};

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// Writes outputs to stdout, one line each, flushed at once.
pub(crate) struct Printer {
    json: bool,
    tty: bool,
    waiting: Option<String>,
    frame: usize,
    spinner_shown: bool,
    /// A write failed: nobody reads stdout any more.
    closed: bool,
}

impl Printer {
    pub(crate) fn new(json: bool) -> Self {
        Self {
            json,
            tty: std::io::stdout().is_terminal(),
            waiting: None,
            frame: 0,
            spinner_shown: false,
            closed: false,
        }
    }

    /// Whether stdout is gone (a write failed, or the pipe's reader closed it).
    pub(crate) fn is_closed(&mut self) -> bool {
        if !self.closed && reader_gone() {
            self.closed = true;
        }
        self.closed
    }

    fn line(&mut self, text: &str) {
        if self.closed {
            return;
        }
        let mut out = std::io::stdout().lock();
        if self.spinner_shown {
            let _ = write!(out, "\r\x1b[2K");
            self.spinner_shown = false;
        }
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            self.closed = true;
        }
    }

    /// Redraws the queue spinner (human view on a terminal only).
    pub(crate) fn tick(&mut self) {
        if self.json || !self.tty {
            return;
        }
        let Some(waiting) = &self.waiting else { return };
        self.frame = (self.frame + 1) % SPINNER.len();
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{} {waiting}", SPINNER[self.frame]);
        let _ = out.flush();
        self.spinner_shown = true;
    }

    pub(crate) fn print(&mut self, output: &NodeOutput) {
        if self.json {
            if output.is_flow_output() {
                match serde_json::to_string(output) {
                    Ok(line) => self.line(&line),
                    Err(error) => tracing::error!(%error, "an output could not be serialized"),
                }
            } else {
                tracing::debug!(?output, "not a --json line");
            }
            return;
        }
        match output {
            NodeOutput::Say { text, quick_replies } => {
                let buttons: String = quick_replies.iter().map(|b| format!("  [{b}]")).collect();
                self.line(&format!("bot   › {text}{buttons}"));
            }
            NodeOutput::AgentMessage { text, agent, attachments } => {
                self.waiting = None;
                let name = agent.as_deref().unwrap_or("agent");
                if !text.is_empty() || attachments.is_empty() {
                    self.line(&format!("{name:<5} › {text}"));
                }
                for file in attachments {
                    let size = file.size.map(|s| format!(", {s} bytes")).unwrap_or_default();
                    let url = file.url_str().unwrap_or_default();
                    self.line(&format!("{name:<5} › [file] {} ({}{size}) {url}", file.name, file.media_type));
                }
            }
            NodeOutput::QueueUpdate { position, estimated_wait_time_ms } => {
                let mut parts = Vec::new();
                if let Some(position) = position {
                    parts.push(format!("position {position}"));
                }
                if let Some(ms) = estimated_wait_time_ms {
                    parts.push(format!("about {}", human_wait(*ms)));
                }
                let text = format!("waiting for an agent: {}", parts.join(", "));
                if self.tty {
                    self.waiting = Some(text);
                    self.tick();
                } else {
                    self.line(&format!("      · {text}"));
                }
            }
            NodeOutput::Event { name, continuation, .. } => {
                let name = match name {
                    FlowEvent::Queue => "queue",
                    FlowEvent::Active => "active",
                    FlowEvent::Resolve => "resolve",
                };
                match continuation {
                    Some(c) => self.line(&format!("      · flow event: {name} (continue {c})")),
                    None => self.line(&format!("      · flow event: {name}")),
                }
            }
            NodeOutput::AgentJoined { agent } => {
                self.waiting = None;
                self.line(&format!("      · {agent} joined"));
            }
            NodeOutput::AgentLeft { agent, transfer } => {
                let how = if *transfer { " (transferring)" } else { "" };
                self.line(&format!("      · {agent} left{how}"));
            }
            NodeOutput::Connection { state } => self.line(&format!("      · connection {state}")),
            NodeOutput::InputRejected { reason, .. } => self.line(&format!("      · not delivered: {reason}")),
            NodeOutput::Status { status } => {
                self.waiting = None;
                let text = match status {
                    HandoverStatus::Completed => "handover completed".to_owned(),
                    HandoverStatus::Cancelled => "handover cancelled".to_owned(),
                    HandoverStatus::Error { reason, message } => {
                        let reason = match reason {
                            ErrorReason::Unsupported => "unsupported",
                            ErrorReason::Error => "error",
                        };
                        format!("handover failed ({reason}): {message}")
                    }
                };
                self.line(&format!("status › {text}"));
            }
            _ => {}
        }
    }
}

/// Whether stdout is a pipe whose reader went away (poll reports an error or hang-up on
/// the write end), so a silent handover notices the bot left without writing to it.
#[cfg(unix)]
fn reader_gone() -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
    let zero = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
    match poll(&mut fds, Some(&zero)) {
        Ok(n) if n > 0 => fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP),
        _ => false,
    }
}

#[cfg(not(unix))]
fn reader_gone() -> bool {
    false
}

fn human_wait(ms: u64) -> String {
    let secs = ms / 1000;
    if secs < 90 { format!("{secs} s") } else { format!("{} min", secs.div_ceil(60)) }
}
