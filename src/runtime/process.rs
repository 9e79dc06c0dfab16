//! Facts about this process that `status` and benchmarks report.

/// Resident set size in bytes (Linux `/proc/self/status`), if known.
pub fn rss_bytes() -> Option<u64> {
    rss_of("self")
}

/// Resident set size of another process.
pub fn rss_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
