//! The contact center every protocol module shares: conversations, what the agent did,
//! what the customer side sent.
//!
//! Protocol modules translate [`AgentAction`]s into their wire format and record what the
//! customer side sends as [`CustomerAction`]s. The scripted agent and the control API act
//! through the same [`Hub`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, broadcast};

use crate::faults::Faults;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Microseconds since the Unix epoch (latency stamps).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// Something the agent side did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AgentAction {
    /// The request waits in the queue.
    Queued {
        /// Position, 1-based.
        position: Option<u32>,
        /// Estimated wait in seconds.
        wait_secs: Option<u64>,
    },
    /// An agent joined.
    Joined {
        /// The agent's name.
        agent: String,
    },
    /// The agent wrote.
    Message {
        /// The agent's name.
        agent: String,
        /// The text.
        text: String,
    },
    /// The agent typed.
    Typing {
        /// The agent's name.
        agent: String,
        /// Started or stopped.
        on: bool,
    },
    /// The agent left; with `transfer` the conversation waits for another agent.
    Left {
        /// The agent's name.
        agent: String,
        /// Whether this is a transfer.
        transfer: bool,
    },
    /// The agent sent a file (with an optional caption). Protocols that carry agent files
    /// render it with a URL to `/_emulator/files/…` on this emulator; the others ignore it.
    File {
        /// The agent's name.
        agent: String,
        /// The file.
        file: EmulatedFile,
        /// Text sent with the file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    /// The agent ended the conversation.
    Ended,
}

/// A file in the emulated contact center. In JSON the bytes are standard base64 under
/// `data`: `{"name":"label.pdf","media_type":"application/pdf","data":"JVBERi0…"}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatedFile {
    /// The file name.
    pub name: String,
    /// The media type.
    pub media_type: String,
    /// The content.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for EmulatedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EmulatedFile({}, {}, {} bytes)", self.name, self.media_type, self.data.len())
    }
}

impl EmulatedFile {
    /// A file.
    pub fn new(name: impl Into<String>, media_type: impl Into<String>, data: Vec<u8>) -> Self {
        Self { name: name.into(), media_type: media_type.into(), data }
    }

    /// The SHA-256 of the content, lowercase hex.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.data)
    }

    /// What the customer side's record of this file looks like.
    pub fn received(&self) -> CustomerAction {
        CustomerAction::File {
            name: self.name.clone(),
            media_type: self.media_type.clone(),
            size: self.data.len() as u64,
            sha256: self.sha256(),
        }
    }
}

/// The SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Something the customer side (the connector under test) did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CustomerAction {
    /// A text message.
    Message {
        /// The text.
        text: String,
    },
    /// Typing started or stopped.
    Typing {
        /// Started or stopped.
        on: bool,
    },
    /// A file reached the agent (uploaded, or fetched from the URL the customer side gave).
    File {
        /// The file name.
        name: String,
        /// The media type.
        media_type: String,
        /// The size in bytes.
        size: u64,
        /// The SHA-256 of the content, lowercase hex.
        sha256: String,
    },
    /// The customer side closed the conversation.
    Closed,
}

/// One entry of a conversation's agent-side log.
#[derive(Clone, Debug, Serialize)]
pub struct AgentRecord {
    /// Position in the conversation's log, from 1.
    pub seq: u64,
    /// A unique id of the entry (used as the wire id).
    pub id: String,
    /// When, in Unix milliseconds.
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub action: AgentAction,
}

/// A change the protocol modules and the scripted agent react to.
#[derive(Clone, Debug)]
pub enum Change {
    /// A conversation was created.
    Created(Arc<Conversation>),
    /// The agent side acted.
    Agent(Arc<Conversation>, AgentRecord),
    /// The customer side acted.
    Customer(Arc<Conversation>, CustomerAction),
}

/// One conversation.
#[derive(Debug)]
pub struct Conversation {
    /// The conversation id (as the protocol gave or assigned it).
    pub id: String,
    /// Who owns it in protocol terms (a token subject, a contact id).
    pub owner: String,
    /// Protocol-specific data recorded at creation (routing attributes, user details).
    pub meta: Value,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    agent: Vec<AgentRecord>,
    customer: Vec<CustomerAction>,
    agent_name: Option<String>,
    transferring: bool,
    ended: bool,
    closed_by_customer: bool,
}

