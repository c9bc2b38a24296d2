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
    /// The agent ended the conversation.
    Ended,
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
            faults: Faults::default(),
        }
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
