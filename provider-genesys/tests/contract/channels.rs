//! Conversations spread over notification channels: a channel holds 1000 topics, so past
//! `conversations_per_channel` a new channel (and socket) is opened, and a channel whose
//! conversations ended takes new ones by replacing its topic list.

use handover_core::{EndedBy, Event, Provider, Session};
use handover_emulator::model::AgentAction;
use handover_testkit::emulated::PushSetup;
use handover_testkit::sample_request;
use handover_testkit::scenarios::events_until;
use handover_transport::ws::WsConfig;
use provider_genesys::{GenesysConfig, GenesysProvider};

use crate::harness::fast_retry;

async fn setup(per_channel: usize) -> PushSetup<GenesysProvider> {
    PushSetup::start("genesys", move |mut config: GenesysConfig| {
        config.conversations_per_channel = per_channel;
        let ws = WsConfig::default().with_reconnect(fast_retry().with_max_attempts(20));
        GenesysProvider::builder(config).ws(ws).retry(fast_retry()).build().unwrap()
    })
    .await
}

fn counter(setup: &PushSetup<GenesysProvider>, name: &str) -> u64 {
    setup.emulator.hub().counters().get(name).copied().unwrap_or(0)
}

fn channels(setup: &PushSetup<GenesysProvider>) -> u64 {
    counter(setup, "notification_channels")
}

/// Ends conversation `index` from the agent side and waits for the session to see it.
async fn agent_ends(setup: &PushSetup<GenesysProvider>, index: usize, session: &mut Session) {
    let hub = setup.emulator.hub();
    let conversation = hub.conversation(index).await;
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".to_owned() });
    hub.agent(&conversation, AgentAction::Ended);
    let events = events_until(session.events(), |e| matches!(e, Event::Ended { .. })).await;
    assert!(events.iter().any(|e| matches!(e, Event::AgentJoined { .. })), "conversation {index}: {events:?}");
    assert!(matches!(events.last(), Some(Event::Ended { by: EndedBy::Agent, .. })), "conversation {index}: {events:?}");
}

#[tokio::test]
async fn conversations_past_a_channels_share_open_another_and_every_end_is_seen() {
    let setup = setup(2).await;
    let mut sessions = Vec::new();
    for _ in 0..5 {
        sessions.push(setup.provider.start(sample_request()).await.unwrap());
    }
    assert_eq!(channels(&setup), 3, "five conversations, two per channel");
    for (index, session) in sessions.iter_mut().enumerate() {
        agent_ends(&setup, index, session).await;
    }
}

#[tokio::test]
async fn a_channel_whose_conversations_ended_takes_new_ones() {
    let setup = setup(2).await;
    let mut first = setup.provider.start(sample_request()).await.unwrap();
    let mut second = setup.provider.start(sample_request()).await.unwrap();
    agent_ends(&setup, 0, &mut first).await;
    agent_ends(&setup, 1, &mut second).await;
    drop((first, second));
    // The channel's topic list holds the two ended conversations: the next one replaces it
    // instead of passing the limit or opening a channel.
    // (The channel's creation already put its first topic list.)
    let replaced = counter(&setup, "notification_topic_replacements");
    let mut third = setup.provider.start(sample_request()).await.unwrap();
    assert_eq!(channels(&setup), 1);
    assert_eq!(counter(&setup, "notification_topic_replacements"), replaced + 1);
    agent_ends(&setup, 2, &mut third).await;
}

#[tokio::test]
async fn a_per_channel_count_out_of_range_is_a_config_error() {
    for count in [0, 334] {
        let config: GenesysConfig = serde_json::from_value(serde_json::json!({
            "client_id": "id", "client_secret": "secret", "integration_id": "integration",
            "webhook_secret": "hook", "region": "mypurecloud.de", "conversations_per_channel": count,
        }))
        .unwrap();
        let error = GenesysProvider::new(config).err().expect("refused");
        assert!(error.to_string().contains("conversations_per_channel"), "{error}");
        assert!(error.to_string().contains("1 to 333"), "{error}");
    }
}
