//! One cell of the matrix: a provider, a fault, a scripted handover.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use handover::node::{Node, NodeConfig, NodeInput, NodeOutput};
use handover::{CancellationToken, EndedBy, Event, EventStream, Provider, Registry, UserInput};
use handover_emulator::{AgentAction, Conversation, CustomerAction, Emulator, EmulatorOptions, FaultSettings, Hub};
use handover_testkit::sample_request;
use handover_testkit::webhook_server::WebhookServer;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How long any single wait may take before the cell fails.
const WAIT: Duration = Duration::from_secs(25);

/// A provider and what its protocol can suffer.
#[derive(Clone, Debug)]
pub(crate) struct Protocol {
    pub(crate) name: &'static str,
    /// Agent-side events arrive as webhooks.
    pub(crate) push: bool,
    /// The provider holds a stream or socket the emulator can drop.
    pub(crate) stream: bool,
    /// The provider holds tokens that can expire.
    tokens: bool,
    /// Config changes that keep waits short (grace and drain periods).
    pub(crate) overrides: fn() -> Value,
}

impl Protocol {
    pub(crate) fn all() -> [Protocol; 6] {
        [
            // Authenticated: guest tokens cannot be renewed (protocols/salesforce-miaw.md §5).
            Protocol {
                name: "miaw",
                push: false,
                stream: true,
                tokens: true,
                overrides: || json!({ "identity_token": handover_emulator::miaw::identity_jwt("user-42") }),
            },
            Protocol { name: "salesforce", push: false, stream: true, tokens: false, overrides: || json!({}) },
            Protocol {
                name: "genesys",
                push: true,
                stream: true,
                tokens: true,
                overrides: || json!({ "transfer_grace_ms": 300, "end_drain_ms": 300 }),
            },
            Protocol { name: "liveagent", push: true, stream: false, tokens: false, overrides: || json!({}) },
            Protocol {
                name: "8x8",
                push: true,
                stream: false,
                tokens: false,
                overrides: || json!({ "transfer_grace_ms": 300 }),
            },
            Protocol { name: "ringcentral", push: true, stream: false, tokens: false, overrides: || json!({}) },
        ]
    }
}

/// A column of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Drop,
    ServerErrors,
    RateLimited,
    TokenExpiry,
    DuplicateReorder,
    BadSignature,
    SlowConsumer,
    KillResume,
    Shutdown,
    GreetingBeforeStart,
    UnknownEvents,
    ResendAfterResume,
}

impl Fault {
    pub(crate) const ALL: [Fault; 12] = [
        Fault::Drop,
        Fault::ServerErrors,
        Fault::RateLimited,
        Fault::TokenExpiry,
        Fault::DuplicateReorder,
        Fault::BadSignature,
        Fault::SlowConsumer,
        Fault::KillResume,
        Fault::Shutdown,
        Fault::GreetingBeforeStart,
        Fault::UnknownEvents,
        Fault::ResendAfterResume,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Fault::Drop => "stream dropped",
            Fault::ServerErrors => "5xx burst",
            Fault::RateLimited => "429 + Retry-After",
            Fault::TokenExpiry => "token expired",
            Fault::DuplicateReorder => "webhook twice, out of order",
            Fault::BadSignature => "bad signature",
            Fault::SlowConsumer => "slow consumer",
            Fault::KillResume => "killed, resumed",
            Fault::Shutdown => "shutdown",
            Fault::GreetingBeforeStart => "agent message before start returns",
            Fault::UnknownEvents => "unknown event types",
            Fault::ResendAfterResume => "input resent after kill and resume",
        }
    }

    pub(crate) fn index(self) -> usize {
        Fault::ALL.iter().position(|f| *f == self).unwrap_or_default()
    }

    pub(crate) fn applies_to(self, protocol: &Protocol) -> bool {
        match self {
            Fault::Drop => protocol.stream,
            Fault::TokenExpiry => protocol.tokens,
            Fault::DuplicateReorder | Fault::BadSignature => protocol.push,
            _ => true,
        }
    }
}

