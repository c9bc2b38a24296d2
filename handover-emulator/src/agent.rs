//! The scripted agent: queue countdown, join, greeting, echo, transfer on request, end on
//! "bye".

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::model::{AgentAction, Change, Conversation, CustomerAction, Hub};

/// What the scripted agent does with every new conversation.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AgentScript {
    /// Queue positions to count down from (0 skips the queue).
    pub queue_positions: u32,
    /// Pause between steps (queue updates, join, greeting).
    pub step: Duration,
    /// Estimated wait reported per queue position, in seconds.
    pub wait_per_position_secs: u64,
    /// The first agent's name.
    pub agent: String,
    /// The agent a transfer goes to.
    pub transfer_to: String,
    /// Said after joining.
    pub greeting: String,
}

/// What the scripted agent sends back when the customer side sends a file: a small PDF
/// "returns label".
pub fn reply_file() -> crate::model::EmulatedFile {
    crate::model::EmulatedFile::new(
        "returns-label.pdf",
        "application/pdf",
        b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n".to_vec(),
    )
}

impl Default for AgentScript {
    fn default() -> Self {
        Self {
            queue_positions: 3,
            step: Duration::from_millis(400),
            wait_per_position_secs: 60,
            agent: "Ann".to_owned(),
            transfer_to: "Bob".to_owned(),
            greeting: "Hi, I'm Ann. How can I help?".to_owned(),
        }
    }
}

impl AgentScript {
    /// A fast script for tests: one queue step of `step`.
    pub fn quick(step: Duration) -> Self {
        Self { queue_positions: 2, step, ..Self::default() }
    }
}

/// Starts the scripted agent on `hub`: every conversation created from now on is served.
pub fn spawn(hub: Arc<Hub>, script: AgentScript) -> JoinHandle<()> {
    let mut changes = hub.subscribe();
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(Change::Created(conversation)) => {
                    tokio::spawn(serve(hub.clone(), script.clone(), conversation));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    })
}

async fn serve(hub: Arc<Hub>, script: AgentScript, conversation: Arc<Conversation>) {
    let mut changes = hub.subscribe();
    for position in (1..=script.queue_positions).rev() {
        hub.agent(
            &conversation,
            AgentAction::Queued {
                position: Some(position),
                wait_secs: Some(u64::from(position) * script.wait_per_position_secs),
            },
        );
        tokio::time::sleep(script.step).await;
    }
    if hub.agent(&conversation, AgentAction::Joined { agent: script.agent.clone() }).is_none() {
        return;
    }
    tokio::time::sleep(script.step).await;
    // What the customer side sent while the request waited (the transcript) is read, not answered.
    let mut changes_after_join = {
        while changes.try_recv().is_ok() {}
        changes
    };
    let mut agent = script.agent.clone();
    hub.agent(&conversation, AgentAction::Message { agent: agent.clone(), text: script.greeting.clone() });
    loop {
        let change = match changes_after_join.recv().await {
            Ok(change) => change,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let Change::Customer(c, action) = change else { continue };
        if c.id != conversation.id {
            continue;
        }
        let text = match action {
            CustomerAction::Message { text } => text,
            CustomerAction::Closed => return,
            CustomerAction::Typing { .. } => continue,
            CustomerAction::File { name, .. } => {
                hub.agent(
                    &conversation,
                    AgentAction::File {
                        agent: agent.clone(),
                        file: reply_file(),
                        caption: Some(format!("Thanks for {name}. Here is your returns label.")),
                    },
                );
                continue;
            }
        };
        let lower = text.to_lowercase();
        if lower.contains("bye") {
            hub.agent(&conversation, AgentAction::Message { agent: agent.clone(), text: "Goodbye!".to_owned() });
            hub.agent(&conversation, AgentAction::Ended);
            return;
        }
        if lower.contains("transfer") {
            hub.agent(&conversation, AgentAction::Left { agent: agent.clone(), transfer: true });
            tokio::time::sleep(script.step).await;
            agent = script.transfer_to.clone();
            hub.agent(&conversation, AgentAction::Joined { agent: agent.clone() });
            hub.agent(
                &conversation,
                AgentAction::Message {
                    agent: agent.clone(),
                    text: format!("Hi, I'm {agent}. I'll take it from here."),
                },
            );
            continue;
        }
        hub.agent(&conversation, AgentAction::Typing { agent: agent.clone(), on: true });
        hub.agent(&conversation, AgentAction::Message { agent: agent.clone(), text: format!("You said: {text}") });
    }
}
