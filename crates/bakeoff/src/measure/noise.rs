//! Noise detection: how much CPU other processes (not bakeoff, not its engine) used around a
//! trial, from `/proc/stat` and `/proc/<pid>/stat`. A trial is noisy when others used more than
//! [`NOISY_CORES`] cores on average.

use std::time::{Duration, Instant};

/// Average cores used by other processes above which a trial is marked noisy.
pub const NOISY_CORES: f64 = 0.25;

#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    busy: u64,
    total: u64,
    tracked: u64,
    at: Instant,
}

fn cpus() -> f64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0)
}

/// (busy, total) jiffies over all CPUs.
fn system_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    (busy, busy + get(3) + get(4))
}

/// utime + stime of one process, in jiffies (reaped children are not counted: a child we did not
/// track is "other" load).
fn process_jiffies(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // After the command name: state(0) ... utime(11) stime(12)
    (11..=12).map(|i| fields.get(i).copied().unwrap_or(0)).sum()
}

impl CpuSnapshot {
    /// Take a snapshot; `tracked` are our own processes (bakeoff itself is always included).
    pub fn take(tracked: &[i32]) -> Self {
        let (busy, total) = system_jiffies();
        let me = std::process::id() as i32;
        let tracked = std::iter::once(me)
            .chain(tracked.iter().copied())
            .map(process_jiffies)
            .sum();
        CpuSnapshot {
            busy,
            total,
            tracked,
            at: Instant::now(),
        }
    }

    /// Average cores used by other processes between `self` and `later`.
    pub fn others_cores(&self, later: &CpuSnapshot) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        let busy = later.busy.saturating_sub(self.busy);
        let ours = later.tracked.saturating_sub(self.tracked);
        busy.saturating_sub(ours) as f64 / total as f64 * cpus()
    }

    pub fn elapsed(&self, later: &CpuSnapshot) -> Duration {
        later.at.saturating_duration_since(self.at)
    }
}

/// The busiest other processes over `window`: (pid, command, cores).
pub fn busiest(window: Duration, exclude: &[i32]) -> Vec<(i32, String, f64)> {
    let scan = || -> Vec<(i32, u64)> {
        std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
                    .map(|pid| (pid, process_jiffies(pid)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (_, total_before) = system_jiffies();
    let before = scan();
    std::thread::sleep(window);
    let (_, total_after) = system_jiffies();
    let after = scan();
    let total = total_after.saturating_sub(total_before).max(1) as f64;
    let me = std::process::id() as i32;
    let mut busy: Vec<(i32, String, f64)> = after
        .iter()
        .filter(|(pid, _)| *pid != me && !exclude.contains(pid))
        .filter_map(|(pid, j)| {
            let prev = before.iter().find(|(p, _)| p == pid)?.1;
            let cores = j.saturating_sub(prev) as f64 / total * cpus();
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim()
                .to_string();
            (cores > 0.01).then_some((*pid, name, cores))
        })
        .collect();
    busy.sort_by(|a, b| b.2.total_cmp(&a.2));
    busy.truncate(5);
    busy
}

/// Wait (up to `limit`) for a quiet machine: other processes below [`NOISY_CORES`] over a
/// one-second window. On timeout, returns a line naming what was busy.
pub fn wait_for_quiet(limit: Duration, exclude: &[i32]) -> Result<f64, String> {
    let deadline = Instant::now() + limit;
    loop {
        let before = CpuSnapshot::take(exclude);
        std::thread::sleep(Duration::from_secs(1));
        let others = before.others_cores(&CpuSnapshot::take(exclude));
        if others < NOISY_CORES {
            return Ok(others);
        }
        if Instant::now() >= deadline {
            let top: Vec<String> = busiest(Duration::from_millis(500), exclude)
                .iter()
                .map(|(pid, name, cores)| format!("{name} (pid {pid}, {cores:.2} cores)"))
                .collect();
            return Err(format!(
                "machine still busy after {}s: other processes use {others:.2} cores; busiest: {}",
                limit.as_secs(),
                if top.is_empty() {
                    "unknown".to_string()
                } else {
                    top.join(", ")
                }
            ));
        }
    }
}

/// Processes other than `ours` that hold an NVIDIA GPU context: (pid, name). Device-wide
/// utilisation cannot tell our engine's work from someone else's (a first version of this check
/// flagged every GPU trial because of the engine's own previous request); the process list can.
/// Empty without nvidia-smi.
pub fn foreign_gpu_processes(ours: &[i32]) -> Vec<(i32, String)> {
    let output = std::process::Command::new("nvidia-smi")
        .args([
            "--query-compute-apps=pid,process_name",
            "--format=csv,noheader",
        ])
        .output();
    let Some(output) = output.ok().filter(|o| o.status.success()) else {
        return Vec::new();
    };
    parse_compute_apps(&String::from_utf8_lossy(&output.stdout), ours)
}

fn parse_compute_apps(text: &str, ours: &[i32]) -> Vec<(i32, String)> {
    text.lines()
        .filter_map(|line| {
            let (pid, name) = line.split_once(',')?;
            let pid: i32 = pid.trim().parse().ok()?;
            (!ours.contains(&pid)).then(|| (pid, name.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_engine_on_the_gpu_is_not_noise() {
        let text = "4242, /usr/bin/llama-server\n977, python3\n";
        assert_eq!(
            parse_compute_apps(text, &[4242]),
            [(977, "python3".to_string())]
        );
        assert!(parse_compute_apps("", &[1]).is_empty());
    }

    #[test]
    fn a_busy_sibling_counts_as_other() {
        let before = CpuSnapshot::take(&[]);
        // Spin a child process (not tracked) for a while: it must show up as "others".
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        child.wait().unwrap();
        let after = CpuSnapshot::take(&[]);
        assert!(before.others_cores(&after) > 0.0);
        assert!(process_jiffies(std::process::id() as i32) < u64::MAX);
    }
}
