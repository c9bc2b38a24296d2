//! Reading webhook events (`protocols/8x8.md` §6.4, legacy shapes of §9).

use handover_core::{Agent, Error, Result};
use serde_json::Value;

use crate::NAME;

/// What an event means for the handover.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// `WEB_HOOK_VERIFY`: answer 2xx, nothing else.
    Verify,
    /// `QUEUED`: the interaction waits in a queue (again, after a transfer).
    Queued {
        /// `queueName`, else `queueId`.
        queue: Option<String>,
    },
    /// An agent joined (`MEMBERS_CHANGED` agent joined, legacy `AGENT_JOINED`).
    AgentJoined(Agent),
    /// An agent left (`MEMBERS_CHANGED` agent left, legacy `AGENT_LEFT`): the end, unless a
    /// `TRANSFER` came first.
    AgentLeft {
        /// The agent's id, when given.
        id: Option<String>,
    },
    /// `TRANSFER`: the next agent leave is not the end.
    Transfer,
    /// A human agent wrote (`MESSAGE` from `sender.type: "agent"`, legacy `TEXT`).
    AgentMessage {
        /// Text; attachments as `[attachment] name url` lines, cards as `[card] type`.
        text: String,
        /// The agent (id; name only from legacy payloads).
        agent: Agent,
    },
    /// The agent started (`true`) or stopped typing.
    Typing(bool),
    /// The user was removed: the interaction is over.
    UserLeft,
    /// Nothing for the user: echoes, user or bot messages, other activities, state updates.
    Ignore(&'static str),
}

/// A parsed event.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// `conversationId` (absent only on `WEB_HOOK_VERIFY`).
    pub conversation: Option<String>,
    /// `timestamp`, Unix milliseconds.
    pub timestamp: Option<u64>,
    /// What it means.
    pub delivery: Delivery,
}

fn agent(id: Option<&str>, name: Option<&str>) -> Agent {
    let mut agent = Agent::unknown();
    agent.id = id.filter(|i| !i.is_empty()).map(str::to_owned);
    agent.name = name.filter(|n| !n.is_empty()).map(str::to_owned);
    agent
}

/// Reads an event body (already verified).
pub fn parse(body: &[u8]) -> Result<Parsed> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        Error::protocol(
            NAME,
            "read webhook",
            format!("the body is not an 8x8 event: {}", handover_transport::log::sanitize(&e.to_string())),
        )
    })?;
    let Some(event) = json["eventType"].as_str() else {
        return Err(Error::protocol(NAME, "read webhook", "the event has no eventType"));
    };
    if event == "WEB_HOOK_VERIFY" || event == "VERIFY_WEBHOOK" {
        return Ok(Parsed { conversation: None, timestamp: None, delivery: Delivery::Verify });
    }
    let Some(conversation) = json["conversationId"].as_str().filter(|c| !c.is_empty()) else {
        // Nothing a session waits for: acknowledged and dropped.
        return Ok(Parsed { conversation: None, timestamp: None, delivery: Delivery::Ignore("no conversationId") });
    };
    let data = &json["data"];
    let delivery = match event {
        "MESSAGE" => message(data),
        "MEMBERS_CHANGED" => members_changed(data),
        "TRANSFER" => Delivery::Transfer,
        "QUEUED" => {
            // The workflow page puts the queue under `data`, the legacy API at the top.
            let field = |key: &str| data[key].as_str().or_else(|| json[key].as_str()).map(str::to_owned);
            Delivery::Queued { queue: field("queueName").or_else(|| field("queueId")) }
        }
        "ACTIVITY" => activity(data),
        "AGENT_JOINED" => Delivery::AgentJoined(agent(json["agentId"].as_str(), json["agentName"].as_str())),
        "AGENT_LEFT" => Delivery::AgentLeft { id: json["agentId"].as_str().map(str::to_owned) },
        "TEXT" => legacy_text(&json),
        "CONVERSATION_UPDATE" => Delivery::Ignore("state update"),
        _ => Delivery::Ignore("event type not used by the handover"),
    };
    Ok(Parsed { conversation: Some(conversation.to_owned()), timestamp: json["timestamp"].as_u64(), delivery })
}

fn members_changed(data: &Value) -> Delivery {
    let id = data["id"].as_str();
    match (data["memberType"].as_str(), data["change"].as_str()) {
        (Some("agent"), Some("joined")) => Delivery::AgentJoined(agent(id, data["name"].as_str())),
        (Some("agent"), Some("left")) => Delivery::AgentLeft { id: id.map(str::to_owned) },
        (Some("user"), Some("left")) => Delivery::UserLeft,
        _ => Delivery::Ignore("member change of no interest"),
    }
}

fn message(data: &Value) -> Delivery {
    // §8.1: every message comes back, the connector's own included.
    if data["isEcho"] == true {
        return Delivery::Ignore("echo of our own message");
    }
    if data["sender"]["type"].as_str() != Some("agent") {
        return Delivery::Ignore("not sent by an agent");
    }
    let mut lines: Vec<String> =
        data["text"].as_str().filter(|t| !t.trim().is_empty()).map(str::to_owned).into_iter().collect();
    for attachment in data["attachments"].as_array().into_iter().flatten() {
        let url = attachment["preSignedUrl"].as_str().unwrap_or_default();
        let name = attachment["fileName"].as_str().unwrap_or_default();
        let line = [name, url].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ");
        if !line.is_empty() {
            lines.push(format!("[attachment] {line}"));
        }
    }
    for card in data["cards"].as_array().into_iter().flatten() {
        lines.push(format!("[card] {}", card["contentType"].as_str().unwrap_or("unknown")));
    }
    if lines.is_empty() {
        return Delivery::Ignore("message without content");
    }
    Delivery::AgentMessage { text: lines.join("\n"), agent: agent(data["sender"]["id"].as_str(), None) }
}

fn legacy_text(json: &Value) -> Delivery {
    let text = json["text"].as_str().or_else(|| json["data"]["text"].as_str()).filter(|t| !t.trim().is_empty());
    match text {
        Some(text) => Delivery::AgentMessage {
            text: text.to_owned(),
            agent: agent(json["agentId"].as_str(), json["agentName"].as_str()),
        },
        None => Delivery::Ignore("text event without text"),
    }
}

fn activity(data: &Value) -> Delivery {
    if data["name"].as_str() != Some("typing") {
        return Delivery::Ignore("activity other than typing");
    }
    let Some(users) = data["value"]["users"].as_array() else {
        return Delivery::Ignore("typing without a user list");
    };
    // §8.4: an empty list means everyone stopped typing.
    if users.is_empty() {
        return Delivery::Typing(false);
    }
    if users.iter().any(|u| u["type"] == "agent") {
        Delivery::Typing(true)
    } else {
        Delivery::Ignore("someone other than the agent is typing")
    }
}
