//! One handover on the instance that owns it: the provider session, the node's rules, and
//! every step committed to the store before anything it carries is considered done.
//!
//! A step is one agent-side event (with whatever else the stream has ready), one bot input,
//! one webhook delivery, or a due queue report. Its outputs, the provider's snapshot and the
//! node's state commit together, fenced by the lease's epoch: a takeover never sees half a
//! step, and a stale owner writes nothing. What a crash between a send and its commit
//! repeats, the provider deduplicates by the client id derived from the input's id
//! (DESIGN.md §7.2).

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use handover::node::{NodeInput, NodeMachine, NodeOutput, NodeState};
use handover::{
    EndReason, ErrorKind, Event, EventStream, HandoverRequest, HandoverStatus, Inbound, Provider, SessionHandle,
    SessionSnapshot, UserInput,
};
use handover_store::{
    Commit, ConversationKey, HandoverRecord, HandoverState, Lease, NewEvent, StoreError, StoredEvent,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::app::App;
use crate::callbacks::{self, CallbackSpec};

/// What the service keeps of a handover's request (sealed at rest: the callback secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub(crate) request: HandoverRequest,
    pub(crate) node: handover::config::NodeKeys,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) callback: Option<CallbackSpec>,
}

/// A bot input as kept in the outbox: a node input (the CLI protocol's), or one the node
/// does not rule on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Input {
    /// The user is (not) typing: relayed as is.
    Typing { on: bool },
    /// `DELETE /v1/handovers/{id}`: the bot closes the handover.
    Close,
    /// Message, intent, button, connected, disconnected.
    #[serde(untagged)]
    Node(NodeInput),
}

/// The outbox id of `DELETE`'s close (bot input ids are kept as `in:<id>`).
pub(crate) const CLOSE_INPUT_ID: &str = "close";

/// Why a runner stopped.
#[derive(Debug, PartialEq, Eq)]
enum Exit {
    /// The handover ended; its status is in the log.
    Ended,
    /// The instance drains: the state is saved, the lease is to be released.
    Drained,
    /// The lease is gone: stop writing, end nothing.
    Lost,
}

/// Runs handover `lease.handover_id` while this instance holds its lease.
/// `known`: the record, when the caller has it (a handover just created).
pub(crate) async fn run(
    app: Arc<App>,
    lease: Lease,
    known: Option<HandoverRecord>,
    work: Arc<Notify>,
    lost: CancellationToken,
) {
    let span = tracing::info_span!(
        "handover",
        handover = %lease.handover_id,
        instance = %app.config.instance_id,
        epoch = lease.epoch,
        provider = tracing::field::Empty,
    );
    run_owned(app, lease, known, work, lost).instrument(span).await;
}

async fn run_owned(
    app: Arc<App>,
    lease: Lease,
    known: Option<HandoverRecord>,
    work: Arc<Notify>,
    lost: CancellationToken,
) {
    let record = match known {
        Some(record) => record,
        None => match app.store.get(&lease.handover_id).await {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "could not read the handover; its lease expires and a peer takes it");
                return;
            }
        },
    };
    tracing::Span::current().record("provider", record.provider.as_str());
    let spec: Spec = match serde_json::from_value(record.spec.clone()) {
        Ok(spec) => spec,
        Err(error) => {
            tracing::error!(%error, "the stored request is unreadable; ending the handover");
            let status = error_status(format!("the stored request is unreadable: {error}"));
            let _ = end_without_session(&app, &lease, &record, status).await;
            release(&app, &lease).await;
            return;
        }
    };
    let callback = match (&spec.callback, record.callback_pending) {
        (Some(callback), true) => Some(tokio::spawn(
            callbacks::run(app.clone(), lease.clone(), callback.clone(), lost.clone()).in_current_span(),
        )),
        _ => None,
    };
    let exit = if record.state == HandoverState::Ended {
        Exit::Ended
    } else {
        let state = record.state;
        app.metrics.handovers(&record.provider, state.as_str(), 1.0);
        let mut runner = Runner::new(app.clone(), lease.clone(), lost.clone(), record, spec);
        let exit = runner.drive(&work).await;
        app.metrics.handovers(&runner.record.provider, runner.state.as_str(), -1.0);
        exit
    };
    match exit {
        Exit::Lost => {
            if let Some(callback) = callback {
                callback.abort();
            }
        }
        Exit::Drained => {
            if let Some(callback) = callback {
                let _ = callback.await;
            }
            release(&app, &lease).await;
        }
        Exit::Ended => {
            // The owner keeps the lease until the bot's endpoint has every event (or the
            // callback failed for good); a drain hands that over to a peer.
            if let Some(callback) = callback {
                let _ = callback.await;
            }
            if !lost.is_cancelled() {
                release(&app, &lease).await;
            }
        }
    }
}

