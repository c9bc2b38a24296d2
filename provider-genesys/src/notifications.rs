//! Agent join, leave and end detection (`protocols/genesys.md` §7).
//!
//! Open Messaging's webhook says nothing about participants, so the end of a handover is
//! detected separately, behind [`EndDetector`]. [`NotificationsDetector`] uses the
//! Notifications API: conversations spread over channels of 1000 topics each (an app may
//! have 20), one WebSocket per channel owned by `handover-transport`'s owner task, three
//! topics per conversation (`user.start`, `user.end`, `customer.end`), a rebuild before the 24 h
//! expiry, and a resync after every reconnect so an end that happened while the socket
//! was down is not lost.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{ErrorKind, Result};
use handover_transport::session::lock;
use handover_transport::ws::{self, WsConfig, WsConnect, WsEvent, WsHandle};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::NAME;
use crate::auth::TokenCache;
use crate::client::Client;

/// Why a participant's session ended (`disconnectType`); unknown values are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectType {
    /// A transfer of any kind (`TRANSFER`, `CONSULT_TRANSFER`, `FORWARD_TRANSFER`, …).
    Transfer(String),
    /// Any other reason (`CLIENT`, `ENDPOINT`, `PEER`, `SYSTEM`, `TIMEOUT`, …).
    Other(String),
}

impl DisconnectType {
    /// Reads the wire value.
    pub fn parse(value: Option<&str>) -> Self {
        let value = value.unwrap_or("UNKNOWN").to_owned();
        if value.ends_with("TRANSFER") { DisconnectType::Transfer(value) } else { DisconnectType::Other(value) }
    }

    /// Whether the participant left in a transfer.
    pub fn is_transfer(&self) -> bool {
        matches!(self, DisconnectType::Transfer(_))
    }
}

/// What the detector reports about one conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParticipantEvent {
    /// An agent (user) participant started.
    AgentStarted {
        /// The participant id.
        participant_id: String,
        /// The Genesys user id of the agent.
        user_id: Option<String>,
    },
    /// An agent participant ended.
    AgentEnded {
        /// The participant id.
        participant_id: String,
        /// Why.
        disconnect: DisconnectType,
    },
    /// The customer participant ended.
    CustomerEnded {
        /// Why.
        disconnect: DisconnectType,
    },
    /// Events may have been missed (the socket reconnected): re-read the conversation.
    Resync,
    /// Detection stopped for good.
    Lost(String),
}

/// Detects participant changes of watched conversations.
#[async_trait]
pub trait EndDetector: Send + Sync + 'static {
    /// Starts reporting conversation `conversation_id`'s participant changes to `sink`.
    async fn watch(&self, conversation_id: &str, sink: mpsc::Sender<ParticipantEvent>) -> Result<()>;

    /// Stops reporting them to `sink` (a newer watcher of the same conversation, after a
    /// resume, is left alone).
    fn unwatch(&self, conversation_id: &str, sink: &mpsc::Sender<ParticipantEvent>);
}

/// One frame of the notifications socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `channel.metadata`: a heartbeat or a pong.
    Heartbeat,
    /// `v2.system.socket_closing`: maintenance will close the socket.
    SocketClosing,
    /// A participant change of a conversation.
    Event {
        /// The conversation.
        conversation_id: String,
        /// What happened.
        event: ParticipantEvent,
    },
    /// Anything else.
    Ignore,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    topic_name: String,
    #[serde(default)]
    event_body: Value,
}

/// The topics watched for a conversation.
pub fn topics(conversation_id: &str) -> [String; 3] {
    ["user.start", "user.end", "customer.end"]
        .map(|kind| format!("v2.detail.events.conversation.{conversation_id}.{kind}"))
}

/// Reads a frame; malformed frames are [`Frame::Ignore`], never an error.
pub fn parse_frame(text: &str) -> Frame {
    let Ok(envelope) = serde_json::from_str::<Envelope>(text) else {
        return Frame::Ignore;
    };
    if envelope.topic_name == "channel.metadata" {
        return Frame::Heartbeat;
    }
    if envelope.topic_name == "v2.system.socket_closing" {
        return Frame::SocketClosing;
    }
    let Some(rest) = envelope.topic_name.strip_prefix("v2.detail.events.conversation.") else {
        return Frame::Ignore;
    };
    let Some((conversation_id, kind)) = rest.split_once('.') else {
        return Frame::Ignore;
    };
    let body = &envelope.event_body;
    let participant_id = body["participantId"].as_str().unwrap_or_default().to_owned();
    let disconnect = DisconnectType::parse(body["disconnectType"].as_str());
    let event = match kind {
        "user.start" => {
            ParticipantEvent::AgentStarted { participant_id, user_id: body["userId"].as_str().map(str::to_owned) }
        }
        "user.end" => ParticipantEvent::AgentEnded { participant_id, disconnect },
        "customer.end" => ParticipantEvent::CustomerEnded { disconnect },
        _ => return Frame::Ignore,
    };
    Frame::Event { conversation_id: conversation_id.to_owned(), event }
}

