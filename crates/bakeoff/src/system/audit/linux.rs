//! The kernel's side: CPU frequency governor and energy-performance preference, transparent huge
//! pages, swappiness, vm.max_map_count, NUMA balancing and the memory-locking limit.

use super::{numbered, read, under, Check, Status};
use std::path::{Path, PathBuf};

pub fn checks(root: &Path) -> Vec<Check> {
    vec![
        governor(root),
        energy_preference(root),
        transparent_hugepages(root),
        swappiness(root),
        max_map_count(root),
        numa_balancing(root),
        memlock(root),
    ]
}

/// `cpufreq/NAME` of every CPU that has one.
fn cpufreq_files(root: &Path, name: &str) -> Vec<PathBuf> {
    numbered(&under(root, "/sys/devices/system/cpu"), "cpu")
        .into_iter()
        .map(|cpu| cpu.join("cpufreq").join(name))
        .filter(|f| f.exists())
        .collect()
}

/// The distinct values of `files`: `performance`, or `powersave (3 CPUs), performance (1 CPU)`.
fn distinct(files: &[PathBuf]) -> Result<Vec<String>, String> {
    let values: Vec<String> = files.iter().map(|f| read(f)).collect::<Result<_, _>>()?;
    let mut seen: Vec<(String, usize)> = Vec::new();
    for v in values {
        match seen.iter_mut().find(|(s, _)| *s == v) {
            Some((_, n)) => *n += 1,
            None => seen.push((v, 1)),
        }
    }
    Ok(match seen.len() {
        1 => vec![seen.remove(0).0],
        _ => seen
            .into_iter()
            .map(|(v, n)| format!("{v} ({n} CPU{})", if n == 1 { "" } else { "s" }))
            .collect(),
    })
}

/// A per-CPU cpufreq setting whose good value is `good`.
fn per_cpu(root: &Path, check: Check, file: &str, good: &str, fix: &str) -> Check {
    let files = cpufreq_files(root, file);
    if files.is_empty() {
        let dir = under(root, "/sys/devices/system/cpu");
        return check.not_applicable(format!(
            "no cpufreq/{file} under {} (a virtual machine, or no frequency driver)",
            dir.display()
        ));
    }
    match distinct(&files) {
        Ok(values) => {
            let all_good = values.len() == 1 && values[0] == good;
            check.judged(values.join(", "), all_good, Status::Warn, fix)
        }
        Err(why) => check.unknown(why),
    }
}

fn governor(root: &Path) -> Check {
    let check = Check::new("cpu.governor", "cpu", "CPU governor").recommend(
        "performance",
        "other governors lower the clock between bursts; decode is a stream of short bursts, so \
         token latency grows and throughput varies from run to run",
    );
    let fix = "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor";
    let mut check = per_cpu(root, check, "scaling_governor", "performance", fix);
    let driver = read(&under(
        root,
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_driver",
    ));
    // With intel_pstate or amd-pstate(-epp) in active mode `powersave` is the dynamic default,
    // steered by the energy-performance preference (checked next); with acpi-cpufreq and other
    // passive drivers it pins the lowest clock.
    let active_pstate = driver.is_ok_and(|d| d == "intel_pstate" || d == "amd-pstate-epp");
    if check.status == Status::Warn && check.current.contains("powersave") && !active_pstate {
        check.status = Status::Fail;
    }
    check
}

fn energy_preference(root: &Path) -> Check {
    let check = Check::new(
        "cpu.energy_performance_preference",
        "cpu",
        "energy-performance preference",
    )
    .recommend(
        "performance",
        "with intel_pstate or amd-pstate in active mode the preference, not the governor, decides \
         how eagerly cores boost",
    );
    let fix = "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/energy_performance_preference";
    per_cpu(
        root,
        check,
        "energy_performance_preference",
        "performance",
        fix,
    )
}

/// `always [madvise] never` → `madvise`.
fn bracketed(text: &str) -> Option<String> {
    let word = text.split_whitespace().find(|w| w.starts_with('['))?;
    Some(word.trim_matches(|c| c == '[' || c == ']').to_string())
}

fn transparent_hugepages(root: &Path) -> Check {
    let check = Check::new(
        "memory.transparent_hugepages",
        "memory",
        "transparent huge pages",
    )
    .recommend(
        "madvise or always",
        "huge pages cut TLB misses on large buffers: `always` gives them to every anonymous \
         buffer (llama.cpp's CPU compute and KV buffers, weights under --no-mmap), `madvise` only to \
         programs that ask, `never` to none; weights mapped from the file cache use small pages either way",
    );
    let path = under(root, "/sys/kernel/mm/transparent_hugepage/enabled");
    let fix = "echo madvise | sudo tee /sys/kernel/mm/transparent_hugepage/enabled";
    match read(&path) {
        Ok(text) => match bracketed(&text) {
            Some(mode) => {
                let good = mode == "madvise" || mode == "always";
                check.judged(mode, good, Status::Warn, fix)
            }
            None => check.unknown(format!(
                "{}: no [selected] mode in '{text}'",
                path.display()
            )),
        },
        Err(why) => check.unknown(why),
    }
}

/// A number from a one-value file, or why not.
fn number(path: &Path) -> Result<u64, String> {
    let text = read(path)?;
    text.parse()
        .map_err(|_| format!("{}: '{text}' is not a number", path.display()))
}