async fn release(app: &App, lease: &Lease) {
    match app.store.release(lease).await {
        Ok(()) => {}
        Err(error) if error.is_fenced() => app.metrics.fenced(),
        Err(error) => tracing::warn!(%error, "could not release the lease; it expires by itself"),
    }
}

fn error_status(message: String) -> HandoverStatus {
    HandoverStatus::Error { reason: handover::ErrorReason::Error, message }
}

/// Ends a handover whose session cannot be had (its request unreadable, its provider
/// configuration gone): the status event and the status.
async fn end_without_session(
    app: &App,
    lease: &Lease,
    record: &HandoverRecord,
    status: HandoverStatus,
) -> Result<(), StoreError> {
    let event = NewEvent::new(serde_json::to_value(NodeOutput::Status { status: status.clone() })?);
    app.store.commit(lease, Commit::new().event(event).status(serde_json::to_value(&status)?)).await?;
    app.metrics.ended(&record.provider, status.as_str());
    Ok(())
}

/// An output and the provider's id of what it relays (for the log's deduplication).
type Output = (Option<String>, NodeOutput);

struct Runner {
    app: Arc<App>,
    lease: Lease,
    lost: CancellationToken,
    record: HandoverRecord,
    spec: Spec,
    state: HandoverState,
    /// Deliveries the session could not take yet: not retried before new work comes.
    stalled: bool,
    /// A session snapshot taken before the events still buffered in the stream were read:
    /// the next commit carries it with those events. A snapshot taken after them could
    /// count as handled an event still waiting in the stream, and a takeover from it would
    /// lose that event.
    early_snapshot: Option<Vec<u8>>,
}

impl Runner {
    fn new(app: Arc<App>, lease: Lease, lost: CancellationToken, record: HandoverRecord, spec: Spec) -> Self {
        let state = record.state;
        Self { app, lease, lost, record, spec, state, stalled: false, early_snapshot: None }
    }

    async fn drive(&mut self, work: &Notify) -> Exit {
        let Some(provider) = self.app.providers.get(&self.record.provider).cloned() else {
            let status = error_status(format!(
                "the provider configuration `{}` is not configured on instance `{}`",
                self.record.provider, self.app.config.instance_id
            ));
            tracing::error!("{}", status_message(&status));
            return self.finish_without_session(status).await;
        };
        let node = match self.spec.node.to_config() {
            Ok(node) => node,
            Err(message) => return self.finish_without_session(error_status(message)).await,
        };
        let state: NodeState =
            self.record.node_state.clone().and_then(|value| serde_json::from_value(value).ok()).unwrap_or_default();
        let mut machine = NodeMachine::new(node, state);
        let (handle, mut events) = match self.record.snapshot.clone() {
            Some(bytes) => match self.resume(provider.as_ref(), &bytes).await {
                Ok(parts) => parts,
                Err(status) => return self.finish(&machine, None, Vec::new(), status).await,
            },
            None => match self.start(provider.as_ref(), &mut machine).await {
                Ok(parts) => parts,
                Err(Some(status)) => return self.finish(&machine, None, Vec::new(), status).await,
                Err(None) => return Exit::Lost,
            },
        };
        machine.attach(&handle);
        loop {
            let due = machine.next_due();
            tokio::select! {
                biased;
                () = self.lost.cancelled() => return Exit::Lost,
                () = self.app.draining.cancelled() => {
                    // Saved with every event the session has put in the stream so far.
                    self.early_snapshot = snapshot_bytes(&handle);
                    let mut items = Vec::new();
                    collect_ready(&mut events, &mut items);
                    return self.on_items(&mut machine, &handle, items, None).await.unwrap_or(Exit::Drained);
                }
                item = events.recv() => {
                    let received = Instant::now();
                    self.early_snapshot = snapshot_bytes(&handle);
                    let mut items = vec![item];
                    collect_ready(&mut events, &mut items);
                    if let Some(exit) = self.on_items(&mut machine, &handle, items, None).await {
                        return exit;
                    }
                    self.app.metrics.event_commit(received.elapsed());
                }
                () = work.notified() => {
                    self.stalled = false;
                    if let Some(exit) = self.inputs(&mut machine, &handle).await {
                        return exit;
                    }
                    if let Some(exit) = self.deliveries(provider.as_ref(), &mut machine, &handle, &mut events).await {
                        return exit;
                    }
                }
                () = sleep_until(due) => {
                    let mut out = Vec::new();
                    machine.on_due(Instant::now(), &mut out);
                    let outputs = out.into_iter().map(|o| (None, o)).collect();
                    let commit = self.commit_for(&machine, &handle, outputs);
                    if self.write(commit).await.is_err() {
                        return Exit::Lost;
                    }
                }
            }
        }
    }

