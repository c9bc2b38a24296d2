//! Checks shared by the providers' configs: values that load must also run.

use handover_core::{Error, Result};

/// A week, in seconds: the longest interval, timeout or window any key takes.
pub const MAX_SECS: u64 = 7 * 24 * 3600;

/// Checks that `[table] key = value` lies in `min..=max`, with an error naming the table,
/// the key and the allowed range.
///
/// ```
/// use handover_transport::config::in_range;
///
/// assert!(in_range("liveagent", "queue_update_interval", 30, 1, 86_400).is_ok());
/// let error = in_range("liveagent", "queue_update_interval", 0, 1, 86_400).unwrap_err();
/// assert_eq!(error.message(), "[liveagent] `queue_update_interval` is 0; it must be 1 to 86400");
/// ```
pub fn in_range(table: &'static str, key: &str, value: u64, min: u64, max: u64) -> Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::config(table, format!("[{table}] `{key}` is {value}; it must be {min} to {max}")))
    }
}