/// The Notifications API detector, shared by every session of a provider.
///
/// A channel holds 1000 topics, three per conversation, so conversations are spread over
/// channels of at most [`conversations_per_channel`](Self::with_conversations_per_channel)
/// each (333 by default), each channel with its own socket, up to 19 channels (an app may
/// hold 20; one is kept free for a rebuild): 6,327 concurrent conversations per provider. Past that, `watch` fails with
/// `RateLimited` until a conversation ends.
pub struct NotificationsDetector {
    client: Arc<Client>,
    tokens: Arc<TokenCache>,
    config: WsConfig,
    per_channel: usize,
    channels: Mutex<Vec<Arc<Shared>>>,
}

/// One channel, its socket and the conversations placed on it.
struct Shared {
    client: Arc<Client>,
    tokens: Arc<TokenCache>,
    config: WsConfig,
    watched: Mutex<HashMap<String, mpsc::Sender<ParticipantEvent>>>,
    /// The current channel. Adding a conversation's topics takes it shared, so handovers
    /// subscribe in parallel; replacing the topic list or the channel takes it exclusively.
    channel: tokio::sync::RwLock<Option<String>>,
    /// The conversations subscribed on the current channel (live and stale).
    subscribed: Mutex<HashSet<String>>,
    socket: Mutex<Option<WsHandle>>,
    /// Whether the socket is connected (events reach only a connected socket).
    connected: tokio::sync::watch::Sender<bool>,
}

/// Replace the channel's topic list once this many conversations on it are no longer watched.
const STALE_LIMIT: usize = 100;

/// Topics a channel holds (Notifications API limit).
const TOPICS_PER_CHANNEL: usize = 1000;

/// Channels used: an app may hold 20 and creating a 21st evicts the oldest, so one is kept
/// free for a channel being rebuilt.
const MAX_CHANNELS: usize = 19;

impl NotificationsDetector {
    pub(crate) fn new(client: Arc<Client>, tokens: Arc<TokenCache>, config: WsConfig) -> Self {
        Self { client, tokens, config, per_channel: TOPICS_PER_CHANNEL / 3, channels: Mutex::default() }
    }

    /// Places at most `count` conversations on one channel (1 to 333; out-of-range values
    /// are clamped).
    #[must_use]
    pub fn with_conversations_per_channel(mut self, count: usize) -> Self {
        self.per_channel = count.clamp(1, TOPICS_PER_CHANNEL / 3);
        self
    }

    /// The default socket settings: client pings every 30 s, rebuild after 23 h.
    pub fn default_ws_config() -> WsConfig {
        WsConfig::default().with_max_connection_age(Some(Duration::from_secs(23 * 3600)))
    }

    /// The channel for `conversation_id`, with `sink` registered on it: the channel it is
    /// already on (a resume), else the first with room, else a new one.
    fn place(&self, conversation_id: &str, sink: mpsc::Sender<ParticipantEvent>) -> Result<Arc<Shared>> {
        let mut channels = lock(&self.channels);
        let existing = channels.iter().find(|c| lock(&c.watched).contains_key(conversation_id));
        let with_room = || channels.iter().find(|c| lock(&c.watched).len() < self.per_channel);
        let shared = match existing.or_else(with_room) {
            Some(shared) => shared.clone(),
            None if channels.len() < MAX_CHANNELS => {
                let shared = Arc::new(Shared {
                    client: self.client.clone(),
                    tokens: self.tokens.clone(),
                    config: self.config.clone(),
                    watched: Mutex::default(),
                    channel: tokio::sync::RwLock::default(),
                    subscribed: Mutex::default(),
                    socket: Mutex::default(),
                    connected: tokio::sync::watch::Sender::new(false),
                });
                channels.push(shared.clone());
                shared
            }
            None => {
                let most = MAX_CHANNELS * self.per_channel;
                return Err(handover_core::Error::new(
                    ErrorKind::RateLimited,
                    NAME,
                    "watch participants",
                    format!(
                        "every notification channel is full ({MAX_CHANNELS} channels of {} conversations): \
                         {most} handovers are open on this provider; start this one when one ends",
                        self.per_channel
                    ),
                ));
            }
        };
        lock(&shared.watched).insert(conversation_id.to_owned(), sink);
        Ok(shared)
    }
}

