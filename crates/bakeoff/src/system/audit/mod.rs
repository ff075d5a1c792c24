//! `bakeoff doctor --audit`: a scored checklist of the machine settings that change inference
//! speed (CPU, memory, NVIDIA, AMD), each with its current value, the recommended one, why, and
//! the command that sets it (never run by bakeoff). Every check reads under a root (`/`, or a
//! fixture tree); a missing or unreadable source is a check that says so, never an error.

mod amd;
mod linux;
mod nvidia;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use nvidia::{parse_query as parse_nvidia_query, LIMIT as NVIDIA_SMI_LIMIT};

/// How one check came out. Only `Pass`, `Warn` and `Fail` count towards the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// The setting does not exist here (no NVIDIA GPU, one NUMA node, no cpufreq).
    NotApplicable,
    /// It applies but could not be read: `current` says why.
    Unknown,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::NotApplicable => "n/a",
            Status::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Stable id, e.g. `cpu.governor`, `nvidia.gpu0.power_limit`.
    pub id: String,
    /// `cpu`, `memory`, `nvidia` or `amd`.
    pub area: String,
    pub title: String,
    pub status: Status,
    pub current: String,
    pub recommended: String,
    pub why: String,
    /// The command that sets the recommended value (shown, never run), for warnings and failures.
    pub fix: Option<String>,
}

impl Check {
    fn new(id: &str, area: &str, title: &str) -> Check {
        Check {
            id: id.into(),
            area: area.into(),
            title: title.into(),
            status: Status::Unknown,
            current: String::new(),
            recommended: String::new(),
            why: String::new(),
            fix: None,
        }
    }

    fn recommend(mut self, recommended: impl Into<String>, why: impl Into<String>) -> Check {
        self.recommended = recommended.into();
        self.why = why.into();
        self
    }

    /// The outcome for `current`: `good` passes, otherwise `bad` with `fix`.
    fn judged(mut self, current: impl Into<String>, good: bool, bad: Status, fix: &str) -> Check {
        self.current = current.into();
        self.status = if good { Status::Pass } else { bad };
        if !good {
            self.fix = Some(fix.to_string());
        }
        self
    }

    fn not_applicable(mut self, why: impl Into<String>) -> Check {
        self.status = Status::NotApplicable;
        self.current = why.into();
        self
    }

    fn unknown(mut self, why: impl Into<String>) -> Check {
        self.status = Status::Unknown;
        self.current = why.into();
        self
    }
}

/// The whole checklist, as stored with every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// The root the sources were read under (`/` on a real machine).
    pub root: String,
    pub checks: Vec<Check>,
    pub passed: usize,
    /// Checks that could be judged (pass, warn or fail).
    pub applicable: usize,
    pub not_applicable: usize,
    pub unknown: usize,
}

impl Audit {
    fn from_checks(root: &Path, checks: Vec<Check>) -> Audit {
        let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
        let (not_applicable, unknown) = (count(Status::NotApplicable), count(Status::Unknown));
        Audit {
            root: root.display().to_string(),
            passed: count(Status::Pass),
            applicable: checks.len() - not_applicable - unknown,
            not_applicable,
            unknown,
            checks,
        }
    }