/// What a cell saw.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Outcome {
    pub(crate) pass: bool,
    pub(crate) not_applicable: bool,
    /// Agent messages the provider should deliver.
    pub(crate) expected: usize,
    /// Of those, how many arrived.
    pub(crate) delivered: usize,
    /// Extra copies of any message.
    pub(crate) duplicates: usize,
    /// Forged messages (bad signature) that arrived.
    pub(crate) forged: usize,
    /// How often the user's message reached the agent side (must be 1).
    pub(crate) user_messages: usize,
    pub(crate) status: String,
    pub(crate) note: String,
    /// A shutdown cell: only the status and whether the conversation was closed count.
    pub(crate) shutdown: bool,
    /// Files that crossed, checked: `a` agent to user (with its message), `u` user to
    /// agent (exactly once); empty when the cell carried none.
    pub(crate) files: String,
}

impl Outcome {
    pub(crate) fn failed(note: impl Into<String>) -> Self {
        Self { note: note.into(), status: "-".into(), ..Self::default() }
    }

    pub(crate) fn not_applicable() -> Self {
        Self { pass: true, not_applicable: true, ..Self::default() }
    }

    pub(crate) fn cell(&self) -> String {
        if self.not_applicable {
            return "n/a".into();
        }
        let verdict = if self.pass { "ok" } else { "FAIL" };
        if self.shutdown {
            return format!("{verdict} {}", self.status);
        }
        let mut cell = format!(
            "{verdict} {}/{} {}dup u{} {}",
            self.delivered, self.expected, self.duplicates, self.user_messages, self.status
        );
        if self.forged > 0 {
            cell.push_str(&format!(" {}forged", self.forged));
        }
        if !self.files.is_empty() {
            cell.push_str(&format!(" +files:{}", self.files));
        }
        cell
    }
}

/// An emulator, its webhook server (push protocols) and a way to build the provider.
struct Env {
    emulator: Emulator,
    webhooks: Option<WebhookServer>,
    table: toml::Value,
}

impl Env {
    async fn start(protocol: &Protocol) -> Result<Self, String> {
        let webhooks = if protocol.push { Some(WebhookServer::bind().await) } else { None };
        let mut options = EmulatorOptions::default();
        if let Some(webhooks) = &webhooks {
            options = options.with_webhook_url(webhooks.url(protocol.name));
        }
        let emulator = Emulator::start(protocol.name, options).await.map_err(|e| e.to_string())?;
        let mut config = emulator.provider_config();
        if let (Some(config), Value::Object(overrides)) = (config.as_object_mut(), (protocol.overrides)()) {
            config.extend(overrides);
        }
        let table = toml::Value::try_from(config).map_err(|e| format!("the emulator's config is not TOML: {e}"))?;
        Ok(Self { emulator, webhooks, table })
    }

    /// A fresh provider (a new process), serving the webhooks from now on.
    fn provider(&self, name: &str) -> Result<Arc<dyn Provider>, String> {
        let provider = Registry::new().build(name, self.table.clone()).map_err(|e| e.to_string())?;
        if let Some(webhooks) = &self.webhooks {
            webhooks.set_provider(provider.clone());
        }
        Ok(provider)
    }

    fn hub(&self) -> &Arc<Hub> {
        self.emulator.hub()
    }
}

fn say(hub: &Hub, conversation: &Arc<Conversation>, text: &str) {
    hub.agent(conversation, AgentAction::Message { agent: "Ann".into(), text: text.into() });
}

/// The user's file in the duplicate and resume columns: bytes for providers that upload,
/// a URL the emulator hosts for providers that take links.
fn user_file(hub: &Hub, uploads: bool) -> handover::Attachment {
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 31 % 256) as u8).collect();
    if uploads {
        handover::Attachment::bytes("invoice.png", "image/png", data)
    } else {
        let url = hub.host_file(handover_emulator::EmulatedFile::new("invoice.png", "image/png", data.clone()));
        handover::Attachment::url("invoice.png", "image/png", url).with_size(Some(data.len() as u64))
    }
}

