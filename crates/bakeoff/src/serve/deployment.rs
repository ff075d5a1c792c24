//! Deployment readiness beside the settings audit (`doctor --audit`): for each saved profile whether its model file (symlinks
//! followed) still has the recorded sha256; whether the serving port is free or who holds it;
//! which other processes hold GPU memory or CPU; and the measurement lock's state.

use crate::store::{Profile, Store};
use crate::system::audit;
use crate::system::lock::{self, LockState};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// The port `bakeoff profile export` writes into a unit (profiles carry no port of their own).
pub const DEFAULT_PORT: u16 = 8080;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ModelState {
    /// The file hashes to the recorded sha256.
    Matches,
    Changed {
        actual: String,
    },
    /// The profile recorded no hash (the file's hash now is given).
    NotRecorded {
        actual: String,
    },
    Missing {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileReadiness {
    pub name: String,
    pub model_path: String,
    /// The model path with symlinks followed, when it resolves.
    pub resolved: Option<String>,
    pub recorded_sha256: Option<String>,
    pub model: ModelState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortState {
    pub port: u16,
    pub free: bool,
    /// The listening process, when it is visible to us.
    pub pid: Option<i32>,
    pub program: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuProcess {
    pub pid: i32,
    pub program: String,
    pub memory_mib: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusyProcess {
    pub pid: i32,
    pub program: String,
    /// Average cores used over the sampling window.
    pub cores: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Readiness {
    pub profiles: Vec<ProfileReadiness>,
    pub port: PortState,
    pub gpu_processes: Vec<GpuProcess>,
    /// Why GPU processes could not be listed (no nvidia-smi, it failed), when so.
    pub gpu_note: Option<String>,
    pub busy_processes: Vec<BusyProcess>,
    pub lock_path: String,
    pub lock: LockState,
}

/// Readiness of this machine for the profiles in `store`, serving on `port`. Hashes model files
/// whose size or modification time changed since the store last saw them.
pub fn collect(store: &Store, port: u16) -> crate::Result<Readiness> {
    let profiles = store.profiles()?;
    let lock_path = lock::default_path();
    let (gpu_processes, gpu_note) = gpu_processes();
    Ok(Readiness {
        profiles: profiles.iter().map(|p| profile(store, p)).collect(),
        port: port_state(port),
        gpu_processes,
        gpu_note,
        busy_processes: busy_processes(),
        lock: lock::state(&lock_path),
        lock_path: lock_path.display().to_string(),
    })
}

fn profile(store: &Store, profile: &Profile) -> ProfileReadiness {
    let path = Path::new(&profile.model_path);
    let resolved = path.canonicalize().ok().map(|p| p.display().to_string());
    let model = match store.model(path) {
        Err(e) => ModelState::Missing {
            reason: e.to_string(),
        },
        Ok(row) => match &profile.model_sha256 {
            None => ModelState::NotRecorded { actual: row.sha256 },
            Some(recorded) if *recorded == row.sha256 => ModelState::Matches,
            Some(_) => ModelState::Changed { actual: row.sha256 },
        },
    };
    ProfileReadiness {
        name: profile.name.clone(),
        model_path: profile.model_path.clone(),
        resolved,
        recorded_sha256: profile.model_sha256.clone(),
        model,
    }
}

fn program_of(pid: i32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim().to_string())
}

/// Free when we can bind it on loopback; the listener's pid from `/proc/net/tcp*` otherwise.
fn port_state(port: u16) -> PortState {
    let pid = crate::system::listening_pid(port);
    let bindable = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    PortState {
        port,
        free: bindable && pid.is_none(),
        pid,
        program: pid.and_then(program_of),
    }
}

/// `pid, process_name, used_memory` lines (MiB, `[N/A]` when the driver does not say).
pub fn parse_compute_apps(text: &str, ours: i32) -> Vec<GpuProcess> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(str::trim);
            let pid: i32 = fields.next()?.parse().ok()?;
            let program = fields.next()?.to_string();
            let memory_mib = fields.next().and_then(|m| m.parse().ok());
            (pid != ours).then_some(GpuProcess {
                pid,
                program,
                memory_mib,
            })
        })
        .collect()
}

fn gpu_processes() -> (Vec<GpuProcess>, Option<String>) {
    let args = [
        "--query-compute-apps=pid,process_name,used_memory",
        "--format=csv,noheader,nounits",
    ];
    let program = Path::new("nvidia-smi");
    match audit::run_bounded(program, &args, audit::NVIDIA_SMI_LIMIT) {
        Ok(text) => (parse_compute_apps(&text, std::process::id() as i32), None),
        Err(audit::RunError::NotFound) => (
            Vec::new(),
            Some("no NVIDIA GPU (nvidia-smi not found)".into()),
        ),
        Err(audit::RunError::Failed(why)) => (Vec::new(), Some(format!("nvidia-smi: {why}"))),
    }
}

/// The busiest other processes over half a second (bakeoff itself excluded).
fn busy_processes() -> Vec<BusyProcess> {
    crate::measure::noise::busiest(Duration::from_millis(500), &[])
        .into_iter()
        .map(|(pid, program, cores)| BusyProcess {
            pid,
            program,
            cores,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Profile;

    fn saved(store: &Store, name: &str, model: &Path, sha256: Option<String>) {
        let profile = Profile {
            name: name.into(),
            run_id: None,
            config_id: None,
            config_hash: None,
            model_id: None,
            model_path: model.display().to_string(),
            model_sha256: sha256,
            engine_id: None,
            engine_path: None,
            engine_version: None,
            flags: Vec::new(),
            fallback: None,
            canary_reference: None,
            created_at: String::new(),
            updated_at: String::new(),
        };
        store.save_profile(&profile, false).unwrap();
    }

    #[test]
    fn model_files_are_checked_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("r.db")).unwrap();
        let real = dir.path().join("weights.gguf");
        std::fs::write(&real, b"weights").unwrap();
        let link = dir.path().join("current.gguf");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let sha = crate::store::sha256_file(&real).unwrap();
        saved(&store, "good", &link, Some(sha.clone()));
        saved(&store, "stale", &real, Some("0".repeat(64)));
        saved(
            &store,
            "gone",
            &dir.path().join("deleted.gguf"),
            Some(sha.clone()),
        );
        saved(&store, "unhashed", &real, None);
        let by_name = |name: &str| {
            let p = store.find_profile(name).unwrap().unwrap();
            profile(&store, &p)
        };
        let good = by_name("good");
        assert_eq!(good.model, ModelState::Matches);
        assert_eq!(
            good.resolved,
            Some(real.canonicalize().unwrap().display().to_string())
        );
        assert_eq!(
            by_name("stale").model,
            ModelState::Changed {
                actual: sha.clone()
            }
        );
        assert!(
            matches!(by_name("gone").model, ModelState::Missing { reason } if reason.contains("deleted.gguf"))
        );
        assert_eq!(
            by_name("unhashed").model,
            ModelState::NotRecorded { actual: sha }
        );
    }

    #[test]
    fn a_held_port_names_its_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = port_state(port);
        assert!(!held.free);
        assert_eq!(held.pid, Some(std::process::id() as i32));
        assert!(held.program.is_some());
        drop(listener);
        assert!(port_state(port).free);
    }

    #[test]
    fn compute_apps_with_memory_and_without() {
        // `540, python3, 1634` is the H200 machine's answer for a torch process (driver 580).
        let text = "540, python3, 1634\n977, python3, [N/A]\n12, me, 1\n";
        let apps = parse_compute_apps(text, 12);
        assert_eq!(apps.len(), 2);
        assert_eq!((apps[0].pid, apps[0].memory_mib), (540, Some(1634)));
        assert_eq!(
            (apps[1].program.as_str(), apps[1].memory_mib),
            ("python3", None)
        );
    }
}