    /// `score 7/9 (2 not applicable)`, with the unknown ones when there are any.
    pub fn score_line(&self) -> String {
        let mut aside = vec![format!("{} not applicable", self.not_applicable)];
        if self.unknown > 0 {
            aside.push(format!("{} unknown", self.unknown));
        }
        format!(
            "score {}/{} ({})",
            self.passed,
            self.applicable,
            aside.join(", ")
        )
    }

    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// `$BAKEOFF_AUDIT_ROOT` (a fixture tree, for tests) or `/`.
pub fn root() -> PathBuf {
    std::env::var_os("BAKEOFF_AUDIT_ROOT")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The audit of the machine at [`root`]: what is stored with every run.
pub fn collect_system() -> Audit {
    collect(&root())
}

/// Every check, reading under `root`. Never fails: what cannot be read is a check that says so.
pub fn collect(root: &Path) -> Audit {
    let mut checks = linux::checks(root);
    checks.extend(nvidia::checks(root));
    checks.extend(amd::checks(root));
    Audit::from_checks(root, checks)
}

/// What changed between two audits, one line per check whose current value differs:
/// `CPU governor: powersave → performance`. Checks present in only one audit are named too.
pub fn differences(a: &Audit, b: &Audit) -> Vec<String> {
    let mut out = Vec::new();
    for x in a.checks.iter().filter(|c| !volatile(c)) {
        match b.check(&x.id) {
            Some(y) if y.current != x.current => {
                out.push(format!("{}: {} → {}", x.title, x.current, y.current));
            }
            Some(_) => {}
            None => out.push(format!("{}: {} → (not checked)", x.title, x.current)),
        }
    }
    for y in b
        .checks
        .iter()
        .filter(|y| !volatile(y) && a.check(&y.id).is_none())
    {
        out.push(format!("{}: (not checked) → {}", y.title, y.current));
    }
    out
}

/// A check whose value is state rather than a setting: an idle GPU lowers its PCIe link
/// generation by itself, so two runs would differ in it for no reason worth naming.
fn volatile(check: &Check) -> bool {
    check.id.ends_with(".pcie_generation")
}

/// `root` joined with an absolute path.
fn under(root: &Path, absolute: &str) -> PathBuf {
    root.join(absolute.trim_start_matches('/'))
}

/// A file's trimmed text, or `not available: PATH: REASON`.
fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| format!("not available: {}: {e}", path.display()))
}

/// Entries of `dir` named `prefix` followed by a number, sorted by that number.
fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let n = name.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Why a bounded command gave no output.
#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// The program is not installed (not on PATH, not in the fixture tree).
    NotFound,
    /// It failed, timed out (and was killed) or could not be started: the reason.
    Failed(String),
}

/// Run `program args` with at most `limit` to answer; on timeout its whole process group is
/// killed. Stdout on success.
pub fn run_bounded(
    program: &Path,
    args: &[&str],
    limit: std::time::Duration,
) -> Result<String, RunError> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RunError::NotFound),
        Err(e) => return Err(RunError::Failed(format!("{}: {e}", program.display()))),
    };
    let pid = child.id() as i32;
    let (sender, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match answer.recv_timeout(limit) {
        Ok(Ok(output)) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).to_string())
        }
        Ok(Ok(output)) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stdout = String::from_utf8_lossy(&output.stdout);
            let said = stderr
                .lines()
                .chain(stdout.lines())
                .find(|l| !l.trim().is_empty());
            Err(RunError::Failed(format!(
                "{} ({})",
                said.unwrap_or("no message").trim(),
                output.status
            )))
        }
        Ok(Err(e)) => Err(RunError::Failed(e.to_string())),
        Err(_) => {
            // SAFETY: signals the process group we created for the child; touches no memory.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            Err(RunError::Failed(format!(
                "no answer within {} s (killed)",
                limit.as_secs_f64()
            )))
        }
    }
}

