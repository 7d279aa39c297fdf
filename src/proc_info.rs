//! This process's pid, resident memory and CPU share, read from /proc (Linux); zeros
//! elsewhere. Shown by `GET /raft` as braft's `pid`, `rss` and `pcpu`.

use std::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
pub struct ProcInfo {
    pub pid: u32,
    pub rss_bytes: u64,
    /// CPU time used since start as a percentage of wall time (100 = one full core).
    pub pcpu: f64,
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
    let ticks = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| {
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    });
    let wall = started.elapsed().as_secs_f64();
    let pcpu = match ticks {
        Some(t) if wall > 0.0 => (t as f64 / 100.0) / wall * 100.0,
        _ => 0.0,
    };
    ProcInfo { pid, rss_bytes, pcpu }
}
