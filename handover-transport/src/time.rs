//! UTC timestamps in the ISO-8601 form APIs expect, and deadlines that cannot overflow.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The farthest deadline [`deadline_after`] gives: a year away, later than anything a
/// session waits for.
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The instant `duration` after `from`, capped a year away: a duration from config or
/// from the network (an `expires_in`, a `retry:` hint) can never overflow an `Instant`.
pub fn deadline_after(from: tokio::time::Instant, duration: Duration) -> tokio::time::Instant {
    from + duration.min(FAR)
}

/// A deadline `duration` from now as Unix milliseconds: the form a session keeps in its
/// snapshot, so that a timer survives a resume in another process (an `Instant` does not).
pub fn unix_millis_after(duration: Duration) -> u64 {
    unix_millis(SystemTime::now()).saturating_add(u64::try_from(duration.min(FAR).as_millis()).unwrap_or(u64::MAX))
}

/// The instant of the wall-clock deadline `unix_ms` (from [`unix_millis_after`]): now when
/// it has passed, at most a year away.
pub fn instant_at_unix_millis(unix_ms: u64) -> tokio::time::Instant {
    let left = unix_ms.saturating_sub(unix_millis(SystemTime::now()));
    deadline_after(tokio::time::Instant::now(), Duration::from_millis(left))
}

/// `2026-01-21T16:47:08.592Z` for `time` (millisecond precision, UTC).
pub fn iso8601_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Now, as [`iso8601_millis`].
pub fn now_iso8601() -> String {
    iso8601_millis(SystemTime::now())
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)` into Unix milliseconds.
pub fn parse_iso8601_millis(text: &str) -> Option<u64> {
    let text = text.trim();
    let (date, rest) = text.split_once('T')?;
    let mut date_parts = date.split('-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: u32 = date_parts.next()?.parse().ok()?;
    let day: u32 = date_parts.next()?.parse().ok()?;
    let (clock, offset_secs) = if let Some(clock) = rest.strip_suffix('Z') {
        (clock, 0i64)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (clock, offset) = rest.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':').unwrap_or((&offset[1..3.min(offset.len())], "0"));
        (clock, sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60))
    };
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut hms = hms.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let s: i64 = hms.next()?.parse().ok()?;
    let millis: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let total = (days * 86_400 + h * 3600 + m * 60 + s - offset_secs) * 1000 + millis;
    u64::try_from(total).ok()
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_deadline_maps_back_to_an_instant() {
        let before = tokio::time::Instant::now();
        let at = instant_at_unix_millis(unix_millis_after(Duration::from_secs(60)));
        assert!(at >= before + Duration::from_secs(59) && at <= before + Duration::from_secs(61));
        // A passed deadline is now; an absurd one is capped.
        assert!(instant_at_unix_millis(0) <= tokio::time::Instant::now());
        assert!(instant_at_unix_millis(u64::MAX) <= tokio::time::Instant::now() + FAR);
    }

    #[test]
    fn formats_and_parses_utc_timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_769_014_028_592);
        assert_eq!(iso8601_millis(t), "2026-01-21T16:47:08.592Z");
        assert_eq!(parse_iso8601_millis("2026-01-21T16:47:08.592Z"), Some(1_769_014_028_592));
        assert_eq!(parse_iso8601_millis("2026-01-21T17:47:08.592+01:00"), Some(1_769_014_028_592));
        assert_eq!(parse_iso8601_millis("2026-01-21T16:47:08Z"), Some(1_769_014_028_000));
        assert_eq!(iso8601_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_millis(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
        assert_eq!(parse_iso8601_millis("yesterday"), None);
        assert_eq!(parse_iso8601_millis("2026-13-01T00:00:00Z"), None);
    }
}
