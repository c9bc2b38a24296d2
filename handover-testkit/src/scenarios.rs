//! The contract scenarios. Each is a generic async function run by [`contract_suite!`]
//! as one named test per provider.
//!
//! [`contract_suite!`]: crate::contract_suite

#![allow(clippy::print_stderr)]

use std::time::Duration;

use handover_core::{EndReason, EndedBy, Error, ErrorKind, Event, EventStream, Session, UserInput};

use crate::harness::Harness;

/// The longest a scenario waits for one expected event. A guard against hangs, not a
/// timing assertion: providers answer loopback emulators in milliseconds.
pub const GUARD: Duration = Duration::from_secs(20);

/// The next item of the stream, failing the test on a hang, an error or the end.
pub async fn next_event(stream: &mut EventStream) -> Event {
    match tokio::time::timeout(GUARD, stream.recv()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("the event stream failed: {error}"),
        Ok(None) => panic!("the event stream ended unexpectedly"),
        Err(_) => panic!("no event within {GUARD:?}"),
    }
}

/// Events up to and including the first that matches `until`.
pub async fn events_until(stream: &mut EventStream, until: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = next_event(stream).await;
        let done = until(&event);
        events.push(event);
        if done {
            return events;
        }
    }
}

/// Asserts that the stream has ended (`None`), guarding against a hang.
pub async fn assert_stream_ended(stream: &mut EventStream) {
    match tokio::time::timeout(GUARD, stream.recv()).await {
        Ok(None) => {}
        Ok(Some(item)) => panic!("expected the stream to end, got {item:?}"),
        Err(_) => panic!("the stream did not end within {GUARD:?}"),
    }
}

fn is_message(text: &str) -> impl Fn(&Event) -> bool + '_ {
    move |event| matches!(event, Event::AgentMessage { text: t, .. } if t == text)
}

