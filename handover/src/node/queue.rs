//! Queue position and wait-time reporting: at most once per interval, newest value wins,
//! alternative text once.

use std::time::Duration;

use tokio::time::Instant;

use super::{NodeState, QueueUpdates};

/// One reported quantity.
#[derive(Debug, Default)]
struct Track {
    enabled: bool,
    interval: Duration,
    last_sent: Option<u64>,
    sent_at: Option<Instant>,
    pending: Option<u64>,
}

impl Track {
    fn offer(&mut self, value: u64) {
        if !self.enabled {
            return;
        }
        self.pending = (self.last_sent != Some(value)).then_some(value);
    }

    /// When the pending value is due; `Some(None)` means at once (nothing sent yet).
    fn due_at(&self) -> Option<Option<Instant>> {
        self.pending?;
        Some(self.sent_at.map(|at| handover_transport::time::deadline_after(at, self.interval)))
    }

    fn take_if_due(&mut self, now: Instant) -> Option<u64> {
        if let Some(due) = self.due_at()?
            && now < due
        {
            return None;
        }
        let value = self.pending.take()?;
        self.last_sent = Some(value);
        self.sent_at = Some(now);
        Some(value)
    }
}

#[derive(Debug)]
pub(super) struct QueueReporter {
    position: Track,
    wait: Track,
    alternative: Option<super::Alternative>,
    alternative_said: bool,
}

impl QueueReporter {
    /// A reporter that already reported what `state` says (nothing, for a new handover).
    pub(super) fn resumed(config: &QueueUpdates, state: &NodeState) -> Self {
        Self {
            position: Track {
                enabled: config.position,
                interval: config.position_interval,
                last_sent: state.reported_position.map(u64::from),
                ..Track::default()
            },
            wait: Track {
                enabled: config.wait_time,
                interval: config.wait_time_interval,
                last_sent: state.reported_wait_ms,
                ..Track::default()
            },
            alternative: config.alternative.clone(),
            alternative_said: state.alternative_said,
        }
    }

    /// Records what was reported into `state`.
    pub(super) fn save(&self, state: &mut NodeState) {
        state.reported_position = self.position.last_sent.map(|p| u32::try_from(p).unwrap_or(u32::MAX));
        state.reported_wait_ms = self.wait.last_sent;
        state.alternative_said = self.alternative_said;
    }

    /// Records new queue data; returns the alternative text when it is due (once).
    pub(super) fn offer(&mut self, position: Option<u32>, wait_ms: Option<u64>) -> Option<String> {
        if let Some(position) = position {
            self.position.offer(u64::from(position));
        }
        if let Some(wait) = wait_ms {
            self.wait.offer(wait);
        }
        let alternative = self.alternative.as_ref()?;
        if self.alternative_said {
            return None;
        }
        let too_far = alternative.max_position.zip(position).is_some_and(|(max, p)| p > max);
        let too_long = alternative.max_wait.zip(wait_ms).is_some_and(|(max, w)| u128::from(w) > max.as_millis());
        if too_far || too_long {
            self.alternative_said = true;
            return Some(alternative.text.clone());
        }
        None
    }

    /// When the next pending update is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        let due = |track: &Track| track.due_at().map(|at| at.unwrap_or_else(Instant::now));
        match (due(&self.position), due(&self.wait)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The update to send now, if any is due.
    pub(super) fn due(&mut self, now: Instant) -> Option<(Option<u32>, Option<u64>)> {
        let position = self.position.take_if_due(now).map(|p| u32::try_from(p).unwrap_or(u32::MAX));
        let wait = self.wait.take_if_due(now);
        (position.is_some() || wait.is_some()).then_some((position, wait))
    }

    /// Drops pending updates (an agent was assigned).
    pub(super) fn clear_pending(&mut self) {
        self.position.pending = None;
        self.wait.pending = None;
    }
}
