//! Signed callbacks: each event of a handover's log POSTed to the bot's URL, in `seq`
//! order, the next only after the previous got a 2xx, retried with backoff and jitter, and
//! signed as Standard Webhooks (DESIGN.md §7.3). The acknowledged `seq` and the retry
//! window live in the store, so the instance that owns the handover next goes on where
//! this one stopped.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use handover_store::{CallbackUpdate, Commit, HandoverState, Lease, StoredEvent};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::runner::unix_ms;

/// Where a handover's events go, and the secret they are signed with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CallbackSpec {
    pub(crate) url: String,
    /// `whsec_` + base64 of the HMAC key.
    pub(crate) secret: String,
}

impl fmt::Debug for CallbackSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackSpec").field("url", &self.url).finish_non_exhaustive()
    }
}

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64), or why it is not one.
pub(crate) fn secret_key(secret: &str) -> Result<Vec<u8>, &'static str> {
    let encoded = secret.strip_prefix("whsec_").ok_or("a callback secret starts with `whsec_`")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "a callback secret is `whsec_` followed by base64")?;
    if !(24..=64).contains(&key.len()) {
        return Err("a callback secret's key is 24 to 64 bytes (`whsec_` + base64 of 32 random bytes)");
    }
    Ok(key)
}

/// `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`.
pub(crate) fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        // HMAC takes keys of any length.
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// An event as the bot sees it: the node output with `handover_id` and `seq` added.
pub(crate) fn event_body(handover_id: &str, event: &StoredEvent) -> Value {
    let mut body = event.body.clone();
    if let Value::Object(map) = &mut body {
        map.insert("handover_id".to_owned(), Value::String(handover_id.to_owned()));
        map.insert("seq".to_owned(), Value::from(event.seq));
    }
    body
}

/// The retry window and where it stands (kept in the store's `callback_state`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Retrying {
    attempts: u32,
    first_failure_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

/// How long to wait before attempt `attempts + 1`: from 1 s doubling to 5 min, with the
/// upper half jittered so that many handovers retrying do not arrive together.
fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1u32 << attempts.saturating_sub(1).min(9));
    let capped = base.min(Duration::from_secs(300));
    capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
}

