//! This process's pid, resident memory, CPU time and share, open files and start time,
//! read from /proc (Linux); zeros elsewhere. Shown by `GET /raft` as braft's `pid`, `rss`
//! and `pcpu`, and by `GET /metrics` as the standard `process_*` series.

use std::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
pub struct ProcInfo {
    pub pid: u32,
    pub rss_bytes: u64,
    /// CPU time used since start as a percentage of wall time (100 = one full core).
    pub pcpu: f64,
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    pub open_fds: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

pub fn read(started: Instant) -> ProcInfo {
    let pid = std::process::id();
    let page = 4096u64;
    let rss_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page);
    // Fields 14 and 15 of /proc/self/stat are utime and stime in clock ticks (100 Hz on
    // Linux). The command name (field 2) may hold spaces, so split after its ')'.
    // Field 22 is the start time in ticks since boot; /proc/stat's `btime` is the boot
    // time in seconds since the epoch.
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.get(s.rfind(')')? + 2..))
        .map(|rest| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let ticks = field(11).zip(field(12)).map(|(u, s)| u + s);
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    let start_time_seconds = match (boot, field(19)) {
        (Some(b), Some(t)) => b as f64 + t as f64 / 100.0,
        _ => 0.0,
    };
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let wall = started.elapsed().as_secs_f64();
    let pcpu = match ticks {
        Some(t) if wall > 0.0 => (t as f64 / 100.0) / wall * 100.0,
        _ => 0.0,
    };
    ProcInfo {
        pid,
        rss_bytes,
        pcpu,
        cpu_seconds: ticks.map_or(0.0, |t| t as f64 / 100.0),
        open_fds,
        start_time_seconds,
    }
}