/// Reads events until `done` holds for what was read (or the wait runs out), pausing
/// `pause` before each read (a slow consumer).
async fn collect(
    events: &mut EventStream,
    seen: &mut Vec<Event>,
    pause: Duration,
    done: impl Fn(&[Event]) -> bool,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(seen) {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Ok(event))) => seen.push(event),
            Ok(Some(Err(error))) => return Err(format!("the stream failed: {error}")),
            Ok(None) => return Err("the stream ended early".into()),
            Err(_) => return Err("timed out waiting for events".into()),
        }
    }
    Ok(())
}

fn texts(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| if let Event::AgentMessage { text, .. } = e { Some(text.as_str()) } else { None })
        .collect()
}

fn has_all(expected: &[String]) -> impl Fn(&[Event]) -> bool + '_ {
    move |events| {
        let got = texts(events);
        expected.iter().all(|t| got.contains(&t.as_str()))
    }
}

pub(crate) async fn run(protocol: &Protocol, fault: Fault, messages: usize) -> Outcome {
    let result =
        if fault == Fault::Shutdown { shutdown(protocol).await } else { handover(protocol, fault, messages).await };
    result.unwrap_or_else(Outcome::failed)
}

/// The scripted handover with `fault` injected mid-conversation.
async fn handover(protocol: &Protocol, fault: Fault, messages: usize) -> Result<Outcome, String> {
    let env = Env::start(protocol).await?;
    let hub = env.hub().clone();
    let mut provider = env.provider(protocol.name)?;
    let greeting = (fault == Fault::GreetingBeforeStart).then(|| "greeting".to_owned());
    if greeting.is_some() {
        // The agent writes the moment the conversation exists: the message reaches the
        // connector before `start` has returned (push protocols answer the create call
        // only once the webhook was answered).
        hub.faults.apply(&FaultSettings { greet_on_create: greeting.clone(), ..FaultSettings::default() });
    }
    let mut session = provider.start(sample_request()).await.map_err(|e| format!("start: {e}"))?;
    hub.faults.apply(&FaultSettings::default());
    let conversation = hub.latest().ok_or("no conversation at the emulator")?;
    let pause = if fault == Fault::SlowConsumer { Duration::from_millis(25) } else { Duration::ZERO };
    let count = if fault == Fault::SlowConsumer { messages * 4 } else { messages };
    let mut seen = Vec::new();

    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    say(&hub, &conversation, "m0");
    collect(session.events(), &mut seen, pause, has_all(&["m0".to_owned()])).await.map_err(|e| format!("m0: {e}"))?;

    let during: Vec<String> = (1..=count).map(|i| format!("m{i}")).collect();
    // In the duplicate and resume columns one agent message in the middle carries a file
    // (its text is the caption), and the user sends a file too, where the provider carries them.
    let caps = provider.info().capabilities;
    let with_files = matches!(fault, Fault::DuplicateReorder | Fault::KillResume | Fault::ResendAfterResume);
    let file_text = (with_files && caps.attachments_to_user()).then(|| during[during.len() / 2].clone());
    let user_file = (with_files && caps.attachments_to_agent()).then(|| user_file(&hub, caps.attachment_uploads()));
    let say = |hub: &Hub, conversation: &Arc<Conversation>, text: &str| {
        if file_text.as_deref() == Some(text) {
            let file = handover_emulator::agent::reply_file();
            hub.agent(conversation, AgentAction::File { agent: "Ann".into(), file, caption: Some(text.to_owned()) });
        } else {
            say(hub, conversation, text);
        }
    };
    let mut forged = Vec::new();
    match fault {
        Fault::Drop => hub.faults.drop_streams(),
        Fault::ServerErrors => {
            hub.faults.apply(&FaultSettings { fail_status: Some(503), fail_count: 3, ..FaultSettings::default() });
        }
        Fault::RateLimited => hub.faults.apply(&FaultSettings {
            rate_limit_count: 2,
            rate_limit_retry_after: 1,
            ..FaultSettings::default()
        }),
        Fault::TokenExpiry => hub.faults.apply(&FaultSettings { expire_tokens: true, ..FaultSettings::default() }),
        Fault::DuplicateReorder => hub.faults.apply(&FaultSettings {
            duplicate_deliveries: true,
            reorder_deliveries: true,
            ..FaultSettings::default()
        }),
        Fault::BadSignature => {
            hub.faults.apply(&FaultSettings { bad_signatures: true, ..FaultSettings::default() });
            forged.clone_from(&during);
        }
        Fault::UnknownEvents => {
            hub.faults.apply(&FaultSettings { unknown_events: true, ..FaultSettings::default() });
        }
        Fault::SlowConsumer
        | Fault::KillResume
        | Fault::Shutdown
        | Fault::GreetingBeforeStart
        | Fault::ResendAfterResume => {}
    }

    let u1 = CustomerAction::Message { text: "u1".into() };
    if let Some(file) = &user_file {
        session.send(UserInput::attachment("f-1", file.clone())).await.map_err(|e| format!("the user's file: {e}"))?;
    }
    if fault == Fault::ResendAfterResume {
        // The input goes out once before the process dies; the bot resends it (same id)
        // to the resumed session, not knowing whether it arrived.
        session.send(UserInput::message("u-1", "u1")).await.map_err(|e| format!("the user's message: {e}"))?;
        tokio::time::timeout(WAIT, conversation.wait_for(|v| v.customer.contains(&u1)))
            .await
            .map_err(|_| "the user's message did not reach the agent before the kill")?;
    }
    if matches!(fault, Fault::KillResume | Fault::ResendAfterResume) {
        // The process dies: only the snapshot survives. Messages keep coming meanwhile.
        let snapshot = session.snapshot().map_err(|e| format!("snapshot: {e}"))?;
        let json = serde_json::to_string(&snapshot).map_err(|e| e.to_string())?;
        drop(session);
        drop(provider);
        if let Some(webhooks) = &env.webhooks {
            webhooks.clear_provider();
        }
        for text in &during {
            say(&hub, &conversation, text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        provider = env.provider(protocol.name)?;
        let snapshot = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        session = provider.resume(snapshot).await.map_err(|e| format!("resume: {e}"))?;
    } else {
        for text in &during {
            say(&hub, &conversation, text);
        }
    }
    if let Some(file) = &user_file
        && fault == Fault::ResendAfterResume
    {
        // Resent with the same id after the resume: it must not reach the agent twice.
        session.send(UserInput::attachment("f-1", file.clone())).await.map_err(|e| format!("the user's file: {e}"))?;
    }
    session.send(UserInput::message("u-1", "u1")).await.map_err(|e| format!("the user's message: {e}"))?;
    let reached = tokio::time::timeout(WAIT, conversation.wait_for(|v| v.customer.contains(&u1))).await.is_ok();
    if matches!(fault, Fault::BadSignature | Fault::DuplicateReorder | Fault::UnknownEvents) {
        // Everything sent under the fault went out under it.
        tokio::time::timeout(WAIT, env.emulator.settled(&conversation.id)).await.map_err(|_| "not settled")?;
    }
    hub.faults.apply(&FaultSettings::default());
    say(&hub, &conversation, "last");

    let mut expected: Vec<String> = greeting.into_iter().collect();
    expected.extend(during.iter().filter(|t| !forged.contains(t)).cloned());
    expected.push("last".into());
    let mut note = String::new();
    if let Err(error) = collect(session.events(), &mut seen, pause, has_all(&expected)).await {
        note = error;
    }
    hub.agent(&conversation, AgentAction::Ended);
    let ended = collect(session.events(), &mut seen, pause, |events| events.iter().any(Event::is_terminal)).await;
    if let Err(error) = ended
        && note.is_empty()
    {
        note = format!("no end: {error}");
    }

    let user_messages = if reached { conversation.view().customer.iter().filter(|c| **c == u1).count() } else { 0 };

    let got = texts(&seen);
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for text in &got {
        *copies.entry(text).or_default() += 1;
    }
    let duplicates = copies.values().map(|n| n - 1).sum();
    let delivered = expected.iter().filter(|t| copies.contains_key(t.as_str())).count();
    let forged_seen = forged.iter().filter(|t| copies.contains_key(t.as_str())).count();
    let status = match seen.iter().find(|e| e.is_terminal()) {
        Some(Event::Ended { by: EndedBy::Agent, .. }) => "completed".to_owned(),
        Some(Event::Ended { by, .. }) => format!("ended by {by:?}"),
        _ => "no end".to_owned(),
    };
    if let Some(text) = &file_text {
        let carried = seen.iter().any(|e| {
            matches!(e, Event::AgentMessage { text: t, attachments, .. }
                if t == text && attachments.len() == 1 && attachments[0].name == "returns-label.pdf")
        });
        if !carried && note.is_empty() {
            note = format!("the agent's file message `{text}` arrived without its file");
        }
    }
    if user_file.is_some() {
        let files = conversation.customer_files().len();
        if files != 1 && note.is_empty() {
            note = format!("the user's file reached the agent {files} times");
        }
    }
    let files = [(file_text.is_some(), 'a'), (user_file.is_some(), 'u')]
        .iter()
        .filter_map(|(carried, tag)| carried.then_some(*tag))
        .collect();
    let pass = note.is_empty()
        && delivered == expected.len()
        && duplicates == 0
        && forged_seen == 0
        && user_messages == 1
        && status == "completed";
    if !pass && note.is_empty() {
        note = format!("saw {got:?}");
    }
    Ok(Outcome {
        pass,
        not_applicable: false,
        expected: expected.len(),
        delivered,
        duplicates,
        forged: forged_seen,
        user_messages,
        status,
        note,
        shutdown: false,
        files,
    })
}

/// The node runtime is cancelled mid-conversation: the provider session must be ended
/// at the contact center (no orphan conversation).
async fn shutdown(protocol: &Protocol) -> Result<Outcome, String> {
    let env = Env::start(protocol).await?;
    let hub = env.hub().clone();
    let provider = env.provider(protocol.name)?;
    let token = CancellationToken::new();
    let (_inputs_tx, inputs) = mpsc::channel::<NodeInput>(8);
    let (outputs_tx, mut outputs) = mpsc::channel::<NodeOutput>(64);
    let node_token = token.clone();
    let node = tokio::spawn(async move {
        Node::new(NodeConfig::default()).run(provider.as_ref(), sample_request(), inputs, outputs_tx, node_token).await
    });
    let conversation =
        tokio::time::timeout(WAIT, hub.conversation(0)).await.map_err(|_| "the handover never reached the emulator")?;
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    say(&hub, &conversation, "m0");
    let arrived = tokio::time::timeout(WAIT, async {
        while let Some(output) = outputs.recv().await {
            if matches!(&output, NodeOutput::AgentMessage { text, .. } if text == "m0") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    token.cancel();
    let outcome =
        tokio::time::timeout(WAIT, node).await.map_err(|_| "the node did not stop")?.map_err(|e| e.to_string())?;
    let closed =
        tokio::time::timeout(Duration::from_secs(10), conversation.wait_for(|v| v.closed_by_customer)).await.is_ok();
    let pass = arrived && closed;
    Ok(Outcome {
        pass,
        not_applicable: false,
        expected: 1,
        delivered: usize::from(arrived),
        shutdown: true,
        status: format!("{}{}", outcome.status.as_str(), if closed { ", closed" } else { ", ORPHANED" }),
        note: if pass { String::new() } else { format!("arrived {arrived}, closed at the contact center {closed}") },
        ..Outcome::default()
    })
}