/// Sends handover `lease.handover_id`'s events to its callback until the endpoint has
/// every event of an ended handover, the callback fails for good, the lease is lost, or
/// the instance drains.
pub(crate) async fn run(app: Arc<App>, lease: Lease, spec: CallbackSpec, lost: CancellationToken) {
    let id = lease.handover_id.clone();
    let key = match secret_key(&spec.secret) {
        Ok(key) => key,
        Err(message) => {
            // Checked when the handover was created: only a store edited by hand gets here.
            tracing::error!(message, "the callback secret is unusable; the callback is marked failed");
            let state = json!({ "error": message });
            let _ = app.store.commit(&lease, Commit::new().callback(CallbackUpdate::failed(0, Some(state)))).await;
            return;
        }
    };
    let mut waiter = app.log_hints.subscribe(&id);
    let record = loop {
        match app.store.get(&id).await {
            Ok(Some(record)) => break record,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%error, "could not read the handover for its callback; retrying");
                if pause(&app, &lost, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    if !record.callback_pending {
        return;
    }
    let mut acked = record.callback_seq;
    // The status event is the log's last: once it is taken, the callback is done.
    let mut ended = record.state == HandoverState::Ended && acked >= record.last_seq;
    let mut retrying: Retrying = record.callback_state.and_then(|s| serde_json::from_value(s).ok()).unwrap_or_default();
    while !ended {
        if lost.is_cancelled() || app.draining.is_cancelled() {
            return;
        }
        let events = match waiter.take_after(acked) {
            Some(news) => news,
            None => match app.store.events(&id, acked, 100).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::debug!(%error, "could not read the log for the callback; retrying");
                    if pause(&app, &lost, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            },
        };
        if events.is_empty() {
            tokio::select! {
                () = lost.cancelled() => return,
                () = app.draining.cancelled() => return,
                () = waiter.wait(Duration::from_secs(1)) => {}
            }
            continue;
        }
        // Acknowledgements are recorded once per batch read (and before any wait), so a
        // burst costs one write; a crash in between resends those events with the same
        // `webhook-id`, which the bot deduplicates on.
        let mut recorded = acked;
        let mut state_change: Option<Value> = None;
        for event in events {
            loop {
                match post(&app, &spec.url, &key, &id, &event).await {
                    Ok(()) => {
                        app.metrics.callback("delivered");
                        if let Ok(lag) = u64::try_from(unix_ms() - event.created_at_ms) {
                            app.metrics.callback_lag(Duration::from_millis(lag));
                        }
                        if retrying.attempts > 0 {
                            state_change = Some(Value::Null);
                        }
                        retrying = Retrying::default();
                        acked = event.seq;
                        ended |= event.body.get("type").and_then(Value::as_str) == Some("status");
                        break;
                    }
                    Err(error) => {
                        app.metrics.callback("failed");
                        let now = unix_ms();
                        if retrying.attempts == 0 {
                            retrying.first_failure_ms = now;
                        }
                        retrying.attempts += 1;
                        retrying.last_error = Some(error.clone());
                        let window = app.config.callback_retry;
                        let spent = Duration::from_millis(u64::try_from(now - retrying.first_failure_ms).unwrap_or(0));
                        if spent >= window {
                            tracing::warn!(
                                attempts = retrying.attempts,
                                %error,
                                "the callback endpoint refused events for the whole retry window; the callback is \
                                 marked failed (events stay readable over SSE and long-poll)"
                            );
                            app.metrics.callback("gave_up");
                            let state = serde_json::to_value(&retrying).ok();
                            let _ = write(&app, &lease, &lost, CallbackUpdate::failed(acked, state)).await;
                            return;
                        }
                        tracing::debug!(attempts = retrying.attempts, %error, "the callback failed; retrying");
                        let state = serde_json::to_value(&retrying).ok();
                        if write(&app, &lease, &lost, CallbackUpdate::new(acked, state)).await.is_err() {
                            return;
                        }
                        recorded = acked;
                        state_change = None;
                        if pause(&app, &lost, backoff(retrying.attempts)).await {
                            return;
                        }
                    }
                }
            }
        }
        if (acked > recorded || state_change.is_some())
            && write(&app, &lease, &lost, CallbackUpdate::new(acked, state_change)).await.is_err()
        {
            return;
        }
    }
}

/// Waits `delay`; `true` when the sender must stop (lease lost, drain).
async fn pause(app: &App, lost: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        () = lost.cancelled() => true,
        () = app.draining.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

async fn write(app: &App, lease: &Lease, lost: &CancellationToken, update: CallbackUpdate) -> Result<(), ()> {
    let mut delay = Duration::from_millis(50);
    loop {
        match app.store.commit(lease, Commit::new().callback(update.clone())).await {
            Ok(_) => return Ok(()),
            Err(error) if error.is_fenced() => {
                app.metrics.fenced();
                lost.cancel();
                return Err(());
            }
            Err(error) => {
                tracing::debug!(%error, "could not record the callback's progress; retrying");
                if pause(app, lost, delay).await {
                    return Err(());
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// POSTs one event; the error says what the endpoint answered (never the secret).
async fn post(app: &App, url: &str, key: &[u8], handover_id: &str, event: &StoredEvent) -> Result<(), String> {
    let body = serde_json::to_vec(&event_body(handover_id, event)).map_err(|e| e.to_string())?;
    let message_id = format!("{handover_id}:{}", event.seq);
    let timestamp = unix_ms() / 1000;
    let signature = sign(key, &message_id, timestamp, &body);
    let response = app
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("the callback endpoint could not be reached: {}", e.without_url()))?;
    let status = response.status();
    if status.is_success() { Ok(()) } else { Err(format!("the callback endpoint answered {status}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The Standard Webhooks specification's example: secret, id, timestamp, payload
        // and the signature it gives.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_a_real_key() {
        assert!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err().contains("whsec_"));
        assert!(secret_key("whsec_***").unwrap_err().contains("base64"));
        assert!(secret_key("whsec_c2hvcnQ=").unwrap_err().contains("24 to 64 bytes"));
        let debug = format!("{:?}", CallbackSpec { url: "http://x".into(), secret: "whsec_abc".into() });
        assert!(!debug.contains("whsec_abc"), "{debug}");
    }

    #[test]
    fn backoff_grows_from_one_second_to_five_minutes_with_jitter() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1), "{first:?}");
            let late = backoff(30);
            assert!(late >= Duration::from_secs(150) && late <= Duration::from_secs(300), "{late:?}");
        }
        assert!(backoff(4) >= Duration::from_secs(4));
    }
}
