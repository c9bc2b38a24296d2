//! The one error type of the workspace.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, in terms a caller can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The provider or channel cannot do this. Decided before any I/O.
    Unsupported,
    /// Credentials are missing, wrong or expired and could not be refreshed.
    Unauthenticated,
    /// The credentials are valid but not allowed to do this.
    PermissionDenied,
    /// The provider asked us to slow down; see [`Error::retry_after`].
    RateLimited,
    /// The provider does not know the session or conversation.
    SessionNotFound,
    /// The session has already ended; nothing more can be sent.
    SessionEnded,
    /// The input was rejected (too long, malformed, not allowed now).
    InvalidInput,
    /// The configuration is wrong or incomplete.
    Config,
    /// The provider could not be reached, or the connection failed.
    Transport,
    /// The provider answered something we cannot read, or broke its protocol.
    Protocol,
    /// The contact center refused the request (no agent available, routing failed).
    Rejected,
}

impl ErrorKind {
    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::Transport)
    }

    fn describe(self) -> &'static str {
        match self {
            ErrorKind::Unsupported => "not supported",
            ErrorKind::Unauthenticated => "not authenticated",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::SessionNotFound => "session not found",
            ErrorKind::SessionEnded => "session already ended",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Config => "configuration error",
            ErrorKind::Transport => "transport error",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Rejected => "request rejected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// An error from a provider or the runtime.
///
/// It names the provider and the operation that failed, says what happened in one line
/// ([`Display`](fmt::Display)), carries a retry hint, and keeps the underlying cause in
/// [`source`](std::error::Error::source). It never contains a token or secret: callers
/// build messages from status codes and provider error texts, and transport errors are
/// stripped of URLs before they are wrapped.
pub struct Error {
    inner: Box<Inner>,
}

/// The fields of an [`Error`], boxed so a `Result` stays one pointer wide.
struct Inner {
    kind: ErrorKind,
    provider: Cow<'static, str>,
    op: Cow<'static, str>,
    message: String,
    hints: Vec<String>,
    status: Option<u16>,
    retry_after: Option<Duration>,
    source: Option<Source>,
}

impl Error {
    /// An error of `kind` in `op` of `provider`, with a message for the person reading it.
    pub fn new(
        kind: ErrorKind,
        provider: impl Into<Cow<'static, str>>,
        op: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                provider: provider.into(),
                op: op.into(),
                message: message.into(),
                hints: Vec::new(),
                status: None,
                retry_after: None,
                source: None,
            }),
        }
    }

    /// `op` is not supported by `provider` (decided before any I/O).
    pub fn unsupported(provider: impl Into<Cow<'static, str>>, op: impl Into<Cow<'static, str>>) -> Self {
        let op = op.into();
        let message = format!("{op} is not supported by this provider");
        Self::new(ErrorKind::Unsupported, provider, op, message)
    }

    /// Credentials were rejected.
    pub fn unauthenticated(
        provider: impl Into<Cow<'static, str>>,
        op: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::Unauthenticated, provider, op, message)
    }

    /// The provider could not be reached.
    pub fn transport(
        provider: impl Into<Cow<'static, str>>,
        op: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::Transport, provider, op, message)
    }

    /// The provider answered something we cannot read.
    pub fn protocol(
        provider: impl Into<Cow<'static, str>>,
        op: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::Protocol, provider, op, message)
    }

    /// The configuration is wrong.
    pub fn config(provider: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, provider, "configure", message)
    }

    /// The input was rejected.
    pub fn invalid_input(
        provider: impl Into<Cow<'static, str>>,
        op: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(ErrorKind::InvalidInput, provider, op, message)
    }

    /// The session has already ended.
    pub fn session_ended(provider: impl Into<Cow<'static, str>>, op: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::SessionEnded, provider, op, "the handover has already ended; start a new one")
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// Attaches a retry hint (from `Retry-After` or the provider's own field).
    #[must_use]
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.inner.retry_after = Some(after);
        self
    }

    /// Records the HTTP status the provider answered with.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.inner.status = Some(status);
        self
    }

    /// Adds what to check or do, for the person reading it (shown after the message), to an
    /// error made elsewhere.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.inner.hints.push(hint.into());
        self
    }

    /// Replaces the operation name (used when a helper's error surfaces in a larger op).
    #[must_use]
    pub fn in_op(mut self, op: impl Into<Cow<'static, str>>) -> Self {
        self.inner.op = op.into();
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The provider that failed (`"miaw"`, `"genesys"`, …; `"handover"` for the runtime).
    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    /// The operation that failed (`"create conversation"`, `"send message"`, …).
    pub fn op(&self) -> &str {
        &self.inner.op
    }

    /// The message, without provider and operation.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The HTTP status the provider answered with, when the error comes from an answer.
    pub fn status(&self) -> Option<u16> {
        self.inner.status
    }

    /// The hints added with [`with_hint`](Self::with_hint), oldest first.
    pub fn hints(&self) -> &[String] {
        &self.inner.hints
    }

    /// How long the provider asked us to wait before retrying, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// Whether retrying later may succeed: transient kinds, or any error with a retry hint.
    pub fn is_retryable(&self) -> bool {
        self.inner.kind.is_transient() || self.inner.retry_after.is_some()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}: {}", self.inner.provider, self.inner.op, self.inner.kind, self.inner.message)?;
        for hint in &self.inner.hints {
            write!(f, "; {hint}")?;
        }
        if let Some(after) = self.inner.retry_after {
            write!(f, " (retry after {}s)", after.as_secs_f64())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("provider", &self.inner.provider)
            .field("op", &self.inner.op)
            .field("message", &self.inner.message);
        if !self.inner.hints.is_empty() {
            d.field("hints", &self.inner.hints);
        }
        if let Some(status) = self.inner.status {
            d.field("status", &status);
        }
        if let Some(after) = self.inner.retry_after {
            d.field("retry_after", &after);
        }
        if let Some(source) = &self.inner.source {
            // Display only: Debug of foreign errors may carry request details.
            d.field("source", &source.to_string());
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_naming_provider_op_and_kind() {
        let error = Error::new(ErrorKind::RateLimited, "miaw", "send message", "HTTP 429")
            .with_retry_after(Duration::from_secs(3));
        assert_eq!(error.to_string(), "miaw send message: rate limited: HTTP 429 (retry after 3s)");
        assert!(error.is_retryable());
        assert!(!error.to_string().contains('\n'));
    }

    #[test]
    fn hints_and_the_status_are_added_without_rebuilding() {
        let error = Error::new(ErrorKind::Unauthenticated, "genesys", "get token", "HTTP 401").with_status(401);
        let error = error.with_hint("check client_id and client_secret");
        assert_eq!(error.status(), Some(401));
        assert_eq!(
            error.to_string(),
            "genesys get token: not authenticated: HTTP 401; check client_id and client_secret"
        );
        assert_eq!(error.hints(), ["check client_id and client_secret"]);
    }

    #[test]
    fn unsupported_names_the_operation() {
        let error = Error::unsupported("genesys", "typing");
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        assert_eq!(error.to_string(), "genesys typing: not supported: typing is not supported by this provider");
        assert!(!error.is_retryable());
    }

    #[test]
    fn source_is_kept_and_debug_shows_only_its_display() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = Error::transport("salesforce", "poll messages", "connection failed").with_source(io);
        assert_eq!(std::error::Error::source(&error).map(ToString::to_string).as_deref(), Some("refused"));
        let debug = format!("{error:?}");
        assert!(debug.contains("source: \"refused\""), "{debug}");
    }
}