fn swappiness(root: &Path) -> Check {
    let check = Check::new("memory.swappiness", "memory", "swappiness").recommend(
        "10 or less",
        "a low value keeps model weights and the KV cache resident instead of swapping them out \
         under memory pressure (a swapped-in page costs milliseconds)",
    );
    match number(&under(root, "/proc/sys/vm/swappiness")) {
        Ok(n) => check.judged(
            n.to_string(),
            n <= 10,
            Status::Warn,
            "sudo sysctl vm.swappiness=10",
        ),
        Err(why) => check.unknown(why),
    }
}

/// The kernel's default; lower values come from hardening guides.
const DEFAULT_MAX_MAP_COUNT: u64 = 65530;

fn max_map_count(root: &Path) -> Check {
    let check = Check::new("memory.max_map_count", "memory", "vm.max_map_count").recommend(
        format!("{DEFAULT_MAX_MAP_COUNT} or more"),
        "llama.cpp maps each model file once, so the default is plenty; a value below it can make \
         loading many files or many allocations (other engines, large multi-part models) fail with ENOMEM",
    );
    match number(&under(root, "/proc/sys/vm/max_map_count")) {
        Ok(n) => check.judged(
            n.to_string(),
            n >= DEFAULT_MAX_MAP_COUNT,
            Status::Warn,
            "sudo sysctl vm.max_map_count=1048576",
        ),
        Err(why) => check.unknown(why),
    }
}

fn numa_balancing(root: &Path) -> Check {
    let check = Check::new("memory.numa_balancing", "memory", "NUMA balancing").recommend(
        "0 (off)",
        "automatic NUMA balancing unmaps pages to sample accesses and migrates them; llama.cpp \
         warns that it impairs performance on multi-socket machines",
    );
    let nodes = numbered(&under(root, "/sys/devices/system/node"), "node").len();
    if nodes <= 1 {
        return check.not_applicable(format!(
            "{} NUMA node{}",
            nodes.max(1),
            if nodes > 1 { "s" } else { "" }
        ));
    }
    match number(&under(root, "/proc/sys/kernel/numa_balancing")) {
        Ok(n) => check.judged(
            format!("{n} ({nodes} nodes)"),
            n == 0,
            Status::Warn,
            "sudo sysctl kernel.numa_balancing=0",
        ),
        Err(why) => check.unknown(why),
    }
}

/// The soft `Max locked memory` limit of `/proc/self/limits`: `None` for unlimited. That file is
/// what getrlimit(RLIMIT_MEMLOCK) reports, so the real machine and a fixture read alike.
fn memlock_limit(path: &Path) -> Result<Option<u64>, String> {
    let text = read(path)?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max locked memory"))
        .ok_or_else(|| format!("{}: no 'Max locked memory' line", path.display()))?;
    let soft = line.split_whitespace().next().unwrap_or_default();
    match soft {
        "unlimited" => Ok(None),
        _ => soft.parse().map(Some).map_err(|_| {
            format!(
                "{}: 'Max locked memory' soft limit '{soft}' is not a number",
                path.display()
            )
        }),
    }
}

fn memlock(root: &Path) -> Check {
    let check = Check::new("memory.memlock", "memory", "locked-memory limit").recommend(
        "unlimited",
        "llama-server --mlock pins the weights so they are never paged out; it needs a limit at \
         least the model's size (without --mlock the limit does not matter). The command raises it \
         for this shell and what it starts; for a service set LimitMEMLOCK=infinity, for logins \
         `* - memlock unlimited` in /etc/security/limits.conf",
    );
    let fix = "sudo prlimit --pid $$ --memlock=unlimited:unlimited";
    match memlock_limit(&under(root, "/proc/self/limits")) {
        Ok(None) => check.judged("unlimited", true, Status::Warn, fix),
        Ok(Some(bytes)) => check.judged(
            crate::domain::units::human_bytes(bytes),
            false,
            Status::Warn,
            fix,
        ),
        Err(why) => check.unknown(why),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::write;
    use super::*;

    #[test]
    fn mixed_governors_name_each_and_warn() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (cpu, governor) in [
            ("cpu0", "schedutil"),
            ("cpu1", "performance"),
            ("cpu2", "schedutil"),
        ] {
            let path = format!("/sys/devices/system/cpu/{cpu}/cpufreq/scaling_governor");
            write(root, &path, governor);
        }
        let check = governor(root);
        assert_eq!(check.status, Status::Warn);
        assert_eq!(check.current, "schedutil (2 CPUs), performance (1 CPU)");
    }

    #[test]
    fn powersave_fails_on_acpi_cpufreq_and_warns_under_an_active_pstate_driver() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cpufreq = "/sys/devices/system/cpu/cpu0/cpufreq";
        write(root, &format!("{cpufreq}/scaling_governor"), "powersave");
        write(root, &format!("{cpufreq}/scaling_driver"), "acpi-cpufreq");
        assert_eq!(governor(root).status, Status::Fail);
        write(root, &format!("{cpufreq}/scaling_driver"), "intel_pstate");
        assert_eq!(governor(root).status, Status::Warn);
    }

    #[test]
    fn bracketed_mode() {
        assert_eq!(
            bracketed("always [madvise] never").as_deref(),
            Some("madvise")
        );
        assert_eq!(bracketed("always madvise never"), None);
    }
}