/// A snapshot of a conversation for the control API and tests.
#[derive(Clone, Debug, Serialize)]
pub struct ConversationView {
    /// The id.
    pub id: String,
    /// The owner.
    pub owner: String,
    /// Protocol-specific creation data.
    pub meta: Value,
    /// The agent-side log.
    pub agent: Vec<AgentRecord>,
    /// What the customer side did.
    pub customer: Vec<CustomerAction>,
    /// Whether the agent is away in a transfer.
    pub transferring: bool,
    /// Whether the conversation ended (either side).
    pub ended: bool,
    /// Whether the customer side closed it.
    pub closed_by_customer: bool,
}

impl ConversationView {
    /// How many text messages the customer side sent.
    pub fn customer_texts_len(&self) -> usize {
        self.customer.iter().filter(|a| matches!(a, CustomerAction::Message { .. })).count()
    }
}

impl Conversation {
    /// A view of the current state.
    pub fn view(&self) -> ConversationView {
        let state = lock(&self.state);
        ConversationView {
            id: self.id.clone(),
            owner: self.owner.clone(),
            meta: self.meta.clone(),
            agent: state.agent.clone(),
            customer: state.customer.clone(),
            transferring: state.transferring,
            ended: state.ended,
            closed_by_customer: state.closed_by_customer,
        }
    }

    /// The agent records after `seq`.
    pub fn agent_since(&self, seq: u64) -> Vec<AgentRecord> {
        lock(&self.state).agent.iter().filter(|r| r.seq > seq).cloned().collect()
    }

