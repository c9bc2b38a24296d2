//! What the process costs: resident memory and CPU time from `/proc/self`.

/// Resident set size in KiB (`VmRSS`).
pub(crate) fn rss_kib() -> u64 {
    rss_kib_at("/proc/self/status")
}

/// Resident set size of process `pid` in KiB.
pub(crate) fn rss_kib_of(pid: u32) -> u64 {
    rss_kib_at(&format!("/proc/{pid}/status"))
}

fn rss_kib_at(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:")?.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU time of the process, in seconds (`/proc/self/stat`, clock ticks of
/// 1/100 s, the Linux `USER_HZ`).
pub(crate) fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may contain spaces) close with ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Raises the open-files limit as far as the hard limit allows; returns the new limit.
pub(crate) fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// Percentile `p` (0..=100) of sorted `values`.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