/// The texts of the agent messages among `events`.
pub fn message_texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::AgentMessage { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

async fn start<H: Harness>(harness: &H) -> Session {
    match tokio::time::timeout(GUARD, harness.provider().start(harness.request())).await {
        Ok(Ok(session)) => session,
        Ok(Err(error)) => panic!("start failed: {error}"),
        Err(_) => panic!("start did not finish within {GUARD:?}"),
    }
}

async fn join<H: Harness>(harness: &H, session: &mut Session, name: &str) {
    harness.agent_joins(name).await;
    let caps = harness.provider().info().capabilities;
    if caps.participant_change() {
        let events = events_until(session.events(), |e| matches!(e, Event::AgentJoined { .. })).await;
        let Some(Event::AgentJoined { agent }) = events.last() else { unreachable!() };
        assert_eq!(agent.name.as_deref(), Some(name), "the joined agent's name");
    }
}

/// The request reaches the contact center with the transcript readable by the agent.
pub async fn start_delivers_the_transcript<H: Harness>() {
    let harness = H::setup().await;
    let session = start(&harness).await;
    let request = harness.request();
    let texts = harness.customer_texts(1).await.concat();
    for entry in &request.transcript {
        assert!(texts.contains(&entry.text), "the agent side should see transcript line {:?} in {texts:?}", entry.text);
    }
    assert!(!session.handle().info().name.is_empty());
}

/// Agent messages arrive in order, each exactly once, also when the provider delivers one
/// twice.
pub async fn agent_messages_arrive_in_order_exactly_once<H: Harness>() {
    let harness = H::setup().await;
    let mut session = start(&harness).await;
    join(&harness, &mut session, "Ann").await;
    for text in ["first", "second", "third — ✓"] {
        harness.agent_says("Ann", text).await;
    }
    assert!(harness.redeliver_last().await, "every provider can be handed a repeated delivery");
    harness.agent_says("Ann", "sentinel").await;
    let events = events_until(session.events(), is_message("sentinel")).await;
    assert_eq!(message_texts(&events), ["first", "second", "third — ✓", "sentinel"]);
    for event in &events {
        if let Event::AgentMessage { agent, .. } = event {
            assert_eq!(agent.name.as_deref(), Some("Ann"));
        }
    }
}

/// A user message reaches the agent side.
pub async fn user_messages_reach_the_agent<H: Harness>() {
    let harness = H::setup().await;
    let mut session = start(&harness).await;
    join(&harness, &mut session, "Ann").await;
    let before = harness.customer_texts(0).await.len();
    session.send(UserInput::message("u-1", "Hello from the user — 你好")).await.expect("send succeeds");
    session.send(UserInput::message("u-2", "second line")).await.expect("send succeeds");
    let texts = harness.customer_texts(before + 2).await;
    assert_eq!(&texts[before..], ["Hello from the user — 你好", "second line"]);
}

/// The agent ending the conversation ends the stream with `Ended { by: Agent }`.
pub async fn agent_end_ends_the_stream<H: Harness>() {
    let harness = H::setup().await;
    let mut session = start(&harness).await;
    join(&harness, &mut session, "Ann").await;
    harness.agent_says("Ann", "bye").await;
    harness.agent_ends().await;
    let events = events_until(session.events(), Event::is_terminal).await;
    assert_eq!(message_texts(&events), ["bye"]);
    assert!(matches!(events.last(), Some(Event::Ended { by: EndedBy::Agent, .. })), "{events:?}");
    assert_stream_ended(session.events()).await;
}

/// Ending from the bot side closes the conversation at the contact center and ends the
/// stream with `Ended { by: User }`; later sends are refused.
pub async fn bot_end_closes_the_conversation<H: Harness>() {
    let harness = H::setup().await;
    let mut session = start(&harness).await;
    session.end(EndReason::Cancelled).await.expect("end succeeds");
    assert!(harness.closed_by_customer().await);
    let events = events_until(session.events(), Event::is_terminal).await;
    assert!(matches!(events.last(), Some(Event::Ended { by: EndedBy::User, .. })), "{events:?}");
    assert_stream_ended(session.events()).await;
    let error = session.send(UserInput::message("late", "anyone there?")).await.expect_err("send after end");
    assert_eq!(error.kind(), ErrorKind::SessionEnded);
    // Ending twice is not an error.
    session.end(EndReason::Cancelled).await.expect("second end is a no-op");
}

/// Typing is relayed both ways where the API has it, and refused before any I/O where it
/// does not.
pub async fn typing_is_relayed_or_refused<H: Harness>() {
    let harness = H::setup().await;
    let mut session = start(&harness).await;
    join(&harness, &mut session, "Ann").await;
    let caps = harness.provider().info().capabilities;
    let sent = session.send(UserInput::Typing { on: true }).await;
    if caps.typing() {
        sent.expect("typing is supported");
    } else {
        assert_eq!(sent.expect_err("typing unsupported").kind(), ErrorKind::Unsupported);
    }
    if harness.agent_typing(true).await {
        harness.agent_says("Ann", "typed").await;
        let events = events_until(session.events(), is_message("typed")).await;
        assert!(events.contains(&Event::AgentTyping { on: true }), "{events:?}");
    } else {
        eprintln!("{}: the API does not report agent typing", harness.provider().info().name);
    }
}

/// Queue position and wait are reported where the API has them.
pub async fn queue_updates_are_reported<H: Harness>() {
    let harness = H::setup().await;
    let mut session = start(&harness).await;
    let caps = harness.provider().info().capabilities;
    let reported = harness.queue(Some(3), Some(Duration::from_secs(120))).await;
    if !(caps.queue_position() || caps.estimated_wait()) {
        assert!(!reported, "the harness can report queue data the provider claims not to support");
        return;
    }
    assert!(reported, "the provider claims queue data but the harness cannot report it");
    // A provider may report "queued" without data first (a status change), or a value read
    // before the harness changed the queue (polling providers): wait for the reported values.
    let want_position = caps.queue_position().then_some(3);
    let want_wait = caps.estimated_wait().then_some(Duration::from_secs(120));
    let events = events_until(session.events(), |e| {
        matches!(e, Event::Queued { position, estimated_wait }
            if (want_position.is_none() || *position == want_position)
                && (want_wait.is_none() || *estimated_wait == want_wait))
    })
    .await;
    assert!(matches!(events.last(), Some(Event::Queued { .. })));
}

/// A transfer shows as `AgentLeft { transfer: true }` and the handover goes on. Some APIs
/// report the transfer only once the next agent is in (Salesforce's `ChatTransferred`), so
/// the leave may come with the next join.
pub async fn transfer_is_not_an_end<H: Harness>() {
    let harness = H::setup().await;
    let mut session = start(&harness).await;
    let caps = harness.provider().info().capabilities;
    join(&harness, &mut session, "Ann").await;
    let transferred = harness.agent_transfers("Ann").await;
    if !caps.participant_change() {
        assert!(!transferred, "the provider claims no participant changes but the harness transfers");
        return;
    }
    assert!(transferred);
    harness.agent_joins("Bob").await;
    harness.agent_says("Bob", "Bob here").await;
    // Messages and participant changes may travel on separate channels (Genesys: webhook
    // and notifications socket): wait for both, in either order.
    let mut events = Vec::new();
    while !(events.iter().any(is_message("Bob here"))
        && events.iter().any(|e| matches!(e, Event::AgentJoined { agent } if agent.name.as_deref() != Some("Ann"))))
    {
        events.push(next_event(session.events()).await);
    }
    let left = events.iter().position(|e| matches!(e, Event::AgentLeft { transfer: true, .. }));
    let joined = events.iter().rposition(|e| matches!(e, Event::AgentJoined { .. }));
    assert!(
        matches!((left, joined), (Some(l), Some(j)) if l < j),
        "expected AgentLeft {{ transfer: true }} before Bob's AgentJoined in {events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::AgentLeft { transfer: false, .. })), "{events:?}");
    assert!(!events.iter().any(Event::is_terminal), "{events:?}");
    assert!(!session.events().is_terminated());
}

/// A snapshot taken mid-conversation resumes in a fresh session without repeating or
/// losing messages, including messages sent while no session was attached.
pub async fn snapshot_resumes_without_repeats<H: Harness>() {
    let harness = H::setup().await;
    let mut session = start(&harness).await;
    join(&harness, &mut session, "Ann").await;
    harness.agent_says("Ann", "before").await;
    events_until(session.events(), is_message("before")).await;
    let caps = harness.provider().info().capabilities;
    let snapshot = session.snapshot();
    if !caps.resume() {
        if let Ok(snapshot) = snapshot {
            let error = harness.provider().resume(snapshot).await.expect_err("resume unsupported");
            assert_eq!(error.kind(), ErrorKind::Unsupported);
        }
        return;
    }
    let snapshot = snapshot.expect("snapshot");
    let json = serde_json::to_string(&snapshot).expect("snapshots serialize");
    drop(session);
    harness.agent_says("Ann", "while away").await;
    let snapshot = serde_json::from_str(&json).expect("snapshots deserialize");
    let mut resumed = tokio::time::timeout(GUARD, harness.provider().resume(snapshot))
        .await
        .expect("resume within the guard")
        .expect("resume succeeds");
    harness.agent_says("Ann", "after").await;
    let events = events_until(resumed.events(), is_message("after")).await;
    assert_eq!(message_texts(&events), ["while away", "after"]);
}

/// A dropped inbound connection shows as `Reconnecting` then `Resumed`, and no message is
/// lost or repeated.
pub async fn dropped_connection_recovers<H: Harness>() {
    let harness = H::setup().await;
    let mut session = start(&harness).await;
    join(&harness, &mut session, "Ann").await;
    harness.agent_says("Ann", "before").await;
    events_until(session.events(), is_message("before")).await;
    if !harness.drop_connection().await {
        eprintln!(
            "{}: push provider, no inbound connection to drop; checking delivery goes on",
            harness.provider().info().name
        );
        harness.agent_says("Ann", "after").await;
        let events = events_until(session.events(), is_message("after")).await;
        assert_eq!(message_texts(&events), ["after"]);
        return;
    }
    harness.agent_says("Ann", "during").await;
    harness.agent_says("Ann", "after").await;
    let mut events = events_until(session.events(), is_message("after")).await;
    // `Resumed` may come before or after the back-filled messages (a provider knows whether
    // there is a gap only after back-filling).
    if !events.iter().any(|e| matches!(e, Event::Resumed { .. })) {
        events.extend(events_until(session.events(), |e| matches!(e, Event::Resumed { .. })).await);
    }
    let reconnecting = events.iter().position(|e| *e == Event::Reconnecting);
    let resumed = events.iter().position(|e| matches!(e, Event::Resumed { .. }));
    assert!(
        matches!((reconnecting, resumed), (Some(a), Some(b)) if a < b),
        "expected Reconnecting then Resumed in {events:?}"
    );
    assert_eq!(message_texts(&events), ["during", "after"]);
}

/// A message over the provider's limit is refused before any I/O with a clear error.
pub async fn oversized_messages_are_refused_before_io<H: Harness>() {
    let harness = H::setup().await;
    let mut session = start(&harness).await;
    join(&harness, &mut session, "Ann").await;
    let before = harness.customer_texts(0).await.len();
    let caps = harness.provider().info().capabilities;
    match caps.max_message_chars() {
        Some(max) => {
            let error =
                session.send(UserInput::message("big", "x".repeat(max + 1))).await.expect_err("oversized message");
            assert_eq!(error.kind(), ErrorKind::InvalidInput);
            assert!(error.to_string().contains(&max.to_string()), "{error}");
            session.send(UserInput::message("ok", "fits")).await.expect("a message within the limit");
            let texts = harness.customer_texts(before + 1).await;
            assert_eq!(&texts[before..], ["fits"], "nothing of the refused message was sent");
        }
        None => {
            let text = "y".repeat(10_000);
            session.send(UserInput::message("big", text.clone())).await.expect("no limit");
            let texts = harness.customer_texts(before + 1).await;
            assert_eq!(texts[before], text);
        }
    }
}

/// No secret appears in snapshot `Debug`, or in errors.
pub async fn secrets_stay_out_of_debug_and_errors<H: Harness>() {
    let harness = H::setup().await;
    let session = start(&harness).await;
    let mut outputs = vec![format!("{session:?}")];
    if let Ok(snapshot) = session.snapshot() {
        outputs.push(format!("{snapshot:?}"));
    }
    session.end(EndReason::Closed).await.expect("end");
    let error: Error = session.send(UserInput::message("late", "late")).await.expect_err("send after end");
    outputs.push(error.to_string());
    outputs.push(format!("{error:?}"));
    for secret in harness.secrets() {
        for output in &outputs {
            assert!(!output.contains(&secret), "a secret leaked into {output}");
        }
    }
}

/// A whole handover logged at TRACE (every span and field, the emulator's too) shows no
/// configured secret or issued token in any line.
pub async fn secrets_stay_out_of_trace_logs<H: Harness>() {
    let logs = crate::logs::capture();
    let harness = H::setup().await;
    let caps = harness.provider().info().capabilities;
    let mut session = start(&harness).await;
    join(&harness, &mut session, "Ann").await;
    harness.agent_says("Ann", "logged").await;
    events_until(session.events(), is_message("logged")).await;
    session.send(UserInput::message("u-1", "hello")).await.expect("send");
    if caps.typing() {
        session.send(UserInput::Typing { on: true }).await.expect("typing");
    }
    // Pre-signed file URLs carry their token in the query: it is a secret too.
    let mut url_secrets = Vec::new();
    let query = |url: &str| url.split_once('?').map(|(_, q)| q.to_owned());
    if caps.attachments_to_user() && harness.agent_sends_file("Ann", &crate::SampleFile::label(), None).await {
        let events = events_until(
            session.events(),
            |e| matches!(e, Event::AgentMessage { attachments, .. } if !attachments.is_empty()),
        )
        .await;
        if let Some(Event::AgentMessage { attachments, .. }) = events.last() {
            url_secrets.extend(attachments.iter().filter_map(|a| a.url_str().and_then(query)));
        }
    }
    if caps.attachment_links()
        && !caps.attachment_uploads()
        && let Some(url) = harness.host_file(&crate::SampleFile::invoice())
    {
        url_secrets.extend(query(&url));
        let file = crate::SampleFile::invoice();
        let link = handover_core::Attachment::url(file.name, file.media_type, url);
        session.send(UserInput::attachment("f-1", link)).await.expect("send a file URL");
        harness.customer_files(1).await;
    }
    let _ = session.snapshot();
    session.end(EndReason::Closed).await.expect("end");
    events_until(session.events(), Event::is_terminal).await;
    let lines = logs.contents();
    assert!(!lines.is_empty(), "nothing was logged at TRACE");
    for secret in harness.secrets().into_iter().chain(url_secrets) {
        if let Some(line) = lines.lines().find(|line| line.contains(&secret)) {
            panic!("a secret leaked into a log line: {line}");
        }
    }
}

/// After `Ended`, nothing more is delivered, even if the agent side keeps talking.
pub async fn nothing_is_delivered_after_the_end<H: Harness>() {
    let harness = H::setup().await;
    let mut session = start(&harness).await;
    join(&harness, &mut session, "Ann").await;
    harness.agent_ends().await;
    events_until(session.events(), Event::is_terminal).await;
    harness.agent_says("Ann", "too late").await;
    assert_stream_ended(session.events()).await;
}

/// A file crosses each way the provider claims (name, media type, size and content by
/// hash checked on the other side), and is refused before any I/O the ways it does not.
pub async fn attachments_cross_both_ways<H: Harness>() {
    use handover_core::Attachment;

    use crate::harness::{SampleFile, sha256_hex};

    let harness = H::setup().await;
    let mut session = start(&harness).await;
    join(&harness, &mut session, "Ann").await;
    let caps = harness.provider().info().capabilities;

    let invoice = SampleFile::invoice();
    let bytes = Attachment::bytes(invoice.name.clone(), invoice.media_type.clone(), invoice.data.clone());
    if caps.attachment_uploads() {
        if let Some(max) = caps.max_attachment_bytes() {
            let big = vec![0u8; usize::try_from(max + 1).expect("a limit that fits in memory")];
            let error = session
                .send(UserInput::attachment("too-big", Attachment::bytes("big.png", "image/png", big)))
                .await
                .expect_err("a file over the provider's limit");
            assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
            assert!(error.to_string().contains(&max.to_string()), "the error names the limit: {error}");
        }
        session.send(UserInput::attachment("file-1", bytes)).await.expect("the upload is sent");
    } else if caps.attachment_links() {
        let url = harness.host_file(&invoice).expect("a harness of a provider taking file URLs hosts files");
        let link = Attachment::url(invoice.name.clone(), invoice.media_type.clone(), url)
            .with_size(Some(invoice.data.len() as u64));
        session.send(UserInput::attachment("file-1", link)).await.expect("the file URL is sent");
    } else {
        let error = session.send(UserInput::attachment("file-1", bytes)).await.expect_err("no attachments");
        assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    }
    if caps.attachments_to_agent() {
        let files = harness.customer_files(1).await;
        assert_eq!(files, [invoice.received()], "the agent side received the file intact");
    }
    // Only whole files went out: the refused ones left nothing behind.
    let before = harness.customer_texts(0).await.len();
    session.send(UserInput::message("after-file", "sent after the file")).await.expect("a text after it");
    let texts = harness.customer_texts(before + 1).await;
    assert_eq!(texts.last().map(String::as_str), Some("sent after the file"));
    assert_eq!(harness.customer_files(0).await.len(), usize::from(caps.attachments_to_agent()));

    if caps.attachments_to_user() {
        let label = SampleFile::label();
        assert!(
            harness.agent_sends_file("Ann", &label, Some("Your returns label")).await,
            "the provider claims agent attachments: the harness must be able to send one"
        );
        let events = events_until(
            session.events(),
            |e| matches!(e, Event::AgentMessage { attachments, .. } if !attachments.is_empty()),
        )
        .await;
        let Some(Event::AgentMessage { text, attachments, .. }) = events.last() else { unreachable!() };
        assert_eq!(text, "Your returns label", "the caption travels as the message text");
        assert_eq!(attachments.len(), 1, "{attachments:?}");
        let file = &attachments[0];
        assert_eq!((file.name.as_str(), file.media_type.as_str()), (label.name.as_str(), label.media_type.as_str()));
        if let Some(size) = file.size {
            assert_eq!(size, label.data.len() as u64, "the declared size");
        }
        let url = file.url_str().expect("agent files arrive as URLs");
        let body = handover_transport::reqwest::get(url).await.expect("the file URL answers");
        assert!(body.status().is_success(), "the file URL answered {}", body.status());
        let data = body.bytes().await.expect("the file body");
        assert_eq!(sha256_hex(&data), sha256_hex(&label.data), "the file's content");
    }
    session.end(EndReason::Closed).await.expect("end");
}
