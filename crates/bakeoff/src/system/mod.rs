//! Facts about this machine and the places bakeoff keeps things: cache and data paths, the
//! hardware/OS fingerprint (GPU topology included) and settings audit stored with every run, and the machine-wide
//! measurement lock.

pub mod audit;
pub mod bandwidth;
pub mod fingerprint;
pub mod lock;
pub mod paths;
pub mod telemetry;
pub mod topology;
pub mod writable;

pub use fingerprint::Fingerprint;
pub use lock::MeasureLock;

/// The pid of the process listening on TCP `port` on this machine (IPv4 or IPv6), found through
/// `/proc/net/tcp*` and the processes' socket descriptors. Lets an attached local server's own CPU
/// use count as ours, not as noise. `None` when not found or not permitted.
pub fn listening_pid(port: u16) -> Option<i32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit(':').next()?;
                    // state 0A = LISTEN
                    (u16::from_str_radix(local_port, 16).ok()? == port && fields.get(3)? == &"0A")
                        .then(|| fields.get(9).map(|s| s.to_string()))
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_string_lossy().parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|t| wanted.iter().any(|w| t.to_string_lossy() == *w))
                })
                .then_some(pid)
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_our_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(super::listening_pid(port), Some(std::process::id() as i32));
        drop(listener);
        assert_eq!(super::listening_pid(port), None);
    }
}