    /// Starts the provider session: `Err(Some(status))` when the provider refused,
    /// `Err(None)` when the lease was lost meanwhile.
    async fn start(
        &mut self,
        provider: &dyn Provider,
        machine: &mut NodeMachine,
    ) -> Result<(SessionHandle, EventStream), Option<HandoverStatus>> {
        // A drain lets a start finish (the conversation may exist at the contact center
        // already); only losing the lease abandons it.
        let started = Instant::now();
        let session = tokio::select! {
            () = self.lost.cancelled() => return Err(None),
            session = provider.start(self.spec.request.clone()) => session,
        };
        self.app.metrics.provider_call(&self.record.provider, "start", session.is_ok(), started.elapsed());
        let session = match session {
            Ok(session) => session,
            Err(error) => {
                tracing::warn!(%error, "the contact center did not take the handover");
                return Err(Some(HandoverStatus::from_error(&error)));
            }
        };
        let (handle, events) = session.into_parts();
        machine.attach(&handle);
        let mut out = Vec::new();
        machine.accepted(&mut out);
        let mut commit = self.commit_for(machine, &handle, out.into_iter().map(|o| (None, o)).collect());
        if commit.state.is_none() {
            commit = commit.state(HandoverState::Queued);
        }
        if let Ok(snapshot) = handle.snapshot()
            && let Some(key) = snapshot.conversation_key()
        {
            commit = commit.conversation_key(ConversationKey::new(&self.record.provider, key));
        }
        if self.write(commit).await.is_err() {
            // Another instance owns it now and will start it again: end this one.
            let _ = handover::node::abandon(&handle, handover::node::interrupted()).await;
            return Err(None);
        }
        tracing::info!("the contact center took the handover");
        Ok((handle, events))
    }

    async fn resume(
        &mut self,
        provider: &dyn Provider,
        bytes: &[u8],
    ) -> Result<(SessionHandle, EventStream), HandoverStatus> {
        let snapshot: SessionSnapshot = serde_json::from_slice(bytes)
            .map_err(|e| error_status(format!("the stored session snapshot is unreadable: {e}")))?;
        let started = Instant::now();
        let resumed = provider.resume(snapshot.clone()).await;
        self.app.metrics.provider_call(&self.record.provider, "resume", resumed.is_ok(), started.elapsed());
        match resumed {
            Ok(session) => {
                tracing::info!("resumed the session");
                Ok(session.resumed_from(&snapshot).into_parts())
            }
            Err(error) => {
                tracing::warn!(%error, "the session could not be resumed");
                Err(HandoverStatus::from_error(&error))
            }
        }
    }

