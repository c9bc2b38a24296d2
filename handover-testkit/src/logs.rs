//! Capturing every log line of the test process at TRACE, to search it for secrets.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// The log lines written since the capture was installed.
#[derive(Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// How many bytes were logged so far (a mark for [`since`](Self::since)).
    pub fn len(&self) -> usize {
        self.buffer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    /// Whether nothing was logged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What was logged after mark `from`.
    pub fn since(&self, from: usize) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(buffer.get(from..).unwrap_or_default()).into_owned()
    }

    /// Everything logged so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned()
    }
}

/// Installs (once per process) a global subscriber writing every event and span at TRACE,
/// with all fields, into a buffer.
///
/// # Panics
/// When another global subscriber is installed already: nothing could be captured.
pub fn capture() -> &'static LogCapture {
    static CAPTURE: OnceLock<LogCapture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = LogCapture::default();
        let buffer = capture.buffer.clone();
        let installed = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Writer(buffer.clone()))
            .try_init();
        assert!(installed.is_ok(), "another global tracing subscriber is installed; logs cannot be captured");
        tracing::trace!(marker = "handover-log-capture", "capturing");
        assert!(capture.contents().contains("handover-log-capture"), "the capture sees no TRACE events");
        capture
    })
}