impl Drop for NotificationsDetector {
    fn drop(&mut self) {
        for shared in lock(&self.channels).iter() {
            if let Some(socket) = lock(&shared.socket).take() {
                socket.close();
            }
        }
    }
}

impl Shared {
    fn ensure_socket(self: &Arc<Self>) {
        let mut socket = lock(&self.socket);
        if socket.is_some() {
            return;
        }
        let (handle, events) = ws::spawn(Connector(self.clone()), self.config.clone());
        tokio::spawn(read(self.clone(), events));
        *socket = Some(handle);
    }

    /// Subscribes `conversation_id` (already in `watched`) on this channel: added to the
    /// topic list, or the list replaced by the watched conversations' topics once too many
    /// stale ones are on it or it would pass `per_channel` conversations.
    async fn subscribe(&self, conversation_id: &str, per_channel: usize) -> Result<()> {
        let client = &self.client;
        let channel = self.channel.read().await;
        let Some(id) = channel.as_deref() else {
            // No channel yet: the socket's connector creates it with every watched topic.
            return Ok(());
        };
        let reserved = {
            let watched = lock(&self.watched);
            let mut subscribed = lock(&self.subscribed);
            let stale = subscribed.iter().filter(|c| !watched.contains_key(*c)).count();
            stale < STALE_LIMIT && subscribed.len() < per_channel && subscribed.insert(conversation_id.to_owned())
        };
        if reserved {
            let new = topics(conversation_id).to_vec();
            let new = &new;
            let added =
                self.tokens.authorized(|token| async move { client.subscribe(&token, id, new, false).await }).await;
            if added.is_err() {
                lock(&self.subscribed).remove(conversation_id);
            }
            return added.map(drop);
        }
        if lock(&self.subscribed).contains(conversation_id) {
            return Ok(());
        }
        drop(channel);
        // Replace the whole list; no addition is in flight while it runs.
        let channel = self.channel.write().await;
        if let Some(id) = channel.as_deref() {
            let watched: Vec<String> = lock(&self.watched).keys().cloned().collect();
            let all: Vec<String> = watched.iter().flat_map(|c| topics(c)).collect();
            let all = &all;
            self.tokens.authorized(|token| async move { client.subscribe(&token, id, all, true).await }).await?;
            *lock(&self.subscribed) = watched.into_iter().collect();
        }
        Ok(())
    }
}

#[async_trait]
impl EndDetector for NotificationsDetector {
    async fn watch(&self, conversation_id: &str, sink: mpsc::Sender<ParticipantEvent>) -> Result<()> {
        let shared = self.place(conversation_id, sink)?;
        shared.subscribe(conversation_id, self.per_channel).await?;
        shared.ensure_socket();
        // Return once the topics are subscribed on a connected socket, so nothing that
        // happens after `watch` is missed.
        let mut connected = shared.connected.subscribe();
        let wait = shared.config.connect_timeout * 3;
        match tokio::time::timeout(wait, connected.wait_for(|c| *c)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(handover_core::Error::transport(
                NAME,
                "watch participants",
                format!("the notifications socket did not connect within {}s", wait.as_secs()),
            )),
        }
    }

    fn unwatch(&self, conversation_id: &str, sink: &mpsc::Sender<ParticipantEvent>) {
        for shared in lock(&self.channels).iter() {
            let mut watched = lock(&shared.watched);
            if watched.get(conversation_id).is_some_and(|current| current.same_channel(sink)) {
                watched.remove(conversation_id);
            }
        }
    }
}

struct Connector(Arc<Shared>);

#[async_trait]
impl WsConnect for Connector {
    fn provider(&self) -> &'static str {
        NAME
    }

    /// A fresh channel with every watched conversation's topics.
    async fn url(&self) -> Result<String> {
        let shared = &self.0;
        let mut channel = shared.channel.write().await;
        let client = &shared.client;
        let created = shared.tokens.authorized(|token| async move { client.create_channel(&token).await }).await?;
        let watched: Vec<String> = lock(&shared.watched).keys().cloned().collect();
        if !watched.is_empty() {
            let all: Vec<String> = watched.iter().flat_map(|c| topics(c)).collect();
            let id = &created.id;
            let all = &all;
            shared.tokens.authorized(|token| async move { client.subscribe(&token, id, all, true).await }).await?;
        }
        *channel = Some(created.id.clone());
        *lock(&shared.subscribed) = watched.into_iter().collect();
        tracing::debug!(channel = %created.id, "notification channel ready");
        Ok(created.connect_uri)
    }
}