    /// Items of the event stream (and maybe a consumed delivery): one commit.
    async fn on_items(
        &mut self,
        machine: &mut NodeMachine,
        handle: &SessionHandle,
        items: Vec<Option<handover::Result<Event>>>,
        consumed: Option<i64>,
    ) -> Option<Exit> {
        let mut outputs = Vec::new();
        let mut status = None;
        for item in items {
            let event_id = match &item {
                Some(Ok(Event::AgentMessage { id, .. })) => Some(format!("agent:{id}")),
                _ => None,
            };
            let mut out = Vec::new();
            status = machine.on_stream_item(item, &mut out);
            outputs.extend(out.into_iter().map(|o| {
                let id = matches!(o, NodeOutput::AgentMessage { .. }).then(|| event_id.clone()).flatten();
                (id, o)
            }));
            if status.is_some() {
                break;
            }
        }
        if let Some(status) = status {
            return Some(self.finish_with(machine, Some(handle), outputs, status, consumed).await);
        }
        let mut commit = self.commit_for(machine, handle, outputs);
        if let Some(row) = consumed {
            commit = commit.consume(row);
        }
        self.write(commit).await.err().map(|()| Exit::Lost)
    }

    /// Sends the bot's kept inputs, in order, each committed as sent with what it caused.
    async fn inputs(&mut self, machine: &mut NodeMachine, handle: &SessionHandle) -> Option<Exit> {
        let inputs = match self.app.store.inputs(&self.lease.handover_id).await {
            Ok(inputs) => inputs,
            Err(error) => {
                tracing::warn!(%error, "could not read the bot's inputs; retrying on the next poll");
                return None;
            }
        };
        for kept in inputs {
            if self.lost.is_cancelled() {
                return Some(Exit::Lost);
            }
            let mut out = Vec::new();
            let status = match serde_json::from_value::<Input>(kept.payload) {
                Ok(input) => self.send(machine, handle, input, &mut out).await,
                Err(error) => {
                    out.push(NodeOutput::InputRejected { reason: format!("unreadable input: {error}"), id: None });
                    None
                }
            };
            let outputs: Vec<Output> = out.into_iter().map(|o| (None, o)).collect();
            if let Some(status) = status {
                let exit = self.finish_sent(machine, handle, outputs, status, &kept.input_id).await;
                return Some(exit);
            }
            let commit = self.commit_for(machine, handle, outputs).sent(kept.input_id);
            if self.write(commit).await.is_err() {
                return Some(Exit::Lost);
            }
        }
        None
    }

