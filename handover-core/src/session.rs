//! One live handover: what users hold ([`Session`], [`SessionHandle`]) and what providers
//! implement ([`SessionBackend`]).

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::{EndReason, Error, ErrorKind, EventStream, ProviderInfo, Result, SessionSnapshot, UserInput};

/// The provider side of a live session: what a provider crate implements for each
/// session it starts or resumes.
///
/// Users never call it: they hold a [`SessionHandle`], which checks capabilities,
/// message limits, the ended state and repeated message ids, and orders sends, before
/// anything reaches the backend.
///
/// # Contract
///
/// Each obligation is checked for every provider by the `handover-testkit` contract
/// scenario named after it.
///
/// - `send` delivers one input to the agent side; inputs arrive in call order (the handle
///   sends one at a time): `user_messages_reach_the_agent`.
/// - `send` of an input the API cannot carry fails with
///   [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) before any I/O:
///   `typing_is_relayed_or_refused`.
/// - A message's client id, where the API takes one, is derived from the input's id, so a
///   resend is recognisable (no contract scenario: the chaos matrix's "input resent after
///   kill and resume" column checks it for every provider).
/// - `end` closes the conversation at the contact center and makes the event stream end
///   with `Ended { by: User }`; sends after it fail with
///   [`ErrorKind::SessionEnded`](crate::ErrorKind::SessionEnded):
///   `bot_end_closes_the_conversation`.
/// - `snapshot` captures everything a new process needs to resume without repeating or
///   losing an event, and holds secrets only in its secrets: `snapshot_resumes_without_repeats`,
///   `secrets_stay_out_of_debug_and_errors`.
/// - The session's [`EventStream`] keeps its own contract (order, no repeats, one end,
///   drops shown as `Reconnecting`/`Resumed`): `agent_messages_arrive_in_order_exactly_once`,
///   `dropped_connection_recovers`, `nothing_is_delivered_after_the_end`.
/// - Nothing secret reaches a log line at any level: `secrets_stay_out_of_trace_logs`.
#[async_trait]
pub trait SessionBackend: Send + Sync + 'static {
    /// Static facts about the provider serving this session.
    fn info(&self) -> &ProviderInfo;

    /// Delivers one input to the agent side.
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
    /// Claims `id` for a send: `false` when it was sent already.
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A cloneable handle to send input to, end, or snapshot a session: what users hold.
#[derive(Clone)]
pub struct SessionHandle {
    backend: Arc<dyn SessionBackend>,
    ended: Arc<AtomicBool>,
    sent: Arc<Mutex<SentInputs>>,
    /// One send at a time, so inputs reach the provider in call order.
    order: Arc<futures_util::lock::Mutex<()>>,
}

impl SessionHandle {
    /// Wraps a provider's session backend.
    pub fn new(backend: Arc<dyn SessionBackend>) -> Self {
        Self {
            backend,
            ended: Arc::new(AtomicBool::new(false)),
            sent: Arc::default(),
            order: Arc::new(futures_util::lock::Mutex::new(())),
        }
    }

    /// Static facts about the provider serving this session.
    pub fn info(&self) -> &ProviderInfo {
        self.backend.info()
    }

    /// Sends input to the agent side, one send at a time in call order.
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
        let _order = self.order.lock().await;
        let id = input.id().map(str::to_owned);
        if let Some(id) = &id
            && !lock(&self.sent).claim(id)
        {
            return Ok(());
        }
        let result = self.backend.send(input).await;
        if let (Some(id), Err(_)) = (&id, &result) {
            lock(&self.sent).release(id);
        }
        result
    }

    fn check(&self, input: &UserInput) -> Result<()> {
        let info = self.backend.info();
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
            UserInput::Attachment { attachment, .. } => check_attachment(info, attachment),
            _ => Ok(()),
        }
    }

    /// Ends the handover from the bot side. Idempotent: ending an ended session is `Ok`.
    pub async fn end(&self, reason: EndReason) -> Result<()> {
        if self.ended.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let result = self.backend.end(reason).await;
        if result.is_err() {
            // Let the caller try again.
            self.ended.store(false, Ordering::Release);
        }
        result
    }

    /// A snapshot to resume the session elsewhere, with the ids of the messages delivered
    /// so far.
    pub fn snapshot(&self) -> Result<SessionSnapshot> {
        let snapshot = self.backend.snapshot()?;
        Ok(snapshot.with_sent_inputs(lock(&self.sent).order.iter().cloned()))
    }

    fn remember_sent(&self, ids: &[String]) {
        let mut sent = lock(&self.sent);
        for id in ids {
            sent.claim(id);
        }
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("provider", &self.backend.info().name)
            .field("ended", &self.ended.load(Ordering::Relaxed))
            .finish()
    }
}