/// `MemTotal` of `/proc/meminfo` under `root`, in bytes.
fn mem_total(root: &Path) -> Option<u64> {
    let text = read(&under(root, "/proc/meminfo")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
pub(crate) mod fixture {
    //! Fixture trees for the audit's tests.
    use std::path::Path;

    pub fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A Linux machine tuned as the audit recommends (two CPUs, one NUMA node, no GPU).
    pub fn tuned(root: &Path) {
        for cpu in ["cpu0", "cpu1"] {
            let dir = format!("/sys/devices/system/cpu/{cpu}/cpufreq");
            write(root, &format!("{dir}/scaling_governor"), "performance\n");
            write(
                root,
                &format!("{dir}/energy_performance_preference"),
                "performance\n",
            );
        }
        write(
            root,
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "always [madvise] never\n",
        );
        write(root, "/proc/sys/vm/swappiness", "10\n");
        write(root, "/proc/sys/vm/max_map_count", "1048576\n");
        write(root, "/proc/sys/kernel/numa_balancing", "1\n");
        write(root, "/sys/devices/system/node/node0/cpulist", "0-1\n");
        write(root, "/proc/meminfo", "MemTotal:       16384000 kB\n");
        write(
            root,
            "/proc/self/limits",
            "Limit                     Soft Limit           Hard Limit           Units     \n\
             Max open files            1024                 1048576              files     \n\
             Max locked memory         unlimited            unlimited            bytes     \n",
        );
        write(
            root,
            "/proc/cmdline",
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro\n",
        );
    }

    /// The same machine tuned badly: every Linux check that applies warns or fails.
    pub fn untuned(root: &Path) {
        tuned(root);
        for cpu in ["cpu0", "cpu1"] {
            let dir = format!("/sys/devices/system/cpu/{cpu}/cpufreq");
            write(root, &format!("{dir}/scaling_governor"), "powersave\n");
            write(
                root,
                &format!("{dir}/energy_performance_preference"),
                "power\n",
            );
        }
        write(
            root,
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "always madvise [never]\n",
        );
        write(root, "/proc/sys/vm/swappiness", "60\n");
        write(root, "/proc/sys/vm/max_map_count", "4096\n");
        write(root, "/sys/devices/system/node/node1/cpulist", "2-3\n");
        write(
            root,
            "/proc/self/limits",
            "Limit                     Soft Limit           Hard Limit           Units     \n\
             Max locked memory         8388608              8388608              bytes     \n",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tuned_machine_scores_full_and_gpus_are_not_applicable() {
        let dir = tempfile::tempdir().unwrap();
        fixture::tuned(dir.path());
        let audit = collect(dir.path());
        let judged: Vec<_> = audit
            .checks
            .iter()
            .filter(|c| c.status != Status::NotApplicable)
            .collect();
        assert!(
            judged.iter().all(|c| c.status == Status::Pass),
            "{judged:#?}"
        );
        assert_eq!(audit.passed, audit.applicable);
        assert_eq!(audit.applicable, 6, "{:#?}", audit.checks);
        let numa = audit.check("memory.numa_balancing").unwrap();
        assert_eq!(numa.status, Status::NotApplicable, "one NUMA node");
        let nvidia = audit.check("nvidia.gpus").unwrap();
        assert_eq!(nvidia.status, Status::NotApplicable);
        assert!(
            nvidia.current.contains("nvidia-smi not found"),
            "{nvidia:?}"
        );
        assert_eq!(
            audit.check("amd.gpus").unwrap().status,
            Status::NotApplicable
        );
        assert_eq!(audit.score_line(), "score 6/6 (3 not applicable)");
    }

    #[test]
    fn an_untuned_machine_fails_each_check_with_its_fix() {
        let dir = tempfile::tempdir().unwrap();
        fixture::untuned(dir.path());
        let audit = collect(dir.path());
        for id in [
            "cpu.governor",
            "cpu.energy_performance_preference",
            "memory.transparent_hugepages",
            "memory.swappiness",
            "memory.max_map_count",
            "memory.numa_balancing",
            "memory.memlock",
        ] {
            let check = audit.check(id).unwrap_or_else(|| panic!("no {id}"));
            assert!(
                matches!(check.status, Status::Warn | Status::Fail),
                "{check:?}"
            );
            assert!(check.fix.is_some(), "{check:?}");
            assert!(!check.why.is_empty(), "{check:?}");
        }
        let governor = audit.check("cpu.governor").unwrap();
        assert_eq!(governor.current, "powersave");
        assert_eq!(
            governor.fix.as_deref(),
            Some(
                "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"
            )
        );
        let swappiness = audit.check("memory.swappiness").unwrap();
        assert_eq!(
            swappiness.fix.as_deref(),
            Some("sudo sysctl vm.swappiness=10")
        );
        assert_eq!(audit.passed, 0);
        assert_eq!(audit.score_line(), "score 0/7 (2 not applicable)");
    }

    #[test]
    fn an_empty_tree_is_unknown_or_not_applicable_never_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let audit = collect(dir.path());
        assert_eq!(audit.passed, 0);
        assert_eq!(audit.applicable, 0, "{:#?}", audit.checks);
        let swappiness = audit.check("memory.swappiness").unwrap();
        assert_eq!(swappiness.status, Status::Unknown);
        assert!(
            swappiness.current.starts_with("not available: ")
                && swappiness.current.contains("proc/sys/vm/swappiness")
                && swappiness.current.contains("No such file"),
            "{swappiness:?}"
        );
        let governor = audit.check("cpu.governor").unwrap();
        assert_eq!(governor.status, Status::NotApplicable, "{governor:?}");
    }

    #[test]
    fn garbage_values_are_unknown_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        fixture::tuned(dir.path());
        fixture::write(dir.path(), "/proc/sys/vm/swappiness", "lots\n");
        fixture::write(dir.path(), "/proc/self/limits", "nothing useful\n");
        let audit = collect(dir.path());
        let swappiness = audit.check("memory.swappiness").unwrap();
        assert_eq!(swappiness.status, Status::Unknown);
        assert!(
            swappiness.current.contains("'lots' is not a number"),
            "{swappiness:?}"
        );
        let memlock = audit.check("memory.memlock").unwrap();
        assert_eq!(memlock.status, Status::Unknown);
        assert!(memlock.current.contains("Max locked memory"), "{memlock:?}");
    }

    #[test]
    fn differences_name_each_changed_setting() {
        let (good, bad) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fixture::tuned(good.path());
        fixture::untuned(bad.path());
        let (a, b) = (collect(bad.path()), collect(good.path()));
        let lines = differences(&a, &b);
        assert!(
            lines.contains(&"CPU governor: powersave → performance".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"transparent huge pages: never → madvise".to_string()),
            "{lines:#?}"
        );
        assert!(differences(&a, &a).is_empty());
        let mut fewer = b.clone();
        fewer.checks.retain(|c| c.id != "memory.swappiness");
        let lines = differences(&fewer, &b);
        assert_eq!(lines, ["swappiness: (not checked) → 10"]);
        let link = |generation: &str| {
            let mut check = Check::new(
                "nvidia.gpu0.pcie_generation",
                "nvidia",
                "GPU0 PCIe link generation",
            );
            check.current = generation.into();
            Audit::from_checks(Path::new("/"), vec![check])
        };
        assert!(
            differences(&link("gen 1"), &link("gen 5")).is_empty(),
            "idle link state is not a setting"
        );
    }

    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("usr/bin/nvidia-smi");
        fixture::write(dir, "/usr/bin/nvidia-smi", &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_hanging_command_is_killed_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "sleep 30");
        let started = std::time::Instant::now();
        let outcome = run_bounded(&path, &[], std::time::Duration::from_millis(300));
        assert_eq!(
            outcome,
            Err(RunError::Failed("no answer within 0.3 s (killed)".into()))
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let missing = run_bounded(
            &dir.path().join("nope"),
            &[],
            std::time::Duration::from_secs(1),
        );
        assert_eq!(missing, Err(RunError::NotFound));
    }

    #[test]
    fn a_failing_nvidia_smi_is_unknown_with_its_message() {
        let dir = tempfile::tempdir().unwrap();
        fixture::tuned(dir.path());
        script(
            dir.path(),
            "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9",
        );
        let audit = collect(dir.path());
        let check = audit.check("nvidia.gpus").unwrap();
        assert_eq!(check.status, Status::Unknown);
        assert!(check.current.contains("could not communicate"), "{check:?}");
        script(
            dir.path(),
            "echo '0, NVIDIA H200, Disabled, 1980, 3201, 1980, 3201, 500.00, 700.00, 5, 5, 16, 16, Enabled'",
        );
        let audit = collect(dir.path());
        let power = audit.check("nvidia.gpu0.power_limit").unwrap();
        assert_eq!(
            (power.status, power.current.as_str()),
            (Status::Warn, "500 W")
        );
        assert!(audit.check("nvidia.gpus").is_none());
    }

    #[test]
    fn an_audit_survives_json() {
        let dir = tempfile::tempdir().unwrap();
        fixture::untuned(dir.path());
        let audit = collect(dir.path());
        let text = serde_json::to_string(&audit).unwrap();
        assert!(text.contains("\"status\":\"not_applicable\""), "{text}");
        let back: Audit = serde_json::from_str(&text).unwrap();
        assert_eq!(back, audit);
    }
}