async fn read(shared: Arc<Shared>, mut events: mpsc::Receiver<WsEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            WsEvent::Connected { reconnect: true } => {
                shared.connected.send_replace(true);
                let sinks: Vec<_> = lock(&shared.watched).values().cloned().collect();
                for sink in sinks {
                    let _ = sink.send(ParticipantEvent::Resync).await;
                }
            }
            WsEvent::Connected { reconnect: false } => {
                shared.connected.send_replace(true);
            }
            WsEvent::Text(text) => match parse_frame(&text) {
                Frame::Event { conversation_id, event } => {
                    let sink = lock(&shared.watched).get(&conversation_id).cloned();
                    if let Some(sink) = sink
                        && sink.send(event).await.is_err()
                    {
                        lock(&shared.watched).remove(&conversation_id);
                    }
                }
                Frame::SocketClosing => tracing::info!("the notifications service announced maintenance"),
                Frame::Heartbeat | Frame::Ignore => {}
            },
            WsEvent::Disconnected { reason } => {
                shared.connected.send_replace(false);
                tracing::debug!(reason, "notifications socket dropped");
            }
            WsEvent::Failed(error) => {
                tracing::warn!(%error, "participant changes can no longer be detected");
                let sinks: Vec<_> = lock(&shared.watched).drain().map(|(_, s)| s).collect();
                for sink in sinks {
                    let _ = sink.send(ParticipantEvent::Lost(error.to_string())).await;
                }
                *lock(&shared.socket) = None;
                shared.connected.send_replace(false);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Notification frames of `protocols/genesys.md` §7, inline and from `tests/fixtures`.

    use super::*;

    #[test]
    fn frames_are_read_by_topic() {
        assert_eq!(
            parse_frame(r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#),
            Frame::Heartbeat
        );
        assert_eq!(parse_frame(r#"{"topicName":"v2.system.socket_closing","eventBody":{}}"#), Frame::SocketClosing);
        assert_eq!(
            parse_frame(
                r#"{"topicName":"v2.detail.events.conversation.c-1.user.end","version":"1","eventBody":{"conversationId":"c-1","participantId":"p-9","disconnectType":"CONSULT_TRANSFER"},"metadata":{"CorrelationId":"x"}}"#
            ),
            Frame::Event {
                conversation_id: "c-1".into(),
                event: ParticipantEvent::AgentEnded {
                    participant_id: "p-9".into(),
                    disconnect: DisconnectType::Transfer("CONSULT_TRANSFER".into())
                }
            }
        );
        assert_eq!(parse_frame("not json"), Frame::Ignore);
        assert_eq!(
            parse_frame(r#"{"topicName":"v2.detail.events.conversation.c-1.acw","eventBody":{}}"#),
            Frame::Ignore
        );
    }

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"))).expect("fixture exists")
    }

    fn frame(name: &str) -> Frame {
        parse_frame(&String::from_utf8(read(&format!("notification_{name}"))).unwrap())
    }

    #[test]
    fn notification_frames() {
        assert_eq!(frame("heartbeat"), Frame::Heartbeat);
        assert_eq!(frame("pong"), Frame::Heartbeat);
        assert_eq!(frame("socket_closing"), Frame::SocketClosing);
        assert_eq!(frame("acw"), Frame::Ignore);
        assert_eq!(
            frame("user_start"),
            Frame::Event {
                conversation_id: "conv-1".into(),
                event: ParticipantEvent::AgentStarted {
                    participant_id: "p-agent-1".into(),
                    user_id: Some("user-ann".into())
                }
            }
        );
        assert_eq!(
            frame("user_end_transfer"),
            Frame::Event {
                conversation_id: "conv-1".into(),
                event: ParticipantEvent::AgentEnded {
                    participant_id: "p-agent-1".into(),
                    disconnect: DisconnectType::Transfer("TRANSFER".into())
                }
            }
        );
        assert!(matches!(
            frame("user_end_client"),
            Frame::Event { event: ParticipantEvent::AgentEnded { disconnect: DisconnectType::Other(_), .. }, .. }
        ));
        assert!(matches!(frame("customer_end"), Frame::Event { event: ParticipantEvent::CustomerEnded { .. }, .. }));
    }
}
