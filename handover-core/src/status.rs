//! The final status the bot flow sees.

use serde::{Deserialize, Serialize};

use crate::{Error, ErrorKind};

/// Why a handover ended in `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorReason {
    /// The channel or provider cannot do what was asked.
    Unsupported,
    /// The provider could not be reached or failed.
    Error,
}

/// The one final status of a handover, as the bot flow sees it in `input.handover`.
///
/// Serializes exactly as the flow expects:
///
/// ```
/// use handover_core::{ErrorReason, HandoverStatus};
///
/// assert_eq!(serde_json::to_string(&HandoverStatus::Completed).unwrap(), r#"{"status":"completed"}"#);
/// assert_eq!(serde_json::to_string(&HandoverStatus::Cancelled).unwrap(), r#"{"status":"cancelled"}"#);
/// let error = HandoverStatus::Error { reason: ErrorReason::Unsupported, message: "no typing".into() };
/// assert_eq!(
///     serde_json::to_string(&error).unwrap(),
///     r#"{"status":"error","error":{"reason":"unsupported","message":"no typing"}}"#,
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "wire::Status", try_from = "wire::Status")]
pub enum HandoverStatus {
    /// The agent finished the handover.
    Completed,
    /// The end user cancelled before an agent was active.
    Cancelled,
    /// The handover could not be requested or failed.
    Error {
        /// `unsupported` or `error`.
        reason: ErrorReason,
        /// A human-readable explanation.
        message: String,
    },
}

impl HandoverStatus {
    /// The `status` string: `completed`, `cancelled` or `error`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HandoverStatus::Completed => "completed",
            HandoverStatus::Cancelled => "cancelled",
            HandoverStatus::Error { .. } => "error",
        }
    }

    /// The status for an error: `unsupported` for [`ErrorKind::Unsupported`], else `error`.
    pub fn from_error(error: &Error) -> Self {
        let reason = match error.kind() {
            ErrorKind::Unsupported => ErrorReason::Unsupported,
            _ => ErrorReason::Error,
        };
        HandoverStatus::Error { reason, message: error.to_string() }
    }
}

impl From<&Error> for HandoverStatus {
    fn from(error: &Error) -> Self {
        Self::from_error(error)
    }
}

mod wire {
    use serde::{Deserialize, Serialize};

    use super::{ErrorReason, HandoverStatus};

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub(super) enum Kind {
        Completed,
        Cancelled,
        Error,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Detail {
        reason: ErrorReason,
        message: String,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Status {
        status: Kind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Detail>,
    }

    impl From<HandoverStatus> for Status {
        fn from(status: HandoverStatus) -> Self {
            match status {
                HandoverStatus::Completed => Status { status: Kind::Completed, error: None },
                HandoverStatus::Cancelled => Status { status: Kind::Cancelled, error: None },
                HandoverStatus::Error { reason, message } => {
                    Status { status: Kind::Error, error: Some(Detail { reason, message }) }
                }
            }
        }
    }

    impl TryFrom<Status> for HandoverStatus {
        type Error = String;

        fn try_from(status: Status) -> Result<Self, String> {
            match (status.status, status.error) {
                (Kind::Completed, None) => Ok(HandoverStatus::Completed),
                (Kind::Cancelled, None) => Ok(HandoverStatus::Cancelled),
                (Kind::Error, Some(Detail { reason, message })) => Ok(HandoverStatus::Error { reason, message }),
                (Kind::Error, None) => Err("status \"error\" needs an \"error\" object".to_owned()),
                (_, Some(_)) => Err("only status \"error\" carries an \"error\" object".to_owned()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialize_byte_for_byte_as_the_flow_sees_them() {
        let cases = [
            (HandoverStatus::Completed, r#"{"status":"completed"}"#),
            (HandoverStatus::Cancelled, r#"{"status":"cancelled"}"#),
            (
                HandoverStatus::Error { reason: ErrorReason::Unsupported, message: "channel cannot hand over".into() },
                r#"{"status":"error","error":{"reason":"unsupported","message":"channel cannot hand over"}}"#,
            ),
            (
                HandoverStatus::Error { reason: ErrorReason::Error, message: "miaw create conversation: 503".into() },
                r#"{"status":"error","error":{"reason":"error","message":"miaw create conversation: 503"}}"#,
            ),
        ];
        for (status, json) in cases {
            assert_eq!(serde_json::to_string(&status).unwrap(), json);
            assert_eq!(serde_json::from_str::<HandoverStatus>(json).unwrap(), status);
        }
    }

    #[test]
    fn inconsistent_status_objects_are_rejected() {
        // The vendor docs once showed "completed" next to an error object; we never accept it.
        let bad = r#"{"status":"completed","error":{"reason":"error","message":"x"}}"#;
        assert!(serde_json::from_str::<HandoverStatus>(bad).is_err());
        assert!(serde_json::from_str::<HandoverStatus>(r#"{"status":"error"}"#).is_err());
        assert!(serde_json::from_str::<HandoverStatus>(r#"{"status":"queued"}"#).is_err());
    }

    #[test]
    fn errors_map_to_the_documented_reasons() {
        let unsupported = Error::unsupported("genesys", "typing");
        assert!(matches!(
            HandoverStatus::from_error(&unsupported),
            HandoverStatus::Error { reason: ErrorReason::Unsupported, .. }
        ));
        let transport = Error::transport("miaw", "open stream", "connection refused");
        let status = HandoverStatus::from_error(&transport);
        assert_eq!(status, HandoverStatus::Error { reason: ErrorReason::Error, message: transport.to_string() });
    }
}
