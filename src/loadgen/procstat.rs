//! What the measured processes (nodes, `redis-server`) spent, read from
//! `/proc`: CPU time (`utime + stime`) and resident memory.
//!
//! Read by the load generator itself so that the CPU window is exactly its
//! measured window, not a script's guess around it.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat` times. Linux reports them in
/// `USER_HZ`, which is 100 on every architecture it exposes to user space.
const TICKS_PER_SECOND: u64 = 100;

/// One process's counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub pid: u32,
    /// `utime + stime`, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, in KiB (`VmRSS`).
    pub rss_kib: u64,
}

/// Samples every process of `pids`; fails if one has gone.
pub fn sample(pids: &[u32]) -> anyhow::Result<Vec<Sample>> {
    pids.iter().map(|&pid| sample_one(pid)).collect()
}

fn sample_one(pid: u32) -> anyhow::Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(Sample {
        pid,
        cpu_ticks: cpu_ticks(&stat)?,
        rss_kib: rss_kib(&status)?,
    })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The
/// command name (field 2) is in parentheses and may hold spaces, so fields
/// are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no command name in /proc stat")?;
    // After the name: field 3 (state) is the first; utime is field 14.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    if fields.len() < 13 {
        bail!("short /proc stat line");
    }
    let utime: u64 = fields[11].parse().context("utime")?;
    let stime: u64 = fields[12].parse().context("stime")?;
    Ok(utime + stime)
}

fn rss_kib(status: &str) -> anyhow::Result<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .context("no VmRSS in /proc status")?
        .parse()
        .context("VmRSS")
}

/// CPU time each process spent between two samples of the same processes.
pub fn cpu_between(before: &[Sample], after: &[Sample]) -> Vec<Duration> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let ticks = a.cpu_ticks.saturating_sub(b.cpu_ticks);
            Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 8 0 1000 100000 2000";
        assert_eq!(cpu_ticks(stat).unwrap(), 325);
    }

    #[test]
    fn reads_resident_memory() {
        let status = "Name:\tredis-server\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(rss_kib(status).unwrap(), 12345);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let me = std::process::id();
        let before = sample(&[me]).unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        let after = sample(&[me]).unwrap();
        assert!(after[0].rss_kib > 0);
        assert!(after[0].cpu_ticks >= before[0].cpu_ticks);
        assert_eq!(cpu_between(&before, &after).len(), 1);
    }
}