    /// The texts the customer side sent, in order.
    pub fn customer_texts(&self) -> Vec<String> {
        lock(&self.state)
            .customer
            .iter()
            .filter_map(|a| match a {
                CustomerAction::Message { text } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// The files that reached the agent, in order.
    pub fn customer_files(&self) -> Vec<CustomerAction> {
        lock(&self.state).customer.iter().filter(|a| matches!(a, CustomerAction::File { .. })).cloned().collect()
    }

    /// Whether the conversation has ended.
    pub fn is_ended(&self) -> bool {
        lock(&self.state).ended
    }

    /// Whether an agent left in a transfer and none has joined since.
    pub fn is_transferring(&self) -> bool {
        lock(&self.state).transferring
    }

    /// The current agent's name.
    pub fn agent_name(&self) -> Option<String> {
        lock(&self.state).agent_name.clone()
    }

    /// Waits until `predicate` holds for the view.
    pub async fn wait_for(&self, predicate: impl Fn(&ConversationView) -> bool) -> ConversationView {
        loop {
            let notified = self.changed.notified();
            let view = self.view();
            if predicate(&view) {
                return view;
            }
            notified.await;
        }
    }
}

/// The shared contact center.
#[derive(Debug)]
pub struct Hub {
    conversations: Mutex<Vec<Arc<Conversation>>>,
    by_id: Mutex<std::collections::HashMap<String, Arc<Conversation>>>,
    changes: broadcast::Sender<Change>,
    counters: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    customer_latencies_us: Mutex<Vec<u64>>,
    created: Notify,
    next_id: AtomicU64,
    /// Webhook deliveries answered (or given up on), by conversation.
    delivered: Mutex<std::collections::HashMap<String, u64>>,
    delivered_changed: Notify,
    /// A push protocol runs: creations wait for their greeting's webhook.
    pushes: std::sync::atomic::AtomicBool,
    /// Files the agent sent, by agent record id, with the token their URL carries.
    files: Mutex<std::collections::HashMap<String, (String, EmulatedFile)>>,
    /// `http://<addr>` once the server listens (for file URLs).
    base_url: std::sync::OnceLock<String>,
    /// Fault switches.
    pub faults: Faults,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty contact center.
    pub fn new() -> Self {
        // Large enough for a burst of thousands of handovers starting at once.
        let (changes, _) = broadcast::channel(65_536);
        Self {
            conversations: Mutex::default(),
            by_id: Mutex::default(),
            changes,
            counters: Mutex::default(),
            customer_latencies_us: Mutex::default(),
            created: Notify::new(),
            next_id: AtomicU64::new(1),
            delivered: Mutex::default(),
            delivered_changed: Notify::new(),
            pushes: std::sync::atomic::AtomicBool::new(false),
            files: Mutex::default(),
            base_url: std::sync::OnceLock::new(),
            faults: Faults::default(),
        }
    }

    /// Sets the emulator's base URL (once, when the server listens).
    pub(crate) fn set_base_url(&self, url: String) {
        let _ = self.base_url.set(url);
    }

    /// The URL of the file an agent record carries: `<base>/_emulator/files/<record id>?token=…`
    /// (pre-signed like a real contact center's download URL; without the token it is 403).
    /// `None` when the record carries no file.
    pub fn file_url(&self, record: &AgentRecord) -> Option<String> {
        let AgentAction::File { file, .. } = &record.action else { return None };
        Some(self.publish(record.id.clone(), file))
    }

    /// Hosts `file` at a fresh pre-signed URL on this emulator (a file the customer side can
    /// pass as a URL, in tests).
    pub fn host_file(&self, file: EmulatedFile) -> String {
        let id = format!("hosted-{}", self.next_number());
        self.publish(id, &file)
    }

    fn publish(&self, id: String, file: &EmulatedFile) -> String {
        let token = {
            let mut files = lock(&self.files);
            let seed = self.next_number();
            let (token, _) =
                files.entry(id.clone()).or_insert_with(|| (format!("t{:016x}", rand_token(seed)), file.clone()));
            token.clone()
        };
        let base = self.base_url.get().map(String::as_str).unwrap_or("http://127.0.0.1");
        format!("{base}/_emulator/files/{id}?token={token}")
    }

    /// A file served at `/_emulator/files/<id>` when `token` matches.
    pub(crate) fn served_file(&self, id: &str, token: &str) -> Option<EmulatedFile> {
        lock(&self.files).get(id).filter(|(t, _)| t == token).map(|(_, f)| f.clone())
    }

    /// Fetches a file the customer side passed as a URL, the way a contact center does
    /// (the emulator allows plain http: it only ever runs on loopback).
    pub async fn fetch_customer_file(&self, url: &str, name: &str, media_type: &str) -> Result<EmulatedFile, String> {
        let response = reqwest::get(url).await.map_err(|e| format!("fetching the attachment failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("fetching the attachment answered {}", response.status()));
        }
        let data = response.bytes().await.map_err(|e| format!("reading the attachment failed: {e}"))?;
        Ok(EmulatedFile::new(name, media_type, data.to_vec()))
    }

    /// Every token of a file URL issued so far (they are secrets: leak checks look for them).
    pub fn file_tokens(&self) -> Vec<String> {
        lock(&self.files).values().map(|(t, _)| t.clone()).collect()
    }

    /// A process-unique number (for ids).
    pub fn next_number(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Subscribes to changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Creates a conversation; the scripted agent (if running) picks it up.
    pub fn create(&self, id: impl Into<String>, owner: impl Into<String>, meta: Value) -> Arc<Conversation> {
        let conversation = Arc::new(Conversation {
            id: id.into(),
            owner: owner.into(),
            meta,
            state: Mutex::default(),
            changed: Notify::new(),
        });
        {
            // Announced under the lock: whoever finds the conversation in the list acts on
            // it after its `Created`, so no agent action overtakes the creation.
            let mut conversations = lock(&self.conversations);
            conversations.push(conversation.clone());
            lock(&self.by_id).insert(conversation.id.clone(), conversation.clone());
            let _ = self.changes.send(Change::Created(conversation.clone()));
        }
        self.created.notify_waiters();
        if let Some(greeting) = self.faults.greeting() {
            self.agent(&conversation, AgentAction::Message { agent: "Ann".to_owned(), text: greeting });
        }
        conversation
    }

    /// How many conversations were created so far.
    pub fn conversation_count(&self) -> usize {
        lock(&self.conversations).len()
    }

    /// Marks that agent-side events go out as webhooks (a push protocol).
    pub(crate) fn set_pushes(&self) {
        self.pushes.store(true, Ordering::SeqCst);
    }

    /// Whether agent-side events go out as webhooks.
    pub fn pushes(&self) -> bool {
        self.pushes.load(Ordering::SeqCst)
    }

    /// A webhook delivery for `conversation` was answered or given up on.
    pub(crate) fn delivery_done(&self, conversation: &str) {
        *lock(&self.delivered).entry(conversation.to_owned()).or_default() += 1;
        self.delivered_changed.notify_waiters();
    }

    /// Waits until `n` webhook deliveries for `conversation` were answered or given up on.
    pub async fn wait_delivered(&self, conversation: &str, n: u64) {
        loop {
            let notified = self.delivered_changed.notified();
            if lock(&self.delivered).get(conversation).copied().unwrap_or(0) >= n {
                return;
            }
            notified.await;
        }
    }

    /// A conversation by id.
    pub fn get(&self, id: &str) -> Option<Arc<Conversation>> {
        lock(&self.by_id).get(id).cloned()
    }

    /// Counts one `name` (token requests, polls, …) for the stats of the control API.
    pub fn count(&self, name: &'static str) {
        *lock(&self.counters).entry(name).or_default() += 1;
    }

    /// The counters so far.
    pub fn counters(&self) -> std::collections::BTreeMap<&'static str, u64> {
        lock(&self.counters).clone()
    }

    /// The latencies of stamped customer messages (text ending in ` @<unix µs>`) from the
    /// stamp to their arrival here, taken out of the hub.
    pub fn take_customer_latencies_us(&self) -> Vec<u64> {
        std::mem::take(&mut *lock(&self.customer_latencies_us))
    }

    /// The newest conversation.
    pub fn latest(&self) -> Option<Arc<Conversation>> {
        lock(&self.conversations).last().cloned()
    }

    /// Every conversation.
    pub fn all(&self) -> Vec<Arc<Conversation>> {
        lock(&self.conversations).clone()
    }

    /// Waits for conversation number `index` (0-based).
    pub async fn conversation(&self, index: usize) -> Arc<Conversation> {
        loop {
            let notified = self.created.notified();
            if let Some(c) = lock(&self.conversations).get(index) {
                return c.clone();
            }
            notified.await;
        }
    }

    /// Records an agent action and broadcasts it. Nothing is recorded after the end.
    pub fn agent(&self, conversation: &Arc<Conversation>, action: AgentAction) -> Option<AgentRecord> {
        let record = {
            let mut state = lock(&conversation.state);
            if state.ended {
                return None;
            }
            match &action {
                AgentAction::Joined { agent } => {
                    state.agent_name = Some(agent.clone());
                    state.transferring = false;
                }
                AgentAction::Left { transfer, .. } => {
                    state.agent_name = None;
                    state.transferring = *transfer;
                }
                AgentAction::Ended => state.ended = true,
                _ => {}
            }
            let seq = state.agent.len() as u64 + 1;
            let record = AgentRecord { seq, id: format!("{}-a{seq}", conversation.id), at_ms: now_ms(), action };
            state.agent.push(record.clone());
            record
        };
        conversation.changed.notify_waiters();
        let _ = self.changes.send(Change::Agent(conversation.clone(), record.clone()));
        Some(record)
    }

    /// Records a customer action and broadcasts it. Returns `false` after the end.
    pub fn customer(&self, conversation: &Arc<Conversation>, action: CustomerAction) -> bool {
        if let CustomerAction::Message { text } = &action
            && let Some(stamp) = text.rsplit_once(" @").and_then(|(_, us)| us.parse::<u64>().ok())
        {
            lock(&self.customer_latencies_us).push(now_us().saturating_sub(stamp));
        }
        {
            let mut state = lock(&conversation.state);
            if state.ended {
                return false;
            }
            if action == CustomerAction::Closed {
                state.ended = true;
                state.closed_by_customer = true;
            }
            state.customer.push(action.clone());
        }
        conversation.changed.notify_waiters();
        let _ = self.changes.send(Change::Customer(conversation.clone(), action));
        true
    }
}

fn rand_token(seed: u64) -> u64 {
    use rand_chacha::rand_core::{RngCore as _, SeedableRng as _};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (u64::from(nanos) << 20)).next_u64()
}

/// The next change a subscriber sees, past any it lagged behind on; `None` once the hub is
/// gone.
pub(crate) async fn next_change(changes: &mut broadcast::Receiver<Change>) -> Option<Change> {
    loop {
        match changes.recv().await {
            Ok(change) => return Some(change),
            Err(broadcast::error::RecvError::Lagged(missed)) => tracing::warn!(missed, "a translator lagged"),
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}