/// One live handover: a [`SessionHandle`] to act on it and the [`EventStream`] of what
/// happens on the agent side.
///
/// Split it with [`into_parts`](Self::into_parts) to read events in one task while
/// sending from another.
#[derive(Debug)]
pub struct Session {
    handle: SessionHandle,
    events: EventStream,
}

impl Session {
    /// Assembles a session from a provider's backend and event stream.
    pub fn new(backend: Arc<dyn SessionBackend>, events: EventStream) -> Self {
        Self { handle: SessionHandle::new(backend), events }
    }

    /// Carries over what `snapshot` says was already delivered, so a message resent with
    /// the same id is not delivered twice. Providers call it on the session they build in
    /// [`Provider::resume`](crate::Provider::resume).
    #[must_use]
    pub fn resumed_from(self, snapshot: &SessionSnapshot) -> Self {
        self.handle.remember_sent(snapshot.sent_inputs());
        self
    }

    /// Sends input to the agent side; see [`SessionHandle::send`].
    pub async fn send(&self, input: UserInput) -> Result<()> {
        self.handle.send(input).await
    }

    /// Ends the handover from the bot side; see [`SessionHandle::end`].
    pub async fn end(&self, reason: EndReason) -> Result<()> {
        self.handle.end(reason).await
    }

    /// A snapshot to resume the session elsewhere.
    pub fn snapshot(&self) -> Result<SessionSnapshot> {
        self.handle.snapshot()
    }

    /// The event stream.
    pub fn events(&mut self) -> &mut EventStream {
        &mut self.events
    }

    /// The handle (cloneable).
    pub fn handle(&self) -> &SessionHandle {
        &self.handle
    }

    /// Splits into the handle and the event stream.
    pub fn into_parts(self) -> (SessionHandle, EventStream) {
        (self.handle, self.events)
    }
}

/// The checks every provider's attachment send gets before any I/O.
fn check_attachment(info: &ProviderInfo, attachment: &crate::Attachment) -> Result<()> {
    let caps = &info.capabilities;
    let op = "send attachment";
    if !caps.attachments_to_agent() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            info.name,
            op,
            "this provider carries no files from the end user",
        ));
    }
    match &attachment.content {
        crate::AttachmentContent::Bytes(_) if !caps.attachment_uploads() => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                info.name,
                op,
                "this provider takes files only as URLs the contact center fetches, not as bytes to upload",
            ));
        }
        crate::AttachmentContent::Url(_) if !caps.attachment_links() => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                info.name,
                op,
                "this provider uploads files: pass the bytes, not a URL (fetch the file first, e.g. with \
                 handover_transport::attachment::fetch)",
            ));
        }
        crate::AttachmentContent::Url(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
            return Err(Error::invalid_input(info.name, op, "the attachment URL is not an http(s) URL"));
        }
        _ => {}
    }
    if attachment.name.trim().is_empty() {
        return Err(Error::invalid_input(info.name, op, "the attachment needs a file name"));
    }
    if let Some(bytes) = attachment.data()
        && bytes.is_empty()
    {
        return Err(Error::invalid_input(info.name, op, "the attachment is empty"));
    }
    if let (Some(max), Some(size)) = (caps.max_attachment_bytes(), attachment.known_size())
        && size > max
    {
        return Err(Error::invalid_input(
            info.name,
            op,
            format!("the attachment has {size} bytes, more than the provider's limit of {max} bytes"),
        ));
    }
    if !crate::attachment::media_type_accepted(&attachment.media_type, caps.attachment_media_types()) {
        return Err(Error::invalid_input(
            info.name,
            op,
            format!(
                "the provider does not accept media type `{}` (it accepts: {})",
                attachment.media_type,
                caps.attachment_media_types().join(", ")
            ),
        ));
    }
    Ok(())
}