    async fn send(
        &mut self,
        machine: &mut NodeMachine,
        handle: &SessionHandle,
        input: Input,
        out: &mut Vec<NodeOutput>,
    ) -> Option<HandoverStatus> {
        let started = Instant::now();
        let (operation, status) = match input {
            Input::Typing { on } => {
                match handle.send(UserInput::Typing { on }).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == ErrorKind::Unsupported => {
                        tracing::debug!(%error, "this provider carries no typing indicator");
                    }
                    Err(error) => tracing::debug!(%error, "the typing indicator was not delivered"),
                }
                ("typing", None)
            }
            Input::Close => {
                let status = match handle.end(EndReason::Closed).await {
                    Ok(()) => HandoverStatus::Completed,
                    Err(error) if error.kind() == ErrorKind::SessionEnded => HandoverStatus::Completed,
                    Err(error) => {
                        tracing::warn!(%error, "the conversation could not be closed at the contact center");
                        HandoverStatus::from_error(&error)
                    }
                };
                ("end", Some(status))
            }
            Input::Node(input) => ("send", machine.on_input(handle, input, out).await),
        };
        let failed = out.iter().any(|o| matches!(o, NodeOutput::InputRejected { .. }))
            || matches!(status, Some(HandoverStatus::Error { .. }));
        self.app.metrics.provider_call(&self.record.provider, operation, !failed, started.elapsed());
        status
    }

    /// Applies the kept webhook deliveries of this handover, oldest first: each is handed
    /// to the session, which emits what it causes; those events commit with the delivery
    /// marked applied.
    async fn deliveries(
        &mut self,
        provider: &dyn Provider,
        machine: &mut NodeMachine,
        handle: &SessionHandle,
        events: &mut EventStream,
    ) -> Option<Exit> {
        loop {
            if self.stalled {
                return None;
            }
            let rows = match self.app.store.deliveries(&self.lease.handover_id, 32).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(%error, "could not read the inbox; retrying on the next poll");
                    return None;
                }
            };
            if rows.is_empty() {
                return None;
            }
            for row in rows {
                let received_at_ms = row.received_at_ms;
                let inbound = Inbound::new(row.conversation_key, row.delivery_id, row.payload);
                let mut items = Vec::new();
                let started = Instant::now();
                let applied = {
                    let apply = provider.apply(inbound);
                    tokio::pin!(apply);
                    loop {
                        tokio::select! {
                            applied = &mut apply => break applied,
                            // The session may emit while it applies: keep reading.
                            item = events.recv(), if !events.is_terminated() => items.push(item),
                            () = self.lost.cancelled() => return Some(Exit::Lost),
                        }
                    }
                };
                collect_ready(events, &mut items);
                self.app.metrics.provider_call(&self.record.provider, "apply", applied.is_ok(), started.elapsed());
                match applied {
                    Ok(applied) if !applied.is_done() => {
                        tracing::debug!("the session cannot take deliveries yet; they wait for the next work");
                        self.stalled = true;
                        if !items.is_empty() {
                            return self.on_items(machine, handle, items, None).await;
                        }
                        return None;
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "a kept delivery could not be applied; dropping it"),
                }
                let now_ms = unix_ms();
                if let Ok(lag) = u64::try_from(now_ms - received_at_ms) {
                    self.app.metrics.inbox_lag(&self.record.provider, Duration::from_millis(lag));
                }
                if let Some(exit) = self.on_items(machine, handle, items, Some(row.id)).await {
                    return Some(exit);
                }
            }
        }
    }

    /// A commit of `outputs` with the snapshot, the node's state and the state they lead to.
    fn commit_for(&mut self, machine: &NodeMachine, handle: &SessionHandle, outputs: Vec<Output>) -> Commit {
        let mut commit = Commit::new();
        for (id, output) in outputs {
            let Ok(body) = serde_json::to_value(&output) else { continue };
            commit = commit.event(match id {
                Some(id) => NewEvent::with_id(id, body),
                None => NewEvent::new(body),
            });
        }
        if let Some(bytes) = self.early_snapshot.take().or_else(|| snapshot_bytes(handle)) {
            commit = commit.snapshot(bytes);
        }
        if let Ok(state) = serde_json::to_value(machine.state()) {
            commit = commit.node_state(state);
        }
        if machine.is_active() && self.state != HandoverState::Active {
            commit = commit.state(HandoverState::Active);
        }
        commit
    }

    /// Commits, retrying while the store is unreachable and the lease is still ours.
    /// `Err(())`: the lease is gone (fenced, or lost meanwhile).
    async fn write(&mut self, commit: Commit) -> Result<(), ()> {
        let next_state = commit.state;
        let mut delay = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match self.app.store.commit(&self.lease, commit.clone()).await {
                Ok(committed) => {
                    self.app.metrics.commit(started.elapsed());
                    // Readers on this instance take what was appended from here.
                    let events = commit
                        .events
                        .iter()
                        .zip(&committed.seqs)
                        .filter_map(|(event, seq)| {
                            seq.map(|seq| {
                                StoredEvent::new(seq, event.event_id.clone(), event.body.clone(), committed.at_ms)
                            })
                        })
                        .collect::<Vec<_>>();
                    if !events.is_empty() {
                        self.app.log_hints.publish(&self.lease.handover_id, events);
                    }
                    break;
                }
                Err(error) if error.is_fenced() => {
                    tracing::info!("another instance took the handover over; stopping without ending it");
                    self.app.metrics.fenced();
                    self.lost.cancel();
                    return Err(());
                }
                Err(error) => {
                    tracing::warn!(%error, "could not write to the store; retrying while the lease lasts");
                    tokio::select! {
                        () = self.lost.cancelled() => return Err(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        if let Some(state) = next_state
            && state != self.state
        {
            self.app.metrics.handovers(&self.record.provider, self.state.as_str(), -1.0);
            self.app.metrics.handovers(&self.record.provider, state.as_str(), 1.0);
            self.state = state;
        }
        Ok(())
    }

    async fn finish(
        &mut self,
        machine: &NodeMachine,
        handle: Option<&SessionHandle>,
        outputs: Vec<Output>,
        status: HandoverStatus,
    ) -> Exit {
        self.finish_with(machine, handle, outputs, status, None).await
    }

    async fn finish_sent(
        &mut self,
        machine: &NodeMachine,
        handle: &SessionHandle,
        outputs: Vec<Output>,
        status: HandoverStatus,
        input_id: &str,
    ) -> Exit {
        let (commit, status) = self.final_commit(machine, Some(handle), outputs, status);
        self.write_final(commit.sent(input_id), &status).await
    }

    async fn finish_with(
        &mut self,
        machine: &NodeMachine,
        handle: Option<&SessionHandle>,
        outputs: Vec<Output>,
        status: HandoverStatus,
        consumed: Option<i64>,
    ) -> Exit {
        let (mut commit, status) = self.final_commit(machine, handle, outputs, status);
        if let Some(row) = consumed {
            commit = commit.consume(row);
        }
        self.write_final(commit, &status).await
    }

    fn final_commit(
        &mut self,
        machine: &NodeMachine,
        handle: Option<&SessionHandle>,
        mut outputs: Vec<Output>,
        status: HandoverStatus,
    ) -> (Commit, HandoverStatus) {
        let mut out = Vec::new();
        let outcome = machine.finish(status, &mut out);
        outputs.extend(out.into_iter().map(|o| (None, o)));
        let mut commit = match handle {
            Some(handle) => self.commit_for(machine, handle, outputs),
            None => {
                let mut commit = Commit::new();
                for (_, output) in outputs {
                    if let Ok(body) = serde_json::to_value(&output) {
                        commit = commit.event(NewEvent::new(body));
                    }
                }
                commit
            }
        };
        if let Ok(value) = serde_json::to_value(&outcome.status) {
            commit = commit.status(value);
        }
        (commit, outcome.status)
    }

    async fn write_final(&mut self, commit: Commit, status: &HandoverStatus) -> Exit {
        if self.write(commit).await.is_err() {
            return Exit::Lost;
        }
        self.app.metrics.ended(&self.record.provider, status.as_str());
        tracing::info!(status = status.as_str(), "the handover ended");
        Exit::Ended
    }

    async fn finish_without_session(&mut self, status: HandoverStatus) -> Exit {
        let machine = NodeMachine::new(handover::node::NodeConfig::default(), NodeState::default());
        self.finish(&machine, None, Vec::new(), status).await
    }
}

fn status_message(status: &HandoverStatus) -> &str {
    match status {
        HandoverStatus::Error { message, .. } => message,
        _ => status.as_str(),
    }
}

/// The session's snapshot as stored, if it can take one now.
fn snapshot_bytes(handle: &SessionHandle) -> Option<Vec<u8>> {
    match handle.snapshot().and_then(|s| {
        serde_json::to_vec(&s)
            .map_err(|e| handover::Error::new(ErrorKind::Protocol, "handover-server", "snapshot", e.to_string()))
    }) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::debug!(%error, "no snapshot this step");
            None
        }
    }
}

/// Takes every item the stream has ready, until the first moment it has none: a burst
/// commits at once, and a commit carries all that a snapshot taken before it may count as
/// handled.
fn collect_ready(events: &mut EventStream, items: &mut Vec<Option<handover::Result<Event>>>) {
    while !events.is_terminated() {
        match events.recv().now_or_never() {
            Some(item) => {
                let end = item.is_none();
                items.push(item);
                if end {
                    break;
                }
            }
            None => break,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Wall-clock Unix milliseconds (for lags against the store's timestamps).
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_inputs_read_as_the_cli_protocol_plus_typing_and_close() {
        let cases = [
            (
                serde_json::json!({ "type": "message", "text": "hi", "id": "m-1" }),
                Input::Node(NodeInput::Message { text: "hi".into(), id: Some("m-1".into()) }),
            ),
            (
                serde_json::json!({ "type": "intent", "name": "stop" }),
                Input::Node(NodeInput::Intent { name: "stop".into() }),
            ),
            (serde_json::json!({ "type": "connected" }), Input::Node(NodeInput::Connected)),
            (serde_json::json!({ "type": "typing", "on": true }), Input::Typing { on: true }),
            (serde_json::json!({ "type": "close" }), Input::Close),
        ];
        for (json, input) in cases {
            assert_eq!(serde_json::to_value(&input).unwrap(), json);
            assert_eq!(serde_json::from_value::<Input>(json).unwrap(), input);
        }
        assert!(serde_json::from_value::<Input>(serde_json::json!({ "type": "dance" })).is_err());
    }
}
