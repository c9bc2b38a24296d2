//! One live handover.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::{EndReason, Error, EventStream, ProviderInfo, Result, SessionSnapshot, UserInput};

/// The provider side of a live session, implemented by provider crates.
///
/// Users do not call this directly: [`SessionControl`] wraps it and checks capabilities,
/// message limits and the ended state before any call reaches the provider.
#[async_trait]
pub trait SessionHandle: Send + Sync + 'static {
    /// Static facts about the provider serving this session.
    fn info(&self) -> &ProviderInfo;

    /// Delivers one input to the agent side. Inputs reach the provider in call order.
    async fn send(&self, input: UserInput) -> Result<()>;

    /// Ends the conversation from the bot side and closes the event source. After a
    /// successful `end` the event stream ends with `Ended { by: User }`.
    async fn end(&self, reason: EndReason) -> Result<()>;

    /// A snapshot of the session's current state.
    fn snapshot(&self) -> Result<SessionSnapshot>;
}

/// The ids of the messages a session has delivered (or is delivering), oldest first.
#[derive(Default)]
struct SentInputs {
    order: Vec<String>,
    ids: HashSet<String>,
}

impl SentInputs {
    /// Claims `id` for a send: `false` when it was sent (or is being sent) already.
    fn claim(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_owned()) {
            return false;
        }
        self.order.push(id.to_owned());
        true
    }

    /// Gives `id` back after a failed send, so a retry goes out.
    fn release(&mut self, id: &str) {
        if self.ids.remove(id) {
            self.order.retain(|x| x != id);
        }
    }
}

/// A cloneable handle to send input to, end, or snapshot a session.
#[derive(Clone)]
pub struct SessionControl {
    handle: Arc<dyn SessionHandle>,
    ended: Arc<AtomicBool>,
    sent: Arc<Mutex<SentInputs>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SessionControl {
    /// Wraps a provider's session handle.
    pub fn new(handle: Arc<dyn SessionHandle>) -> Self {
        Self { handle, ended: Arc::new(AtomicBool::new(false)), sent: Arc::default() }
    }

    /// Static facts about the provider serving this session.
    pub fn info(&self) -> &ProviderInfo {
        self.handle.info()
    }

    /// Sends input to the agent side.
    ///
    /// Refused before any I/O with [`ErrorKind::Unsupported`](crate::ErrorKind) when the
    /// provider cannot carry the input (typing without the `typing` capability), with
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind) when a message is empty or longer than
    /// the provider's `max_message_chars` (split it with
    /// [`transcript::split`](crate::transcript::split)), and with
    /// [`ErrorKind::SessionEnded`](crate::ErrorKind) after [`end`](Self::end).
    ///
    /// A message is delivered once per id: sending a message whose id this session (or the
    /// session it was resumed from, see [`Session::resumed_from`]) already delivered
    /// answers `Ok` and sends nothing. A failed send forgets the id, so a retry goes out.
    pub async fn send(&self, input: UserInput) -> Result<()> {
        self.check(&input)?;
        let id = match &input {
            UserInput::Message { id, .. } => Some(id.clone()),
            _ => None,
        };
        if let Some(id) = &id
            && !lock(&self.sent).claim(id)
        {
            return Ok(());
        }
        let result = self.handle.send(input).await;
        if let (Some(id), Err(_)) = (&id, &result) {
            lock(&self.sent).release(id);
        }
        result
    }

    fn check(&self, input: &UserInput) -> Result<()> {
        let info = self.handle.info();
        if self.ended.load(Ordering::Acquire) {
            return Err(Error::session_ended(info.name, "send"));
        }
        match input {
            UserInput::Typing { .. } if !info.capabilities.typing() => Err(Error::unsupported(info.name, "typing")),
            UserInput::Message { text, .. } => {
                if text.trim().is_empty() {
                    return Err(Error::invalid_input(info.name, "send message", "the message is empty"));
                }
                match info.capabilities.max_message_chars() {
                    Some(max) if text.chars().count() > max => Err(Error::invalid_input(
                        info.name,
                        "send message",
                        format!(
                            "the message has {} characters, more than the provider's limit of {max}; \
                             split it with handover_core::transcript::split",
                            text.chars().count()
                        ),
                    )),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Ends the handover from the bot side. Idempotent: ending an ended session is `Ok`.
    pub async fn end(&self, reason: EndReason) -> Result<()> {
        if self.ended.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.handle.end(reason).await;
        if result.is_err() {
            // Let the caller try again.
            self.ended.store(false, Ordering::Release);
        }
        result
    }

    /// A snapshot to resume the session elsewhere, with the ids of the messages delivered
    /// so far.
    pub fn snapshot(&self) -> Result<SessionSnapshot> {
        let snapshot = self.handle.snapshot()?;
        Ok(snapshot.with_sent_inputs(lock(&self.sent).order.iter().cloned()))
    }

    fn remember_sent(&self, ids: &[String]) {
        let mut sent = lock(&self.sent);
        for id in ids {
            sent.claim(id);
        }
    }
}

impl fmt::Debug for SessionControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionControl")
            .field("provider", &self.handle.info().name)
            .field("ended", &self.ended.load(Ordering::Relaxed))
            .finish()
    }
}

/// One live handover: a [`SessionControl`] to act on it and the [`EventStream`] of what
/// happens on the agent side.
///
/// Split it with [`into_parts`](Self::into_parts) to read events in one task while
/// sending from another.
#[derive(Debug)]
pub struct Session {
    control: SessionControl,
    events: EventStream,
}

impl Session {
    /// Assembles a session from a provider's handle and event stream.
    pub fn new(handle: Arc<dyn SessionHandle>, events: EventStream) -> Self {
        Self { control: SessionControl::new(handle), events }
    }

    /// Carries over what `snapshot` says was already delivered, so a message resent with
    /// the same id is not delivered twice. Providers call it on the session they build in
    /// [`Provider::resume`](crate::Provider::resume).
    #[must_use]
    pub fn resumed_from(self, snapshot: &SessionSnapshot) -> Self {
        self.control.remember_sent(snapshot.sent_inputs());
        self
    }

    /// Sends input to the agent side; see [`SessionControl::send`].
    pub async fn send(&self, input: UserInput) -> Result<()> {
        self.control.send(input).await
    }

    /// Ends the handover from the bot side; see [`SessionControl::end`].
    pub async fn end(&self, reason: EndReason) -> Result<()> {
        self.control.end(reason).await
    }

    /// A snapshot to resume the session elsewhere.
    pub fn snapshot(&self) -> Result<SessionSnapshot> {
        self.control.snapshot()
    }

    /// The event stream.
    pub fn events(&mut self) -> &mut EventStream {
        &mut self.events
    }

    /// The control handle (cloneable).
    pub fn control(&self) -> &SessionControl {
        &self.control
    }

    /// Splits into the control handle and the event stream.
    pub fn into_parts(self) -> (SessionControl, EventStream) {
        (self.control, self.events)
    }
}
